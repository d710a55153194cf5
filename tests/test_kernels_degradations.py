"""Gaussian kernels, kernel files and the MZSR degradation (NumPy and PyTorch), against the official test inputs."""
import cv2
import glob
import math
import numpy as np
import pytest
import scipy.io
import scipy.ndimage
import torch
import warnings
from os import path as osp

from basicsr.utils.matlab_functions import imresize
from conftest import shared_path
from helpers import smooth_image
from mzsr_plugin.data.degradations import add_noise, blur_pt, degrade_np, degrade_pt, jpeg_compress
from mzsr_plugin.data.kernels import (anisotropic_gaussian_kernel, div2krk_kernel, isotropic_gaussian_kernel,
                                      load_kernel, parse_kernel_spec, random_gaussian_kernel, random_gaussian_params,
                                      save_kernel, validate_kernel)


def kernel_covariance(kernel):
    """Covariance of a kernel seen as a density over (x = column, y = row) offsets from the grid centre."""
    size = kernel.shape[0]
    offsets = np.arange(size) - (size - 1) / 2
    x, y = np.meshgrid(offsets, offsets)
    k = kernel.astype(np.float64)
    return np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])


@pytest.mark.parametrize('size,theta,lambda_1,lambda_2', [(15, 0.3, 5.0, 1.2), (21, 2.0, 2.0, 2.0), (4, 1.0, 3., 1.)])
def test_kernel_is_normalised_float32(size, theta, lambda_1, lambda_2):
    kernel = anisotropic_gaussian_kernel(size, theta, lambda_1, lambda_2)
    assert kernel.shape == (size, size) and kernel.dtype == np.float32
    assert abs(kernel.sum() - 1) < 1e-6 and kernel.min() > 0
    # centrosymmetric: the Gaussian is centred on the grid centre
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-8)


def test_kernel_covariance_matches_theta_and_lambdas():
    theta, lambda_1, lambda_2 = 0.6, 4.0, 1.5
    kernel = anisotropic_gaussian_kernel(41, theta, lambda_1, lambda_2)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    np.testing.assert_allclose(kernel_covariance(kernel), rot @ np.diag([lambda_1, lambda_2]) @ rot.T, atol=1e-4)
    np.testing.assert_allclose(kernel_covariance(isotropic_gaussian_kernel(41, 2.0)), 2.0 * np.eye(2), atol=1e-4)
    # theta = 0 puts lambda_1 along x (columns): the kernel is wider than tall
    wide = anisotropic_gaussian_kernel(41, 0.0, 6.0, 1.0)
    assert kernel_covariance(wide)[0, 0] == pytest.approx(6.0, abs=1e-3)


def test_kernel_rejects_bad_parameters():
    with pytest.raises(ValueError, match='variances must be > 0'):
        anisotropic_gaussian_kernel(15, 0.0, 2.0, 0.0)
    with pytest.raises(ValueError, match='size'):
        isotropic_gaussian_kernel(0, 1.0)


def test_isotropic_kernel_reproduces_official_kernel_mat():
    official = scipy.io.loadmat(shared_path('mzsr_official', 'Input', 'g20', 'kernel.mat'))['kernel']
    assert official.shape == (21, 21)
    # measured: 3.2e-9 (float32 rounding of ours)
    assert np.abs(isotropic_gaussian_kernel(21, 2.0) - official).max() < 1e-8


@pytest.mark.parametrize('scale', [2, 4])
def test_random_parameters_follow_official_ranges(scale):
    rng = np.random.default_rng(0)
    params = np.array([random_gaussian_params(scale, rng) for _ in range(2000)])
    theta, lambda_1, lambda_2 = params.T
    assert theta.min() >= 0 and theta.max() < math.pi and theta.max() > 0.95 * math.pi
    assert lambda_1.min() >= 1 and lambda_1.max() <= 2.5 * scale and lambda_1.max() > 0.95 * 2.5 * scale
    assert np.all(lambda_2 >= 1) and np.all(lambda_2 <= lambda_1)
    iso = np.array([random_gaussian_params(scale, rng, isotropic_prob=1.0) for _ in range(50)])
    np.testing.assert_array_equal(iso[:, 1], iso[:, 2])


