"""Every options/*.yml parses as BasicSR parses it, names registered types and builds on tiny images.

The option files are what users run; a typo in a type name, a preset or a key only shows when a long run starts (or
hours later, at the first validation), so each file is parsed with BasicSR's own ``parse_options``, its network and
every dataset are built (dataset roots swapped for tiny generated folders) and the plugin's own keys must carry a
comment in the file itself.
"""
import cv2
import glob
import os
import pytest
import re
import sys
import torch
import yaml
from os import path as osp

from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.utils.options import ordered_yaml, parse_options
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
from helpers import write_images
from mzsr_plugin.data.kernels import parse_kernel_spec
from mzsr_plugin.data.meta_task_dataset import crop_task_to_scale
from mzsr_plugin.model_zoo import MODEL_ZOO
from mzsr_plugin.models.adaptation import at_scale, default_lr_preset, resolve_adapt_lrs
from mzsr_plugin.option_schema import META_TRAIN, VAL_ADAPT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OPTION_FILES = sorted(osp.basename(p) for p in glob.glob(osp.join(ROOT, 'options', '*.yml')))
# Files written before the comment rule; the lead documents them (see the helper report), then drops the mark.
# BasicSR 1.4.2 (BaseModel.get_optimizer / setup_schedulers) knows only these.
OPTIMIZERS = {'Adam'}
SCHEDULERS = {'MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR'}
# Keys every BasicSR user knows from the stock datasets: no comment needed.
BASICSR_DATASET_KEYS = {
    'name', 'type', 'phase', 'scale', 'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'filename_tmpl', 'io_backend',
    'gt_size', 'use_hflip', 'use_rot', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio',
    'prefetch_mode', 'pin_memory'
}
# MetaSRModel's own train keys (init_training_settings).
META_TRAIN_KEYS = {key.name for key in META_TRAIN.keys}
EXPECTED = {'mzsr_meta_bicubic_x2.yml', 'mzsr_meta_x4.yml', 'mzsr_meta_multiscale.yml', 'mzsr_test_x2.yml',
            'mzsr_test_x4.yml', 'mzsr_test_bicubic_x2.yml',
            'zssr_test_x2.yml', 'mzsr_meta_x2.yml', 'mzsr_pretrain_x2.yml'}


def raw_options(name):
    with open(osp.join(ROOT, 'options', name)) as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def parsed_options(name, tmp_path, monkeypatch):
    """The options exactly as BasicSR's entrypoints see them (train.py for files with a train set, else test.py)."""
    is_train = 'train' in raw_options(name)['datasets']
    monkeypatch.setattr(sys, 'argv', ['basicsr', '-opt', osp.join(ROOT, 'options', name)])
    opt, _ = parse_options(str(tmp_path), is_train=is_train)
    return opt


def is_plugin_dataset(dataset_type):
    return DATASET_REGISTRY.get(dataset_type).__module__.startswith('mzsr_plugin')


def dataset_downsample(dataset_opt):
    if dataset_opt.get('kernel') not in (None, 'random'):
        return parse_kernel_spec(dataset_opt['kernel']).downsample
    return dataset_opt.get('downsample', 'direct')


def test_the_documented_option_files_exist():
    assert EXPECTED <= set(OPTION_FILES)


