"""Photos as they come: sons encoded at the photo's JPEG quality, noise read under JPEG by matching the son, and the
per-image self-check that falls back to bicubic or MZSR(0) when adaptation did not help on held-out crops."""
import cv2
import json
import numpy as np
import pytest
import skimage.data
import torch

from mzsr_plugin import cli
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.data.degradations import add_noise, jpeg_compress, jpeg_compress_pt
from mzsr_plugin.data.kernels import anisotropic_gaussian_kernel
from mzsr_plugin.evaluation import degraded_case
from mzsr_plugin.inference import KernelChoice, RunSettings, load_network, run_image
from mzsr_plugin.models import adaptation
from mzsr_plugin.models.adaptation import make_son, super_resolve_image
from mzsr_plugin.models.inner_loop import l1_loss
from mzsr_plugin.models.self_check import BICUBIC, BLOCK, HELD_OUT, UNADAPTED, held_out_mask
from mzsr_plugin.noise_estimation import auto_noise_std, matched_noise_std
from mzsr_plugin.utils.matlab_resize import imresize_pt

pytestmark = pytest.mark.usefixtures('one_thread')
KERNEL = anisotropic_gaussian_kernel(15, 0.6, 3.0, 1.5)


def photo_lr(noise=0, quality=0, photo='astronaut', size=200):
    """A DIV2KRK-like x2 LR of a scikit-image photo, with sensor noise (grey levels) and JPEG, (h, w, 3) RGB."""
    lr = degraded_case(photo, getattr(skimage.data, photo)()[:2 * size, :2 * size], KERNEL, 2).lr[0]
    lr = lr.permute(1, 2, 0).numpy()
    if noise:
        lr = np.round(add_noise(lr, noise / 255, rng=np.random.default_rng(0)) * 255) / 255
    return jpeg_compress(lr, quality) if quality else lr


def test_the_son_of_a_jpeg_is_encoded_at_its_quality():
    lr = torch.from_numpy(np.ascontiguousarray(photo_lr(quality=85).transpose(2, 0, 1)))[None]
    kernel = torch.from_numpy(KERNEL.astype(np.float32))
    clean = make_son(lr, kernel, 2, 'direct')
    son = make_son(lr, kernel, 2, 'direct', jpeg_quality=85)
    expected = jpeg_compress(clean[0].permute(1, 2, 0).numpy(), 85)
    assert torch.equal(son[0].permute(1, 2, 0), torch.from_numpy(expected))
    assert (son - clean).abs().mean() > 1e-3  # compression changed it
    assert not torch.equal(make_son(lr, kernel, 2, 'direct', jpeg_quality=30), son)
    # Batches are encoded image by image.
    batch = jpeg_compress_pt(torch.cat([clean, clean.flip(-1)]), 85)
    assert torch.equal(batch[:1], son)
    assert torch.equal(batch[1:], jpeg_compress_pt(clean.flip(-1), 85))


@pytest.mark.parametrize('setting, used', [('auto', 70), ('none', None), (95, 95)])
def test_mzsr_sr_encodes_the_son_at_the_files_quality(tmp_path, monkeypatch, setting, used):
    path = tmp_path / 'photo.jpg'
    cv2.imwrite(str(path), np.round(photo_lr(size=48)[..., ::-1] * 255).astype(np.uint8),
                [cv2.IMWRITE_JPEG_QUALITY, 70])
    seen = []

    def spy(img, quality):
        seen.append(quality)
        return jpeg_compress_pt(img, quality)

    monkeypatch.setattr(adaptation, 'jpeg_compress_pt', spy)
    torch.manual_seed(0)
    net = MZSRNet(num_feat=8, num_conv=3)
    choice = KernelChoice(KERNEL, 'direct', 'test')
    result = run_image(str(path), choice, RunSettings(steps=1, jpeg=setting, noise=0), net)
    assert result.noise['jpeg_quality'] == 70 and result.noise['son_jpeg'] == used
    assert seen == ([used] if used else [])


def test_noise_under_jpeg_is_read_by_matching_the_son():
    kernel = KERNEL
    for quality in (95, 85):
        noisy = photo_lr(noise=5, quality=quality)
        clean = photo_lr(quality=quality)
        # Chroma sub-sampling hides the noise from the colour differences ...
        assert auto_noise_std(noisy) == 0.0
        # ... the son that reads as noisy as the photo does not.
        matched = matched_noise_std(noisy, kernel, 2, 'direct', quality) * 255
        assert 3.0 < matched < 8.0, (quality, matched)
        assert matched_noise_std(clean, kernel, 2, 'direct', quality) * 255 < matched - 2.5
    # A photo whose reading no son reaches (structure the son lacks, not noise) reads clean, not the cap.
    texture = np.random.default_rng(0).random((96, 96, 3)).astype(np.float32)
    assert matched_noise_std(texture, anisotropic_gaussian_kernel(15, 0.0, 8.0, 8.0), 4, 'direct', 85) == 0.0


