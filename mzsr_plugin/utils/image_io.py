"""Image files for the command line: read any common PNG/JPEG/BMP/TIFF as float RGB, write uint8 PNGs.

Reading and writing go through :func:`cv2.imdecode` / :func:`cv2.imencode` on bytes, so paths with any characters
work on every platform, and every failure names the file. Pixels are turned upright by the file's EXIF orientation
(every portrait photo from a phone is stored on its side with orientation 6 or 8), as every viewer shows them.
"""
import cv2
import io
import numpy as np
import os
from os import path as osp
from PIL import Image, UnidentifiedImageError

# EXIF orientation (tag 0x0112) -> how the stored (H, W, C) pixels are turned upright (values 2..8; 1 is upright).
EXIF_ORIENTATION = 0x0112
UPRIGHT = {
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, -1),  # stored rotated 90 counter-clockwise: turn clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the anti-diagonal
    8: lambda a: np.rot90(a, 1),  # stored rotated 90 clockwise: turn counter-clockwise
}

# What every reader of the package takes as an image file (mzsr-sr inputs, dataset preparation).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')


def exif_orientation(data):
    """The EXIF orientation (1..8) of encoded image bytes; 1 when there is none or it cannot be read.

    Args:
        data (ndarray): The encoded image, uint8.

    Returns:
        int
    """
    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            value = image.getexif().get(EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 1
    return value if value in UPRIGHT else 1


def decode_image(content, source):
    """Decodes image bytes (a file's, or an LMDB value) to float64 BGR in [0, 1], whatever its bit depth or channels.

    * Grayscale (8 or 16 bit) is replicated to 3 channels and reported as gray.
    * An alpha channel (BGRA, gray + alpha) is dropped, not composited: the colour values are super-resolved as they
      are stored, whatever their transparency.
    * 8-bit images are divided by 255, 16-bit ones by 65535.
    * The EXIF orientation is applied (:data:`UPRIGHT`): the pixels come out as viewers show them.

    Args:
        content (bytes | ndarray): The encoded image (PNG, JPEG, BMP, TIFF).
        source (str): Its file or LMDB key, for the messages.

    Returns:
        tuple[ndarray, bool]: The image, float64 of shape (H, W, 3), BGR, and whether it was grayscale.
    """
    data = np.frombuffer(content, np.uint8) if isinstance(content, (bytes, bytearray, memoryview)) else content
    if data.size == 0:  # cv2.imdecode asserts on an empty buffer, with a message that names no file
        raise ValueError(f'image file {source} is empty')
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'image file {source} cannot be decoded (corrupt, or not a PNG/JPEG/BMP/TIFF image)')
    if img.dtype == np.uint8:
        img = img.astype(np.float64) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float64) / 65535.0
    else:
        raise ValueError(f'image file {source} has {img.dtype} pixels; expected 8 or 16 bit integers')
    if img.ndim == 2:
        img = img[..., None]
    orientation = exif_orientation(data)
    if orientation != 1:
        img = np.ascontiguousarray(UPRIGHT[orientation](img))
    channels = img.shape[2]
    if channels in (1, 2):  # gray, or gray + alpha
        return np.repeat(img[..., :1], 3, axis=2), True
    if channels in (3, 4):  # BGR, or BGRA
        return img[..., :3], False
    raise ValueError(f'image file {source} has {channels} channels; expected 1 (gray), 2, 3 (colour) or 4 (with '
                     'alpha)')


def read_image(path):
    """Reads an image file as float32 RGB in [0, 1] (see :func:`decode_image` for gray, alpha and 16 bit).

    Args:
        path (str): Image file.

    Returns:
        tuple[ndarray, bool]: The image, float32 of shape (H, W, 3), and whether the file was grayscale.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'image file {path} does not exist')
    img, gray = decode_image(np.fromfile(path, dtype=np.uint8), path)
    return np.ascontiguousarray(img[..., ::-1], dtype=np.float32), gray


def to_uint8(img_rgb, gray=False):
    """Quantises a float RGB image as the official MZSR code: ``round(clip(img, 0, 1) * 255)``.

    Args:
        img_rgb (ndarray): Shape (H, W, 3), float, nominally in [0, 1].
        gray (bool): Return one channel, the mean of R, G and B (equal channels for a gray input).

    Returns:
        ndarray: uint8 of shape (H, W, 3) RGB, or (H, W) when ``gray``.
    """
    img = np.asarray(img_rgb, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'expected an RGB image of shape (H, W, 3), got {img.shape}')
    if gray:
        img = img.mean(axis=2)
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_image(path, img_rgb, gray=False):
    """Writes a float RGB image as an 8-bit PNG (or the format of the extension), creating the folder.

    Args:
        path (str): Output file.
        img_rgb (ndarray): Shape (H, W, 3), float in [0, 1] (clipped).
        gray (bool): Write one gray channel, the mean of R, G and B.
    """
    img = to_uint8(img_rgb, gray)
    if not gray:
        img = img[..., ::-1]  # OpenCV encodes BGR
    folder = osp.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    ok, encoded = cv2.imencode(osp.splitext(path)[1] or '.png', img)
    if not ok:
        raise OSError(f'cannot encode an image for {path}')
    encoded.tofile(path)
