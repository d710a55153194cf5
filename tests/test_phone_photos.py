"""Photos as a phone or a camera writes them (#30): HEIC, the formats that keep working, the colour profile and EXIF
carried to every output format, and the errors of what is not supported."""
import io
import json
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from helpers import DISPLAY_P3, icc_profile, smooth_image
from mzsr_plugin import cli
from mzsr_plugin import time_estimate as te
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.inference import OutputSettings
from mzsr_plugin.utils.image_io import OUTPUT_FORMATS, SUPPORTED_FORMATS, read_image
from mzsr_plugin.utils.photo_metadata import PhotoMetadata, read_metadata

pytestmark = pytest.mark.usefixtures('one_thread')

MAKE, MODEL, ORIENTATION, DATE_ORIGINAL, GPS_LATITUDE_REF = 0x010F, 0x0110, 0x0112, 0x9003, 0x0001
EXIF_IFD, GPS_IFD, PIXEL_X, PIXEL_Y = 0x8769, 0x8825, 0xA002, 0xA003


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, tmp_path / 'w.pth')
    return tmp_path / 'w.pth'


def phone_exif(orientation=1):
    """EXIF as a phone writes it: camera, date taken, GPS position and the orientation."""
    exif = Image.Exif()
    exif[MAKE], exif[MODEL], exif[ORIENTATION] = 'Apple', 'iPhone 13', orientation
    exif.get_ifd(EXIF_IFD)[DATE_ORIGINAL] = '2024:05:06 07:08:09'
    exif.get_ifd(GPS_IFD)[GPS_LATITUDE_REF] = 'N'
    return exif


def stored_pixels(height=12, width=16, seed=0):
    return smooth_image(np.random.default_rng(seed), height, width)[..., ::-1]  # RGB


def run_cli(tmp_path, weights, photo, *extra):
    out = tmp_path / 'out'
    argv = [photo, '-o', out, '--weights', weights, '--kernel', 'g_d_2.0', '--steps', '1', '--seed', '0',
            '--no-self-check', '--noise', '0', *extra]
    assert cli.main([str(a) for a in argv]) == 0
    return out


def test_heic_made_by_pillow_heif_round_trips_through_mzsr_sr(tmp_path, weights):
    # pillow-heif stores the EXIF orientation as the HEIF rotation: 12x16 stored, orientation 6 -> 16x12 upright.
    photo = tmp_path / 'IMG_0001.HEIC'
    Image.fromarray(stored_pixels()).save(photo, 'HEIF', quality=95, exif=phone_exif(6).tobytes())
    lr, gray = read_image(str(photo))
    assert lr.shape == (16, 12, 3) and not gray
    out = run_cli(tmp_path, weights, photo, '--ext', 'jpg', '--quality', '90')
    with Image.open(out / 'IMG_0001.jpg') as sr:
        assert sr.format == 'JPEG' and sr.size == (24, 32)  # (width, height): upright, x2
        exif = sr.getexif()
        assert (exif[MAKE], exif[MODEL], exif[ORIENTATION]) == ('Apple', 'iPhone 13', 1)
        details = exif.get_ifd(EXIF_IFD)
        assert details[DATE_ORIGINAL] == '2024:05:06 07:08:09' and (details[PIXEL_X], details[PIXEL_Y]) == (24, 32)
        assert not exif.get_ifd(GPS_IFD)  # no GPS without --keep-gps
        sr_pixels = np.asarray(sr.convert('RGB'), dtype=np.float64) / 255
    # The SR of the decoded HEIC, not of something else: its bicubic-downscaled version is close to the LR.
    down = np.asarray(Image.fromarray(np.uint8(sr_pixels * 255)).resize((12, 16), Image.BICUBIC)) / 255
    assert np.abs(down - lr).mean() < 0.08


def test_gps_is_kept_only_when_asked(tmp_path, weights):
    photo = tmp_path / 'gps.jpg'
    Image.fromarray(stored_pixels()).save(photo, quality=95, exif=phone_exif().tobytes())
    out = run_cli(tmp_path, weights, photo, '--keep-gps', '--ext', 'webp')
    with Image.open(out / 'gps.webp') as sr:
        assert sr.getexif().get_ifd(GPS_IFD)[GPS_LATITUDE_REF] == 'N'
        assert sr.getexif()[MAKE] == 'Apple'


@pytest.mark.parametrize('ext', sorted(OUTPUT_FORMATS))
def test_a_display_p3_profile_and_the_exif_reach_every_output_format(tmp_path, weights, ext):
    profile = icc_profile('Display P3 (test)', DISPLAY_P3)
    photo = tmp_path / 'p3.png'
    Image.fromarray(stored_pixels()).save(photo, icc_profile=profile, exif=phone_exif(3).tobytes())
    out = run_cli(tmp_path, weights, photo, '--ext', ext)
    with Image.open(out / f'p3.{ext}') as sr:
        assert sr.format == OUTPUT_FORMATS[ext].pillow and sr.size == (32, 24)
        assert sr.info['icc_profile'] == profile  # carried unchanged: the pixels stay in Display P3
        carried = ImageCms.ImageCmsProfile(io.BytesIO(sr.info['icc_profile']))
        assert ImageCms.getProfileDescription(carried).strip() == 'Display P3 (test)'
        assert sr.getexif()[MODEL] == 'iPhone 13' and sr.getexif()[ORIENTATION] == 1


