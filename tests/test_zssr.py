"""The ZSSR baseline: the official constants, learning-rate policy, augmentation, training and final test."""
import numpy as np
import pytest
import torch

from helpers import smooth_image
from mzsr_plugin.data.degradations import degrade_pt
from mzsr_plugin.data.kernels import isotropic_gaussian_kernel
from mzsr_plugin import zssr
from mzsr_plugin.zssr import ZSSR_DEFAULTS, random_father, should_reduce_lr, slope_and_std, zssr_super_resolve

KERNEL = isotropic_gaussian_kernel(9, 1.0)
# A small, fast network for runs whose subject is the loop, not the official capacity.
TINY = {'width': 8, 'depth': 3, 'crop_size': 24}


pytestmark = pytest.mark.usefixtures('one_thread')


def _lr_image(size=32, seed=0):
    img = smooth_image(np.random.default_rng(seed), size, size)[..., ::-1].astype(np.float32) / 255
    return torch.from_numpy(img.copy()).permute(2, 0, 1).unsqueeze(0)


def test_defaults_are_the_official_given_kernel_config():
    official = {
        'width': 64,
        'depth': 8,
        'init_variance': 0.1,
        'learning_rate': 1e-3,
        'max_iters': 3000,
        'min_iters': 256,
        'min_learning_rate': 9e-6,
        'learning_rate_change_ratio': 1.5,
        'learning_rate_policy_check_every': 60,
        'learning_rate_slope_range': 256,
        'run_test_every': 50,
        'crop_size': 128,
        'noise_std': 0.0,
        'augment_leave_as_is_probability': 0.05,
        'augment_no_interpolate_probability': 0.45,
        'augment_min_scale': 0.5,
        'augment_scale_diff_sigma': 0.25,
        'augment_shear_sigma': 0.1,
        'augment_allow_rotation': False,
        'output_flip': False,
        'back_projection_iters': 2
    }
    assert {key: ZSSR_DEFAULTS[key] for key in official} == official


def test_slope_std_uses_the_old_numpy_denominator():
    steps = np.array([50, 100, 150, 200, 250.0])
    errors = np.array([5.0, 4.1, 3.2, 2.0, 1.1]) * 1e-3
    slope, std = slope_and_std(steps, errors)
    (ref_slope, _), cov = np.polyfit(steps, errors, 1, cov=True)
    assert slope == pytest.approx(ref_slope)
    # NumPy >= 1.16 scales by RSS / (n - 2); the official ran with RSS / (n - 4)
    assert std == pytest.approx(np.sqrt(cov[0, 0] * (5 - 2) / (5 - 4)))


def test_lr_policy_decays_on_a_flat_noisy_curve_only():
    rng = np.random.default_rng(0)
    steps = np.arange(50, 300, 50)
    flat = 2e-3 + 1e-5 * rng.standard_normal(5)
    falling = 2e-3 - 2e-6 * steps + 1e-5 * rng.standard_normal(5)
    rising = 2e-3 + 2e-6 * steps
    assert should_reduce_lr(steps, flat)
    assert not should_reduce_lr(steps, falling)
    assert should_reduce_lr(steps, rising)
    with pytest.raises(ValueError, match='at least 5'):
        should_reduce_lr(steps[:4], flat[:4])


def test_policy_schedule_divides_by_ten_and_stops_below_min_lr(monkeypatch):
    calls = []

    def always(steps, errors, ratio):
        calls.append((list(steps), ratio))
        return True

    monkeypatch.setattr(zssr, 'should_reduce_lr', always)
    _, info = zssr_super_resolve(
        _lr_image(16),
        KERNEL,
        2,
        max_iters=500,
        seed=0,
        learning_rate=1e-8,
        min_learning_rate=1e-10,
        min_iters=20,
        learning_rate_policy_check_every=10,
        run_test_every=2,
        learning_rate_slope_range=10,
        **TINY)
    # Checks at iterations i with (i + 1) % 10 == 0 and more than min_iters after the last change; 3 decays
    # take 1e-8 below 1e-10, which stops the run.
    assert info['lr_changes'] == [29, 59, 89]
    assert info['iterations'] == 90
    assert info['final_lr'] == pytest.approx(1e-11)
    # The fit sees the last slope_range // run_test_every = 5 reconstruction errors.
    assert calls[0] == ([20, 22, 24, 26, 28], 1.5)
    assert len(calls) == 3


