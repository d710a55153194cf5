"""Blind MZSR: blur kernels estimated from the LR image alone (``--kernel estimate``, ``kernel: estimate``).

- ``learned`` (:func:`~.learned.estimate_learned_kernel`, the default): a small regressor trained on the LR's power
  spectrum and the closed-form fit below, which holds beyond the Gaussian family (DIV2KRK-style kernels) and on
  nearly unblurred images; x2 (at x4 it measured no better than the fit, which then serves, and says so).
- ``spectral`` (:func:`~.spectral.estimate_gaussian_kernel`): a closed-form fit of the Gaussian family that
  meta-training uses to the LR's power spectrum; milliseconds, deterministic.
- ``kernelgan`` (:func:`~.kernelgan.kernelgan_estimate`): a KernelGAN-style internal GAN, the baseline it is
  measured against (``scripts/bench_kernel.py``); seeded.

Estimates follow the convention of :mod:`mzsr_plugin.data.degradations` (correlate, then keep every s-th pixel):
centred, summing to 1. Only direct sub-sampling is modelled.
"""
import time

from .kernelgan import kernelgan_estimate
from .learned import estimate_learned_kernel, learned_scales
from .spectral import estimate_gaussian_kernel


def _spectral(lr, scale, size, noise_std, **_):
    kernel, info = estimate_gaussian_kernel(lr, scale, size=size, noise_std=noise_std)
    return kernel, {'method': 'spectral', 'warning': info['warning']}


def _learned(lr, scale, size, noise_std, **_):
    if scale not in learned_scales():
        # Scales without a regressor (x3, and x4 where one measured no better) get the fit it corrects, and say so.
        kernel, info = _spectral(lr, scale, size, noise_std)
        return kernel, dict(info, method=f'spectral (no learned regressor for x{scale})')
    kernel, info = estimate_learned_kernel(lr, scale, size=size, noise_std=noise_std)
    return kernel, {'method': 'learned', 'warning': info['warning']}


def _kernelgan(lr, scale, size, seed, iterations, device, progress, **_):
    kernel = kernelgan_estimate(lr, scale, iterations=iterations, seed=seed, device=device, size=size,
                                progress=progress)
    return kernel, {'method': 'kernelgan', 'warning': None}


# name -> estimator; the first is the default of --estimator, kernel_estimator and the app.
ESTIMATORS = {'learned': _learned, 'spectral': _spectral, 'kernelgan': _kernelgan}
DEFAULT_ESTIMATOR = next(iter(ESTIMATORS))


def estimate_kernel(lr,
                    scale,
                    method=DEFAULT_ESTIMATOR,
                    size=15,
                    seed=0,
                    iterations=1000,
                    device='cpu',
                    progress=False,
                    noise_std=0.0):
    """Estimates the blur kernel of one LR image.

    Args:
        lr (ndarray): LR image, (h, w, 3) RGB or (h, w), float in [0, 1].
        scale (int): SR scale.
        method (str): A key of :data:`ESTIMATORS`.
        size (int): Kernel side (odd).
        seed (int): Seed (KernelGAN; the spectral estimators have no randomness).
        iterations (int): KernelGAN iterations.
        device (str): KernelGAN's device.
        progress (bool): Progress bar (KernelGAN).
        noise_std (float): Per-channel noise std of ``lr`` ([0, 1] scale), whose floor the spectral estimators
            remove.

    Returns:
        tuple[ndarray, dict]: Kernel (size, size) summing to 1; ``{'seconds', 'method', 'warning'}`` (``method``:
        the estimator that ran).

    Raises:
        ValueError: Unknown method, or an image too small or flat to estimate from.
    """
    if method not in ESTIMATORS:
        raise ValueError(f'kernel estimation method must be one of {tuple(ESTIMATORS)}, got {method!r}')
    start = time.perf_counter()
    kernel, info = ESTIMATORS[method](lr, scale, size=size, noise_std=noise_std, seed=seed, iterations=iterations,
                                      device=device, progress=progress)
    return kernel, dict(info, seconds=time.perf_counter() - start)


__all__ = ['DEFAULT_ESTIMATOR', 'ESTIMATORS', 'estimate_gaussian_kernel', 'estimate_kernel', 'estimate_learned_kernel',
           'kernelgan_estimate']
