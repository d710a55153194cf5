"""Blur kernels from the LR's power spectrum by a small learned regressor: the spectral fit, corrected by data.

The closed-form fit of :mod:`.spectral` assumes a power-law image spectrum times a Gaussian MTF; real images and
non-Gaussian kernels (DIV2KRK-style: anisotropic, per-pixel noise) break that model in ways the spectrum still shows.
A multilayer perceptron reads the patch-averaged log power spectrum (16x16 bins, folded by symmetry) and the
closed-form fit, and returns the kernel's covariance (second moments); the kernel is the Gaussian with that
covariance, projected onto meta-training's range as the fit's is. One regressor per scale, trained by
``scripts/train_kernel_estimator.py`` on BSDS400/HQ70 crops (never on the benchmark sets) with kernels drawn half
DIV2KRK-style, half from meta-training's Gaussian family with log-uniform variances down to 0.05 (nearly no blur),
some with noise and JPEG. The shipped file holds x2 (held-out covariance error 0.26 against the fit's 0.44); an x4
regressor measured no better than the fit (0.62 against 0.60) and is not shipped. Deterministic, about a
millisecond per image on CPU.
"""
import numpy as np
import torch
from os import path as osp

from .spectral import fit_spectrum, kernel_from_covariance, lr_power_spectrum, project_covariance, spectrum_warning

WEIGHTS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'weights', 'kernel_estimator.pth')
BINS = 16
PATCH = 64


def spectrum_features(lr, scale, noise_std=0.0):
    """What the regressor reads of an LR image.

    Args:
        lr (ndarray): Shape (h, w, 3) RGB or (h, w), float in [0, 1].
        scale (int): SR scale.
        noise_std (float): Per-channel noise std ([0, 1] scale); its floor is taken out of the spectrum first.

    Returns:
        tuple[ndarray, str | None]: Shape (BINS * BINS + 4,): the log power spectrum in BINS x BINS bins (centred,
        symmetrised, mean removed), then the closed-form fit's α and Σ (yy, xy, xx) divided by ``scale²``; and the
        fit's warning when noise flattens the spectrum (:func:`~.spectral.spectrum_warning`).
    """
    gray, power = lr_power_spectrum(lr, PATCH, noise_std)
    sigma, alpha = fit_spectrum(power, scale)
    # Bins the noise floor emptied count as the floor's level: the log of the smallest power kept.
    floor = power[power > 0].min() if (power > 0).any() else 1e-12
    log_power = np.log(np.fft.fftshift(np.maximum(power, floor)))
    n = log_power.shape[0] // BINS * BINS
    binned = log_power[:n, :n].reshape(BINS, n // BINS, BINS, n // BINS).mean(axis=(1, 3))
    binned = (binned + binned[::-1, ::-1]) / 2
    binned -= binned.mean()
    features = np.concatenate([binned.ravel(), [alpha, sigma[0, 0] / scale**2, sigma[0, 1] / scale**2,
                                                sigma[1, 1] / scale**2]])
    return features, spectrum_warning(gray)


def build_regressor(features, hidden=64):
    """The regressor: features -> (Σyy, Σxy, Σxx) / scale²."""
    return torch.nn.Sequential(
        torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 3))


_LOADED = {}


def load_regressors(path=WEIGHTS):
    """``{scale: (regressor, mean, std)}`` from a file of ``scripts/train_kernel_estimator.py`` (cached).

    Raises:
        FileNotFoundError: No such file.
    """
    if path not in _LOADED:
        if not osp.isfile(path):
            raise FileNotFoundError(f'kernel estimator weights not found: {path} (scripts/train_kernel_estimator.py '
                                    'makes them)')
        state = torch.load(path, map_location='cpu', weights_only=True)
        regressors = {}
        for scale, entry in state['scales'].items():
            net = build_regressor(entry['mean'].numel(), entry['hidden'])
            net.load_state_dict(entry['params'])
            regressors[int(scale)] = (net.eval(), entry['mean'].double().numpy(), entry['std'].double().numpy())
        _LOADED[path] = regressors
    return _LOADED[path]


def learned_scales(path=WEIGHTS):
    """Scales the learned estimator has a regressor for (none when its weights are missing)."""
    try:
        return sorted(load_regressors(path))
    except FileNotFoundError:
        return []


def estimate_learned_kernel(lr, scale, size=15, lambda_min=0.2, lambda_max=None, noise_std=0.0, path=WEIGHTS):
    """Estimates the blur kernel of an LR image (direct sub-sampling) with the learned spectral regressor.

    Args:
        lr (ndarray): LR image, shape (h, w, 3) RGB or (h, w), float in [0, 1].
        scale (int): SR scale (one the weights have a regressor for, see :func:`learned_scales`).
        size (int): Kernel size (odd).
        lambda_min (float): Smallest eigenvalue (variance) of the estimate.
        lambda_max (float | None): Largest; None: 2.5 scale.
        noise_std (float): Per-channel noise std of ``lr`` ([0, 1] scale).
        path (str): Regressor weights.

    Returns:
        tuple[ndarray, dict]: Kernel (size, size) summing to 1, and ``{'covariance', 'warning'}`` (as the
        closed-form fit's).

    Raises:
        ValueError: No regressor for ``scale``, or an image too small or flat.
    """
    regressors = load_regressors(path)
    if scale not in regressors:
        raise ValueError(f'the learned kernel estimator has no regressor for x{scale} (it has '
                         f'{", ".join(f"x{s}" for s in sorted(regressors))}); use the spectral estimator')
    net, mean, std = regressors[scale]
    features, warning = spectrum_features(lr, scale, noise_std)
    features = (features - mean) / std
    with torch.no_grad():
        yy, xy, xx = net(torch.from_numpy(features).float()[None])[0].double().numpy() * scale**2
    sigma = project_covariance(np.array([[yy, xy], [xy, xx]]), lambda_min, lambda_max or 2.5 * scale)
    return kernel_from_covariance(sigma, size), {'covariance': sigma, 'warning': warning}


__all__ = ['WEIGHTS', 'build_regressor', 'estimate_learned_kernel', 'learned_scales', 'load_regressors',
           'spectrum_features']
