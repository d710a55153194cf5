"""Meta-test: adapt a network to one image's degradation, then super-resolve it.

Data flow, as in the paper and the official test: ``son = degrade(LR, kernel, scale)``; a few plain SGD steps on
(son -> LR) starting from the given weights (:func:`adapt_to_image`); ``SR = f_θ'(LR)`` (:func:`super_resolve`),
optionally with x8 self-ensemble and back-projection. The same :func:`~mzsr_plugin.models.inner_loop.sgd_step`
as the meta-training inner loop does the steps.
"""
import contextlib
import math
import numpy as np
import time
import torch

from mzsr_plugin.data.degradations import degrade_pt, jpeg_compress_pt
from mzsr_plugin.precision import FP32_REFERENCE
from mzsr_plugin.utils.matlab_resize import imresize_pt
from .inner_loop import adapt, detached_params, forward, lr_schedule
from .self_check import BICUBIC, UNADAPTED, choose, held_out_mask, held_out_scores
from .tiling import adaptation_crops, required_overlap, tiled_forward

# Per-step learning rates of the official test.py (the last value repeats for later steps).
ADAPT_LR_PRESETS = {
    'direct_x2': [2e-2, 1e-2, 1e-2, 1e-2, 5e-3],
    'direct_x4': [1e-2, 5e-3, 5e-3, 5e-3, 5e-3, 1e-3],
    'bicubic': [1e-2, 1e-2, 1e-2, 1e-3],
    'multiscale': [1e-2, 1e-2, 1e-2, 5e-3],
}


DEFAULT_TILE = 512
# Under ``--tile auto`` the LR tile is the one whose SR is SR_TILE pixels a side, whatever the scale: a 512 LR tile at
# x4 is a 2048² SR tile, one 64-channel float32 map of it 1 GiB, and those maps set the peak memory of an x4 run
# (docs/photos.md). Its margins are a few LR pixels (tiling.required_overlap), so a smaller tile costs little time.
SR_TILE = 2 * DEFAULT_TILE
AUTO_TILE = 'auto'
DEFAULT_CROP_BUDGET = 1024 * 1024
# Side of the adaptation crops of images above the crop budget (smaller when the budget is).
ADAPT_CROP = 512
# Photos above LARGE_PHOTO LR pixels adapt on LARGE_PHOTO_CROP_BUDGET under the ``auto`` budget: the default budget's
# activations held for backward took a 12-megapixel photo at x2 over 4 GB, and one crop of 512 scored no lower than
# four (+0.03 and +0.05 dB, g^d_2.0 and an anisotropic kernel, on a 1920x1920 LR mosaic of held-out HQ70 images:
# scripts/bench_crop_budget.py, docs/photos.md) in a third of the adaptation time.
LARGE_PHOTO = 4 * 1024 * 1024
LARGE_PHOTO_CROP_BUDGET = 256 * 1024
AUTO_BUDGET = 'auto'


def tile_for(tile, scale):
    """The LR tile size of a run.

    Args:
        tile (str | int | None): ``'auto'``: ``SR_TILE // scale`` (512 at x2, 256 at x4); 0 or None: never tile;
            a number is kept.
        scale (int): SR scale.

    Returns:
        int | None: LR tile size, or None for no tiling.
    """
    if tile == AUTO_TILE:
        return SR_TILE // int(scale)
    return tile or None


def crop_budget_for(budget, height, width):
    """The crop budget of an LR of (height, width) pixels.

    Args:
        budget (str | int | None): ``'auto'``: :data:`DEFAULT_CROP_BUDGET`, or :data:`LARGE_PHOTO_CROP_BUDGET`
            above :data:`LARGE_PHOTO` pixels; a number (or None, 0: the whole image) is kept.
        height (int): LR height. width (int): LR width.

    Returns:
        int | None: Most LR pixels to adapt on.
    """
    if budget != AUTO_BUDGET:
        return budget
    return LARGE_PHOTO_CROP_BUDGET if height * width > LARGE_PHOTO else DEFAULT_CROP_BUDGET


def default_lr_preset(scale, downsample, multiscale=False):
    """The official preset for a model kind: ``multiscale``, ``bicubic``, ``direct_x4`` or ``direct_x2``.

    Args:
        scale (int): SR scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        multiscale (bool): Weights meta-trained on several scales.

    Returns:
        str: A key of :data:`ADAPT_LR_PRESETS`.
    """
    if multiscale:
        return 'multiscale'
    if downsample == 'bicubic':
        return 'bicubic'
    return 'direct_x4' if scale >= 4 else 'direct_x2'


