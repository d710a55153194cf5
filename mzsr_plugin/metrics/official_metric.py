"""PSNR and SSIM as the MZSR paper reports them.

Protocol: both images as 8-bit BGR (what BasicSR's ``tensor2img`` gives), Y channel of ITU-R BT.601 (MATLAB
``rgb2ycbcr``, :func:`basicsr.utils.bgr2ycbcr`) rounded to 8 bit, ``crop_border`` (= scale) pixels shaved off each
side. SSIM is Wang et al.'s (Gaussian window 11, sigma 1.5, valid region), BasicSR's ``_ssim``. BasicSR's own
``calculate_psnr(test_y_channel=True)`` keeps Y unrounded, which moves results by a few hundredths of a dB.

The official test compares SR with GT that is not mod-cropped, so when the sizes differ both images are cut to their
common top-left region.
"""
import numpy as np

from basicsr.metrics.metric_util import reorder_image
from basicsr.metrics.psnr_ssim import _ssim
from basicsr.utils import bgr2ycbcr
from basicsr.utils.registry import METRIC_REGISTRY


def official_y_channel(img, img2, crop_border, input_order='HWC'):
    """The two images reduced to the compared region of their 8-bit Y channels.

    Args:
        img (ndarray): Shape (H, W, 3) BGR, (H, W, 1) or (H, W) gray ('CHW' order also accepted), uint8 or float
            in [0, 255] (floats are rounded and clipped to 8 bit as when saving the image).
        img2 (ndarray): Same, possibly of another size.
        crop_border (int): Pixels shaved off each side (the scale).
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.

    Returns:
        tuple[ndarray, ndarray]: float64 Y channels in [0, 255], both of shape (h - 2 crop_border,
        w - 2 crop_border) with (h, w) the common top-left size.
    """
    channels = []
    for image in (img, img2):
        image = reorder_image(np.asarray(image), input_order=input_order)
        if image.shape[2] not in (1, 3):
            raise ValueError(f'images must have 1 or 3 channels (BGR), got shape {image.shape}')
        if image.dtype != np.uint8:
            image = np.clip(np.round(image.astype(np.float64)), 0, 255).astype(np.uint8)
        channels.append(image[..., 0] if image.shape[2] == 1 else bgr2ycbcr(image, y_only=True))
    h = min(channels[0].shape[0], channels[1].shape[0])
    w = min(channels[0].shape[1], channels[1].shape[1])
    crop_border = int(crop_border)
    if h <= 2 * crop_border or w <= 2 * crop_border:
        raise ValueError(f'crop_border {crop_border} leaves nothing of the compared {h}x{w} region')
    region = (slice(crop_border, h - crop_border), slice(crop_border, w - crop_border))
    return channels[0][region].astype(np.float64), channels[1][region].astype(np.float64)


@METRIC_REGISTRY.register()
def calculate_mzsr_psnr(img, img2, crop_border, input_order='HWC', **kwargs):
    """PSNR on the rounded Y channel, shaving ``crop_border`` pixels, as the MZSR paper.

    Args:
        img (ndarray): Shape (H, W, 3) BGR (or gray), uint8 or float in [0, 255].
        img2 (ndarray): Same; cut to the common top-left size when the sizes differ.
        crop_border (int): Pixels shaved off each side (the scale).
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.

    Returns:
        float: PSNR in dB; inf for identical regions.
    """
    y, y2 = official_y_channel(img, img2, crop_border, input_order)
    mse = np.mean((y - y2)**2)
    if mse == 0:
        return float('inf')
    return float(10. * np.log10(255. * 255. / mse))


@METRIC_REGISTRY.register()
def calculate_mzsr_ssim(img, img2, crop_border, input_order='HWC', **kwargs):
    """SSIM on the rounded Y channel, shaving ``crop_border`` pixels, as the MZSR paper.

    Args:
        img (ndarray): Shape (H, W, 3) BGR (or gray), uint8 or float in [0, 255].
        img2 (ndarray): Same; cut to the common top-left size when the sizes differ.
        crop_border (int): Pixels shaved off each side (the scale).
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.

    Returns:
        float: SSIM in [-1, 1]; 1 for identical regions.
    """
    y, y2 = official_y_channel(img, img2, crop_border, input_order)
    if min(y.shape) < 11:
        raise ValueError(f'SSIM needs at least 11x11 pixels after cropping, got {y.shape[0]}x{y.shape[1]}')
    return float(_ssim(y, y2))
