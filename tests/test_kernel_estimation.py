"""Blind mode: kernel estimators, ``--kernel estimate``, ``kernel: estimate``, the paired random-kernel dataset."""
import cv2
import numpy as np
import os
import pytest
import scipy.io
import skimage.data
import subprocess
import sys
import torch
from os import path as osp

from basicsr.data import build_dataset
from mzsr_plugin import cli
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.data.kernel_test_dataset import MZSRKernelTestDataset
from mzsr_plugin.data.kernels import anisotropic_gaussian_kernel
from mzsr_plugin.evaluation import degraded_case
from mzsr_plugin.kernel_estimation import DEFAULT_ESTIMATOR, ESTIMATORS, estimate_kernel
from mzsr_plugin.kernel_estimation.learned import estimate_learned_kernel, learned_scales
from mzsr_plugin.kernel_estimation.spectral import project_covariance
from mzsr_plugin.option_schema import KERNEL_TEST_DATASET
from helpers import write_images

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

pytestmark = pytest.mark.usefixtures('one_thread')


def lr_of(kernel, photo='astronaut'):
    case = degraded_case(photo, getattr(skimage.data, photo)(), kernel, 2)
    return case.lr[0].permute(1, 2, 0).numpy()


def kernel_psnr(estimate, truth):
    return 10 * np.log10(truth.max()**2 / np.mean((estimate - truth)**2))


@pytest.mark.parametrize('theta,l1,l2', [(0.0, 2.0, 2.0), (0.6, 4.0, 1.2), (2.0, 3.0, 0.8)])
def test_spectral_estimate_recovers_gaussian_kernels(theta, l1, l2):
    truth = anisotropic_gaussian_kernel(15, theta, l1, l2)
    kernel, info = estimate_kernel(lr_of(truth), 2, 'spectral')
    assert kernel.shape == (15, 15) and abs(kernel.sum() - 1) < 1e-5 and kernel.min() >= 0
    assert info['method'] == 'spectral' and info['seconds'] < 1.0
    # Much closer to the truth than a kernel of the wrong size or shape would be.
    assert kernel_psnr(kernel, truth) > 28
    # The wrong kernel: the other orientation when anisotropic, nearly no blur when isotropic.
    wrong = anisotropic_gaussian_kernel(15, theta + np.pi / 2, l1, l2) if l1 != l2 else \
        anisotropic_gaussian_kernel(15, 0, 0.3, 0.3)
    assert kernel_psnr(kernel, truth) > kernel_psnr(wrong, truth) + 3


def test_estimates_are_centred_and_inside_the_training_range():
    sigma = project_covariance(np.array([[-1.0, 0.0], [0.0, 50.0]]), 0.2, 5.0)
    assert np.allclose(np.linalg.eigvalsh(sigma), [0.2, 5.0])
    kernel, _ = estimate_kernel(lr_of(anisotropic_gaussian_kernel(15, 0.3, 3.0, 1.0), 'coffee'), 2)
    coords = np.arange(15) - 7
    assert abs((kernel.sum(0) * coords).sum()) < 1e-6 and abs((kernel.sum(1) * coords).sum()) < 1e-6


def test_kernelgan_baseline_is_seeded_and_returns_a_kernel():
    lr = lr_of(anisotropic_gaussian_kernel(15, 0.0, 2.0, 2.0))[:64, :64]
    first, info = estimate_kernel(lr, 2, 'kernelgan', iterations=20, seed=3)
    again, _ = estimate_kernel(lr, 2, 'kernelgan', iterations=20, seed=3)
    assert first.shape == (15, 15) and abs(first.sum() - 1) < 1e-5 and first.min() >= 0
    np.testing.assert_array_equal(first, again)
    assert info['method'] == 'kernelgan' and tuple(ESTIMATORS) == ('learned', 'spectral', 'kernelgan')


@pytest.mark.parametrize('image,message', [
    (np.full((64, 64, 3), 0.5), 'the image is flat'),
    (np.random.default_rng(0).random((20, 40, 3)), 'the image is 40x20; kernel estimation needs at least 32'),
])
@pytest.mark.parametrize('method', ESTIMATORS)
def test_images_without_blur_information_are_refused(image, message, method):
    with pytest.raises(ValueError, match=message):
        estimate_kernel(image, 2, method, iterations=2)


def test_strong_noise_gives_a_warning_and_still_a_valid_kernel():
    noisy = np.clip(lr_of(anisotropic_gaussian_kernel(15, 0, 2, 2)) + np.random.default_rng(1).normal(
        0, 0.2, (256, 256, 3)), 0, 1)
    kernel, info = estimate_kernel(noisy, 2)
    assert 'noise or compression dominates' in info['warning'] and np.isfinite(kernel).all()
    gray, _ = estimate_kernel(lr_of(anisotropic_gaussian_kernel(15, 0, 2, 2))[..., 0], 2)  # grayscale works too
    assert gray.shape == (15, 15)


