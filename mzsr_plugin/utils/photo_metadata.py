"""What a photo carries besides its pixels, and what of it goes to the super-resolved file: colour profile and EXIF.

The policy (``mzsr-sr`` and the app; see docs/photos.md):

* **Colour profile**: the embedded ICC profile is carried to the output unchanged and the pixels are not converted:
  they are super-resolved in the colour space they are stored in, so a Display-P3 or Adobe-RGB photo shows the same
  colours before and after. A profile of another colour space than the output's (a CMYK JPEG's profile, whose pixels
  are decoded to RGB; a colour profile on a gray output) is dropped: such an output is untagged, which viewers take
  as sRGB.
* **EXIF**: the camera, lens, date and exposure (the Exif sub-IFD) are kept, the orientation is written as 1 (the
  pixels were turned upright when read), the pixel dimensions are the output's, the GPS position only with
  ``keep_gps``. What describes the stored file rather than the photo (strip layout, thumbnail, maker note, whose
  private offsets break when moved) is dropped.
"""
import io
import struct
from dataclasses import dataclass
from PIL import Image, UnidentifiedImageError

EXIF_IFD, GPS_IFD, INTEROP_IFD = 0x8769, 0x8825, 0xA005
ORIENTATION = 0x0112
# IFD0 tags that describe the photo, kept: ImageDescription, Make, Model, Software, DateTime, Artist, Copyright.
KEPT_TAGS = (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)
# Exif sub-IFD tags dropped: the maker note (private offsets) and the pointer to the interoperability IFD.
DROPPED_EXIF_TAGS = (0x927C, INTEROP_IFD)
PIXEL_X, PIXEL_Y = 0xA002, 0xA003
# ICC header bytes 16..20: the profile's data colour space; what an 8-bit output of each kind can carry.
ICC_COLOUR_SPACE = {False: b'RGB ', True: b'GRAY'}


@dataclass
class PhotoMetadata:
    """The colour profile and EXIF of an input photo.

    Attributes:
        icc_profile (bytes | None): The embedded ICC profile.
        exif (PIL.Image.Exif | None): The EXIF, sub-IFDs loaded.
    """
    icc_profile: bytes = None
    exif: Image.Exif = None

    @property
    def profile_space(self):
        """The ICC profile's data colour space (``'RGB'``, ``'GRAY'``, ``'CMYK'``), or None."""
        if not self.icc_profile or len(self.icc_profile) < 20:
            return None
        return self.icc_profile[16:20].decode('ascii', 'replace').strip()

    def profile_for(self, gray):
        """The ICC profile an output can carry (its colour space is the output's), or None."""
        if self.icc_profile and self.icc_profile[16:20] == ICC_COLOUR_SPACE[bool(gray)]:
            return self.icc_profile
        return None

    def output_exif(self, size, keep_gps=False):
        """The EXIF written with the output (see the module's policy), or None when the photo had none.

        Args:
            size (tuple[int, int]): The output's (width, height).
            keep_gps (bool): Keep the GPS position.

        Returns:
            bytes | None: An EXIF block, as Pillow's ``exif=`` takes it.
        """
        if not self.exif:
            return None
        out = Image.Exif()
        for tag in KEPT_TAGS:
            if tag in self.exif:
                out[tag] = self.exif[tag]
        out[ORIENTATION] = 1
        details = {tag: value for tag, value in self.exif.get_ifd(EXIF_IFD).items() if tag not in DROPPED_EXIF_TAGS}
        if details:
            details[PIXEL_X], details[PIXEL_Y] = size
            out.get_ifd(EXIF_IFD).update(details)
        if keep_gps and self.exif.get_ifd(GPS_IFD):
            out.get_ifd(GPS_IFD).update(self.exif.get_ifd(GPS_IFD))
        try:
            return out.tobytes()
        except (ValueError, TypeError, struct.error):
            # A vendor's malformed tag: the camera and date alone rather than no output at all.
            return _ifd0_only(out)

    def save_options(self, size, gray, keep_gps=False):
        """The keyword arguments of :meth:`PIL.Image.Image.save` that carry the profile and EXIF to an output.

        Args:
            size (tuple[int, int]): The output's (width, height).
            gray (bool): The output is one gray channel.
            keep_gps (bool): Keep the GPS position.

        Returns:
            dict: ``icc_profile`` and ``exif`` where there is one to carry.
        """
        options = {'icc_profile': self.profile_for(gray), 'exif': self.output_exif(size, keep_gps)}
        return {key: value for key, value in options.items() if value is not None}

    def describe(self):
        """What is carried, for logs: ``ICC profile 'Display P3' (RGB), EXIF Apple iPhone 13``."""
        parts = []
        if self.icc_profile:
            parts.append(f'ICC profile {profile_description(self.icc_profile)!r} ({self.profile_space})')
        if self.exif:
            camera = ' '.join(str(self.exif[tag]).strip('\x00 ') for tag in (0x010F, 0x0110) if tag in self.exif)
            parts.append(f'EXIF {camera}'.rstrip())
        return ', '.join(parts)


def _ifd0_only(exif):
    out = Image.Exif()
    for tag in (*KEPT_TAGS, ORIENTATION):
        if tag in exif:
            out[tag] = exif[tag]
    return out.tobytes()


def profile_description(icc_profile):
    """The ``desc`` tag of an ICC profile (its name), or ``'unnamed'``."""
    from PIL import ImageCms
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))).strip()
    except (ImageCms.PyCMSError, OSError, TypeError):
        return 'unnamed'


def read_metadata(data):
    """The colour profile and EXIF of an encoded image (pixels are not decoded); empty for what Pillow cannot open.

    Args:
        data (bytes | ndarray): The encoded image.

    Returns:
        PhotoMetadata
    """
    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            exif = image.getexif()
            for ifd in (EXIF_IFD, GPS_IFD):
                exif.get_ifd(ifd)  # loads the sub-IFD while the file is open
            icc = image.info.get('icc_profile') or None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return PhotoMetadata()
    # A TIFF's "EXIF" is its own directory (strips, sizes): only the tags that describe the photo count.
    described = any(tag in exif for tag in KEPT_TAGS) or exif.get_ifd(EXIF_IFD) or exif.get_ifd(GPS_IFD)
    return PhotoMetadata(icc, exif if described else None)