def test_policy_never_decays_on_a_falling_curve(monkeypatch):
    monkeypatch.setattr(zssr, 'should_reduce_lr', lambda steps, errors, ratio: False)
    _, info = zssr_super_resolve(
        _lr_image(16),
        KERNEL,
        2,
        max_iters=40,
        seed=0,
        min_iters=5,
        learning_rate_policy_check_every=10,
        run_test_every=2,
        learning_rate_slope_range=10,
        **TINY)
    assert info['lr_changes'] == [] and info['iterations'] == 40
    assert info['final_lr'] == ZSSR_DEFAULTS['learning_rate']


def test_short_run_reduces_the_reconstruction_error():
    lr = _lr_image(32)
    sr, info = zssr_super_resolve(lr, KERNEL, 2, max_iters=60, seed=1, run_test_every=10, width=16, depth=4)
    assert sr.shape == (1, 3, 64, 64)
    assert 0 <= sr.min() and sr.max() <= 1
    assert info['iterations'] == 60 and len(info['loss']) == 60
    assert info['test_steps'] == [0, 10, 20, 30, 40, 50]
    assert info['test_errors'][-1] < 0.9 * info['test_errors'][0]
    assert np.mean(info['loss'][-10:]) < np.mean(info['loss'][:10])
    assert info['final_lr'] == ZSSR_DEFAULTS['learning_rate'] and info['seconds'] > 0


def test_seeded_runs_are_deterministic():
    lr = _lr_image(20)
    a, info_a = zssr_super_resolve(lr, KERNEL, 2, max_iters=5, seed=3, **TINY)
    b, info_b = zssr_super_resolve(lr, KERNEL, 2, max_iters=5, seed=3, **TINY)
    c, _ = zssr_super_resolve(lr, KERNEL, 2, max_iters=5, seed=4, **TINY)
    assert torch.equal(a, b) and info_a['loss'] == info_b['loss']
    assert not torch.equal(a, c)


def test_back_projection_makes_the_sr_consistent_with_the_lr():
    lr = _lr_image(20)

    def reconstruction_error(bp_iters):
        sr, _ = zssr_super_resolve(lr, KERNEL, 2, max_iters=3, seed=0, back_projection_iters=bp_iters, **TINY)
        return float((degrade_pt(sr, KERNEL, 2) - lr).abs().mean())

    assert reconstruction_error(4) < 0.5 * reconstruction_error(0)


def test_output_flip_and_tiling():
    lr = _lr_image(20)
    flipped, _ = zssr_super_resolve(lr, KERNEL, 3, max_iters=2, seed=0, output_flip=True, **TINY)
    plain, _ = zssr_super_resolve(lr, KERNEL, 3, max_iters=2, seed=0, **TINY)
    tiled, _ = zssr_super_resolve(lr, KERNEL, 3, max_iters=2, seed=0, tile=8, **TINY)
    assert flipped.shape == plain.shape == (1, 3, 60, 60)
    assert not torch.allclose(flipped, plain, atol=1e-4)
    assert (tiled - plain).abs().max() < 1e-5


def test_fathers_are_crops_of_the_input():
    img = torch.rand(1, 3, 40, 30)
    rng = np.random.default_rng(0)
    plain = dict(ZSSR_DEFAULTS, crop_size=16, augment_leave_as_is_probability=1.0)
    father = random_father(img, plain, rng)
    assert father.shape == (1, 3, 16, 16)
    windows = img.unfold(2, 16, 1).unfold(3, 16, 1)  # (1, 3, 25, 15, 16, 16)
    assert any(torch.equal(father[0], windows[0, :, i, j]) for i in range(25) for j in range(15))
    capped = random_father(img, ZSSR_DEFAULTS, rng)
    assert capped.shape[-2] <= 40 and capped.shape[-1] <= 30
    affine = dict(ZSSR_DEFAULTS, augment_leave_as_is_probability=0.0, augment_no_interpolate_probability=0.0)
    shapes = [random_father(img, affine, rng).shape for _ in range(20)]
    assert all(1 <= h <= 128 and 1 <= w <= 128 for _, _, h, w in shapes)
    assert len(set(shapes)) > 1  # random scales give various crop sizes
    big = torch.rand(1, 3, 1000, 1000)
    assert random_father(big, ZSSR_DEFAULTS, rng).shape == (1, 3, 128, 128)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match='warp_speed'):
        zssr_super_resolve(_lr_image(16), KERNEL, 2, warp_speed=2)
    with pytest.raises(ValueError, match='run_test_every'):
        zssr_super_resolve(_lr_image(16), KERNEL, 2, run_test_every=100)
    with pytest.raises(ValueError, match='init'):
        zssr_super_resolve(_lr_image(16), KERNEL, 2, max_iters=1, init='xavier', **TINY)
