"""Sensor noise and JPEG compression of an LR photo, read from the photo itself (``mzsr-sr --noise auto``).

MZSR's son reproduces the LR's blur; a noisy photo also needs a son as noisy (see
:func:`~mzsr_plugin.models.adaptation.make_son`), else adaptation learns to reproduce the noise as detail. The level
read here also takes the noise floor out of the spectral kernel estimate.

- Noise: the principal-component estimator of Chen, Zhu and Heng (ICCV 2015) on the colour-difference channels
  (R-G, B-G). On the luminance, aliasing of sharp, sub-sampled images reads as noise (4.6-22/255 on clean Set5
  g^d_0.2); colour differences of natural images hold little aliasing, while noise independent per channel passes
  into them whole (Set5, B100 and DIV2KRK-style inputs: clean 0.2-0.7/255, one image 3.2; std 2/5/10 read as
  1.9-3.8 / 4.6-6.0 / 8.9-10.2). JPEG's chroma sub-sampling removes colour noise: after JPEG the estimate reads
  about 0.5/255 whatever the noise was (4:2:0 sub-sampling, even at quality 95).
- Noise under JPEG (:func:`matched_noise_std`): the level whose son looks as noisy as the LR. The son is made as
  adaptation makes it (kernel, noise, JPEG at the photo's quality) and the luminance estimator, biased as it is by
  aliasing and compression, reads the son and the LR alike; the level where the two readings meet is the answer.
  On held-out training images (DIV2KRK-style x2, noise 5/255, JPEG 95/85/75) it reads 5.5-6.0 on average.
- JPEG: the IJG quality whose scaled luminance table is nearest the file's own (a file's quantisation tables are
  exact); decoded pixels carry no such record. The son is encoded at that quality
  (:func:`~mzsr_plugin.models.adaptation.make_son`).
"""
import math
import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from mzsr_plugin.models.adaptation import make_son

# IJG's luminance quantisation table at quality 50 (JPEG standard, Annex K), in natural (row-major) order.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29,
    51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120,
    101, 72, 92, 95, 98, 112, 100, 103, 99
])
# Read levels under this are 8-bit rounding and the colour aliasing of sharp, colourful images (clean inputs read
# up to 3.2/255), not noise worth reproducing.
NOISE_FLOOR = 3.5 / 255
# Beyond these, ten adaptation steps do not undo what the photo lost (measured with scripts/bench_kernel.py): the
# result is still written, with a warning.
NOISE_LIMIT = 15 / 255
JPEG_LIMIT = 50
# Fewer pixels a side give too few patches for the estimate.
MIN_SIDE = 16
# Rows of patches summed at a time (a band of a 4000-pixel-wide photo: 50 MB).
PATCH_ROWS = 64


def pca_noise_std(channel, patch=7, stride=2):
    """Noise std of one channel from the smallest eigenvalues of its patch covariance (Chen, Zhu and Heng 2015).

    Args:
        channel (ndarray): Shape (h, w), float.
        patch (int): Patch side.
        stride (int): Patch stride (every patch: 1).

    Returns:
        float: Noise std, in the units of ``channel``.
    """
    windows = sliding_window_view(channel, (patch, patch))[::stride, ::stride]
    # The patch matrix of a whole 12-megapixel photo is gigabytes: mean and covariance are summed over bands of it.
    bands = [slice(top, top + PATCH_ROWS) for top in range(0, windows.shape[0], PATCH_ROWS)]
    count = windows.shape[0] * windows.shape[1]
    mean = sum(windows[band].reshape(-1, patch * patch).sum(axis=0) for band in bands) / count
    covariance = np.zeros((patch * patch, patch * patch))
    for band in bands:
        centred = windows[band].reshape(-1, patch * patch) - mean
        covariance += centred.T @ centred
    eigen = np.sort(np.linalg.eigvalsh(covariance / count))
    # Drop the largest eigenvalues until the rest look like noise alone: for white noise their mean and median meet.
    for keep in range(len(eigen), 0, -1):
        tail = eigen[:keep]
        if np.mean(tail) <= np.median(tail):
            return float(math.sqrt(max(np.mean(tail), 0.0)))
    return float(math.sqrt(max(eigen[0], 0.0)))