def test_a_profile_of_another_colour_space_is_not_carried():
    rgb = icc_profile('Display P3 (test)', DISPLAY_P3)
    cmyk = icc_profile('not RGB', DISPLAY_P3, space=b'CMYK')
    assert PhotoMetadata(rgb).save_options((4, 4), gray=False) == {'icc_profile': rgb}
    assert PhotoMetadata(rgb).save_options((4, 4), gray=True) == {}
    assert PhotoMetadata(cmyk).save_options((4, 4), gray=False) == {}
    assert 'Display P3 (test)' in PhotoMetadata(rgb, phone_exif()).describe()


def _encode(array, fmt, **options):
    buffer = io.BytesIO()
    (array if isinstance(array, Image.Image) else Image.fromarray(array)).save(buffer, fmt, **options)
    return buffer.getvalue()


RGB = stored_pixels(10, 14, seed=1)
# File -> (its bytes, the RGB pixels expected (None: Pillow's reading), the mean absolute difference allowed).
FORMATS = {
    'photo.webp': (lambda: _encode(RGB, 'WEBP', lossless=True), RGB, 0),
    'photo.tif': (lambda: _encode(RGB, 'TIFF'), RGB, 0),
    'palette.png': (lambda: _encode(Image.fromarray(RGB).quantize(16), 'PNG'), None, 0),
    'alpha.png': (lambda: _encode(np.dstack([RGB, np.full(RGB.shape[:2], 128, np.uint8)]), 'PNG'), RGB, 0),
    'cmyk.jpg': (lambda: _encode(Image.fromarray(RGB).convert('CMYK'), 'JPEG', quality=100), RGB, 3),
    # Lossy with 4:2:0 chroma: compared with Pillow's decoding of the same bytes.
    'photo.heic': (lambda: _encode(RGB, 'HEIF', quality=95), None, 0),
    'photo.avif': (lambda: _encode(RGB, 'AVIF', quality=95), None, 2),
}


@pytest.mark.parametrize('name', sorted(FORMATS))
def test_formats_a_phone_or_a_camera_writes_are_read(tmp_path, name):
    make, expected, tolerance = FORMATS[name]
    (tmp_path / name).write_bytes(make())
    img, gray = read_image(str(tmp_path / name))
    with Image.open(tmp_path / name) as image:
        pillow = np.asarray(image.convert('RGB'))
    expected = pillow if expected is None else expected
    assert img.shape == (10, 14, 3) and not gray
    assert np.abs(np.round(img * 255) - expected.astype(np.float64)).mean() <= tolerance


def test_metadata_of_a_plain_file_is_empty(tmp_path):
    data = _encode(RGB, 'PNG')
    assert read_metadata(data) == PhotoMetadata() and PhotoMetadata().save_options((1, 1), False) == {}


def test_unsupported_and_undecodable_files_are_named_with_what_is_supported(tmp_path, weights, capsys):
    gif = tmp_path / 'anim.gif'
    gif.write_bytes(_encode(RGB, 'GIF'))
    with pytest.raises(SystemExit) as info:
        run_cli(tmp_path, weights, gif)
    assert str(gif) in info.value.code and '.heic' in info.value.code and '.webp' in info.value.code
    fake = tmp_path / 'fake.heic'
    fake.write_bytes(b'\0\0\0\x18ftypheic' + b'\0' * 40)
    with pytest.raises(SystemExit) as info:
        run_cli(tmp_path, weights, fake)
    assert f'image file {fake} cannot be decoded' in info.value.code and SUPPORTED_FORMATS in info.value.code


@pytest.mark.parametrize('ext, quality, message', [('png', 90, 'applies to jpg and webp'),
                                                   ('jpg', 101, '1..100'), ('bmp', None, 'expected one of')])
def test_bad_output_settings_are_refused(ext, quality, message):
    with pytest.raises(ValueError, match=message):
        OutputSettings(ext, quality)


def test_quality_changes_the_jpeg(tmp_path, weights):
    photo = tmp_path / 'q.png'
    Image.fromarray(stored_pixels(32, 32)).save(photo)
    sizes = []
    for quality in ('30', '95'):
        out = run_cli(tmp_path, weights, photo, '--ext', 'jpg', '--quality', quality)
        sizes.append((out / 'q.jpg').stat().st_size)
        (out / 'q.jpg').unlink()
    assert sizes[0] < sizes[1]