def test_masked_loss_and_held_out_blocks():
    rng = np.random.default_rng(0)
    mask = held_out_mask((2, 3, 40, 70), rng)
    assert mask.shape == (2, 1, 40, 70)
    blocks = 2 * 3 * 5  # ceil(40 / 16) x ceil(70 / 16) per image
    assert mask[:, :, ::BLOCK, ::BLOCK].sum() == round(blocks * HELD_OUT)
    # A tiny LR still learns from most of itself: smaller blocks, never the whole image held out.
    for side in (1, 3, 8, 12):
        tiny = held_out_mask((1, 3, side, side), np.random.default_rng(0))
        assert 0 < tiny.sum() and (side == 1 or tiny.mean() <= 0.25)
    pred, target = torch.rand(2, 3, 40, 70), torch.rand(2, 3, 40, 70)
    assert torch.allclose(l1_loss(pred, target, torch.ones(2, 1, 40, 70)), l1_loss(pred, target))
    changed = target + 5 * mask  # only the held-out pixels change: a masked loss cannot see it
    assert torch.allclose(l1_loss(pred, changed, 1 - mask), l1_loss(pred, target, 1 - mask))
    assert not torch.allclose(l1_loss(pred, changed), l1_loss(pred, target))


def _lr_tensor(**kwargs):
    return torch.from_numpy(np.ascontiguousarray(photo_lr(**kwargs).transpose(2, 0, 1)))[None]


def test_self_check_falls_back_to_bicubic_when_adaptation_is_defeated():
    # A diverging step size ruins the adapted net, and untrained weights add a random residual to bicubic.
    torch.manual_seed(0)
    net = MZSRNet(num_feat=8, num_conv=3)
    lr, kernel = _lr_tensor(size=48), torch.from_numpy(KERNEL.astype(np.float32))
    sr, info = super_resolve_image(net, lr, kernel, 2, 3, [50.0] * 3, self_check=True)
    check = info['self_check']
    assert check['choice'] == BICUBIC and set(check['psnr']) == {BICUBIC, UNADAPTED, 'MZSR(3)'}
    assert check['psnr'][BICUBIC] > max(check['psnr'][UNADAPTED], check['psnr']['MZSR(3)'])
    assert 0.05 < check['held_out'] < 0.25
    assert torch.equal(sr, imresize_pt(lr, 2))
    tiny, info = super_resolve_image(net, lr[..., :6, :6], kernel, 2, 2, [1e-2] * 2, self_check=True)
    assert torch.isfinite(tiny).all() and 0 < info['self_check']['held_out'] <= 0.25
    unchecked, info = super_resolve_image(net, lr, kernel, 2, 3, [50.0] * 3, self_check=False)
    assert info['self_check'] is None and (unchecked - sr).abs().mean() > 0.05


def test_self_check_keeps_adaptation_that_helps_and_mzsr0_when_only_adaptation_fails():
    net = load_network(None, 2)
    lr, kernel = _lr_tensor(size=64), torch.from_numpy(KERNEL.astype(np.float32))
    sr, info = super_resolve_image(net, lr, kernel, 2, 3, self_check=True)
    check = info['self_check']
    assert check['choice'] == 'MZSR(3)' and check['psnr']['MZSR(3)'] > check['psnr'][BICUBIC]
    # The meta-learned weights beat bicubic by themselves: a diverging adaptation falls back to them.
    sr, info = super_resolve_image(net, lr, kernel, 2, 2, [100.0] * 2, self_check=True)
    assert info['self_check']['choice'] == UNADAPTED
    assert torch.equal(sr, super_resolve_image(net, lr, kernel, 2, 0, [])[0])


def test_cli_records_the_self_check_and_turns_it_off(tmp_path, capsys):
    path = tmp_path / 'photo.png'
    cv2.imwrite(str(path), np.round(photo_lr(size=48)[..., ::-1] * 255).astype(np.uint8))
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, tmp_path / 'w.pth')
    common = [str(path), '--kernel', 'g_d_2.0', '--weights', str(tmp_path / 'w.pth'), '--steps', '2', '--lr', '50']
    assert cli.main(common + ['-o', str(tmp_path / 'on')]) == 0
    printed = capsys.readouterr()
    assert 'adaptation did not help on the held-out crops' in printed.out + printed.err
    image = json.load(open(tmp_path / 'on' / 'metrics.json'))['images'][0]
    assert image['self_check'] == BICUBIC and set(image['self_check_psnr']) == {BICUBIC, UNADAPTED, 'MZSR(2)'}
    assert cli.main(common + ['-o', str(tmp_path / 'off'), '--no-self-check']) == 0
    image = json.load(open(tmp_path / 'off' / 'metrics.json'))['images'][0]
    assert image['self_check'] == '' and image['self_check_psnr'] is None
    with pytest.raises(SystemExit, match=r"--jpeg '101': expected auto, none or a JPEG quality 1..100"):
        cli.main(common + ['-o', str(tmp_path / 'bad'), '--jpeg', '101'])


