"""Image files: read what a phone or a camera writes as float RGB, write uint8 PNG, JPEG, TIFF or WebP.

Reading decodes bytes with :func:`cv2.imdecode` (PNG, JPEG including CMYK, BMP, TIFF, WebP, PPM; 8 or 16 bit), and
with Pillow for what OpenCV does not read: HEIC/HEIF (an iPhone's default) through pillow-heif, registered here as
Pillow's opener, the one place the package does so. Writing encodes with Pillow, which carries the photo's colour
profile and EXIF (:mod:`~mzsr_plugin.utils.photo_metadata`). Both work on bytes, so paths with any characters work on
every platform, and every failure names the file. Pixels are turned upright by the file's EXIF orientation (every
portrait photo from a phone is stored on its side with orientation 6 or 8), as every viewer shows them.
"""
import cv2
import io
import numpy as np
import os
import pillow_heif
from dataclasses import dataclass, field
from os import path as osp
from PIL import Image, UnidentifiedImageError

from mzsr_plugin.utils.photo_metadata import read_metadata

pillow_heif.register_heif_opener()

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

# What every reader of the package takes as an image file (mzsr-sr inputs, the app, dataset preparation).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.heic', '.heif', '.avif')
SUPPORTED_FORMATS = 'PNG, JPEG, BMP, TIFF, WebP, PPM, HEIC/HEIF or AVIF'
# Rows quantised at a time by to_uint8.
QUANTISE_ROWS = 256


@dataclass(frozen=True)
class OutputFormat:
    """How one output format is written with Pillow.

    Attributes:
        pillow (str): Pillow's format name.
        quality (int | None): Default quality of a lossy format; None: lossless (``--quality`` does not apply).
        options (dict): Further keyword arguments of :meth:`PIL.Image.Image.save`.
    """
    pillow: str
    quality: int = None
    options: dict = field(default_factory=dict)


# mzsr-sr --ext -> how it is written. PNG at zlib level 1 (OpenCV's default, fast on 50-megapixel outputs); JPEG
# without chroma sub-sampling, which would halve the colour resolution the SR just doubled; TIFF uncompressed, as
# Pillow's own writer keeps the Exif sub-IFD (its libtiff path, which compresses, cannot write it).
OUTPUT_FORMATS = {
    'png': OutputFormat('PNG', None, {'compress_level': 1}),
    'jpg': OutputFormat('JPEG', 95, {'subsampling': 0}),
    'tif': OutputFormat('TIFF', None, {'compression': 'raw'}),
    'webp': OutputFormat('WEBP', 95, {'method': 4}),
}
# File extension -> output format (the aliases of OUTPUT_FORMATS' names).
OUTPUT_EXTENSIONS = {'.png': 'png', '.jpg': 'jpg', '.jpeg': 'jpg', '.tif': 'tif', '.tiff': 'tif', '.webp': 'webp'}


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


def pillow_decode(data):
    """Decodes with Pillow what OpenCV does not read (HEIC/HEIF through pillow-heif), as OpenCV would return it.

    Args:
        data (ndarray): The encoded image, uint8.

    Returns:
        ndarray | None: uint8 or uint16 pixels, (H, W) gray or (H, W, 3|4) BGR(A); None when Pillow cannot read
        them either.
    """
    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            if image.mode not in ('L', 'I;16', 'RGB', 'RGBA'):
                image = image.convert('RGBA' if 'A' in image.getbands() else 'RGB')
            img = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return img[..., [2, 1, 0, 3][:img.shape[2]]] if img.ndim == 3 else img


def decode_image(content, source):
    """Decodes image bytes (a file's, or an LMDB value) to float64 BGR in [0, 1], whatever its bit depth or channels.

    * Grayscale (8 or 16 bit) is replicated to 3 channels and reported as gray.
    * An alpha channel (BGRA, gray + alpha) is dropped, not composited: the colour values are super-resolved as they
      are stored, whatever their transparency.
    * 8-bit images are divided by 255, 16-bit ones by 65535.
    * The EXIF orientation is applied (:data:`UPRIGHT`): the pixels come out as viewers show them.

    Args:
        content (bytes | ndarray): The encoded image (:data:`SUPPORTED_FORMATS`).
        source (str): Its file or LMDB key, for the messages.

    Returns:
        tuple[ndarray, bool]: The image, float64 of shape (H, W, 3), BGR, and whether it was grayscale.
    """
    data = np.frombuffer(content, np.uint8) if isinstance(content, (bytes, bytearray, memoryview)) else content
    if data.size == 0:  # cv2.imdecode asserts on an empty buffer, with a message that names no file
        raise ValueError(f'image file {source} is empty')
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        img = pillow_decode(data)
    if img is None:
        raise ValueError(f'image file {source} cannot be decoded (corrupt, or not a {SUPPORTED_FORMATS} image)')
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
    img, gray, _ = read_photo(path, metadata=False)
    return img, gray


