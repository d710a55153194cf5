"""Big photos (#30 item 5): the large photos' crop budget, and the full-size copies a run no longer holds."""
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from helpers import smooth_image
from mzsr_plugin import cli, noise_estimation
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.inference import RunSettings, resolve_kernel, run_image
from mzsr_plugin.models import adaptation
from mzsr_plugin.models.tiling import tiled_forward
from mzsr_plugin.utils.matlab_resize import imresize_pt

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def net():
    torch.manual_seed(0)
    return MZSRNet(num_feat=8, num_conv=3).eval()


@pytest.fixture
def photo(tmp_path):
    """A 40x48 LR PNG: 1,920 pixels."""
    path = tmp_path / 'photo.png'
    Image.fromarray(smooth_image(np.random.default_rng(0), 40, 48)[..., ::-1]).save(path)
    return str(path)


@pytest.fixture
def large_above_1000(monkeypatch):
    """Photos above 1,000 LR pixels count as large and adapt on 16x16 pixels; the default budget is 1,200."""
    monkeypatch.setattr(adaptation, 'LARGE_PHOTO', 1000)
    monkeypatch.setattr(adaptation, 'LARGE_PHOTO_CROP_BUDGET', 16 * 16)
    monkeypatch.setattr(adaptation, 'DEFAULT_CROP_BUDGET', 1200)


def run(photo, net, **settings):
    settings = RunSettings(steps=2, seed=0, noise=0, self_check=False, **settings)
    return run_image(photo, resolve_kernel('g_d_2.0'), settings, net, rng=np.random.default_rng(0))


def test_a_large_photo_adapts_on_the_large_photos_budget(photo, net, large_above_1000):
    assert adaptation.crop_budget_for('auto', 40, 48) == 256 and adaptation.crop_budget_for('auto', 30, 30) == 1200
    assert adaptation.crop_budget_for(0, 40, 48) == 0 and adaptation.crop_budget_for(5000, 40, 48) == 5000
    assert run(photo, net).adapted_on == [1, 3, 16, 16]  # auto: one crop of the 256 pixels
    assert run(photo, net, crop_budget=1200).adapted_on == [1, 3, 34, 34]  # a budget given is kept: 1156 pixels
    assert run(photo, net, crop_budget=0).adapted_on == [1, 3, 40, 48]


def test_a_photo_under_the_size_adapts_as_before(photo, net, monkeypatch):
    monkeypatch.setattr(adaptation, 'LARGE_PHOTO', 40 * 48)  # not above: the default budget, whole here
    auto = run(photo, net)
    given = run(photo, net, crop_budget=adaptation.DEFAULT_CROP_BUDGET)
    assert auto.adapted_on == given.adapted_on == [1, 3, 40, 48]
    np.testing.assert_array_equal(auto.sr, given.sr)


def test_the_bicubic_is_made_only_when_asked_and_is_the_same(photo, net):
    result = run(photo, net)
    assert 'bicubic' not in vars(result)  # writing the SR does not need it
    lr = torch.from_numpy(result.lr.transpose(2, 0, 1).copy())[None]
    expected = imresize_pt(lr, 2)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(result.bicubic, expected)
    assert result.bicubic is result.bicubic and result.sr.shape == (80, 96, 3)
    assert 0 <= result.sr.min() and result.sr.max() <= 1


@pytest.mark.parametrize('flag', ['--crop-budget', '--tile'])
@pytest.mark.parametrize('value, message', [('lots', 'expected auto or a whole number'), ('-5', 'must be')])
def test_a_bad_crop_budget_or_tile_is_named(tmp_path, photo, flag, value, message, capsys):
    with pytest.raises(SystemExit):
        cli.main([photo, '-o', str(tmp_path / 'out'), '--kernel', 'g_d_2.0', flag, value])
    err = capsys.readouterr().err
    assert flag in err and message in err
    assert not (tmp_path / 'out').exists()


def test_the_auto_tile_is_the_same_sr_tile_at_every_scale(photo, net, monkeypatch):
    assert adaptation.tile_for('auto', 2) == 512 and adaptation.tile_for('auto', 4) == 256
    assert adaptation.tile_for(0, 4) is None and adaptation.tile_for(None, 2) is None
    assert adaptation.tile_for(100, 4) == 100
    tiles = []

    def spy(fn, lr, scale, tile, overlap, on_tile=None):
        tiles.append((scale, tile, overlap))
        return tiled_forward(fn, lr, scale, tile, overlap, on_tile)

    monkeypatch.setattr(adaptation, 'tiled_forward', spy)
    monkeypatch.setattr(adaptation, 'SR_TILE', 64)  # 32 LR pixels at x2, 16 at x4: the 40x48 photo is tiled
    sr = {scale: run(photo, net, scale=scale, crop_budget=0).sr for scale in (2, 4)}
    assert tiles == [(2, 32, 4), (4, 16, 3)]  # 3 convs: ceil(3 / scale) + 2 LR pixels of margin
    untiled = {scale: run(photo, net, scale=scale, crop_budget=0, tile=0).sr for scale in (2, 4)}
    assert len(tiles) == 2  # tile 0: no tiling
    for scale in (2, 4):  # exact: the margins hold all that each SR pixel reads
        np.testing.assert_allclose(sr[scale], untiled[scale], atol=1e-6)


def test_the_noise_reading_summed_in_bands_is_the_whole_patch_matrix_s(monkeypatch):
    channel = np.random.default_rng(0).random((61, 47)) * 0.1 + np.linspace(0, 0.5, 47)
    patches = sliding_window_view(channel, (7, 7))[::2, ::2].reshape(-1, 49)
    patches = patches - patches.mean(axis=0)
    eigen = np.sort(np.linalg.eigvalsh(patches.T @ patches / len(patches)))
    monkeypatch.setattr(noise_estimation, 'PATCH_ROWS', 4)  # 28 rows of patches: 7 bands
    banded = noise_estimation.pca_noise_std(channel)
    for keep in range(49, 0, -1):  # the reading's own rule, on the whole matrix's eigenvalues
        if np.mean(eigen[:keep]) <= np.median(eigen[:keep]):
            break
    assert banded == pytest.approx(np.sqrt(np.mean(eigen[:keep])), rel=1e-10) and banded > 0.01