def resolve_adapt_lrs(lr, steps, scale, downsample, multiscale=False, learned=None):
    """Turns ``val.adapt.lr`` (preset name, number, list or None) into one lr per step.

    Args:
        lr (str | float | list[float] | None): ``'learned'`` takes ``learned``; None takes ``learned`` when the
            weights have it, else the official preset for the model kind.
        steps (int): Number of adaptation steps.
        scale (int): SR scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        multiscale (bool): Weights meta-trained on several scales.
        learned (list[dict[str, float]] | None): Meta-learned per-step, per-tensor step sizes of the weights
            (``net.inner_lrs`` of :func:`~mzsr_plugin.evaluation.load_mzsr_weights`); their last step repeats.

    Returns:
        list[float | dict[str, float]]: ``steps`` learning rates.
    """
    if lr == 'learned' and not learned:
        raise ValueError("lr 'learned': these weights carry no learned step sizes (no inner_lrs in the .pth); use "
                         f'a preset ({", ".join(sorted(ADAPT_LR_PRESETS))}) or a number')
    if lr is None or lr == 'learned':
        if learned:
            return lr_schedule(learned, steps)
        lr = default_lr_preset(scale, downsample, multiscale)
    if isinstance(lr, str):
        if lr not in ADAPT_LR_PRESETS:
            raise ValueError(f'val.adapt.lr: unknown preset {lr!r}; use one of {sorted(ADAPT_LR_PRESETS)}, '
                             'a number or a list of numbers')
        lr = ADAPT_LR_PRESETS[lr]
    return lr_schedule(lr, steps)


@contextlib.contextmanager
def at_scale(net, scale):
    """Temporarily runs an arch with a settable ``scale`` attribute (e.g. MZSRNet) at ``scale``.

    Archs without that attribute have a fixed scale and run unchanged.

    Args:
        net (nn.Module): The network.
        scale (int | None): Scale to use inside the block; None keeps the arch's own.
    """
    current = getattr(net, 'scale', None)
    if current is None or scale is None or current == scale:
        yield net
        return
    net.scale = scale
    try:
        yield net
    finally:
        net.scale = current


def check_output_scale(net, scale, channels=3):
    """Refuses an arch that cannot super-resolve by ``scale``, e.g. a fixed-scale one built for another scale.

    Archs with a settable ``scale`` (MZSRNet) are tried at ``scale``; one forward of an 8x8 image, in eval mode.

    Args:
        net (nn.Module): The network.
        scale (int): The scale it is asked for.
        channels (int): Its input channels. Default: 3.
    """
    param = next(net.parameters())
    probe = torch.zeros(1, channels, 8, 8, device=param.device, dtype=param.dtype)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), at_scale(net, scale):
            out = net(probe)
    finally:
        net.train(was_training)
    if tuple(out.shape[-2:]) != (8 * scale, 8 * scale):
        raise ValueError(f'{type(net).__name__} gives x{out.shape[-1] / 8:g} output but scale is {scale}: build '
                         f'the arch for x{scale} (e.g. upscale: {scale}), or use MZSRNet, whose scale is set per image')


def make_son(lr, kernel, scale, downsample, noise_std=0.0, seed=0, jpeg_quality=None):
    """Degrades the LR image once more as it was degraded: the son of the official test, with the LR's noise and
    compression.

    The blur and sub-sampling come from the kernel. A noisy photo's son must be as noisy (ZSSR's noise
    augmentation, sized to the photo): the blur reduces the noise the LR carries by the kernel's L2 norm, so only
    the missing part is added; adaptation then learns to remove noise instead of treating it as detail (measured:
    with the true kernel and a clean son, inputs with noise std 5/255 end under bicubic). A JPEG photo's son is
    encoded at the photo's quality, afresh, so that adaptation learns to undo blocks and ringing instead of
    sharpening them.

    Args:
        lr (Tensor): LR image(s), shape (N, C, h, w).
        kernel (Tensor): Shape (k, k) or (N, k, k).
        scale (int): Scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        noise_std (float): Per-channel std of the LR's white noise, [0, 1] scale (0: the official, clean son; see
            :func:`~mzsr_plugin.noise_estimation.estimate_noise_std`).
        seed (int): Seed of the son's noise.
        jpeg_quality (int | None): JPEG quality the son is encoded at (3-channel images; None: not encoded).

    Returns:
        Tensor: Shape (N, C, ceil(h / scale), ceil(w / scale)).
    """
    son = degrade_pt(lr, kernel, scale, downsample)
    if noise_std > 0:
        inherited = float((kernel.double()**2).sum(dim=(-2, -1)).max())
        noise = torch.randn(son.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).to(son)
        son = (son + noise * noise_std * math.sqrt(max(1 - inherited, 0.0))).clamp(0, 1)
    if jpeg_quality:
        son = jpeg_compress_pt(son, jpeg_quality)
    return son


