"""Gaussian blur kernels as the official MZSR (``gkernel.py``), and kernel files (.mat / .npy / .png).

Conventions, as the official code:

* A kernel is a float32 (k, k) array that sums to 1, centred on the grid centre ``((k - 1) / 2, (k - 1) / 2)``
  (no sub-pixel shift for the sub-sampling: MZSR keeps rows/cols 0, s, 2s, ... of the blurred image).
* An anisotropic Gaussian has covariance ``R diag(lambda_1, lambda_2) R^T`` with ``R`` the rotation by ``theta``
  in (x = column, y = row) coordinates; ``lambda`` are variances (eigenvalues of the covariance), not widths.
* Meta-training draws ``theta ~ U[0, pi)``, ``lambda_1 ~ U[1, 2.5 s]``, ``lambda_2 ~ U[1, lambda_1]`` on a 15x15
  grid; the official test kernels (``Input/g20/kernel.mat``) are 21x21.

Kernel specs (:func:`parse_kernel_spec`) name the paper's test kernels: ``g_d_2.0`` is g^d_2.0 (isotropic,
variance 2.0, direct sub-sampling), ``g_b_1.3`` is g^b_1.3 (isotropic, variance 1.3, then MATLAB bicubic
downscaling).
"""
import cv2
import math
import numpy as np
import re
import scipy.io
import warnings
from dataclasses import dataclass
from os import path as osp

DOWNSAMPLE_MODES = ('direct', 'bicubic')
# The official test kernels (Input/g20/kernel.mat) are 21x21; meta-training kernels are 15x15.
SPEC_KERNEL_SIZE = 21
# Tolerance on the sum of a loaded kernel before it is renormalised with a warning.
SUM_TOLERANCE = 1e-3


def anisotropic_gaussian_kernel(size, theta, lambda_1, lambda_2):
    """A normalised anisotropic Gaussian kernel, as the official ``gkernel.anisotropic_gaussian``.

    Args:
        size (int): Kernel size k (the kernel is k x k, centred on the grid centre).
        theta (float): Angle of the first principal axis in radians, from the x (column) axis towards y (row).
        lambda_1 (float): Variance along the first principal axis (> 0).
        lambda_2 (float): Variance along the second principal axis (> 0).

    Returns:
        ndarray: float32 kernel of shape (size, size) that sums to 1.
    """
    size = int(size)
    if size < 1:
        raise ValueError(f'kernel size must be >= 1, got {size}')
    if not (lambda_1 > 0 and lambda_2 > 0):
        raise ValueError(f'Gaussian variances must be > 0, got lambda_1={lambda_1}, lambda_2={lambda_2}')
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([float(lambda_1), float(lambda_2)]) @ rot.T
    inv_cov = np.linalg.inv(cov)
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    x, y = np.meshgrid(offsets, offsets)  # x varies along columns, y along rows
    quad = inv_cov[0, 0] * x * x + (inv_cov[0, 1] + inv_cov[1, 0]) * x * y + inv_cov[1, 1] * y * y
    kernel = np.exp(-0.5 * quad)
    return (kernel / kernel.sum()).astype(np.float32)


def isotropic_gaussian_kernel(size, variance):
    """A normalised isotropic Gaussian kernel with covariance ``variance * I``.

    Args:
        size (int): Kernel size k.
        variance (float): Variance (sigma^2) of the Gaussian (> 0).

    Returns:
        ndarray: float32 kernel of shape (size, size) that sums to 1.
    """
    return anisotropic_gaussian_kernel(size, 0.0, variance, variance)


