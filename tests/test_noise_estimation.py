"""Noisy and compressed photos: the noise read from the image, JPEG quality from the file, the noisy son, the noise
floor of the kernel estimate, ``mzsr-sr --noise`` and its warnings."""
import cv2
import csv
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from mzsr_plugin import cli
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.data.degradations import add_noise, degrade_np
from mzsr_plugin.data.kernels import anisotropic_gaussian_kernel, kernel_covariance, parse_kernel_spec
from mzsr_plugin.evaluation import degraded_case
from mzsr_plugin.kernel_estimation import estimate_kernel
from mzsr_plugin.models.adaptation import make_son
from mzsr_plugin.noise_estimation import (NOISE_FLOOR, auto_noise_std, beyond_limits, estimate_noise_std, ijg_table,
                                          jpeg_quality, photo_degradation)
from mzsr_plugin.precision import resolve_precision

pytestmark = pytest.mark.usefixtures('one_thread')


def lr_of(kernel, photo='astronaut', scale=2):
    return degraded_case(photo, getattr(skimage.data, photo)(), kernel, scale).lr[0].permute(1, 2, 0).numpy()


def noisy(lr, std, seed=0):
    return np.round(add_noise(lr, std / 255, rng=np.random.default_rng(seed)) * 255) / 255


@pytest.mark.parametrize('spec', ['g_d_2.0', 'g_d_0.2'])
def test_noise_is_read_from_colour_differences_even_on_sharp_aliased_images(spec):
    lr = lr_of(parse_kernel_spec(spec).kernel, 'coffee')
    for std in (5, 10):
        assert abs(estimate_noise_std(noisy(lr, std)) * 255 - std) < 0.2 * std
    # A clean image (8-bit rounding only) reads under the floor and counts as clean, sharp or not.
    assert estimate_noise_std(lr) < NOISE_FLOOR and auto_noise_std(lr) == 0.0
    # The luminance route would have read the sharp image's aliasing as noise: the colour differences do not.
    assert auto_noise_std(noisy(lr, 5)) == pytest.approx(estimate_noise_std(noisy(lr, 5)))


def test_noise_estimation_refuses_grey_and_tiny_images_but_auto_takes_them_as_clean():
    grey = np.repeat(lr_of(parse_kernel_spec('g_d_2.0').kernel)[..., :1], 3, axis=2)
    assert auto_noise_std(noisy(grey, 0)) == 0.0
    with pytest.raises(ValueError, match=r'needs an RGB image \(h, w, 3\), got shape \(64, 64\)'):
        estimate_noise_std(np.zeros((64, 64)))
    with pytest.raises(ValueError, match='the image is 12x10; noise estimation needs 16 pixels a side'):
        estimate_noise_std(np.zeros((10, 12, 3)))
    assert auto_noise_std(np.random.default_rng(0).random((10, 12, 3))) == 0.0