def test_basicsr_test_mode_reproduces_the_jpeg_and_logs_the_fallback(tmp_path, monkeypatch):
    from test_determinism import _test_model

    from mzsr_plugin.models import meta_sr_model
    warnings = []
    monkeypatch.setattr(meta_sr_model, 'get_root_logger', lambda: type('Log', (), {'warning': warnings.append})())
    path = tmp_path / 'photo.jpg'
    cv2.imwrite(str(path), np.round(photo_lr(size=48)[..., ::-1] * 255).astype(np.uint8),
                [cv2.IMWRITE_JPEG_QUALITY, 60])
    lq = torch.from_numpy(np.ascontiguousarray(cv2.imread(str(path))[..., ::-1].transpose(2, 0, 1) / 255.0))
    data = {'lq': lq[None].float(), 'kernel': torch.from_numpy(KERNEL.astype(np.float32))[None],
            'scale': torch.tensor([2]), 'downsample': ['direct'], 'lq_path': [str(path)]}
    model = _test_model(tmp_path, {'steps': 2, 'lr': 50.0})  # the defaults: noise, jpeg auto, self-check on
    model.feed_data(data)
    assert model._son_degradation(model._adapt_opt())['son_jpeg'] == 60
    model.test()
    assert model.self_check['choice'] in (BICUBIC, UNADAPTED)
    assert len(warnings) == 1 and f'{path}: self-check: adaptation did not help' in warnings[0]
    off = _test_model(tmp_path, {'steps': 2, 'lr': 50.0, 'self_check': False, 'jpeg': 'none'})
    off.feed_data(data)
    assert off._son_degradation(off._adapt_opt())['son_jpeg'] is None
    off.test()
    assert off.self_check is None and len(warnings) == 1


def test_blind_kernels_are_reused_by_kernel_dir(tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    for name, photo in (('cat', 'chelsea'), ('cup', 'coffee')):
        cv2.imwrite(str(photos / f'{name}.png'), np.round(photo_lr(photo=photo, size=48)[..., ::-1] * 255).astype(
            np.uint8))
    common = ['--steps', '1', '--no-self-check', '--seed', '0']
    assert cli.main([str(photos), '-o', str(tmp_path / 'out'), '--kernel', 'estimate'] + common) == 0
    # The folder blind mode wrote (kernels beside the SR images of the same stems) serves as --kernel-dir.
    assert cli.main([str(photos), '-o', str(tmp_path / 'out2'), '--kernel-dir', str(tmp_path / 'out')] + common) == 0
    rows = {r['image']: r for r in json.load(open(tmp_path / 'out2' / 'metrics.json'))['images']}
    for name in ('cat', 'cup'):
        assert rows[f'{name}.png']['kernel'] == str(tmp_path / 'out' / f'{name}_kernel.mat')
        first = cv2.imread(str(tmp_path / 'out' / f'{name}.png'))
        assert np.array_equal(first, cv2.imread(str(tmp_path / 'out2' / f'{name}.png')))


def test_a_lossless_photo_is_read_for_noise_once(tmp_path, monkeypatch):
    # The colour-difference reading is a PCA over the whole photo: the kernel estimate and the son share one.
    import mzsr_plugin.inference as inference
    import mzsr_plugin.noise_estimation as noise_estimation
    calls = []

    def counted(lr):
        calls.append(lr.shape)
        return auto_noise_std(lr)

    monkeypatch.setattr(inference, 'auto_noise_std', counted)
    monkeypatch.setattr(noise_estimation, 'auto_noise_std', counted)
    path = str(tmp_path / 'photo.png')
    cv2.imwrite(path, (photo_lr(noise=5, size=96) * 255).round().astype(np.uint8)[..., ::-1])
    net = MZSRNet(num_feat=8, num_conv=3)
    result = run_image(path, inference.resolve_kernel('estimate'), RunSettings(steps=1, self_check=False), net)
    assert calls == [(96, 96, 3)]
    assert result.noise['source'] == 'auto (colour)' and result.noise['std'] == auto_noise_std(result.lr)
