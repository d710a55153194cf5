"""Tiled inference equals untiled inference; adaptation crops stay within their pixel budget."""
import inspect
import numpy as np
import pytest
import torch

from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.models.adaptation import super_resolve
from mzsr_plugin.models.inner_loop import detached_params
from mzsr_plugin.models.tiling import adaptation_crops, required_overlap, tiled_forward


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('scale, tile, overlap', [(2, 8, 16), (2, 10, 6), (2, 7, 9), (3, 9, 16), (4, 6, 4),
                                                  (2, 64, 16)])
def test_tiled_forward_matches_untiled_mzsrnet(scale, tile, overlap):
    torch.manual_seed(scale + tile)
    net = MZSRNet(scale=scale).eval()
    lr = torch.rand(1, 3, 23, 30)
    with torch.no_grad():
        full = net(lr)
        tiled = tiled_forward(net, lr, scale, tile, overlap)
    assert tiled.shape == (1, 3, 23 * scale, 30 * scale)
    assert (tiled - full).abs().max() <= 1e-5


def test_default_overlap_covers_the_official_net():
    assert required_overlap(8, 2) == 6
    assert required_overlap(8, 4) == 4
    default = inspect.signature(tiled_forward).parameters['overlap'].default
    assert default >= max(required_overlap(8, s) for s in (2, 3, 4))


def test_too_small_overlap_shows_seams():
    torch.manual_seed(0)
    net = MZSRNet(scale=2).eval()
    lr = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        error = (tiled_forward(net, lr, 2, 8, 0) - net(lr)).abs().max()
    assert error > 1e-3


def test_tiled_self_ensemble_matches_untiled():
    torch.manual_seed(1)
    net = MZSRNet(num_feat=8, num_conv=4, scale=2)
    params = detached_params(net)
    lr = torch.rand(1, 3, 17, 21)

    def run(x):
        return super_resolve(net, params, x, self_ensemble=True)

    assert (tiled_forward(run, lr, 2, 6, required_overlap(4, 2)) - run(lr)).abs().max() <= 1e-5


def test_tiled_forward_rejects_wrong_output_size():
    with pytest.raises(ValueError, match='expected'):
        tiled_forward(lambda x: x, torch.rand(1, 3, 10, 10), 2, 4, 2)
    with pytest.raises(ValueError, match=r'\(1, C, h, w\)'):
        tiled_forward(lambda x: x, torch.rand(2, 3, 10, 10), 2)


def test_adaptation_crops_respect_the_budget():
    lr = torch.arange(3 * 100 * 80, dtype=torch.float32).reshape(1, 3, 100, 80)
    crops = adaptation_crops(lr, budget=3 * 32 * 32 + 100, crop=32, rng=np.random.default_rng(0))
    assert crops.shape == (3, 3, 32, 32)
    assert crops.shape[0] * 32 * 32 <= 3 * 32 * 32 + 100
    for crop in crops:  # each crop is a contiguous window of the image
        top, left = divmod(int(crop[0, 0, 0]), 80)
        assert torch.equal(crop, lr[0, :, top:top + 32, left:left + 32])
    again = adaptation_crops(lr, budget=3 * 32 * 32 + 100, crop=32, rng=np.random.default_rng(0))
    assert torch.equal(crops, again)


def test_adaptation_crops_keep_small_images_whole_and_clip_large_crops():
    lr = torch.rand(1, 3, 20, 50)
    assert adaptation_crops(lr, budget=1000, crop=16, rng=np.random.default_rng(0)) is lr
    crops = adaptation_crops(lr, budget=999, crop=32, rng=np.random.default_rng(0))
    assert crops.shape == (1, 3, 20, 32)
    with pytest.raises(ValueError, match='budget'):
        adaptation_crops(lr, budget=100, crop=16, rng=np.random.default_rng(0))
