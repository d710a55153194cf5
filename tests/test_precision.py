"""The precision policy (--precision auto|fp32|bf16, val.adapt.precision, train.precision): fp32 is the reference bit
for bit, channels_last agrees to float32 rounding, bf16 holds PSNR, auto follows the hardware and is recorded."""
import json
import numpy as np
import pytest
import torch

from basicsr.utils import tensor2img
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.cli import main as mzsr_sr
from mzsr_plugin.data.kernels import parse_kernel_spec
from mzsr_plugin.evaluation import degraded_case, load_mzsr_weights
from mzsr_plugin.metrics.official_metric import calculate_mzsr_psnr
from mzsr_plugin.model_zoo import MODEL_ZOO
from mzsr_plugin.models.adaptation import make_son, super_resolve, super_resolve_image
from mzsr_plugin.models.inner_loop import adapt, detached_params
from mzsr_plugin.models.meta_learning import meta_gradients_loop, multi_step_loss_weights
from mzsr_plugin.models.meta_sr_model import MetaSRModel
from mzsr_plugin.option_schema import VAL_ADAPT, OptionError, check_section
from mzsr_plugin.precision import FP32_REFERENCE, Precision, resolve_precision
from test_meta_model import meta_opt

CHANNELS_LAST = Precision('fp32', True, 'fp32', 'test')
BF16 = resolve_precision('bf16', 'cpu')
LRS = [2e-2, 1e-2, 1e-2]


def _case(seed=0, size=20):
    torch.manual_seed(seed)
    net = MZSRNet(num_feat=16, num_conv=4).eval()
    lr = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    kernel = torch.from_numpy(parse_kernel_spec('g_d_2.0').kernel)
    return net, lr, kernel


def test_fp32_is_the_reference_bit_for_bit_even_after_channels_last_training():
    net, lr, kernel = _case()
    params = adapt(net, detached_params(net), make_son(lr, kernel, 2, 'direct'), lr, LRS)
    expected = super_resolve(net, params, lr)
    sr, _ = super_resolve_image(net, lr, kernel, 2, len(LRS), LRS, crop_budget=None,
                                precision=resolve_precision('fp32', 'cpu'))
    assert torch.equal(sr, expected)
    # A module whose parameters training laid out channels_last still adapts and super-resolves NCHW under fp32.
    CHANNELS_LAST.prepare_module(net)
    assert net.convs[1].weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    sr_again, _ = super_resolve_image(net, lr, kernel, 2, len(LRS), LRS, crop_budget=None, precision=FP32_REFERENCE,
                                      on_step=lambda step, p, loss: seen.append(p['convs.1.weight'].is_contiguous()))
    assert seen == [True] * len(LRS)
    assert torch.equal(sr_again, expected)


def test_channels_last_runs_channels_last_and_agrees_to_float32_rounding():
    net, lr, kernel = _case(1)
    reference, info = super_resolve_image(net, lr, kernel, 2, len(LRS), LRS, crop_budget=None)
    layouts = []
    sr, info_cl = super_resolve_image(
        net, lr, kernel, 2, len(LRS), LRS, crop_budget=None, precision=CHANNELS_LAST,
        on_step=lambda step, p, loss: layouts.append(p['convs.1.weight'].is_contiguous(
            memory_format=torch.channels_last)))
    assert layouts == [True] * len(LRS)
    assert sr.shape == reference.shape == (1, 3, 40, 40)
    assert (sr - reference).abs().max() < 1e-4
    assert np.allclose(info_cl['losses'], info['losses'], rtol=1e-4)
    assert next(net.parameters()).is_contiguous()  # the module itself is not touched


def test_auto_follows_the_hardware_and_bad_values_are_named(monkeypatch):
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: {'avx512_f': True, 'amx_bf16': True})
    chosen = resolve_precision('auto', 'cpu')
    assert (chosen.name, chosen.channels_last, chosen.requested) == ('bf16', True, 'auto')
    assert 'AMX-BF16' in chosen.reason
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: {'avx512_f': True})
    chosen = resolve_precision(None, 'cpu')
    assert (chosen.name, chosen.channels_last) == ('fp32', True)
    assert chosen.record() == {'precision': 'fp32', 'memory_format': 'channels_last', 'requested': 'auto',
                               'reason': 'CPU without AMX / AVX512-BF16'}
    assert resolve_precision('fp32', 'cpu') is FP32_REFERENCE
    assert resolve_precision('bf16', 'cpu').name == 'bf16'  # asked for: runs, emulated where needed
    with pytest.raises(ValueError, match=r"--precision 'fp16': expected one of auto, fp32, bf16"):
        resolve_precision('fp16', 'cpu')
    with pytest.raises(OptionError, match="val.adapt: precision must be one of 'auto', 'fp32', 'bf16'; got 'half'"):
        check_section(VAL_ADAPT, {'precision': 'half'})