@pytest.fixture
def photo(tmp_path):
    lr = lr_of(anisotropic_gaussian_kernel(15, 0.6, 3.5, 1.2), 'chelsea')[:96, :128]
    cv2.imwrite(str(tmp_path / 'cat.png'), (lr[..., ::-1] * 255).round().astype(np.uint8))
    cv2.imwrite(str(tmp_path / 'flat.png'), np.full((64, 64, 3), 100, np.uint8))
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, tmp_path / 'w.pth')
    return tmp_path


def test_cli_kernel_estimate_writes_the_kernel_and_shows_it(photo, capsys):
    out = photo / 'out'
    cli.main([str(photo / 'cat.png'), '-o', str(out), '--kernel', 'estimate', '--steps', '1', '--compare',
              '--weights', str(photo / 'w.pth')])
    kernel = scipy.io.loadmat(out / 'cat_kernel.mat')['kernel']
    assert kernel.shape == (15, 15) and abs(kernel.sum() - 1) < 1e-5
    assert cv2.imread(str(out / 'cat_kernel.png')).shape == (120, 120, 3)
    assert cv2.imread(str(out / 'cat.png')).shape == (192, 256, 3)
    assert 'kernel estimated (learned) in' in capsys.readouterr().out
    assert osp.getsize(out / 'cat_compare.png') > 10000
    with pytest.raises(SystemExit, match=r'flat\.png: the image is flat \(constant\)'):
        cli.main([str(photo / 'flat.png'), '-o', str(photo / 'out2'), '--kernel', 'estimate', '--weights',
                  str(photo / 'w.pth')])
    with pytest.raises(SystemExit):
        cli.main([str(photo / 'cat.png'), '-o', str(out), '--kernel', 'estimate', '--downsample', 'bicubic'])
    assert 'models direct sub-sampling' in capsys.readouterr().err


def test_dataset_kernel_estimate_runs_blind_from_given_lr(photo):
    lq_dir = photo / 'lq'
    os.makedirs(lq_dir)
    os.replace(photo / 'cat.png', lq_dir / 'cat.png')
    dataset = MZSRKernelTestDataset({'name': 'blind', 'dataroot_lq': str(lq_dir), 'io_backend': {'type': 'disk'},
                                     'scale': 2, 'kernel': 'estimate'})
    item = dataset[0]
    assert item['kernel'].shape == (15, 15) and abs(float(item['kernel'].sum()) - 1) < 1e-5
    assert kernel_psnr(item['kernel'].numpy(), anisotropic_gaussian_kernel(15, 0.6, 3.5, 1.2)) > 25
    with pytest.raises(ValueError, match='kernel: estimate needs dataroot_lq'):
        MZSRKernelTestDataset({'name': 'blind', 'dataroot_gt': str(lq_dir), 'io_backend': {'type': 'disk'},
                               'scale': 2, 'kernel': 'estimate'})
    assert KERNEL_TEST_DATASET.key('kernel_estimator').check.values == tuple(ESTIMATORS)


def test_random_kernel_pair_dataset_gives_lq_gt_and_kernel(tmp_path):
    folder = tmp_path / 'hr'
    os.makedirs(folder)
    cv2.imwrite(str(folder / 'a.png'), (skimage.data.astronaut()[:80, :80, ::-1]))
    np.random.seed(0)
    dataset = build_dataset({'name': 'pairs', 'type': 'MZSRRandomKernelPairDataset', 'dataroot_gt': str(folder),
                             'io_backend': {'type': 'disk'}, 'scale': 2, 'gt_size': 32, 'phase': 'train',
                             'lambda_min': 0.2, 'kernel_size': 11})
    first, second = dataset[0], dataset[0]
    assert first['lq'].shape == (3, 16, 16) and first['gt'].shape == (3, 32, 32)
    assert first['kernel'].shape == (11, 11) and abs(float(first['kernel'].sum()) - 1) < 1e-5
    assert not torch.equal(first['kernel'], second['kernel'])  # a new kernel per sample
    with pytest.raises(ValueError, match="unknown key 'lamda_min' \\(did you mean 'lambda_min'\\?\\)"):
        build_dataset({'name': 'pairs', 'type': 'MZSRRandomKernelPairDataset', 'dataroot_gt': str(folder),
                       'io_backend': {'type': 'disk'}, 'scale': 2, 'gt_size': 32, 'lamda_min': 0.2})


def test_app_photo_tab_accepts_estimate(photo):
    from mzsr_plugin import app
    result = app.super_resolve_photo(str(photo / 'cat.png'), 'estimate', None, 2, 1, str(photo / 'w.pth'), False,
                                     str(photo))
    assert 'kernel estimate (learned)' in result['info']
    assert scipy.io.loadmat(result['kernel_mat'])['kernel'].shape == (15, 15)
    with pytest.raises(app.AppError, match='the image is flat'):
        app.super_resolve_photo(str(photo / 'flat.png'), 'estimate', None, 2, 1, str(photo / 'w.pth'), False,
                                str(photo))