def estimate_noise_std(lr):
    """Std of white noise added to each channel of an RGB image, from its colour differences.

    Args:
        lr (ndarray): Shape (h, w, 3), RGB float in [0, 1].

    Returns:
        float: Per-channel noise std on the [0, 1] scale.

    Raises:
        ValueError: Not an RGB image, or smaller than :data:`MIN_SIDE` pixels a side.
    """
    lr = np.asarray(lr, dtype=np.float64)
    if lr.ndim != 3 or lr.shape[2] != 3:
        raise ValueError(f'noise estimation needs an RGB image (h, w, 3), got shape {lr.shape}: a grey image has '
                         'no colour differences; give the noise level (--noise) instead')
    if min(lr.shape[:2]) < MIN_SIDE:
        raise ValueError(f'the image is {lr.shape[1]}x{lr.shape[0]}; noise estimation needs {MIN_SIDE} pixels a side')
    red, green, blue = lr[..., 0], lr[..., 1], lr[..., 2]
    # Independent per-channel noise of std s gives std s in (R - G) / sqrt(2); the smaller of the two differences
    # is the one with less colour structure left.
    return min(pca_noise_std((red - green) / math.sqrt(2)), pca_noise_std((blue - green) / math.sqrt(2)))


def auto_noise_std(lr):
    """The noise ``--noise auto`` reproduces: :func:`estimate_noise_std`, 0 under :data:`NOISE_FLOOR`, for grey
    images (no colour differences) and for images too small to read it from.

    Args:
        lr (ndarray): Shape (h, w, 3), RGB float in [0, 1] (grey images as three equal channels).

    Returns:
        float: Per-channel noise std, [0, 1] scale.
    """
    if min(lr.shape[:2]) < MIN_SIDE:
        return 0.0
    std = estimate_noise_std(lr)
    return std if std >= NOISE_FLOOR else 0.0


# The settings that read the noise level and the JPEG quality from each image.
AUTO = 'auto'
NO_JPEG = 'none'
# Largest level the matching tries, grey levels; noisier photos are beyond NOISE_LIMIT anyway.
MATCH_MAX = 25
# The matching reads the central crop of at most this many LR pixels a side: enough patches, a bounded cost.
MATCH_SIDE = 384
# Son noise draws averaged per level: one draw's reading varies by a few tenths of a grey level.
MATCH_DRAWS = 2
LUMA = np.array([0.299, 0.587, 0.114])


def matched_noise_std(lr, kernel, scale, downsample, jpeg_quality, seed=0):
    """The noise std that makes the son of a (JPEG) photo read as noisy as the photo itself.

    Args:
        lr (ndarray): Shape (h, w, 3), RGB float in [0, 1].
        kernel (ndarray): Its blur kernel, shape (k, k).
        scale (int): Scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        jpeg_quality (int | None): The son's JPEG quality (the photo's).
        seed (int): Seed of the sons' noise.

    Returns:
        float: Per-channel noise std, [0, 1] scale, in :func:`~mzsr_plugin.models.adaptation.make_son`'s terms; 0
        when no level up to :data:`MATCH_MAX` makes the son read as noisy as the photo (what the photo's reading
        holds then is structure the son lacks, e.g. the aliasing of a sharp x4 photo under an over-wide kernel
        estimate, not noise: measured, the cap's 25/255 read on sharp x4 JPEGs whatever their noise).
    """
    h, w = lr.shape[:2]
    top, left = max(0, (h - MATCH_SIDE) // 2), max(0, (w - MATCH_SIDE) // 2)
    crop = np.asarray(lr[top:top + MATCH_SIDE, left:left + MATCH_SIDE], dtype=np.float32)
    if min(crop.shape[:2]) < MIN_SIDE * scale:
        return 0.0
    target = pca_noise_std(crop @ LUMA)
    father = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None]
    kernel = torch.from_numpy(np.asarray(kernel, dtype=np.float32))
    levels, readings = [], []
    for level in range(MATCH_MAX + 1):
        sons = [
            make_son(father, kernel, scale, downsample, level / 255, seed + draw, jpeg_quality)
            for draw in range(MATCH_DRAWS if level else 1)
        ]
        reading = np.mean([pca_noise_std(son[0].permute(1, 2, 0).numpy().astype(np.float64) @ LUMA) for son in sons])
        levels.append(level / 255)
        readings.append(max(reading, readings[-1]) if readings else reading)  # the reading grows with the level
        if readings[-1] >= target:
            return float(np.interp(target, readings, levels)) if len(levels) > 1 else 0.0
    return 0.0


