"""Gaussian blur kernels estimated from the LR image's power spectrum.

Natural images have power spectra close to a power law, ``P_x(ν) ∝ |ν|^-α``; a Gaussian blur of covariance Σ (HR
pixels) multiplies it by ``|K(ν)|² = exp(-4π² νᵀΣν)``, and direct sub-sampling by ``s`` maps HR frequency ``ν`` to LR
frequency ``ω = s ν``. So, away from aliasing and noise, the LR's log power spectrum is linear in the unknowns:

    log P_y(ω) = c - α log|ω| - (4π² / s²) ωᵀ Σ ω

A windowed, patch-averaged periodogram (Welch) of the LR's luminance gives ``log P_y`` on a frequency grid; least
squares over a band of mid frequencies gives (c, α, Σ); Σ is then projected onto the kernels meta-training
draws (eigenvalues in [``lambda_min``, ``lambda_max``]) and rendered as a centred, normalised k×k kernel in the
convention of :mod:`mzsr_plugin.data.degradations` (correlate, then sub-sample). No iterations, no randomness:
milliseconds per image, on CPU.
"""
import math
import numpy as np

from mzsr_plugin.data.kernels import anisotropic_gaussian_kernel

# Luminance weights (BT.601), as the official metrics use.
LUMA = np.array([0.299, 0.587, 0.114])