def test_app_clean_photo_tab_reports_psnr_per_step(photo, tmp_path):
    from mzsr_plugin import app
    result = app.try_clean_photo('chelsea', None, 'g_d_2.0', None, 2, 2, str(photo / 'w.pth'), str(tmp_path))
    assert [row[0] for row in result['table']] == ['bicubic', 'MZSR 0', 'MZSR 1', 'MZSR 2']
    assert abs(float(result['table'][0][1]) - 31.84) < 0.01  # bicubic of skimage chelsea, g^d_2.0, x2
    assert 'after 2 step(s)' in result['info'] and osp.getsize(result['plot']) > 5000
    with pytest.raises(app.AppError, match="photo 'lena': choose one of astronaut, chelsea, coffee"):
        app.try_clean_photo('lena', None, 'g_d_2.0', None, 2, 1, None, str(tmp_path))


@pytest.mark.parametrize('theta,l1,l2', [(0.0, 2.0, 2.0), (0.6, 4.0, 1.2), (2.0, 3.0, 0.8)])
def test_learned_estimate_recovers_gaussian_kernels_deterministically(theta, l1, l2):
    truth = anisotropic_gaussian_kernel(15, theta, l1, l2)
    lr = lr_of(truth)
    kernel, info = estimate_kernel(lr, 2, 'learned')
    assert info['method'] == 'learned' and kernel.shape == (15, 15) and abs(kernel.sum() - 1) < 1e-5
    np.testing.assert_array_equal(kernel, estimate_kernel(lr, 2, 'learned')[0])
    assert kernel_psnr(kernel, truth) > 28
    wrong = anisotropic_gaussian_kernel(15, theta + np.pi / 2, l1, l2) if l1 != l2 else \
        anisotropic_gaussian_kernel(15, 0, 0.3, 0.3)
    assert kernel_psnr(kernel, truth) > kernel_psnr(wrong, truth) + 3


def test_learned_estimator_serves_x2_and_says_when_other_scales_fall_back():
    assert learned_scales() == [2] and DEFAULT_ESTIMATOR == 'learned'
    lr = lr_of(anisotropic_gaussian_kernel(15, 0.3, 5.0, 2.0))
    for scale in (3, 4):
        kernel, info = estimate_kernel(lr, scale)
        assert info['method'] == f'spectral (no learned regressor for x{scale})'
        np.testing.assert_array_equal(kernel, estimate_kernel(lr, scale, 'spectral')[0])
    with pytest.raises(ValueError, match='no regressor for x3 \\(it has x2\\); use the spectral estimator'):
        estimate_learned_kernel(lr, 3)
    with pytest.raises(FileNotFoundError, match='kernel estimator weights not found: /nowhere.pth'):
        estimate_learned_kernel(lr, 2, path='/nowhere.pth')
    with pytest.raises(ValueError, match="must be one of \\('learned', 'spectral', 'kernelgan'\\), got 'psf'"):
        estimate_kernel(lr, 2, 'psf')


def test_train_kernel_estimator_script_writes_regressors_the_estimator_loads(tmp_path):
    write_images(tmp_path / 'hr', 12, 96, 96)
    out = tmp_path / 'ke.pth'
    result = subprocess.run([sys.executable, osp.join(ROOT, 'scripts', 'train_kernel_estimator.py'), '--train-dirs',
                             str(tmp_path / 'hr'), '--scales', '2', '--samples', '24', '--val-samples', '6', '--epochs',
                             '2', '--out', str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    row = next(line.split() for line in result.stdout.splitlines() if line.split()[:1] == ['2'])
    assert row[1] == '24' and all(float(v) > 0 for v in row[3:5])
    state = torch.load(out, weights_only=True)
    assert set(state['scales']) == {2} and state['record']['train_images'] == 11
    assert set(state['scales'][2]['val_cov_error']) == {'spectral', 'learned'}
    kernel, _ = estimate_learned_kernel(lr_of(anisotropic_gaussian_kernel(15, 0, 2, 2)), 2, path=str(out))
    assert kernel.shape == (15, 15) and abs(kernel.sum() - 1) < 1e-5
    few = subprocess.run([sys.executable, osp.join(ROOT, 'scripts', 'train_kernel_estimator.py'), '--train-dirs',
                          str(tmp_path / 'nothing')], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert few.returncode != 0 and '0 images found; at least 10 are needed' in few.stderr


def test_downsampling_probe_reports_held_out_accuracy_and_saves_nothing(tmp_path):
    write_images(tmp_path / 'hr', 12, 96, 96)
    out = tmp_path / 'never.pth'
    result = subprocess.run([sys.executable, osp.join(ROOT, 'scripts', 'train_kernel_estimator.py'), '--train-dirs',
                             str(tmp_path / 'hr'), '--probe-downsampling', '--clean', '--samples', '40',
                             '--val-samples', '30', '--epochs', '2', '--out', str(out)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'x2: 40 training / 30 held-out samples (clean: no noise, no JPEG)' in result.stdout
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()[:1] in (
        ['direct'], ['matlab'], ['cv2_area'])}
    assert 'direct' in rows and all(0 <= float(row[2]) <= 1 for row in rows.values())
    assert result.stdout.count('of direct images would take the bicubic model') == 3 and not out.exists()