def adapt_to_image(net, params, lr, kernel, scale, downsample, lrs, on_step=None, noise_std=0.0, jpeg_quality=None):
    """Takes ``len(lrs)`` SGD steps on (son -> LR) from ``params``; ``net`` itself is not changed.

    Args:
        net (nn.Module): The network.
        params (dict[str, Tensor]): Starting parameters (e.g. ``detached_params(net)``).
        lr (Tensor): LR image, shape (1, C, h, w).
        kernel (Tensor): Its blur kernel, shape (k, k).
        scale (int): Scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        lrs (Sequence[float]): One learning rate per step.
        on_step (callable | None): ``on_step(step, params, loss)`` after each step.
        noise_std (float): The LR's noise std, reproduced in the son (:func:`make_son`).
        jpeg_quality (int | None): The LR's JPEG quality, reproduced in the son.

    Returns:
        dict[str, Tensor]: Adapted parameters.
    """
    son = make_son(lr, kernel, scale, downsample, noise_std, jpeg_quality=jpeg_quality)
    return adapt(net, params, son, lr, lrs, on_step=on_step)


def _dihedral(x, k):
    """The k-th of the 8 flips/rotations of (N, C, H, W) tensors, and its inverse as a function."""
    flip = k >= 4
    rot = k % 4
    y = torch.flip(x, dims=(-1, )) if flip else x
    y = torch.rot90(y, rot, dims=(-2, -1))

    def inverse(z):
        z = torch.rot90(z, -rot, dims=(-2, -1))
        return torch.flip(z, dims=(-1, )) if flip else z

    return y, inverse


@torch.no_grad()
def super_resolve(net, params, lr, self_ensemble=False, reduce='mean'):
    """SR of LR with the given parameters, optionally averaged over the 8 flips/rotations.

    Args:
        net (nn.Module): The network.
        params (dict[str, Tensor]): Parameters to use.
        lr (Tensor): Shape (N, C, h, w).
        self_ensemble (bool): x8 geometric self-ensemble.
        reduce (str): ``'mean'`` (EDSR-style) or ``'median'`` (ZSSR-style) over the 8 outputs.

    Returns:
        Tensor: Shape (N, C, h * s, w * s), not clipped.
    """
    if not self_ensemble:
        return forward(net, params, lr)
    outputs = []
    for k in range(8):
        x, inverse = _dihedral(lr, k)
        outputs.append(inverse(forward(net, params, x)))
    stacked = torch.stack(outputs)
    return stacked.median(dim=0).values if reduce == 'median' else stacked.mean(dim=0)


@torch.no_grad()
def back_project(sr, lr, kernel, scale, downsample, iterations):
    """Iterative back-projection (as ZSSR and the official MZSR test): pushes degrade(SR) towards LR.

    Args:
        sr (Tensor): SR estimate, shape (N, C, H, W).
        lr (Tensor): LR image, shape (N, C, h, w).
        kernel (Tensor): Shape (k, k).
        scale (int): Scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        iterations (int): Back-projection iterations.

    Returns:
        Tensor: Shape (N, C, H, W).
    """
    for _ in range(iterations):
        residual = lr - degrade_pt(sr, kernel, scale, downsample)[..., :lr.shape[-2], :lr.shape[-1]]
        sr = sr + imresize_pt(residual, scale)[..., :sr.shape[-2], :sr.shape[-1]]
    return sr


