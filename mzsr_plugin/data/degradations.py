"""The MZSR degradation ``LR = (HR * k) downsampled by s``, in NumPy and in batched, differentiable PyTorch.

Two downsampling modes, as the paper's g^d and g^b kernels:

* ``'direct'``: correlate with the kernel, then keep rows/cols 0, s, 2s, ... (official MZSR and ZSSR). An (H, W)
  image gives (ceil(H / s), ceil(W / s)).
* ``'bicubic'``: correlate with the kernel, then MATLAB bicubic downscaling by 1/s with antialiasing.

The border is handled as ``scipy.ndimage.correlate(mode='reflect')`` (the official code), i.e. NumPy's
``'symmetric'`` padding (``d c b a | a b c d | d c b a``). PyTorch's ``'reflect'`` padding is NumPy's ``'reflect'``
(``d c b | a b c d | c b a``), a different rule, so the PyTorch path mirrors indices itself.

Results are floats and are not rounded: the official test inputs are ``round(clip(LR * 255))`` of these.
"""
import cv2
import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

from mzsr_plugin.utils.matlab_resize import imresize_pt

from .kernels import DOWNSAMPLE_MODES


def _check_args(kernel_shape, scale, mode):
    if mode not in DOWNSAMPLE_MODES:
        raise ValueError(f'downsample mode must be one of {DOWNSAMPLE_MODES}, got "{mode}"')
    if int(scale) != scale or scale < 1:
        raise ValueError(f'scale must be a positive integer, got {scale}')
    if len(kernel_shape) < 2 or min(kernel_shape[-2:]) < 1:
        raise ValueError(f'kernel must have shape (kh, kw), got {tuple(kernel_shape)}')