def test_mzsr_sr_prints_and_records_what_auto_chose(tmp_path, capsys):
    import cv2
    image = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'photo.png'), image)
    out = tmp_path / 'out'
    assert mzsr_sr([str(tmp_path / 'photo.png'), '-o', str(out), '--kernel', 'g_d_2.0', '--steps', '1',
                    '--no-self-check']) == 0
    expected = resolve_precision('auto', 'cpu')
    assert f'precision {expected}' in capsys.readouterr().out
    with open(out / 'metrics.json') as f:
        assert json.load(f)['config']['precision'] == expected.record()
    with pytest.raises(SystemExit) as error:
        mzsr_sr([str(tmp_path / 'photo.png'), '-o', str(out), '--precision', 'fp16'])
    assert error.value.code == 2
    assert "--precision: invalid choice: 'fp16'" in capsys.readouterr().err


def test_bf16_policy_holds_psnr_on_a_small_case():
    """bf16 steps with float32 master weights, loss and SR, against the float32 reference on a 64x64 crop of the
    demo photo (bf16 is emulated on CPUs without AVX512-BF16 / AMX: same rounding, only slower)."""
    from skimage import data
    hr = data.astronaut()[96:224, 160:288]
    image = degraded_case('crop', hr, parse_kernel_spec('g_d_2.0').kernel, 2)
    net = load_mzsr_weights(MODEL_ZOO['x2_direct'].path, 2)
    psnr = {}
    for precision in (FP32_REFERENCE, BF16):
        sr, _ = super_resolve_image(net, image.lr, image.kernel, 2, 10, crop_budget=None, precision=precision)
        psnr[precision.name] = calculate_mzsr_psnr(tensor2img(sr), image.gt, crop_border=2)
    assert psnr['fp32'] > 25
    assert abs(psnr['bf16'] - psnr['fp32']) < 0.05, psnr


def test_bf16_meta_gradient_stays_close_to_float32():
    torch.manual_seed(0)
    net = MZSRNet(num_feat=16, num_conv=4)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    tasks = tuple(torch.rand(2, 2, 3, s, s, generator=gen) for s in (12, 24, 12, 24))
    weights = multi_step_loss_weights(2, 0)
    fp32 = meta_gradients_loop(net, params, tasks, 1e-2, 2, weights, True)[0]
    with BF16.steps():
        bf16 = meta_gradients_loop(net, BF16.params(params), tasks, 1e-2, 2, weights, True)[0]
    difference = torch.cat([(bf16[k].float() - fp32[k]).flatten() for k in fp32]).norm()
    relative = float(difference / torch.cat([g.flatten() for g in fp32.values()]).norm())
    assert 0 < relative < 1e-2


@pytest.mark.parametrize('requested, channels_last', [('fp32', False), ('auto', True)])
def test_train_precision_lays_out_the_trained_network(tmp_path, monkeypatch, requested, channels_last):
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: {'avx512_f': True})
    model = MetaSRModel(meta_opt(tmp_path, {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3}, precision=requested))
    weight = model.net_g.convs[1].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert model.train_precision.record()['memory_format'] == ('channels_last' if channels_last else 'contiguous')


def test_zssr_trains_channels_last_to_float32_rounding(monkeypatch):
    from mzsr_plugin import zssr
    layouts = []
    build = zssr.build_zssr_net

    def spy(*args):
        net = build(*args)
        original = net.forward
        net.forward = lambda x: (layouts.append(net.convs[1].weight.is_contiguous(memory_format=torch.channels_last)),
                                 original(x))[1]
        return net

    monkeypatch.setattr(zssr, 'build_zssr_net', spy)
    _, lr, kernel = _case(2, size=16)
    outputs = {}
    for precision in (FP32_REFERENCE, CHANNELS_LAST):
        layouts.clear()
        outputs[precision.channels_last], info = zssr.zssr_super_resolve(lr, kernel, 2, max_iters=8, seed=0,
                                                                         precision=precision, width=16, depth=4)
        assert set(layouts) == {precision.channels_last}
    assert (outputs[True] - outputs[False]).abs().max() < 1e-3