@pytest.mark.parametrize('name', OPTION_FILES)
def test_option_file_names_registered_types_and_valid_settings(name, tmp_path, monkeypatch):
    opt = parsed_options(name, tmp_path, monkeypatch)
    assert isinstance(opt['name'], str) and opt['name']
    assert opt['model_type'] in MODEL_REGISTRY
    assert isinstance(opt['num_gpu'], int)

    net_opt = dict(opt['network_g'])
    assert net_opt['type'] in ARCH_REGISTRY
    net = build_network(net_opt)
    weights = opt['path'].get('pretrain_network_g')
    if weights is not None:
        assert weights.endswith('.pth'), weights
        if osp.isfile(osp.join(ROOT, weights)):  # shipped with the plugin: it must load into this network
            state = torch.load(osp.join(ROOT, weights), map_location='cpu', weights_only=True)
            net.load_state_dict(state[opt['path'].get('param_key_g', 'params')], strict=True)

    phases = {d['phase'] for d in opt['datasets'].values()}
    for dataset_opt in opt['datasets'].values():
        assert dataset_opt['type'] in DATASET_REGISTRY, dataset_opt['type']
    if opt['is_train']:
        assert phases <= {'train', 'val'} and sum(d['phase'] == 'train' for d in opt['datasets'].values()) == 1
    else:
        assert phases == {'test'}
        # stock test.py runs them in sorted key order; the file order must be that order
        assert list(opt['datasets']) == sorted(opt['datasets'])
        assert 'suffix' in opt['val'] and 'save_img' in opt['val']  # SRModel's test-mode saving reads both

    for metric in ((opt.get('val') or {}).get('metrics') or {}).values():
        assert metric['type'] in METRIC_REGISTRY, metric['type']
        if metric['type'].startswith('calculate_mzsr_'):
            assert metric['crop_border'] == opt['scale']  # the official protocol shaves `scale` pixels

    if opt['is_train']:
        train = opt['train']
        assert train['optim_g']['type'] in OPTIMIZERS and train['scheduler']['type'] in SCHEDULERS
        assert isinstance(train['total_iter'], int) and train['total_iter'] > 0
        assert opt['logger']['print_freq'] > 0 and opt['logger']['save_checkpoint_freq'] > 0
        if opt.get('val') is not None:
            assert opt['val']['val_freq'] > 0

    if opt['model_type'] != 'MetaSRModel':
        return
    mode = opt['train'].get('mode', 'pretrain') if opt['is_train'] else None
    if opt['is_train']:
        assert mode in META_TRAIN.key('mode').check.values
    if mode == 'pretrain':
        assert opt['train']['pixel_opt']['type'] in LOSS_REGISTRY
    if mode == 'meta':
        assert opt['path'].get('pretrain_network_g'), 'meta-training starts from pretrained weights'
        train_set = opt['datasets']['train']
        assert train_set['type'] == 'MZSRMetaTaskDataset'
        scales = train_set.get('scale_list') or [train_set['scale']]
        if len(scales) > 1:
            assert hasattr(net, 'scale'), 'multi-scale meta-training needs an arch with a settable scale'
        assert int(opt['network_g'].get('scale', scales[0])) in scales

    adapt = (opt.get('val') or {}).get('adapt')
    if adapt is None:
        return
    assert adapt.get('mode', 'mzsr') in VAL_ADAPT.key('mode').check.values
    steps = adapt.get('steps', 0)
    assert isinstance(steps, int) and steps >= 0
    for dataset_opt in opt['datasets'].values():
        if dataset_opt['phase'] != 'train':
            lrs = resolve_adapt_lrs(adapt.get('lr'), steps, dataset_opt['scale'], dataset_downsample(dataset_opt),
                                    adapt.get('multiscale', False))
            assert len(lrs) == steps and all(lr > 0 for lr in lrs)
    if mode == 'meta' and isinstance(adapt.get('lr'), str):
        # validation adapts with the official schedule of the model kind being trained
        train_set = opt['datasets']['train']
        scales = train_set.get('scale_list') or [train_set['scale']]
        multiscale = len(scales) > 1
        assert adapt.get('multiscale', False) == multiscale
        assert adapt['lr'] == default_lr_preset(max(scales), train_set.get('downsample', 'direct'), multiscale)