def test_random_kernel_is_reproducible():
    a = random_gaussian_kernel(2, rng=np.random.default_rng(3))
    b = random_gaussian_kernel(2, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (15, 15) and abs(a.sum() - 1) < 1e-6
    np.random.seed(5)
    c = random_gaussian_kernel(3, size=11)
    np.random.seed(5)
    np.testing.assert_array_equal(c, random_gaussian_kernel(3, size=11))
    assert not np.array_equal(a, random_gaussian_kernel(2, rng=np.random.default_rng(4)))


@pytest.mark.parametrize('ext,atol', [('.mat', 1e-8), ('.npy', 0), ('.png', 2e-5)])
def test_save_load_round_trip(tmp_path, ext, atol):
    kernel = anisotropic_gaussian_kernel(15, 0.7, 4.0, 1.3)
    path = str(tmp_path / f'k{ext}')
    save_kernel(path, kernel)
    loaded = load_kernel(path)
    assert loaded.dtype == np.float32 and loaded.shape == (15, 15)
    np.testing.assert_allclose(loaded, kernel, atol=atol, rtol=0)
    if ext == '.mat':
        assert 'kernel' in scipy.io.loadmat(path)


def test_load_mat_with_zssr_key_and_bad_files(tmp_path):
    kernel = isotropic_gaussian_kernel(9, 1.0)
    scipy.io.savemat(str(tmp_path / 'zssr.mat'), {'Kernel': kernel})
    np.testing.assert_allclose(load_kernel(str(tmp_path / 'zssr.mat')), kernel, atol=1e-7)
    scipy.io.savemat(str(tmp_path / 'other.mat'), {'k': kernel})
    with pytest.raises(ValueError, match=r"other\.mat.*found \['k'\]"):
        load_kernel(str(tmp_path / 'other.mat'))
    with pytest.raises(ValueError, match=r'unsupported kernel file type "\.txt"'):
        load_kernel(str(_touch(tmp_path / 'k.txt')))
    with pytest.raises(FileNotFoundError, match='missing.mat'):
        load_kernel(str(tmp_path / 'missing.mat'))
    color = np.zeros((5, 5, 3), np.uint8)
    color[2, 2] = (10, 20, 30)
    cv2.imwrite(str(tmp_path / 'color.png'), color)
    with pytest.raises(ValueError, match='must be grayscale'):
        load_kernel(str(tmp_path / 'color.png'))


def _touch(path):
    path.write_text('0')
    return path


def test_load_zssr_example_kernel():
    path = glob.glob(osp.join(shared_path('kernels', 'kernel_example'), '*_0.mat'))[0]
    assert 'Kernel' in scipy.io.loadmat(path)
    kernel = load_kernel(path)
    assert kernel.shape == (9, 9) and kernel.dtype == np.float32 and abs(kernel.sum() - 1) < 1e-6


def test_validate_kernel_errors_name_the_source():
    good = isotropic_gaussian_kernel(5, 1.0)
    with pytest.raises(ValueError, match='src.npy: a kernel must be a 2-D array'):
        validate_kernel(good[None], 'src.npy')
    bad = good.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match='src.npy: the kernel has non-finite'):
        validate_kernel(bad, 'src.npy')
    bad[0, 0] = -0.1
    with pytest.raises(ValueError, match='src.npy: the kernel has negative values'):
        validate_kernel(bad, 'src.npy')
    with pytest.raises(ValueError, match='src.npy: the kernel sums to 0'):
        validate_kernel(np.zeros((3, 3)), 'src.npy')
    with pytest.warns(UserWarning, match='src.npy: the kernel sums to 2'):
        fixed = validate_kernel(2 * good, 'src.npy')
    np.testing.assert_allclose(fixed, good, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # within the 1e-3 tolerance: normalised without a warning
        np.testing.assert_allclose(validate_kernel(good * 1.0005, 'src.npy').sum(), 1, atol=1e-6)


def test_parse_kernel_spec():
    spec = parse_kernel_spec('g_d_2.0')
    assert spec.downsample == 'direct' and spec.kernel.shape == (21, 21)
    np.testing.assert_array_equal(spec.kernel, isotropic_gaussian_kernel(21, 2.0))
    np.testing.assert_array_equal(parse_kernel_spec('gd2.0').kernel, spec.kernel)
    np.testing.assert_array_equal(parse_kernel_spec('g_d_0.2', size=15).kernel, isotropic_gaussian_kernel(15, 0.2))
    bicubic = parse_kernel_spec('g_b_1.3')
    assert bicubic.downsample == 'bicubic'
    np.testing.assert_array_equal(bicubic.kernel, isotropic_gaussian_kernel(21, 1.3))
    aniso = parse_kernel_spec('aniso_0.5_4.0_1.5')
    assert aniso.downsample == 'direct'
    np.testing.assert_array_equal(aniso.kernel, anisotropic_gaussian_kernel(21, 0.5, 4.0, 1.5))
    assert parse_kernel_spec('a_b_0.5_4_1.5').downsample == 'bicubic'
    for bad in ('g_x_2.0', 'gaussian', 'aniso_1_2', 'g_d_'):
        with pytest.raises(ValueError, match=f'unknown kernel spec "{bad}".*g_d_<variance>'):
            parse_kernel_spec(bad)


KERNELS = [isotropic_gaussian_kernel(21, 2.0), anisotropic_gaussian_kernel(15, 1.1, 5.0, 1.0), np.ones((4, 6)) / 24]


@pytest.mark.parametrize('mode', ['direct', 'bicubic'])
@pytest.mark.parametrize('height,width,scale', [(33, 40, 2), (32, 31, 3), (20, 24, 4)])
def test_torch_matches_numpy(mode, height, width, scale):
    rng = np.random.default_rng(height)
    img = rng.random((height, width, 3))
    batch = torch.from_numpy(img.transpose(2, 0, 1)).float()[None]
    for kernel in KERNELS:
        ref = degrade_np(img, kernel, scale, mode)
        out = degrade_pt(batch, kernel, scale, mode)
        assert out.shape == (1, 3, math.ceil(height / scale), math.ceil(width / scale))
        assert out.dtype == torch.float32
        np.testing.assert_allclose(out[0].numpy().transpose(1, 2, 0), ref, atol=2e-6, rtol=0)


def test_torch_per_image_kernels_and_gradients():
    rng = np.random.default_rng(1)
    imgs = torch.from_numpy(rng.random((2, 3, 17, 18))).requires_grad_()
    kernels = torch.from_numpy(np.stack(KERNELS[1:2] + [isotropic_gaussian_kernel(15, 0.5)]))
    out = degrade_pt(imgs, kernels, 2)
    for i in range(2):
        ref = degrade_np(imgs[i].detach().numpy().transpose(1, 2, 0), kernels[i].numpy(), 2)
        np.testing.assert_allclose(out[i].detach().numpy().transpose(1, 2, 0), ref, atol=1e-12)
    out.sum().backward()
    assert imgs.grad.shape == imgs.shape and torch.all(imgs.grad >= 0) and imgs.grad.sum() > 0
    with pytest.raises(ValueError, match=r'kernel must have shape \(kh, kw\) or \(N=2'):
        degrade_pt(imgs, kernels[:1].expand(3, -1, -1), 2)


def test_symmetric_padding_wider_than_image():
    # A kernel larger than the image makes scipy mirror several times; torch's 'reflect' would differ.
    img = np.random.default_rng(2).random((5, 6))
    kernel = anisotropic_gaussian_kernel(15, 0.4, 9.0, 3.0)
    ref = scipy.ndimage.correlate(img, kernel.astype(np.float64), mode='reflect')
    out = blur_pt(torch.from_numpy(img)[None, None], kernel)[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-7)


def test_bicubic_and_direct_with_identity_kernel():
    img = np.random.default_rng(3).random((24, 30, 3)).astype(np.float32)
    delta = np.ones((1, 1))
    np.testing.assert_array_equal(degrade_np(img, delta, 3, 'direct'), img[::3, ::3])
    np.testing.assert_allclose(degrade_np(img, delta, 3, 'bicubic'), imresize(img, 1 / 3), atol=2e-6)
    gray = degrade_np(img[..., 0].astype(np.float64), isotropic_gaussian_kernel(7, 1.0), 2, 'bicubic')
    assert gray.shape == (12, 15) and gray.dtype == np.float64


def test_degrade_rejects_bad_arguments():
    img = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(ValueError, match='float in'):
        degrade_np(np.zeros((8, 8, 3), np.uint8), np.ones((3, 3)) / 9, 2)
    with pytest.raises(ValueError, match='downsample mode must be one of'):
        degrade_np(img, np.ones((3, 3)) / 9, 2, 'nearest')
    with pytest.raises(ValueError, match='scale must be a positive integer'):
        degrade_pt(torch.zeros(1, 3, 8, 8), np.ones((3, 3)) / 9, 1.5)


def test_add_noise():
    img = np.full((64, 64, 3), 0.5, np.float32)
    noisy = add_noise(img, 0.1, rng=np.random.default_rng(0))
    assert noisy.dtype == np.float32 and abs(float(np.std(noisy - img)) - 0.1) < 0.005
    assert np.all(add_noise(np.ones((8, 8)), 0.5, rng=np.random.default_rng(0)) <= 1)
    np.testing.assert_array_equal(add_noise(img, 0), img)
    with pytest.raises(ValueError, match='noise_level must be >= 0'):
        add_noise(img, -1)


def official_g20_pairs():
    gt_dir = shared_path('mzsr_official', 'GT', 'Set5')
    lr_dir = shared_path('mzsr_official', 'Input', 'g20', 'Set5')
    pairs = []
    for gt_path in sorted(glob.glob(osp.join(gt_dir, '*_GT.png'))):
        lr_path = osp.join(lr_dir, osp.basename(gt_path).replace('_GT.png', '.png'))
        assert osp.isfile(lr_path), lr_path
        pairs.append((cv2.imread(gt_path), cv2.imread(lr_path)))
    assert len(pairs) == 5
    return pairs


def to_uint8(img):
    return np.clip(np.round(img * 255.), 0, 255).astype(np.uint8)


def test_reproduces_official_g20_inputs_bit_exactly():
    kernel = load_kernel(shared_path('mzsr_official', 'Input', 'g20', 'kernel.mat'))
    ours = isotropic_gaussian_kernel(21, 2.0)
    float32_mismatches = 0
    for gt, lr in official_g20_pairs():
        np.testing.assert_array_equal(to_uint8(degrade_np(gt / 255., kernel, 2)), lr)
        np.testing.assert_array_equal(to_uint8(degrade_np(gt / 255., ours, 2)), lr)
        batch = torch.from_numpy(gt.transpose(2, 0, 1) / 255.)[None]
        np.testing.assert_array_equal(to_uint8(degrade_pt(batch, kernel, 2)[0].numpy().transpose(1, 2, 0)), lr)
        # float32 moves a few .5 rounding ties by one grey level (measured: 1 pixel in 4 of the 5 images)
        diff = to_uint8(degrade_pt(batch.float(), kernel, 2)[0].numpy().transpose(1, 2, 0)).astype(int) - lr
        assert np.abs(diff).max() <= 1
        float32_mismatches += int(np.count_nonzero(diff))
    assert float32_mismatches <= 10


def test_div2krk_style_kernels_leave_the_gaussian_family():
    kernels = [div2krk_kernel(2, np.random.default_rng(i)) for i in range(20)]
    assert {k.shape for k in kernels} == {(15, 15)} and div2krk_kernel(4, np.random.default_rng(0)).shape == (21, 21)
    assert all(abs(float(k.sum()) - 1) < 1e-5 and float(k.min()) >= 0 for k in kernels)
    # Without the per-pixel noise the same draw is the plain Gaussian; with it, pixels differ by up to 25%.
    plain, noisy = (div2krk_kernel(2, np.random.default_rng(3), noise=n) for n in (0.0, 0.25))
    ratio = (noisy / noisy.sum()) / (plain / plain.sum())
    assert 0.05 < float(np.abs(ratio / ratio.mean() - 1).max()) < 0.6
    # Variances of x4 kernels are wider (second moments of the kernel).
    coords = np.arange(15) - 7
    spread = [float((k * coords[None] ** 2).sum() + (k * coords[:, None] ** 2).sum()) for k in kernels]
    assert 0.35 * 2 - 0.05 < min(spread) and max(spread) < 5 * 2 + 0.05


def test_jpeg_compress_loses_more_at_lower_quality():
    img = smooth_image(np.random.default_rng(0), 64, 64)[..., ::-1] / 255.0
    errors = [float(np.abs(jpeg_compress(img, q) - img).mean()) for q in (95, 85, 30)]
    assert errors[0] < errors[1] < errors[2] and jpeg_compress(img, 85).dtype == np.float32
    with pytest.raises(ValueError, match='JPEG quality must be in 1..100, got 0'):
        jpeg_compress(img, 0)