@pytest.mark.parametrize('quality', [20, 50, 85, 97])
def test_jpeg_quality_is_read_from_the_file_tables(tmp_path, quality):
    image = skimage.data.chelsea()
    cv2.imwrite(str(tmp_path / 'cv.jpg'), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    Image.fromarray(image).save(tmp_path / 'pil.jpeg', quality=quality)
    cv2.imwrite(str(tmp_path / 'lossless.png'), image)
    assert jpeg_quality(str(tmp_path / 'cv.jpg')) == quality
    assert jpeg_quality(str(tmp_path / 'pil.jpeg')) == quality
    assert jpeg_quality(str(tmp_path / 'lossless.png')) is None
    assert ijg_table(50)[0] == 16 and ijg_table(100).max() == 1


def test_the_son_carries_the_noise_the_blur_removed():
    lr = torch.full((1, 3, 96, 96), 0.5)
    kernel = torch.from_numpy(parse_kernel_spec('g_d_2.0').kernel).float()
    clean = make_son(lr, kernel, 2, 'direct')
    son = make_son(lr, kernel, 2, 'direct', noise_std=0.04, seed=3)
    torch.testing.assert_close(son, make_son(lr, kernel, 2, 'direct', noise_std=0.04, seed=3))  # seeded
    assert not torch.equal(son, make_son(lr, kernel, 2, 'direct', noise_std=0.04, seed=4))
    # A flat LR has no noise of its own: the son gets the part of 0.04 the blur would have removed.
    expected = 0.04 * np.sqrt(1 - float((kernel.double()**2).sum()))
    assert float((son - clean).std()) == pytest.approx(expected, rel=0.05)
    torch.testing.assert_close(make_son(lr, kernel, 2, 'direct', noise_std=0.0), clean)


def test_noise_floor_keeps_the_kernel_estimate_of_noisy_images():
    truth = anisotropic_gaussian_kernel(15, 0.5, 3.0, 1.5)
    lr = noisy(lr_of(truth, 'coffee'), 5)

    def moments(kernel):
        coords = np.arange(15) - 7
        return np.array([(kernel.sum(1) * coords**2).sum(), (kernel.sum(0) * coords**2).sum()])

    plain, _ = estimate_kernel(lr, 2, 'spectral')
    floored, _ = estimate_kernel(lr, 2, 'spectral', noise_std=estimate_noise_std(lr))
    error = {name: np.abs(moments(k) - moments(truth)).sum() for name, k in (('plain', plain), ('floor', floored))}
    # Left in, the noise floor reads as a sharper kernel; taken out, the second moments come back near the truth.
    assert error['floor'] < 0.6 * error['plain']
    assert moments(floored).sum() > moments(plain).sum()
    same, _ = estimate_kernel(lr_of(truth, 'coffee'), 2, 'spectral', noise_std=0.0)
    np.testing.assert_array_equal(same, estimate_kernel(lr_of(truth, 'coffee'), 2, 'spectral')[0])
    # The learned estimator reads the floor-free spectrum too: closer than without it, over a few photos (relative
    # covariance error; one photo alone may go either way).
    errors = {False: [], True: []}
    for photo in ('coffee', 'astronaut', 'chelsea'):
        image = noisy(lr_of(truth, photo), 5)
        for floor in errors:
            kernel = estimate_kernel(image, 2, 'learned', noise_std=estimate_noise_std(image) if floor else 0.0)[0]
            errors[floor].append(np.linalg.norm(kernel_covariance(kernel) - kernel_covariance(truth)) /
                                 np.linalg.norm(kernel_covariance(truth)))
    assert np.mean(errors[True]) < np.mean(errors[False])


def test_warnings_name_what_is_beyond_adaptation():
    assert beyond_limits(5 / 255, 85) is None and beyond_limits(0.0, None) is None
    assert beyond_limits(20 / 255, None).startswith('noise std 20.0/255 (above 15)')
    assert 'JPEG quality 30 (below 50)' in beyond_limits(0.0, 30)


@pytest.fixture
def photos(tmp_path):
    hr = skimage.data.astronaut()[:192, :192] / 255.0
    lr = degrade_np(hr, parse_kernel_spec('g_d_2.0').kernel, 2)
    bgr = np.round(lr[..., ::-1] * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'clean.png'), bgr)
    cv2.imwrite(str(tmp_path / 'noisy.png'), np.round(noisy(lr, 8)[..., ::-1] * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / 'blocky.jpg'), bgr, [cv2.IMWRITE_JPEG_QUALITY, 30])
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, tmp_path / 'w.pth')
    return tmp_path


