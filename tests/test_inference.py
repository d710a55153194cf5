"""The model zoo and the one inference path: the right weights for a scale, records that refuse misuse, and one
resolver for kernels, inputs and ground truth shared by mzsr-sr, the app, the demo and the test dataset."""
import cv2
import json
import numpy as np
import pytest
import torch
import warnings

from helpers import smooth_image
from mzsr_plugin import cli, demo, inference, model_zoo
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.data.degradations import degrade_np
from mzsr_plugin.data.kernels import isotropic_gaussian_kernel
from mzsr_plugin.model_zoo import MODEL_ZOO, RECORD_KEY

pytestmark = pytest.mark.usefixtures('one_thread')
KERNEL = isotropic_gaussian_kernel(9, 1.0)


def _weights(path, record=None, seed=0):
    torch.manual_seed(seed)
    state = {'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}
    if record is not None:
        state[RECORD_KEY] = record
    torch.save(state, path)
    return str(path)


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """An install with the x2 direct and the multi-scale models only (tiny nets, each a different seed)."""
    folder = tmp_path / 'weights'
    folder.mkdir()
    for seed, name in enumerate(('x2_direct', 'multiscale')):
        _weights(folder / MODEL_ZOO[name].weights, MODEL_ZOO[name].record(campaign_meta_iter=seed), seed)
    monkeypatch.setattr(model_zoo, 'WEIGHTS_DIR', str(folder))
    return folder


@pytest.fixture
def lr_image(tmp_path):
    gt = smooth_image(np.random.default_rng(0), 48, 48)
    lr = degrade_np(gt.astype(np.float64) / 255, KERNEL, 4)
    path = tmp_path / 'photo.png'
    cv2.imwrite(str(path), np.round(np.clip(lr, 0, 1) * 255).astype(np.uint8))
    np.save(tmp_path / 'k.npy', KERNEL)
    return path


def test_the_zoo_picks_the_model_of_the_scale_single_scale_first(zoo):
    assert [m.name for m in model_zoo.shipped_models()] == ['x2_direct', 'multiscale']
    assert model_zoo.shipped_scales() == [2, 3, 4]
    assert model_zoo.zoo_model_for(2, 'direct').name == 'x2_direct'  # the single-scale model wins at x2
    assert model_zoo.zoo_model_for(3, 'direct').name == 'multiscale'
    assert model_zoo.zoo_model_for(4, 'direct').name == 'multiscale'
    with pytest.raises(ValueError) as info:
        model_zoo.zoo_model_for(2, 'bicubic')
    message = str(info.value)
    assert 'no shipped MZSR model serves x2 with bicubic downsampling' in message
    assert 'x2 direct (mzsr_x2_direct.pth)' in message and 'x2/x3/x4 direct (mzsr_multiscale.pth)' in message


def test_loaded_nets_carry_their_record_and_the_multiscale_preset(zoo):
    net = inference.load_network(None, 3, 'direct')
    assert net.weights_path == str(zoo / 'mzsr_multiscale.pth') and net.record['kind'] == 'multiscale'
    assert inference.is_multiscale(net)
    # A multi-scale model adapts with the official multi-scale schedule, a single-scale one with its own.
    assert inference.adaptation_lrs(None, net, 4, 3, 'direct') == [1e-2, 1e-2, 1e-2, 5e-3]
    x2 = inference.load_network(None, 2, 'direct')
    assert x2.record['kind'] == 'x2_direct' and inference.adaptation_lrs(None, x2, 2, 2, 'direct') == [2e-2, 1e-2]
    with pytest.raises(ValueError, match='--lr learned: .*mzsr_x2_direct.pth carries no learned step sizes'):
        inference.adaptation_lrs('learned', x2, 2, 2, 'direct')


def test_weights_whose_record_contradicts_the_scale_are_refused(zoo, lr_image, tmp_path, capsys):
    x2 = str(zoo / 'mzsr_x2_direct.pth')
    with pytest.raises(SystemExit) as info:
        cli.main([str(lr_image), '-o', str(tmp_path / 'out'), '--scale', '4', '--kernel', 'g_d_2.0', '--weights', x2])
    message = info.value.code
    assert message.startswith(f'mzsr-sr: error: --weights {x2} is a x2_direct model (x2 direct downsampling) but '
                              'x4 with direct downsampling was asked')
    assert 'mzsr_multiscale.pth' in message  # what would serve x4 instead
    assert not (tmp_path / 'out').exists()  # refused before any work
    with pytest.raises(ValueError, match='is a x2_direct model .* but x2 with bicubic downsampling was asked; no '
                       'shipped model serves x2 bicubic'):
        inference.load_network(x2, 2, 'bicubic')


def test_no_weights_at_a_scale_nothing_serves_is_an_error_listing_the_zoo(zoo, lr_image, tmp_path, monkeypatch):
    (zoo / 'mzsr_multiscale.pth').unlink()
    with pytest.raises(SystemExit) as info:
        cli.main([str(lr_image), '-o', str(tmp_path / 'out'), '--scale', '4', '--kernel', 'g_d_2.0'])
    assert info.value.code == ('mzsr-sr: error: no shipped MZSR model serves x4 with direct downsampling (shipped: '
                               'x2 direct (mzsr_x2_direct.pth)); pass --weights FILE trained for x4 direct, or use '
                               'ZSSR (--zssr), which needs no weights')


def test_the_default_weights_follow_the_scale_and_are_recorded(zoo, lr_image, tmp_path):
    out = tmp_path / 'out'
    assert cli.main([str(lr_image), '-o', str(out), '--scale', '4', '--kernel', str(tmp_path / 'k.npy'), '--steps',
                     '1']) == 0
    config = json.load(open(out / 'metrics.json'))['config']
    assert config['weights'] == str(zoo / 'mzsr_multiscale.pth') and config['model_record']['scales'] == [2, 3, 4]
    assert cv2.imread(str(out / 'photo.png')).shape == (48, 48, 3)


def test_weights_without_a_record_warn_and_run(lr_image, tmp_path, capsys):
    plain = _weights(tmp_path / 'converted.pth')
    assert cli.main([str(lr_image), '-o', str(tmp_path / 'out'), '--scale', '4', '--kernel', 'g_d_2.0', '--weights',
                     plain, '--steps', '0']) == 0
    err = capsys.readouterr().err
    assert f'mzsr-sr: warning: --weights {plain} carries no model record' in err and 'x4 direct' in err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        inference.load_network(plain, 2, 'direct')
    assert [w.category for w in caught] == [inference.ModelRecordWarning]


def test_the_shipped_weights_say_what_they_are():
    record = inference.weights_record(MODEL_ZOO['x2_direct'].path)
    assert record['kind'] == 'x2_direct' and record['scales'] == [2] and record['downsample'] == 'direct'
    assert record['campaign_meta_iter'] > 0 and record['train_hours'] > 0
    for model in model_zoo.shipped_models():
        assert inference.weights_record(model.path)['kind'] == model.name


def test_a_weights_file_is_read_once_for_its_record_and_its_parameters(tmp_path, monkeypatch):
    reads, load = [], torch.load
    monkeypatch.setattr(torch, 'load', lambda path, *args, **kwargs: reads.append(path) or load(path, *args, **kwargs))
    net = inference.load_network(None, 2, 'direct')
    assert reads == [MODEL_ZOO['x2_direct'].path] and net.record['kind'] == 'x2_direct'
    given = _weights(tmp_path / 'w.pth', MODEL_ZOO['x4_direct'].record())
    assert inference.load_network(given, 4, 'direct').record['scales'] == [4] and reads[1:] == [given]
    with pytest.raises(ValueError, match='is a x4_direct model'):
        inference.load_network(given, 2, 'direct')


def test_demo_at_x4_takes_the_zoo_model_and_refuses_x2_weights(zoo, tmp_path, capsys):
    demo.main(['--scale', '4', '--image', 'chelsea', '--out', str(tmp_path / 'demo'), '--device', 'cpu'])
    printed = capsys.readouterr().out
    assert 'kernel a_d_0.6_7.0_2.4 (direct x4)' in printed and 'mzsr_multiscale.pth' in printed
    results = json.load(open(tmp_path / 'demo' / 'results.json'))
    assert results['scale'] == 4 and results['weights'] == str(zoo / 'mzsr_multiscale.pth')
    with pytest.raises(SystemExit):
        demo.main(['--scale', '4', '--weights', str(zoo / 'mzsr_x2_direct.pth'), '--out', str(tmp_path / 'd2')])
    assert 'is a x2_direct model' in capsys.readouterr().err


def test_kernel_folder_lookup_is_one_rule_for_the_cli_and_the_dataset(tmp_path):
    (tmp_path / 'img.png').write_bytes(b'x')
    kernels = tmp_path / 'kernels'
    kernels.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        inference.find_kernel_file(str(kernels), str(tmp_path / 'img.png'), 'kernel_dir')
    tried = str(info.value).split('looked for ')[1]
    assert tried == ', '.join(p.format(stem='img') for p in inference.KERNEL_PATTERNS)
    np.save(kernels / 'img_0.npy', KERNEL)  # KernelGAN's naming, which only mzsr-sr knew before
    assert inference.find_kernel_file(str(kernels), str(tmp_path / 'img.png')).endswith('img_0.npy')
    choice = inference.resolve_kernel(str(kernels / 'img_0.npy'))
    assert choice.downsample == 'direct' and np.allclose(choice.kernel, KERNEL)
    assert inference.resolve_kernel('estimate').estimate
    with pytest.raises(ValueError, match='--kernel estimate models direct sub-sampling'):
        inference.resolve_kernel('estimate', 'bicubic')


def test_run_image_returns_what_the_cli_writes(lr_image, tmp_path):
    net = inference.load_network(_weights(tmp_path / 'w.pth', MODEL_ZOO['x4_direct'].record()), 4, 'direct')
    settings = inference.RunSettings(scale=4, steps=2, compare=True, seed=0)
    result = inference.run_image(str(lr_image), inference.resolve_kernel(str(tmp_path / 'k.npy')), settings, net)
    assert result.sr.shape == (48, 48, 3) and result.bicubic.shape == (48, 48, 3) and result.sr0.shape == (48, 48, 3)
    assert result.method == 'MZSR' and result.steps == 2 and result.seconds > 0 and not result.metrics
    assert not np.allclose(result.sr, result.sr0)  # two SGD steps changed the weights
    paths = inference.save_outputs(result, str(tmp_path / 'out'), compare=True)
    assert sorted(p.split('/')[-1] for p in paths.values()) == ['photo.png', 'photo_compare.png']


def _test_model(weights, scale):
    from mzsr_plugin.models.meta_sr_model import MetaSRModel
    return MetaSRModel({
        'name': 'zoo', 'model_type': 'MetaSRModel', 'scale': scale, 'num_gpu': 0, 'is_train': False, 'dist': False,
        'rank': 0, 'world_size': 1, 'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3, 'scale': scale},
        'path': {'pretrain_network_g': weights, 'strict_load_g': True}, 'val': {'adapt': {'steps': 1}}})


def test_basicsr_test_mode_refuses_weights_for_another_scale(tmp_path):
    x2 = _weights(tmp_path / 'x2.pth', MODEL_ZOO['x2_direct'].record())
    model = _test_model(x2, 4)
    kernel = torch.from_numpy(KERNEL)[None]
    model.feed_data({'lq': torch.rand(1, 3, 8, 8), 'kernel': kernel, 'scale': torch.tensor([4]),
                     'downsample': ['direct']})
    with pytest.raises(ValueError, match=r'path\.pretrain_network_g .*x2\.pth is a x2_direct model \(x2 direct '
                       r'downsampling\) but x4 with direct downsampling was asked'):
        model.test()
    multi = _test_model(_weights(tmp_path / 'multi.pth', MODEL_ZOO['multiscale'].record()), 3)
    multi.feed_data({'lq': torch.rand(1, 3, 8, 8), 'kernel': kernel, 'scale': torch.tensor([3]),
                     'downsample': ['direct']})
    multi.test()  # a multi-scale record serves x3
    assert multi.output.shape == (1, 3, 24, 24)