def welch_power(gray, patch=64):
    """Patch-averaged periodogram of an image with a Hann window (mean removed per patch).

    Args:
        gray (ndarray): Image, shape (h, w), float.
        patch (int): Patch side (patches overlap by half).

    Returns:
        ndarray: Power spectrum, shape (patch, patch), zero frequency at [0, 0] (``np.fft.fft2`` layout).
    """
    h, w = gray.shape
    patch = min(patch, h, w) // 2 * 2
    window = np.outer(np.hanning(patch), np.hanning(patch))
    step = max(patch // 2, 1)
    power, count = np.zeros((patch, patch)), 0
    for top in range(0, h - patch + 1, step):
        for left in range(0, w - patch + 1, step):
            block = gray[top:top + patch, left:left + patch]
            block = (block - block.mean()) * window
            power += np.abs(np.fft.fft2(block))**2
            count += 1
    return power / max(count, 1)


def fit_spectrum(power, scale, band=(0.05, 0.45), alpha_prior=2.0, prior_weight=0.1):
    """Least squares (with a prior on α) of ``log P = c - α log|ω| - (4π²/s²) ωᵀΣω`` on a band of LR frequencies.

    Args:
        power (ndarray): Power spectrum (fft2 layout), square.
        scale (int): Scale s (the LR was sub-sampled by it).
        band (tuple[float, float]): Radii of the frequency band used, in cycles per LR pixel (the lowest frequencies
            hold the image's own structure, the corners beyond 0.45 mostly aliasing and noise). The default was chosen
            on BSDS400 training images (never on the benchmark sets), as were the prior's values.
        alpha_prior (float): Natural images' power-law exponent (about 2), which the fit is pulled towards: the
            exponent and the blur trade off against each other within one image's spectrum.
        prior_weight (float): Strength of that pull, relative to the mean squared residual per frequency.

    Returns:
        tuple[ndarray, float]: Σ (2, 2) in HR pixels² (rows/cols = y/x), and the power-law exponent α.
    """
    n = power.shape[0]
    freq = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(freq, freq, indexing='ij')
    radius = np.hypot(fx, fy)
    mask = (radius >= band[0]) & (radius <= band[1]) & (power > 0)
    factor = 4 * math.pi**2 / scale**2
    y = np.log(power[mask])
    design = np.stack([np.ones(mask.sum()), -np.log(radius[mask]), -factor * fy[mask]**2,
                       -factor * 2 * fx[mask] * fy[mask], -factor * fx[mask]**2], axis=1)
    # The prior as one more equation, weighted like prior_weight times all the frequencies together.
    pull = math.sqrt(prior_weight * len(y))
    prior_row = np.array([[0.0, pull, 0.0, 0.0, 0.0]])
    coef, *_ = np.linalg.lstsq(np.vstack([design, prior_row]), np.append(y, pull * alpha_prior), rcond=None)
    sigma = np.array([[coef[2], coef[3]], [coef[3], coef[4]]])
    return sigma, float(coef[1])


def project_covariance(sigma, lambda_min, lambda_max):
    """The nearest covariance with eigenvalues in [lambda_min, lambda_max] (symmetrised, clipped eigenvalues)."""
    sigma = (sigma + sigma.T) / 2
    values, vectors = np.linalg.eigh(sigma)
    values = np.clip(values, lambda_min, lambda_max)
    return vectors @ np.diag(values) @ vectors.T


def kernel_from_covariance(sigma, size):
    """A centred, normalised Gaussian kernel (size, size) with covariance ``sigma`` (rows/cols = y/x)."""
    values, vectors = np.linalg.eigh(sigma)
    # anisotropic_gaussian_kernel takes the angle of the first principal axis in the x-y plane.
    major = vectors[:, 1]  # eigenvector of the larger eigenvalue, (y, x)
    theta = math.atan2(major[0], major[1])
    return anisotropic_gaussian_kernel(size, theta, float(values[1]), float(values[0]))


def remove_noise_floor(power, noise_std, patch, margin=1.5):
    """The power spectrum without the flat floor of white noise; frequencies the floor dominates are dropped (0).

    White noise of std σ adds ``σ² Σ w²`` to every bin of a Hann-windowed periodogram; left in, it flattens the
    spectrum's fall-off and the fit reads a sharper kernel (measured on DIV2KRK-style x2 inputs with std 5/255: the
    covariance error of the estimate falls from 0.59 to 0.29 with the floor removed, clean inputs unchanged).

    Args:
        power (ndarray): From :func:`welch_power`, shape (p, p).
        noise_std (float): Noise std of the grey image the spectrum is of.
        patch (int): Its patch side ``p``.
        margin (float): Bins under ``margin`` times the floor hold no usable signal.

    Returns:
        ndarray: Shape (p, p), zero where dropped (:func:`fit_spectrum` skips non-positive bins).
    """
    window = np.outer(np.hanning(patch), np.hanning(patch))
    floor = noise_std**2 * float((window**2).sum())
    return np.where(power > margin * floor, power - floor, 0.0)


def lr_power_spectrum(lr, patch=64, noise_std=0.0):
    """The luminance of an LR image and its Welch power spectrum, without the floor of its noise.

    Args:
        lr (ndarray): Shape (h, w, 3) RGB or (h, w), float in [0, 1].
        patch (int): Welch patch size.
        noise_std (float): Per-channel std of white noise in ``lr`` ([0, 1] scale); 0 keeps the spectrum as it is.

    Returns:
        tuple[ndarray, ndarray]: Luminance (h, w) and power spectrum (p, p) (see :func:`welch_power`).

    Raises:
        ValueError: The image is too small or flat to estimate a blur from.
    """
    lr = np.asarray(lr, dtype=np.float64)
    gray = lr @ LUMA if lr.ndim == 3 else lr
    check_estimable(gray)
    power = welch_power(gray, patch)
    if noise_std > 0:
        # Independent per-channel noise of std s has std s * |LUMA| in the luminance.
        power = remove_noise_floor(power, noise_std * float(np.linalg.norm(LUMA if lr.ndim == 3 else [1.0])),
                                   power.shape[0])
    return gray, power


def estimate_gaussian_kernel(lr, scale, size=15, lambda_min=0.2, lambda_max=None, patch=64, noise_std=0.0):
    """Estimates the Gaussian blur kernel of an LR image (direct sub-sampling) from its power spectrum.

    Args:
        lr (ndarray): LR image, shape (h, w, 3) RGB or (h, w), float in [0, 1].
        scale (int): SR scale.
        size (int): Kernel size (odd).
        lambda_min (float): Smallest eigenvalue (variance) of the estimate. Default: 0.2 (g^d_0.2).
        lambda_max (float | None): Largest; None: 2.5 scale (meta-training's range).
        patch (int): Welch patch size.
        noise_std (float): Per-channel std of white noise in ``lr`` ([0, 1] scale, e.g. from
            :func:`~mzsr_plugin.noise_estimation.estimate_noise_std`): its floor is taken out of the spectrum.

    Returns:
        tuple[ndarray, dict]: Kernel (size, size) summing to 1, and ``{'covariance', 'alpha', 'warning'}``
        (``warning``: None, or why the estimate is doubtful, e.g. noise dominating the spectrum).

    Raises:
        ValueError: The image is too small or flat to estimate a blur from.
    """
    gray, power = lr_power_spectrum(lr, patch, noise_std)
    sigma, alpha = fit_spectrum(power, scale)
    sigma = project_covariance(sigma, lambda_min, lambda_max or 2.5 * scale)
    return kernel_from_covariance(sigma, size), {'covariance': sigma, 'alpha': alpha, 'warning': spectrum_warning(gray)}


MIN_SIDE = 32
# Noise std (of [0, 1] images) above which the spectrum's high frequencies are mostly noise (sharp, detailed
# photos sub-sampled without blur measure up to about 0.03).
NOISY = 0.05


def spectrum_warning(gray):
    """Why a kernel estimated from this luminance's spectrum is doubtful (noise flattening it), or None."""
    noise = noise_level(gray)
    if noise <= NOISY:
        return None
    return (f'noise of std about {noise:.3f} ({noise * 255:.1f}/255) flattens the spectrum: noise or compression '
            'dominates, the kernel estimate is unreliable')


def noise_level(gray):
    """Robust noise std (Donoho's MAD of the finest diagonal Haar coefficients)."""
    h, w = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
    g = gray[:h, :w]
    diagonal = (g[0::2, 0::2] - g[0::2, 1::2] - g[1::2, 0::2] + g[1::2, 1::2]) / 2
    return float(np.median(np.abs(diagonal)) / 0.6745)


def check_estimable(gray):
    """Refuses images that hold no blur information: smaller than :data:`MIN_SIDE` pixels a side, or flat."""
    h, w = gray.shape
    if min(h, w) < MIN_SIDE:
        raise ValueError(f'the image is {w}x{h}; kernel estimation needs at least {MIN_SIDE} pixels a side')
    if float(gray.std()) < 1e-3:
        raise ValueError('the image is flat (constant): it holds no texture to estimate a blur kernel from')
