"""Per-image self-check: did adaptation help on son -> LR crops it never trained on?

Adaptation learns from ``son -> LR`` pairs with a blocky mask: a random eighth of the LR, in blocks of
:data:`BLOCK` pixels, is held out of the loss. After the steps, three candidates super-resolve the son and are
scored against the held-out LR pixels: bicubic interpolation, the weights before adaptation (MZSR(0)) and after
(MZSR(n)). The output is made by the best of them, so an image whose adaptation went wrong (a wrong kernel or noise
level, a diverging step size, an image unlike the training data) falls back to the better of the other two instead
of coming out worse than bicubic. The cost is two forward passes on the son: a few percent of ten steps.
"""
import math
import numpy as np
import torch

from mzsr_plugin.utils.matlab_resize import imresize_pt
from .inner_loop import forward

# Side of the held-out blocks in LR pixels: larger than the net's receptive field at the son's scale, so a held-out
# pixel's prediction rarely sees a trained target's neighbourhood only.
BLOCK = 16
# Share of the LR blocks held out: enough pixels to score on (thousands on a 240x160 LR), few enough that the
# adapted weights hardly change (measured in scripts/bench_photos.py).
HELD_OUT = 1 / 8
# Fewer blocks than this halve the block side (tiny images), so that most of the image is still learned from.
MIN_BLOCKS = 8
BICUBIC = 'bicubic'
UNADAPTED = 'MZSR(0)'


def held_out_mask(shape, rng, block=BLOCK, share=HELD_OUT):
    """A random set of LR blocks held out of adaptation.

    Args:
        shape (tuple): Shape of the father batch, (N, C, h, w).
        rng (np.random.Generator): Chooses the blocks.
        block (int): Block side in pixels (halved while the batch has fewer than :data:`MIN_BLOCKS` blocks).
        share (float): Share of the blocks held out (at least one block).

    Returns:
        Tensor: Shape (N, 1, h, w), float32, 1 on held-out pixels.
    """
    n, _, h, w = shape
    while block > 1 and n * math.ceil(h / block) * math.ceil(w / block) < MIN_BLOCKS:
        block //= 2
    rows, cols = math.ceil(h / block), math.ceil(w / block)
    total = n * rows * cols
    chosen = rng.choice(total, size=max(1, round(total * share)), replace=False)
    grid = np.zeros(total, dtype=np.float32)
    grid[chosen] = 1
    grid = grid.reshape(n, 1, rows, cols).repeat(block, axis=2).repeat(block, axis=3)[..., :h, :w]
    return torch.from_numpy(np.ascontiguousarray(grid))


def _masked_psnr(pred, target, mask):
    pred = pred[..., :target.shape[-2], :target.shape[-1]].clamp(0, 1)
    mse = (((pred - target)**2) * mask).sum() / (mask.sum() * target.shape[1])
    return float(10 * torch.log10(1 / mse.clamp_min(1e-12)))


@torch.no_grad()
def held_out_scores(net, start, adapted, son, father, mask, scale, adapted_name):
    """PSNR of each candidate on the held-out pixels of ``son -> father``.

    Args:
        net (nn.Module): The network.
        start (dict[str, Tensor]): Parameters before adaptation.
        adapted (dict[str, Tensor]): Parameters after adaptation.
        son (Tensor): Shape (N, C, h', w').
        father (Tensor): Shape (N, C, h, w).
        mask (Tensor): Held-out pixels of ``father``, shape (N, 1, h, w).
        scale (int): Scale.
        adapted_name (str): The adapted candidate's name, e.g. ``MZSR(10)``.

    Returns:
        dict[str, float]: ``bicubic``, ``MZSR(0)`` and ``adapted_name`` -> PSNR in dB (RGB, [0, 1]).
    """
    mask = mask.to(father)
    return {
        BICUBIC: _masked_psnr(imresize_pt(son, scale), father, mask),
        UNADAPTED: _masked_psnr(forward(net, start, son), father, mask),
        adapted_name: _masked_psnr(forward(net, adapted, son), father, mask),
    }


def choose(scores, adapted_name):
    """The candidate that makes the output: the adapted net unless another scored higher on held-out pixels.

    Args:
        scores (dict[str, float]): From :func:`held_out_scores`.
        adapted_name (str): The adapted candidate's name.

    Returns:
        str: A key of ``scores``.
    """
    best = max(scores, key=scores.get)
    return adapted_name if scores[adapted_name] >= scores[best] else best


def scores_text(check):
    """The held-out PSNR of each candidate of a self-check (``info['self_check']``), for logs."""
    return ', '.join(f'{name} {psnr:.2f} dB' for name, psnr in check['psnr'].items())


def describe_fallback(check):
    """Why the self-check fell back, for logs (``mzsr-sr``, the app, BasicSR's test log)."""
    return f'adaptation did not help on the held-out crops ({scores_text(check)}): the output is {check["choice"]}'


__all__ = [
    'BICUBIC', 'BLOCK', 'HELD_OUT', 'MIN_BLOCKS', 'UNADAPTED', 'choose', 'describe_fallback', 'held_out_mask',
    'held_out_scores', 'scores_text'
]