def random_gaussian_params(scale, rng=None, isotropic_prob=0.0, lambda_min=1.0):
    """Draws the parameters of a meta-training kernel as the official data generator.

    ``theta ~ U[0, pi)``, ``lambda_1 ~ U[1, 2.5 scale]``, ``lambda_2 ~ U[1, lambda_1]``; an isotropic kernel
    (drawn with probability ``isotropic_prob``) has ``lambda_2 = lambda_1`` and ``theta = 0``. ``lambda_min`` below
    1 widens both ranges to nearly unblurred inputs (g^d_0.2 has variance 0.2), which the official range misses.

    Args:
        scale (int): SR scale s.
        rng (np.random.Generator | None): Random generator. None uses NumPy's global functions, which BasicSR's
            ``worker_init_fn`` seeds per worker, so runs stay reproducible under ``manual_seed``.
        isotropic_prob (float): Probability of an isotropic kernel. Default: 0 (the official setting).
        lambda_min (float): Smallest variance, in (0, 2.5 scale). Default: 1 (the official setting).

    Returns:
        tuple[float, float, float]: (theta, lambda_1, lambda_2).
    """
    if not 0 < lambda_min < 2.5 * scale:
        raise ValueError(f'lambda_min must be in (0, {2.5 * scale:g}) (2.5 x scale), got {lambda_min}')
    uniform = np.random.uniform if rng is None else rng.uniform
    lambda_1 = float(uniform(lambda_min, 2.5 * scale))
    if isotropic_prob > 0 and float(uniform(0.0, 1.0)) < isotropic_prob:
        return 0.0, lambda_1, lambda_1
    theta = float(uniform(0.0, math.pi))
    lambda_2 = float(uniform(lambda_min, lambda_1))
    return theta, lambda_1, lambda_2


# DIV2KRK's recipe (KernelGAN, Bell-Kligler et al. 2019) as the real-photos issue states it: anisotropic Gaussians of
# variances in [0.175 s, min(2.5 s, 10)] ([0.35, 5] at x2, [0.7, 10] at x4), then up to 25% multiplicative noise on
# every kernel pixel: kernels outside the Gaussian family that meta-training and the spectral estimator assume.
DIV2KRK_NOISE = 0.25
DIV2KRK_SIZES = {2: 15, 3: 19, 4: 21}


def div2krk_kernel(scale, rng, size=None, noise=DIV2KRK_NOISE):
    """A DIV2KRK-style kernel: anisotropic Gaussian with per-pixel multiplicative noise, centred, summing to 1.

    Args:
        scale (int): SR scale s; variances are drawn from U[0.175 s, min(2.5 s, 10)].
        rng (np.random.Generator): Random generator.
        size (int | None): Kernel side; None: :data:`DIV2KRK_SIZES` (3 standard deviations of the widest).
        noise (float): Each pixel is multiplied by ``1 + U(-noise, noise)``. Default: 0.25.

    Returns:
        ndarray: float32 kernel of shape (size, size) that sums to 1.
    """
    low, high = 0.175 * scale, min(2.5 * scale, 10.0)
    lambda_1, lambda_2 = rng.uniform(low, high), rng.uniform(low, high)
    kernel = anisotropic_gaussian_kernel(size or DIV2KRK_SIZES.get(scale, 21), rng.uniform(0, math.pi), lambda_1,
                                         lambda_2).astype(np.float64)
    kernel *= 1 + rng.uniform(-noise, noise, kernel.shape)
    return (kernel / kernel.sum()).astype(np.float32)


def kernel_covariance(kernel):
    """Second central moments of a kernel (pixels²; rows/cols = y/x): what blur estimators are judged on.

    Args:
        kernel (ndarray): Shape (k, k), non-negative.

    Returns:
        ndarray: Shape (2, 2).
    """
    k = np.asarray(kernel, dtype=np.float64)
    k = k / k.sum()
    coords = np.arange(k.shape[0]) - (k.shape[0] - 1) / 2
    yy, xx = np.meshgrid(coords, coords, indexing='ij')
    my, mx = (k * yy).sum(), (k * xx).sum()
    cyy, cxx, cxy = (k * (yy - my)**2).sum(), (k * (xx - mx)**2).sum(), (k * (yy - my) * (xx - mx)).sum()
    return np.array([[cyy, cxy], [cxy, cxx]])


