"""Meta-test: adapt a network to one image's degradation, then super-resolve it.

Data flow, as in the paper and the official test: ``son = degrade(LR, kernel, scale)``; a few plain SGD steps on
(son -> LR) starting from the given weights (:func:`adapt_to_image`); ``SR = f_θ'(LR)`` (:func:`super_resolve`),
optionally with x8 self-ensemble and back-projection. The same :func:`~mzsr_plugin.models.inner_loop.sgd_step`
as the meta-training inner loop does the steps.
"""
import contextlib
import torch

from mzsr_plugin.data.degradations import degrade_pt
from mzsr_plugin.utils.matlab_resize import imresize_pt
from .inner_loop import adapt, forward, lr_schedule

# Per-step learning rates of the official test.py (the last value repeats for later steps).
ADAPT_LR_PRESETS = {
    'direct_x2': [2e-2, 1e-2, 1e-2, 1e-2, 5e-3],
    'direct_x4': [1e-2, 5e-3, 5e-3, 5e-3, 5e-3, 1e-3],
    'bicubic': [1e-2, 1e-2, 1e-2, 1e-3],
    'multiscale': [1e-2, 1e-2, 1e-2, 5e-3],
}


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


def resolve_adapt_lrs(lr, steps, scale, downsample, multiscale=False):
    """Turns ``val.adapt.lr`` (preset name, number, list or None) into one lr per step.

    Args:
        lr (str | float | list[float] | None): None picks the official preset for the model kind.
        steps (int): Number of adaptation steps.
        scale (int): SR scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        multiscale (bool): Weights meta-trained on several scales.

    Returns:
        list[float]: ``steps`` learning rates.
    """
    if lr is None:
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


def make_son(lr, kernel, scale, downsample):
    """Degrades the LR image once more with its own kernel: the son of the official test.

    Args:
        lr (Tensor): LR image(s), shape (N, C, h, w).
        kernel (Tensor): Shape (k, k) or (N, k, k).
        scale (int): Scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.

    Returns:
        Tensor: Shape (N, C, ceil(h / scale), ceil(w / scale)).
    """
    return degrade_pt(lr, kernel, scale, downsample)


def adapt_to_image(net, params, lr, kernel, scale, downsample, lrs, on_step=None):
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

    Returns:
        dict[str, Tensor]: Adapted parameters.
    """
    son = make_son(lr, kernel, scale, downsample)
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