def degrade_np(img, kernel, scale, mode='direct'):
    """Blurs and downsamples one image as the official MZSR test data.

    Args:
        img (ndarray): Shape (H, W, C) or (H, W), float in [0, 1].
        kernel (ndarray): Blur kernel, shape (kh, kw).
        scale (int): Downscaling factor s.
        mode (str): ``'direct'`` or ``'bicubic'`` (MATLAB bicubic as :func:`basicsr.utils.matlab_functions.imresize`,
            through :func:`imresize_pt` so that it stays in float64). Default: ``'direct'``.

    Returns:
        ndarray: LR of shape (ceil(H / s), ceil(W / s)[, C]) and the dtype of ``img``, not rounded or clipped.
        Computed in float64: float64 inputs reproduce the official test inputs bit-exactly after rounding.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    _check_args(kernel.shape, scale, mode)
    if kernel.ndim != 2:
        raise ValueError(f'degrade_np takes one kernel of shape (kh, kw), got {kernel.shape}')
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f'image must have shape (H, W) or (H, W, C), got {img.shape}')
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f'image must be float in [0, 1], got dtype {img.dtype} (divide uint8 images by 255)')
    scale = int(scale)
    planes = img[..., None] if img.ndim == 2 else img
    channels = [planes[..., c].astype(np.float64) for c in range(planes.shape[2])]
    blurred = np.stack([scipy.ndimage.correlate(channel, kernel, mode='reflect') for channel in channels], axis=2)
    if mode == 'direct':
        out = blurred[::scale, ::scale]
    else:
        out = imresize_pt(torch.from_numpy(blurred.transpose(2, 0, 1)), 1 / scale).numpy().transpose(1, 2, 0)
    # float32 rounding would move a few pixels of the official inputs across .5 grey-level ties.
    out = out.astype(img.dtype)
    return out[..., 0] if img.ndim == 2 else out


def symmetric_pad_indices(length, before, after, device=None):
    """Source indices of an axis padded as ``scipy.ndimage`` ``'reflect'`` (NumPy ``'symmetric'``).

    Args:
        length (int): Axis length L.
        before (int): Padding before.
        after (int): Padding after.
        device (torch.device | None): Device of the result.

    Returns:
        Tensor: int64 indices into the axis, shape (before + L + after,). Padding wider than L keeps mirroring.
    """
    index = torch.arange(-before, length + after, device=device) % (2 * length)
    return torch.where(index >= length, 2 * length - 1 - index, index)


def blur_pt(img, kernel):
    """Correlates each image with its kernel, borders as ``scipy.ndimage.correlate(mode='reflect')``.

    Args:
        img (Tensor): Shape (N, C, H, W).
        kernel (Tensor | ndarray): Shape (kh, kw) for all images or (N, kh, kw), one per image.

    Returns:
        Tensor: Shape (N, C, H, W), same dtype and device as ``img``.
    """
    return _correlate_pt(img, kernel, stride=1)


def _correlate_pt(img, kernel, stride):
    if img.dim() != 4:
        raise ValueError(f'image batch must have shape (N, C, H, W), got {tuple(img.shape)}')
    n, c, h, w = img.shape
    kernel = torch.as_tensor(kernel).to(device=img.device, dtype=img.dtype)
    if kernel.dim() == 2:
        kernel = kernel.expand(n, *kernel.shape)
    if kernel.dim() != 3 or kernel.shape[0] != n:
        raise ValueError(f'kernel must have shape (kh, kw) or (N={n}, kh, kw), got {tuple(kernel.shape)}')
    kh, kw = kernel.shape[-2:]
    # scipy centres a kernel of size k on tap k // 2, so even kernels pad one more before than after.
    rows = symmetric_pad_indices(h, kh // 2, kh - 1 - kh // 2, img.device)
    cols = symmetric_pad_indices(w, kw // 2, kw - 1 - kw // 2, img.device)
    padded = img[:, :, rows][:, :, :, cols]
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)  # (N * C, 1, kh, kw), one group per channel
    out = F.conv2d(padded.reshape(1, n * c, *padded.shape[-2:]), weight, stride=stride, groups=n * c)
    return out.reshape(n, c, *out.shape[-2:])


def degrade_pt(img, kernel, scale, mode='direct'):
    """Batched :func:`degrade_np`: blur and downsample, on any device and under autograd.

    Args:
        img (Tensor): Shape (N, C, H, W).
        kernel (Tensor | ndarray): Shape (kh, kw) for all images or (N, kh, kw), one per image.
        scale (int): Downscaling factor s.
        mode (str): ``'direct'`` or ``'bicubic'``. Default: ``'direct'``.

    Returns:
        Tensor: Shape (N, C, ceil(H / s), ceil(W / s)), dtype of ``img``; not rounded or clipped. Agrees with
        :func:`degrade_np` to ~1e-6 in float32.
    """
    _check_args(tuple(torch.as_tensor(kernel).shape), scale, mode)
    scale = int(scale)
    if mode == 'direct':
        # Sub-sampling by stride skips the discarded outputs: rows/cols 0, s, 2s, ... of the blurred image.
        return _correlate_pt(img, kernel, stride=scale)
    return imresize_pt(_correlate_pt(img, kernel, stride=1), 1 / scale)


def add_noise(img, noise_level, rng=None, clip=True):
    """Adds white Gaussian noise to an image in [0, 1].

    Args:
        img (ndarray): Any shape, float in [0, 1].
        noise_level (float): Standard deviation on the [0, 1] scale (e.g. 0.01 = 2.55 grey levels).
        rng (np.random.Generator | None): Random generator; None uses NumPy's global functions (seeded per
            dataloader worker by BasicSR).
        clip (bool): Clip the result to [0, 1]. Default: True.

    Returns:
        ndarray: float32, same shape as ``img``.
    """
    if noise_level < 0:
        raise ValueError(f'noise_level must be >= 0, got {noise_level}')
    normal = np.random.normal if rng is None else rng.normal
    out = img + normal(0.0, noise_level, size=np.shape(img)) if noise_level > 0 else np.array(img)
    return (np.clip(out, 0, 1) if clip else out).astype(np.float32)


def jpeg_compress(img, quality):
    """JPEG-compresses an RGB image in [0, 1] as a camera or a website would (8-bit, 4:2:0, OpenCV's encoder).

    Args:
        img (ndarray): Shape (H, W, 3), RGB, float in [0, 1].
        quality (int): JPEG quality, 1..100.

    Returns:
        ndarray: float32 RGB in [0, 1], the decoded JPEG.
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f'JPEG quality must be in 1..100, got {quality}')
    bgr = np.round(np.clip(img[..., ::-1], 0, 1) * 255).astype(np.uint8)
    ok, encoded = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError('OpenCV could not encode the image as JPEG')
    return (cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1] / 255.0).astype(np.float32)


def jpeg_compress_pt(img, quality):
    """:func:`jpeg_compress` for a batch of tensors: each image encoded and decoded once, on the CPU.

    Args:
        img (Tensor): Shape (N, 3, H, W), RGB in [0, 1], any device.
        quality (int): JPEG quality, 1..100.

    Returns:
        Tensor: Same shape, device and dtype; the decoded JPEGs (8-bit values).
    """
    pages = img.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    decoded = np.stack([jpeg_compress(page, quality) for page in pages])
    return torch.from_numpy(decoded).permute(0, 3, 1, 2).to(img)