def photo_degradation(lr, file_quality, kernel, scale, downsample, noise=AUTO, jpeg=AUTO, seed=0, colour_std=None):
    """The noise and JPEG quality a photo's son must carry (``mzsr-sr --noise``/``--jpeg``, ``val.adapt``).

    Args:
        lr (ndarray): Shape (h, w, 3), RGB float in [0, 1].
        file_quality (int | None): JPEG quality of its file (:func:`jpeg_quality`), None when not a JPEG.
        kernel (ndarray): Its blur kernel, shape (k, k).
        scale (int): Scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        noise (str | float): ``'auto'``, or a std in grey levels.
        jpeg (str | int): ``'auto'`` (the file's quality), ``'none'``, or a quality 1..100.
        seed (int): Seed of the matching's noise.
        colour_std (float | None): :func:`auto_noise_std` of ``lr`` when the caller has read it already (it costs
            a PCA over the whole photo); None: read here when needed.

    Returns:
        dict: ``std`` ([0, 1] scale), ``source`` (``given``, ``auto (colour)`` or ``auto (matched)``),
        ``jpeg_quality`` (the file's), ``son_jpeg`` (the son's quality, None: not encoded), ``warning``.
    """
    son_jpeg = file_quality if jpeg == AUTO else None if jpeg == NO_JPEG else int(jpeg)
    if noise != AUTO:
        std, source = float(noise) / 255, 'given'
    elif son_jpeg is not None and lr.ndim == 3 and lr.shape[2] == 3:
        # Colour differences read nothing under JPEG's chroma sub-sampling: match the son to the photo instead.
        std, source = matched_noise_std(lr, kernel, scale, downsample, son_jpeg, seed), 'auto (matched)'
        std = std if std >= NOISE_FLOOR else 0.0
    else:
        std, source = auto_noise_std(lr) if colour_std is None else colour_std, 'auto (colour)'
    return {
        'std': std,
        'source': source,
        'jpeg_quality': file_quality,
        'son_jpeg': son_jpeg,
        'warning': beyond_limits(std, file_quality)
    }


def ijg_table(quality):
    """IJG's luminance quantisation table at ``quality`` (1..100), as libjpeg scales it."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((IJG_LUMINANCE * scale + 50) / 100), 1, 255)


def jpeg_quality(path):
    """The IJG quality a JPEG file was saved with (nearest scaled standard table), or None for other files.

    Args:
        path (str): Image file.

    Returns:
        int | None: Quality 1..100; None when the file is not a JPEG.
    """
    with Image.open(path) as image:
        if image.format != 'JPEG' or not getattr(image, 'quantization', None):
            return None
        tables = image.quantization
    luminance = np.asarray(tables[min(tables)], dtype=np.float64)
    # Pillow gives the table in natural order; encoders other than libjpeg (cameras) use their own tables: the
    # nearest IJG quality is then a summary of how coarse they are.
    errors = [np.abs(np.log(ijg_table(q)) - np.log(luminance)).mean() for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


def beyond_limits(noise_std, quality):
    """Why adaptation cannot be expected to undo these degradations (a warning text), or None.

    Args:
        noise_std (float): Per-channel noise std, [0, 1] scale.
        quality (int | None): JPEG quality, None when not compressed.

    Returns:
        str | None
    """
    reasons = []
    if noise_std > NOISE_LIMIT:
        reasons.append(f'noise std {noise_std * 255:.1f}/255 (above {NOISE_LIMIT * 255:.0f})')
    if quality is not None and quality < JPEG_LIMIT:
        reasons.append(f'JPEG quality {quality} (below {JPEG_LIMIT})')
    if not reasons:
        return None
    return (' and '.join(reasons) + ': beyond what a few adaptation steps undo; expect noise or blocks in the '
            'SR (denoise or use a less compressed original)')


__all__ = [
    'AUTO', 'JPEG_LIMIT', 'MIN_SIDE', 'NO_JPEG', 'NOISE_FLOOR', 'NOISE_LIMIT', 'auto_noise_std', 'beyond_limits',
    'estimate_noise_std', 'ijg_table', 'jpeg_quality', 'matched_noise_std', 'pca_noise_std', 'photo_degradation'
]