def test_the_cost_model_counts_the_crops_adaptation_runs_on():
    assert te.adapted_pixels(300, 300, 1024 * 1024) == 300 * 300  # under the budget: the whole LR
    assert te.adapted_pixels(3000, 4000, 1024 * 1024) == 4 * 512 * 512  # four crops of 512
    assert te.adapted_pixels(3000, 4000, 0) == 3000 * 4000  # no budget
    assert te.adapted_pixels(1500, 1500, 'auto') == 4 * 512 * 512  # 2.25 MP: the default budget
    assert te.adapted_pixels(3000, 4000, 'auto') == 512 * 512  # 12 MP: the large photos' budget, one crop
    # Tiles of 512 with margins of 6: 1024 = 2 tiles, each run on 518 rows.
    assert te.run_pixels(1024, 1024, 512, 6) == 1036 * 1036 and te.run_pixels(500, 500, 512, 6) == 500 * 500
    rate = te.MachineRate(fixed=2.0, per_pixel=1e-5, per_adapted=2e-5, per_step=3e-5)
    assert rate.seconds(3000, 4000, 10, 1024 * 1024) == pytest.approx(2 + 120 + (2e-5 + 10 * 3e-5) * 4 * 512 * 512)
    assert rate.seconds(3000, 4000, 0, 1024 * 1024, run=13e6) == pytest.approx(2 + 130)  # no steps: not adapted
    # The self-check: two forward passes over the crops, two thirds of a step; nothing without adaptation.
    checked = rate.seconds(3000, 4000, 10, 1024 * 1024, self_check=True)
    assert checked == pytest.approx(2 + 120 + (2e-5 + (10 + 2 / 3) * 3e-5) * 4 * 512 * 512)
    assert rate.seconds(3000, 4000, 0, 1024 * 1024, run=13e6, self_check=True) == pytest.approx(2 + 130)
    assert [te.format_seconds(s) for s in (42.4, 400, 3900)] == ['42 s', '6 min 40 s', '1 h 05 min']


@pytest.fixture
def quick_estimates(monkeypatch):
    """Every photo gets an estimate, calibrated on tiny photos (the real sizes take seconds)."""
    monkeypatch.setattr(te, 'ESTIMATE_ABOVE', 0)
    monkeypatch.setattr(te, 'CALIBRATION_SIDES', (16, 24))


def test_the_expected_time_is_printed_before_the_work_and_tiles_report_progress(tmp_path, weights, capsys,
                                                                                quick_estimates):
    photo = tmp_path / 'big.jpg'
    Image.fromarray(stored_pixels(20, 20)).save(photo, quality=90)
    out = run_cli(tmp_path, weights, photo, '--tile', '8')
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    expected_line = next(i for i, line in enumerate(lines) if line.startswith('big.jpg: 20x20 LR'))
    assert 'expected' in lines[expected_line] and 'this machine' in lines[expected_line - 1]
    done_line = next(i for i, line in enumerate(lines) if '-> ' in line and 'in all, expected' in line)
    assert expected_line < done_line
    # Tiles of 8 on a 20x20 LR: 3 x 3, one line each in a log (stderr is not a terminal here).
    assert [line.split(', ')[0] for line in printed.err.splitlines() if 'SR tile' in line] == \
        [f'big: SR tile {i}/9' for i in range(1, 10)]
    with open(out / 'metrics.json') as f:
        row = json.load(f)['images'][0]
    assert row['expected_seconds'] > 0 and row['wall_seconds'] > 0


def test_the_app_takes_a_heic_and_writes_the_chosen_format_with_an_estimate(tmp_path, weights, quick_estimates):
    from mzsr_plugin import app
    photo = tmp_path / 'phone.heic'
    profile = icc_profile('Display P3 (test)', DISPLAY_P3)
    Image.fromarray(stored_pixels()).save(photo, 'HEIF', quality=95, exif=phone_exif(8).tobytes(),
                                          icc_profile=profile)
    told = []
    result = app.super_resolve_photo(str(photo), 'g_d_2.0', None, 2, 1, str(weights), False, str(tmp_path),
                                     output=OutputSettings('tif'), announce=told.append)
    assert len(told) == 1 and told[0].startswith('phone.heic: 12x16 LR') and result['expected'] > 0
    with Image.open(result['sr']) as sr:
        assert sr.format == 'TIFF' and sr.size == (24, 32) and sr.info['icc_profile'] == profile
        assert sr.getexif()[MODEL] == 'iPhone 13' and not sr.getexif().get_ifd(GPS_IFD)
    with Image.open(result['shown']) as shown:  # a browser shows no TIFF: the slider gets a PNG
        assert shown.format == 'PNG' and shown.size == (24, 32)
    assert 'Written as TIF' in result['info'] and 'Display P3 (test)' in result['info']


def test_quantising_in_bands_of_rows_equals_the_whole_image(monkeypatch):
    from mzsr_plugin.utils import image_io
    img = np.random.default_rng(0).normal(0.5, 0.4, (23, 7, 3)).astype(np.float32)
    whole = image_io.to_uint8(img), image_io.to_uint8(img, gray=True)
    monkeypatch.setattr(image_io, 'QUANTISE_ROWS', 5)
    assert np.array_equal(image_io.to_uint8(img), whole[0]) and np.array_equal(image_io.to_uint8(img, True), whole[1])
    assert whole[0][0, 0].tolist() == np.round(np.clip(img[0, 0].astype(np.float64), 0, 1) * 255).tolist()