def random_gaussian_kernel(scale, size=15, rng=None, isotropic_prob=0.0, lambda_min=1.0):
    """A random meta-training kernel (see :func:`random_gaussian_params`).

    Args:
        scale (int): SR scale s; sets the variance range [1, 2.5 s].
        size (int): Kernel size. Default: 15 (official meta-training).
        rng (np.random.Generator | None): Random generator; None uses NumPy's global functions.
        isotropic_prob (float): Probability of an isotropic kernel. Default: 0.
        lambda_min (float): Smallest variance (see :func:`random_gaussian_params`). Default: 1.

    Returns:
        ndarray: float32 kernel of shape (size, size) that sums to 1.
    """
    theta, lambda_1, lambda_2 = random_gaussian_params(scale, rng, isotropic_prob, lambda_min)
    return anisotropic_gaussian_kernel(size, theta, lambda_1, lambda_2)


def validate_kernel(kernel, source):
    """Checks a blur kernel and returns it normalised as float32.

    A kernel whose sum is off 1 by more than ``SUM_TOLERANCE`` (1e-3) is renormalised with a warning rather than
    rejected: estimated kernels (KernelGAN) and 8/16-bit PNG kernels are often slightly off, and only the shape
    of a blur matters, but the warning makes a wrong file visible.

    Args:
        kernel (ndarray): Candidate kernel, shape (kh, kw).
        source (str): Where it came from (file name or option), for the messages.

    Returns:
        ndarray: float32 kernel of shape (kh, kw) that sums to 1.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 2 or min(kernel.shape) < 1:
        raise ValueError(f'{source}: a kernel must be a 2-D array, got shape {kernel.shape}')
    if not np.issubdtype(kernel.dtype, np.number) or np.iscomplexobj(kernel):
        raise ValueError(f'{source}: a kernel must hold real numbers, got dtype {kernel.dtype}')
    kernel = kernel.astype(np.float64)
    if not np.all(np.isfinite(kernel)):
        raise ValueError(f'{source}: the kernel has non-finite values (NaN or inf)')
    if kernel.min() < 0:
        raise ValueError(f'{source}: the kernel has negative values (min {kernel.min():.4g}); a blur kernel must be '
                         '>= 0')
    total = kernel.sum()
    if total <= 0:
        raise ValueError(f'{source}: the kernel sums to {total:.4g}; it must sum to a positive value (ideally 1)')
    if abs(total - 1) > SUM_TOLERANCE:
        warnings.warn(f'{source}: the kernel sums to {total:.6g}, not 1; it is normalised to sum 1', stacklevel=2)
    return (kernel / total).astype(np.float32)


def load_kernel(path):
    """Reads a blur kernel file.

    Args:
        path (str): ``.mat`` (key ``kernel`` as MZSR, or ``Kernel`` as ZSSR/KernelGAN), ``.npy``, or ``.png``
            (grayscale, 8 or 16 bit; normalised to sum 1 without a warning since images cannot store sums).

    Returns:
        ndarray: float32 kernel of shape (kh, kw) that sums to 1.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'kernel file {path} does not exist')
    ext = osp.splitext(path)[1].lower()
    if ext == '.mat':
        content = scipy.io.loadmat(path)
        keys = [key for key in ('kernel', 'Kernel') if key in content]
        if not keys:
            found = sorted(key for key in content if not key.startswith('__'))
            raise ValueError(f'{path}: expected a variable named "kernel" (MZSR) or "Kernel" (ZSSR/KernelGAN), '
                             f'found {found}')
        kernel = content[keys[0]]
    elif ext == '.npy':
        kernel = np.load(path, allow_pickle=False)
    elif ext == '.png':
        kernel = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if kernel is None:
            raise ValueError(f'{path}: cannot be decoded as a PNG image')
        if kernel.ndim == 3:
            if not all(np.array_equal(kernel[..., 0], kernel[..., c]) for c in range(1, min(kernel.shape[2], 3))):
                raise ValueError(f'{path}: a PNG kernel must be grayscale, got {kernel.shape[2]} differing channels')
            kernel = kernel[..., 0]
        kernel = kernel.astype(np.float64)
        if kernel.sum() > 0:
            kernel /= kernel.sum()
    else:
        raise ValueError(f'{path}: unsupported kernel file type "{ext}"; expected .mat, .npy or .png')
    return validate_kernel(kernel, path)