def _synchronize(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def super_resolve_image(net,
                        lr,
                        kernel,
                        scale,
                        steps,
                        lrs=None,
                        downsample='direct',
                        self_ensemble=False,
                        back_projection=0,
                        tile=DEFAULT_TILE,
                        crop_budget=DEFAULT_CROP_BUDGET,
                        rng=None,
                        on_step=None,
                        noise_std=0.0,
                        noise_seed=0,
                        jpeg_quality=None,
                        self_check=False,
                        on_tile=None,
                        precision=FP32_REFERENCE):
    """MZSR on one image: adapt ``steps`` SGD steps on (son -> LR), then super-resolve the LR.

    Images with more than ``crop_budget`` LR pixels are adapted on random crops instead (see
    :func:`~mzsr_plugin.models.tiling.adaptation_crops`: one son -> father pair per crop, all crops in each step);
    images with a side over ``tile`` are super-resolved tile by tile, exactly
    (:func:`~mzsr_plugin.models.tiling.tiled_forward`). With ``self_check``, an eighth of the LR is held out of
    adaptation and the output is made by whichever of bicubic, the weights before and after adaptation scores best
    on it (:mod:`~mzsr_plugin.models.self_check`).

    Args:
        net (MZSRNet): The meta-learned network (not changed).
        lr (Tensor): LR image, shape (1, 3, h, w), RGB in [0, 1], on the net's device.
        kernel (Tensor): Its blur kernel, shape (k, k), on the same device.
        scale (int): SR scale.
        steps (int): Adaptation steps (0: the meta-learned weights as they are).
        lrs (Sequence[float | dict] | None): One learning rate per step; None: the weights' learned step sizes
            (``net.inner_lrs``) if any, else the official preset for ``scale`` and ``downsample``.
        downsample (str): ``'direct'`` or ``'bicubic'``, how the LR was sub-sampled.
        self_ensemble (bool): Average the SR of the 8 flips/rotations.
        back_projection (int): Iterations of back-projection on the SR.
        tile (int | None): LR tile size for inference; None or 0 never tiles.
        crop_budget (int | None): Most LR pixels to adapt on; None or 0: always the whole image.
        rng (np.random.Generator | None): Chooses the adaptation crops; None: a fresh unseeded generator.
        on_step (callable | None): ``on_step(step, params, loss)`` after each adaptation step.
        noise_std (float): Per-channel noise std of the LR, reproduced in the son (:func:`make_son`; 0: clean).
        noise_seed (int): Seed of the son's noise and of the held-out blocks.
        jpeg_quality (int | None): JPEG quality of the LR, reproduced in the son (None: no JPEG).
        self_check (bool): Check adaptation on held-out blocks and fall back when it did not help (steps > 0).
        on_tile (callable | None): ``on_tile(done, total)`` after each tile of a tiled SR.
        precision (Precision): Dtype of the adaptation steps and layout of the tensors
            (:func:`~mzsr_plugin.precision.resolve_precision`); the SR forward is float32. Default: the
            float32 NCHW reference.

    Returns:
        tuple[Tensor, dict]: SR of shape (1, 3, h * scale, w * scale), not clipped; info with ``seconds``
        (adaptation + SR), ``losses`` (L1 before each step), ``adapted_on`` (shape of the father batch) and
        ``self_check`` (None, or ``psnr``: each candidate's held-out PSNR, ``choice``, ``held_out``: the share).
    """
    check_output_scale(net, scale, lr.shape[1])
    if lrs is None:
        lrs = resolve_adapt_lrs(None, steps, scale, downsample, learned=getattr(net, 'inner_lrs', None))
    lrs = list(lrs)
    if len(lrs) != steps:
        raise ValueError(f'{len(lrs)} learning rates given for {steps} adaptation steps')
    start = time.perf_counter()
    losses, check = [], None
    lr = precision.layout(lr)
    with at_scale(net, scale):
        params = precision.params(detached_params(net))
        father = lr
        if steps and crop_budget:
            father = adaptation_crops(lr, crop_budget, min(ADAPT_CROP, math.isqrt(crop_budget)),
                                      rng if rng is not None else np.random.default_rng())
        if steps:
            son = make_son(father, kernel, scale, downsample, noise_std, noise_seed, jpeg_quality)
            held = None
            if self_check:
                held = held_out_mask(father.shape, np.random.default_rng((noise_seed, 1))).to(father)
                if float(held.mean()) >= 1:  # a one-pixel LR: nothing would be left to learn from
                    held = None
            start_params = params
            with precision.steps():
                params = adapt(
                    net,
                    params,
                    son,
                    father,
                    lrs,
                    on_step=lambda step, p, loss: (losses.append(float(loss)), on_step and on_step(step, p, loss)),
                    mask=None if held is None else 1 - held)
            if held is not None:
                adapted_name = f'MZSR({steps})'
                scores = held_out_scores(net, start_params, params, son, father, held, scale, adapted_name)
                check = {'psnr': scores, 'choice': choose(scores, adapted_name), 'held_out': float(held.mean())}
                if check['choice'] == UNADAPTED:
                    params = start_params

        def run(x):
            return super_resolve(net, params, x, self_ensemble=self_ensemble)

        if check is not None and check['choice'] == BICUBIC:
            sr = imresize_pt(lr, scale)
        else:
            # Exact tiling needs the receptive field of a plain conv stack (MZSRNet); other archs run whole.
            if tile and max(lr.shape[-2:]) > tile and hasattr(net, 'convs'):
                sr = tiled_forward(run, lr, scale, tile, required_overlap(len(net.convs), scale), on_tile)
            else:
                sr = run(lr)
            sr = back_project(sr, lr, kernel, scale, downsample, back_projection)
    _synchronize(lr.device)
    info = {
        'seconds': time.perf_counter() - start,
        'losses': losses,
        'adapted_on': list(father.shape),
        'self_check': check
    }
    return sr, info