def tiny_folders(dataset_opt, root):
    """Swaps a dataset's roots for generated images big enough for its patches; disk backend."""
    scale = int(dataset_opt.get('scale', 1))
    size = max(int(dataset_opt.get('gt_size', 0)), 48)
    size += -size % 12  # a multiple of 2, 3 and 4, so LR folders can be exact
    hr = osp.join(root, 'hr')
    write_images(hr, 2, size, size + 12, seed=3)
    dataset_opt['dataroot_gt'] = hr
    dataset_opt['io_backend'] = {'type': 'disk'}
    dataset_opt.pop('meta_info_file', None)
    if dataset_opt.get('dataroot_lq') is not None:
        if dataset_opt['type'] != 'PairedImageDataset':
            raise NotImplementedError(f'no tiny LR folder for {dataset_opt["type"]} yet')
        lq = osp.join(root, 'lq')
        os.makedirs(lq)
        for path in sorted(glob.glob(osp.join(hr, '*.png'))):
            img = cv2.imread(path)
            small = cv2.resize(img, (img.shape[1] // scale, img.shape[0] // scale), interpolation=cv2.INTER_AREA)
            cv2.imwrite(osp.join(lq, osp.basename(path)), small)
        dataset_opt['dataroot_lq'] = lq
    return dataset_opt


@pytest.mark.parametrize('name', OPTION_FILES)
def test_option_file_builds_its_network_and_datasets(name, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    opt = parsed_options(name, tmp_path, monkeypatch)
    net = build_network(dict(opt['network_g'])).eval()
    for key, dataset_opt in opt['datasets'].items():
        dataset_opt = tiny_folders(dict(dataset_opt), str(tmp_path / key))
        dataset = build_dataset(dataset_opt)
        item = dataset[0]
        if 'support_lq' in item:  # a meta-training task
            gt_size, scale = dataset_opt['gt_size'], int(item['scale'])
            scales = dataset_opt.get('scale_list') or [dataset_opt['scale']]
            assert scale in scales
            lq_pad = gt_size // min(scales)
            for part, count in (('support', dataset_opt['num_support']), ('query', dataset_opt['num_query'])):
                assert item[f'{part}_gt'].shape == (count, 3, gt_size, gt_size)
                assert item[f'{part}_lq'].shape == (count, 3, lq_pad, lq_pad)
            lq, gt = crop_task_to_scale(item['support_lq'], item['support_gt'], scale, gt_size)
            assert gt.shape[-1] == lq.shape[-1] * scale
        else:
            scale = int(dataset_opt['scale'])
            lq, gt = item['lq'][None], item['gt'][None]
            if 'gt_size' in dataset_opt and dataset_opt['phase'] == 'train':
                assert gt.shape[-2:] == (dataset_opt['gt_size'], ) * 2
            assert gt.shape[-2:] == (lq.shape[-2] * scale, lq.shape[-1] * scale)
            if 'kernel' in item:
                assert item['kernel'].ndim == 2 and abs(float(item['kernel'].sum()) - 1) < 1e-4
        with torch.no_grad(), at_scale(net, scale):
            corner = lq[:1, :, :12, :12]  # keeps the full-size net cheap
            out = net(corner)
        assert out.shape[-2:] == (corner.shape[-2] * scale, corner.shape[-1] * scale)


def key_lines(text):
    """(line number, key path, documented) for every ``key:`` line; documented = a comment on it or right above."""
    stack, previous, rows = [], '', []
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r'^( *)([A-Za-z0-9_]+):', line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            rows.append((number, [k for _, k in stack], '#' in line or previous.lstrip().startswith('#')))
        if line.strip():
            previous = line
    return rows


def plugin_keys(name):
    """The keys only this plugin defines: of its datasets, MetaSRModel's train keys and val.adapt."""
    opt = raw_options(name)
    with open(osp.join(ROOT, 'options', name)) as f:
        rows = key_lines(f.read())
    keys = []
    for number, path, documented in rows:
        if path[0] == 'datasets' and len(path) == 3:
            plugin = is_plugin_dataset(opt['datasets'][path[1]]['type'])
            if plugin and path[2] not in BASICSR_DATASET_KEYS:
                keys.append((number, '.'.join(path), documented))
        elif path[0] == 'train' and len(path) == 2 and path[1] in META_TRAIN_KEYS:
            keys.append((number, '.'.join(path), documented))
        elif path[:2] == ['val', 'adapt']:
            keys.append((number, '.'.join(path), documented))
    return keys


def test_key_path_tracking_catches_an_undocumented_key():
    rows = key_lines('val:\n  adapt:  # why\n    steps: 10\n    # the schedule\n    lr: direct_x2\n  metrics:\n')
    assert rows == [(1, ['val'], False), (2, ['val', 'adapt'], True), (3, ['val', 'adapt', 'steps'], False),
                    (5, ['val', 'adapt', 'lr'], True), (6, ['val', 'metrics'], False)]


@pytest.mark.parametrize('name', OPTION_FILES)
def test_plugin_keys_are_documented_in_the_file(name):
    keys = plugin_keys(name)
    if any(is_plugin_dataset(d['type']) for d in raw_options(name)['datasets'].values()):
        assert keys, 'the plugin datasets have plugin keys (kernel, num_support...)'
    undocumented = [f'line {number}: {path}' for number, path, documented in keys if not documented]
    assert not undocumented, undocumented


def test_mzsr_and_zssr_test_files_cover_table_2_alike():
    direct, bicubic = raw_options('mzsr_test_x2.yml'), raw_options('mzsr_test_bicubic_x2.yml')
    zssr = raw_options('zssr_test_x2.yml')

    def by_name(opt):
        return {d['name']: d for d in opt['datasets'].values()}

    # The two methods are compared on the same inputs; MZSR's g^b_1.3 column belongs to the bicubic model.
    assert {**by_name(direct), **by_name(bicubic)} == by_name(zssr)
    assert {d['kernel'] for d in bicubic['datasets'].values()} == {'g_b_1.3'}
    cases = {(d['dataroot_gt'].split('/')[1], d['kernel']) for d in zssr['datasets'].values()}
    kernels = {'g_d_0.2', 'g_d_2.0', 'g_b_1.3', 'a_d_2.3562_4.0_1.0'}
    assert cases == {(s, k) for s in ('Set5', 'BSD100', 'Urban100') for k in kernels}
    assert len(zssr['datasets']) == 12 and len(by_name(zssr)) == 12
    for mzsr in (direct, bicubic):
        assert mzsr['val']['adapt']['steps'] == 10 and mzsr['val']['save_img'] is True
    assert zssr['val']['adapt']['mode'] == 'zssr' and zssr['path']['pretrain_network_g'] is None


def test_test_files_name_the_zoo_model_of_their_scale_and_downsampling():
    checked = []
    for name in OPTION_FILES:
        opt = raw_options(name)
        weights = (opt.get('path') or {}).get('pretrain_network_g')
        if opt['model_type'] != 'MetaSRModel' or 'train' in opt or not weights:
            continue
        downsample = {dataset_downsample(d) for d in opt['datasets'].values()}
        model = next((m for m in MODEL_ZOO.values() if weights == f'mzsr_plugin/weights/{m.weights}'), None)
        assert model is not None, f'{name}: {weights} is not a model of the zoo'
        assert opt['scale'] in model.scales and downsample == {model.downsample}, name
        checked.append(model.name)
    assert sorted(checked) == ['x2_bicubic', 'x2_direct', 'x4_direct']