def save_kernel(path, kernel):
    """Writes a blur kernel; the format follows the extension.

    Args:
        path (str): ``.mat`` (key ``kernel``, as MZSR), ``.npy``, or ``.png`` (16-bit grayscale scaled so that its
            maximum is 65535; :func:`load_kernel` renormalises it, so only the quantisation is lost).
        kernel (ndarray): Shape (kh, kw).
    """
    kernel = validate_kernel(kernel, f'kernel to save as {path}')
    ext = osp.splitext(path)[1].lower()
    if ext == '.mat':
        scipy.io.savemat(path, {'kernel': kernel.astype(np.float64)})
    elif ext == '.npy':
        np.save(path, kernel)
    elif ext == '.png':
        if not cv2.imwrite(path, np.round(kernel / kernel.max() * 65535).astype(np.uint16)):
            raise OSError(f'cannot write {path}')
    else:
        raise ValueError(f'{path}: unsupported kernel file type "{ext}"; expected .mat, .npy or .png')


@dataclass
class KernelSpec:
    """A named test degradation.

    Attributes:
        kernel (ndarray): float32 kernel of shape (k, k) that sums to 1.
        downsample (str): ``'direct'`` or ``'bicubic'`` (see :mod:`mzsr_plugin.data.degradations`).
        name (str): The spec it was parsed from.
    """
    kernel: np.ndarray
    downsample: str
    name: str


_NUMBER = r'(\d+(?:\.\d*)?|\.\d+)'
_ISO_RE = re.compile(rf'^g_?([db])_?{_NUMBER}$')
_ANISO_RE = re.compile(rf'^(?:aniso|a)(?:_([db]))?_{_NUMBER}_{_NUMBER}_{_NUMBER}$')
SPEC_FORMS = ('g_d_<variance> or gd<variance> (isotropic, direct sub-sampling; the paper\'s g^d_2.0 is g_d_2.0)',
              'g_b_<variance> or gb<variance> (isotropic, MATLAB bicubic downscaling; g^b_1.3 is g_b_1.3)',
              'aniso_<theta>_<lambda_1>_<lambda_2> or a_d_<theta>_<lambda_1>_<lambda_2> (anisotropic, direct; theta '
              'in radians, lambdas are variances)', 'a_b_<theta>_<lambda_1>_<lambda_2> (anisotropic, bicubic)')


def parse_kernel_spec(spec, size=SPEC_KERNEL_SIZE):
    """Builds a test degradation from its name.

    Accepted forms (case-insensitive; numbers are plain decimals):

    * ``g_d_<variance>`` / ``gd<variance>``: isotropic Gaussian, direct sub-sampling (g^d of the paper).
    * ``g_b_<variance>`` / ``gb<variance>``: isotropic Gaussian, then MATLAB bicubic downscaling (g^b).
    * ``aniso_<theta>_<lambda_1>_<lambda_2>`` / ``a_d_...``: anisotropic, direct; ``a_b_...``: anisotropic, bicubic.
      ``theta`` in radians; ``lambda`` are variances as in :func:`anisotropic_gaussian_kernel`.

    Args:
        spec (str): The spec, e.g. ``'g_d_2.0'``.
        size (int): Kernel size. Default: 21, as the official test kernels.

    Returns:
        KernelSpec: The kernel (size, size), its downsampling mode and the spec.
    """
    text = str(spec).strip().lower()
    match = _ISO_RE.match(text)
    if match:
        mode, variance = match.groups()
        kernel = isotropic_gaussian_kernel(size, float(variance))
    else:
        match = _ANISO_RE.match(text)
        if not match:
            raise ValueError(f'unknown kernel spec "{spec}"; accepted forms: ' + '; '.join(SPEC_FORMS))
        mode, theta, lambda_1, lambda_2 = match.groups()
        kernel = anisotropic_gaussian_kernel(size, float(theta), float(lambda_1), float(lambda_2))
    return KernelSpec(kernel=kernel, downsample='bicubic' if mode == 'b' else 'direct', name=str(spec))
