"""Large images: tiled inference without seams, and a bounded set of crops to adapt on.

Tiled inference is exact, not blended: each LR tile is run with a margin of ``overlap`` LR pixels on every side
(clipped at the image border) and only the SR of the tile itself is kept. An SR pixel of MZSRNet depends on the
LR pixels within :func:`required_overlap` of it (the bicubic upsampling reaches 2 LR pixels, then ``num_conv`` 3x3
convs reach ``num_conv`` SR pixels), so any ``overlap`` at least that large gives the untiled output up to float
rounding: the tile's margin contains every pixel its SR depends on, and where the margin is clipped the tile's
border is the image's, padded exactly as the whole image is.

Adaptation on a huge image is bounded instead by adapting on random crops (:func:`adaptation_crops`): each crop is
an LR father with its own son, ``degrade(crop)``, and all crops go through each SGD step as one batch.
"""
import math
import torch

# Bicubic (MATLAB imresize) upsampling reads LR pixels at most this far from an SR pixel's position.
BICUBIC_REACH = 2


def required_overlap(num_conv, scale):
    """The smallest tile margin (in LR pixels) that makes :func:`tiled_forward` of MZSRNet exact.

    Args:
        num_conv (int): Number of 3x3 convs, run at SR resolution.
        scale (int): SR scale.

    Returns:
        int: ``ceil(num_conv / scale) + 2``; 6 for the official net at x2, 4 at x4.
    """
    return math.ceil(num_conv / scale) + BICUBIC_REACH


def _starts(length, tile):
    """Start indices of tiles of size ``tile`` covering ``range(length)`` (the last one may be shorter)."""
    return list(range(0, length, tile))


def tile_count(h, w, tile):
    """How many tiles :func:`tiled_forward` runs on an (h, w) LR."""
    return len(_starts(h, tile)) * len(_starts(w, tile))


def tiled_forward(fn, lr, scale, tile=256, overlap=16, on_tile=None):
    """Runs ``fn`` on overlapping LR tiles and stitches their SR without seams.

    The default ``overlap`` (16) covers MZSRNet with up to 14 convs at x2 (see :func:`required_overlap`). An image
    no larger than ``tile`` is run in one piece.

    Args:
        fn (callable): Maps an LR batch (1, C, h, w) to its SR, (1, C, h * scale, w * scale).
        lr (Tensor): LR image, shape (1, C, h, w).
        scale (int): SR scale.
        tile (int): Size of the LR tiles (without margins). Default: 256.
        overlap (int): Margin, in LR pixels, run on each side of a tile and then discarded. Default: 16.
        on_tile (callable | None): ``on_tile(done, total)`` after each tile (progress of long runs).

    Returns:
        Tensor: SR, shape (1, C, h * scale, w * scale).
    """
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f'tiled_forward takes one LR image of shape (1, C, h, w), got {tuple(lr.shape)}')
    if int(scale) != scale or scale < 1:
        raise ValueError(f'scale must be a positive integer, got {scale}')
    if tile < 1 or overlap < 0:
        raise ValueError(f'tile must be >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}')
    scale = int(scale)
    h, w = lr.shape[-2:]
    out = None
    total, done = tile_count(h, w, tile), 0
    for top in _starts(h, tile):
        for left in _starts(w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(bottom + overlap, h), min(right + overlap, w)
            sr = fn(lr[..., y0:y1, x0:x1])
            expected = ((y1 - y0) * scale, (x1 - x0) * scale)
            if tuple(sr.shape[-2:]) != expected:
                raise ValueError(f'tiled_forward: fn returned shape {tuple(sr.shape)} for an LR tile of '
                                 f'{y1 - y0}x{x1 - x0}; expected (1, C, {expected[0]}, {expected[1]}) at x{scale}')
            if out is None:
                out = sr.new_empty(1, sr.shape[1], h * scale, w * scale)
            out[..., top * scale:bottom * scale, left * scale:right * scale] = \
                sr[..., (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return out


def adaptation_crops(lr, budget, crop, rng):
    """Random LR crops, at most ``budget`` pixels in all, to adapt on instead of a huge image.

    Each crop later becomes an (son -> father) pair of its own: the crop is the father and ``degrade(crop)`` its
    son, so the pairs are the same as on the whole image except near the crop borders. A crop side larger than the
    image is clipped to it. An image of at most ``budget`` pixels is returned whole.

    Args:
        lr (Tensor): LR image, shape (1, C, h, w).
        budget (int): Most LR pixels in all crops together (>= ``crop`` ** 2 after clipping ``crop`` to the image).
        crop (int): Side of the square crops.
        rng (np.random.Generator): Chooses the crop positions.

    Returns:
        Tensor: Crops stacked as a batch, shape (n, C, ch, cw) with ``n * ch * cw <= budget``, or ``lr`` itself.
    """
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f'adaptation_crops takes one LR image of shape (1, C, h, w), got {tuple(lr.shape)}')
    h, w = lr.shape[-2:]
    if h * w <= budget:
        return lr
    ch, cw = min(crop, h), min(crop, w)
    count = budget // (ch * cw)
    if count < 1:
        raise ValueError(f'crop budget {budget} pixels is smaller than one {ch}x{cw} adaptation crop; raise the '
                         f'budget to at least {ch * cw} or use smaller crops')
    tops = rng.integers(0, h - ch + 1, size=count)
    lefts = rng.integers(0, w - cw + 1, size=count)
    return torch.cat([lr[..., t:t + ch, s:s + cw] for t, s in zip(tops.tolist(), lefts.tolist())])