def read_photo(path, metadata=True):
    """Reads an image file as :func:`read_image` does, with its colour profile and EXIF.

    Args:
        path (str): Image file.
        metadata (bool): Also read the metadata (else None).

    Returns:
        tuple[ndarray, bool, PhotoMetadata | None]: The image, float32 RGB of shape (H, W, 3), whether the file was
        grayscale, and its metadata (:mod:`~mzsr_plugin.utils.photo_metadata`).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'image file {path} does not exist')
    data = np.fromfile(path, dtype=np.uint8)
    img, gray = decode_image(data, path)
    return np.ascontiguousarray(img[..., ::-1], dtype=np.float32), gray, read_metadata(data) if metadata else None


def to_uint8(img_rgb, gray=False):
    """Quantises a float RGB image as the official MZSR code: ``round(clip(img, 0, 1) * 255)``.

    Args:
        img_rgb (ndarray): Shape (H, W, 3), float, nominally in [0, 1].
        gray (bool): Return one channel, the mean of R, G and B (equal channels for a gray input).

    Returns:
        ndarray: uint8 of shape (H, W, 3) RGB, or (H, W) when ``gray``.
    """
    shape = np.shape(img_rgb)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f'expected an RGB image of shape (H, W, 3), got {shape}')
    out = np.empty(shape[:2] if gray else shape, np.uint8)
    # In bands of rows: float64 copies of a whole 50-megapixel SR would hold gigabytes at once.
    for top in range(0, shape[0], QUANTISE_ROWS):
        band = np.asarray(img_rgb[top:top + QUANTISE_ROWS], dtype=np.float64)
        if gray:
            band = band.mean(axis=2)
        out[top:top + QUANTISE_ROWS] = np.round(np.clip(band, 0, 1) * 255)
    return out


def output_format(path):
    """The :data:`OUTPUT_FORMATS` entry of a file name's extension (none: PNG)."""
    ext = osp.splitext(path)[1].lower() or '.png'
    if ext not in OUTPUT_EXTENSIONS:
        raise ValueError(f'cannot write {path}: {ext} is not an output format; expected one of '
                         f'{", ".join(OUTPUT_EXTENSIONS)}')
    return OUTPUT_FORMATS[OUTPUT_EXTENSIONS[ext]]


def write_image(path, img_rgb, gray=False, metadata=None, quality=None, keep_gps=False):
    """Writes a float RGB image as 8 bits in the format of the extension (PNG, JPEG, TIFF, WebP), creating the folder.

    Args:
        path (str): Output file (see :data:`OUTPUT_EXTENSIONS`).
        img_rgb (ndarray): Shape (H, W, 3), float in [0, 1] (clipped).
        gray (bool): Write one gray channel, the mean of R, G and B.
        metadata (PhotoMetadata | None): The input photo's colour profile and EXIF, carried to the file
            (:meth:`~mzsr_plugin.utils.photo_metadata.PhotoMetadata.save_options`).
        quality (int | None): JPEG/WebP quality, 1..100; None: the format's default.
        keep_gps (bool): Keep the photo's GPS position in the EXIF written.
    """
    fmt = output_format(path)
    if quality is not None and fmt.quality is None:
        raise ValueError(f'cannot write {path} at quality {quality}: {fmt.pillow} is lossless; quality applies to '
                         f'{", ".join(k for k, f in OUTPUT_FORMATS.items() if f.quality)}')
    image = Image.fromarray(to_uint8(img_rgb, gray))
    options = dict(fmt.options)
    if fmt.quality is not None:
        options['quality'] = fmt.quality if quality is None else quality
    if metadata is not None:
        options.update(metadata.save_options(image.size, gray, keep_gps))
    encoded = io.BytesIO()
    image.save(encoded, fmt.pillow, **options)
    folder = osp.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, 'wb') as f:
        f.write(encoded.getbuffer())
