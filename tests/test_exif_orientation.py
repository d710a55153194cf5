"""Photos from a phone: EXIF orientation applied wherever images are read."""
import numpy as np
import pytest
from PIL import Image, ImageOps

from mzsr_plugin.utils.image_io import read_image


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_is_applied_when_reading(tmp_path, orientation):
    stored = (np.random.default_rng(orientation).random((12, 20, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / 'portrait.png'
    Image.fromarray(stored).save(path, exif=exif)
    with Image.open(path) as image:
        upright = np.asarray(ImageOps.exif_transpose(image).convert('RGB'))
    img, gray = read_image(str(path))
    assert upright.shape == ((12, 20, 3) if orientation < 5 else (20, 12, 3))
    assert np.array_equal(np.round(img * 255).astype(np.uint8), upright) and not gray