def test_photo_degradation_auto_given_and_jpeg(photos):
    lr = cv2.imread(str(photos / 'noisy.png'))[..., ::-1] / 255.0
    kernel = parse_kernel_spec('g_d_2.0').kernel
    auto = photo_degradation(lr, None, kernel, 2, 'direct')
    assert auto['source'] == 'auto (colour)' and abs(auto['std'] * 255 - 8) < 1.6 and auto['jpeg_quality'] is None
    assert auto['son_jpeg'] is None
    given = photo_degradation(lr, None, kernel, 2, 'direct', noise=3.0)
    assert given == {'std': 3.0 / 255, 'source': 'given', 'jpeg_quality': None, 'son_jpeg': None, 'warning': None}
    blocky = cv2.imread(str(photos / 'blocky.jpg'))[..., ::-1] / 255.0
    info = photo_degradation(blocky, jpeg_quality(str(photos / 'blocky.jpg')), kernel, 2, 'direct')
    assert info['jpeg_quality'] == 30 and info['son_jpeg'] == 30 and 'JPEG quality 30' in info['warning']
    assert info['source'] == 'auto (matched)'
    assert photo_degradation(blocky, 30, kernel, 2, 'direct', jpeg='none')['son_jpeg'] is None
    assert photo_degradation(blocky, 30, kernel, 2, 'direct', jpeg=90)['son_jpeg'] == 90
    assert photo_degradation(lr, None, kernel, 2, 'direct', jpeg=90)['son_jpeg'] == 90


def test_cli_noise_flag_reports_reproduces_and_warns(photos, capsys):
    out = photos / 'out'
    inputs = [str(photos / name) for name in ('clean.png', 'noisy.png', 'blocky.jpg')]
    assert cli.main(inputs + ['-o', str(out), '--kernel', 'estimate', '--steps', '1', '--weights',
                              str(photos / 'w.pth')]) == 0
    printed = capsys.readouterr()
    printed = printed.out + printed.err
    assert 'noisy.png: noise std' in printed and '(auto (colour)) reproduced in the son' in printed
    assert 'blocky.jpg: ' in printed and 'JPEG quality 30 reproduced in the son' in printed
    assert 'clean.png: noise std' not in printed
    assert 'warning: ' + str(photos / 'blocky.jpg') + ': JPEG quality 30 (below 50)' in printed
    rows = {r['image']: r for r in csv.DictReader(open(out / 'metrics.csv'))}
    assert float(rows['clean.png']['noise']) == 0.0 and abs(float(rows['noisy.png']['noise']) - 8) < 1.6
    assert rows['blocky.jpg']['jpeg_quality'] == '30' and rows['noisy.png']['jpeg_quality'] == ''
    assert rows['blocky.jpg']['son_jpeg'] == '30' and rows['noisy.png']['son_jpeg'] == ''
    # A given level replaces the estimate; 0 is the official clean son.
    assert cli.main([inputs[1], '-o', str(out / 'given'), '--kernel', 'g_d_2.0', '--steps', '1', '--noise', '0',
                     '--weights', str(photos / 'w.pth')]) == 0
    assert float(next(csv.DictReader(open(out / 'given' / 'metrics.csv')))['noise']) == 0.0
    with pytest.raises(SystemExit, match=r"--noise 'loud': expected auto or a noise std in grey levels, 0..255"):
        cli.main([inputs[1], '-o', str(out / 'bad'), '--kernel', 'g_d_2.0', '--noise', 'loud', '--weights',
                  str(photos / 'w.pth')])


def test_app_reports_the_noise_it_reproduced_and_warns_of_heavy_jpeg(photos):
    from mzsr_plugin import app
    noisy = app.super_resolve_photo(str(photos / 'noisy.png'), 'estimate', None, 2, 1, str(photos / 'w.pth'), False,
                                    str(photos))
    assert '(auto (colour)) reproduced in the son' in noisy['info'] and 'Self-check on held-out crops' in noisy['info']
    # The app says what its default precision ran as, in mzsr-sr's words.
    assert f'precision {resolve_precision("auto", "cpu")}' in noisy['info']
    blocky = app.super_resolve_photo(str(photos / 'blocky.jpg'), 'g_d_2.0', None, 2, 1, str(photos / 'w.pth'), False,
                                     str(photos))
    assert '⚠ JPEG quality 30 (below 50)' in blocky['info']
    assert 'JPEG quality 30 reproduced in the son' in blocky['info']
