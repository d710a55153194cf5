"""Blind MZSR: blur kernels estimated from the LR image alone (``--kernel estimate``, ``kernel: estimate``).

- ``spectral`` (:func:`~.spectral.estimate_gaussian_kernel`, the default): a closed-form fit of the Gaussian family
  that meta-training uses to the LR's power spectrum; milliseconds, deterministic.
- ``kernelgan`` (:func:`~.kernelgan.kernelgan_estimate`): a KernelGAN-style internal GAN, the baseline it is
  measured against (``scripts/bench_kernel.py``); seeded.

Estimates follow the convention of :mod:`mzsr_plugin.data.degradations` (correlate, then keep every s-th pixel):
centred, summing to 1. Only direct sub-sampling is modelled.
"""
import time

from .kernelgan import kernelgan_estimate
from .spectral import estimate_gaussian_kernel

ESTIMATORS = ('spectral', 'kernelgan')


def estimate_kernel(lr, scale, method='spectral', size=15, seed=0, iterations=1000, device='cpu', progress=False):
    """Estimates the blur kernel of one LR image.

    Args:
        lr (ndarray): LR image, (h, w, 3) RGB or (h, w), float in [0, 1].
        scale (int): SR scale.
        method (str): ``'spectral'`` or ``'kernelgan'``.
        size (int): Kernel side (odd).
        seed (int): Seed (KernelGAN; the spectral fit has no randomness).
        iterations (int): KernelGAN iterations.
        device (str): KernelGAN's device.
        progress (bool): Progress bar (KernelGAN).

    Returns:
        tuple[ndarray, dict]: Kernel (size, size) summing to 1; ``{'seconds', 'method', 'warning'}``.

    Raises:
        ValueError: Unknown method, or an image too small or flat to estimate from.
    """
    if method not in ESTIMATORS:
        raise ValueError(f'kernel estimation method must be one of {ESTIMATORS}, got {method!r}')
    start = time.perf_counter()
    warning = None
    if method == 'spectral':
        kernel, info = estimate_gaussian_kernel(lr, scale, size=size)
        warning = info['warning']
    else:
        kernel = kernelgan_estimate(lr, scale, iterations=iterations, seed=seed, device=device, size=size,
                                    progress=progress)
    return kernel, {'seconds': time.perf_counter() - start, 'method': method, 'warning': warning}


__all__ = ['ESTIMATORS', 'estimate_gaussian_kernel', 'estimate_kernel', 'kernelgan_estimate']
