"""Options that cannot silently lie: every section the plugin reads is checked against its schema before any work.

The three mistakes that first showed the problem (``val.adapt.step``, ``max_imgs``, ``lr: -0.5``) are run as a user
would, through ``python -m mzsr_plugin.test``; the rest of the rejected cases are built directly, each message
asserted. Every shipped option file must pass, and the option tables of docs/options.md must equal the schemas.
"""
import contextlib
import glob
import io
import pytest
import subprocess
import sys
import torch
import yaml
from os import path as osp

from helpers import write_images, write_options
from mzsr_plugin import cli
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.data.bicubic_pair_dataset import MZSRBicubicPairDataset
from mzsr_plugin.data.kernel_test_dataset import MZSRKernelTestDataset
from mzsr_plugin.data.meta_task_dataset import MZSRMetaTaskDataset
from mzsr_plugin.models.adaptation import ADAPT_LR_PRESETS, DEFAULT_CROP_BUDGET, DEFAULT_TILE
from mzsr_plugin.models.meta_sr_model import MetaSRModel
from mzsr_plugin.option_schema import (DATASET_SECTIONS, LR_PRESETS, META_TRAIN, SECTIONS, VAL_ADAPT, Number,
                                       OptionError, check_section, markdown_table)
from mzsr_plugin.zssr import ZSSR_DEFAULTS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OPTION_FILES = sorted(glob.glob(osp.join(ROOT, 'options', '*.yml')))

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('schema')
    write_images(str(root / 'hr'), 2, 32, 32)
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, root / 'w.pth')
    return root


def test_option_tool_mistakes_stop_python_m_test_before_any_work(files, tmp_path):
    """The issue's three mistakes, as a user makes them in an option file for ``python -m mzsr_plugin.test``."""
    base = {
        'name': 'typo', 'model_type': 'MetaSRModel', 'scale': 2, 'num_gpu': 0,
        'datasets': {'test': {'name': 'set', 'type': 'MZSRKernelTestDataset', 'dataroot_gt': str(files / 'hr'),
                              'io_backend': {'type': 'disk'}, 'kernel': 'g_d_2.0'}},
        'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3, 'scale': 2},
        'path': {'pretrain_network_g': str(files / 'w.pth'), 'strict_load_g': True},
        'val': {'save_img': False, 'adapt': {'steps': 1}, 'metrics': {'psnr': {'type': 'calculate_mzsr_psnr',
                                                                               'crop_border': 2}}},
    }
    cases = [
        ({'val': dict(base['val'], adapt={'step': 10})},
         "val.adapt: unknown key 'step' (did you mean 'steps'?)"),
        ({'datasets': {'test': dict(base['datasets']['test'], max_imgs=1)}},
         "dataset 'set' (MZSRKernelTestDataset): unknown key 'max_imgs' (did you mean 'max_images'?)"),
        ({'val': dict(base['val'], adapt={'steps': 10, 'lr': -0.5})},
         'val.adapt: lr must be a preset (bicubic, direct_x2, direct_x4, multiscale, learned), a number > 0, a list '
         'of numbers > 0, or ~; got -0.5'),
    ]
    for number, (change, message) in enumerate(cases):
        option_file = write_options(str(tmp_path / f'typo{number}.yml'), {**base, **change, 'name': f'typo{number}'})
        run = subprocess.run([sys.executable, '-m', 'mzsr_plugin.test', '-opt', option_file], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode != 0
        assert message in run.stderr, run.stderr[-2000:]
        # Stopped before testing: no image was super-resolved.
        assert not glob.glob(str(tmp_path / 'results' / f'typo{number}' / 'visualization' / '*' / '*.png'))


def meta_train(files, **train):
    opt = {
        'name': 'schema', 'model_type': 'MetaSRModel', 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
        'rank': 0, 'world_size': 1, 'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3, 'scale': 2},
        'path': {'pretrain_network_g': str(files / 'w.pth'), 'strict_load_g': True, 'models': str(files),
                 'training_states': str(files)},
        'train': {'mode': 'meta', 'optim_g': {'type': 'Adam', 'lr': 1e-4}, 'total_iter': 10,
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}, **train},
    }
    return MetaSRModel(opt)


def meta_dataset(files, **opt):
    return MZSRMetaTaskDataset({'name': 'tasks', 'dataroot_gt': str(files / 'hr'), 'io_backend': {'type': 'disk'},
                                'scale': 2, 'gt_size': 16, **opt})


def kernel_dataset(files, **opt):
    return MZSRKernelTestDataset({'name': 'val', 'dataroot_gt': str(files / 'hr'), 'io_backend': {'type': 'disk'},
                                  'scale': 2, 'kernel': 'g_d_2.0', **opt})


def pair_dataset(files, **opt):
    return MZSRBicubicPairDataset({'name': 'pairs', 'dataroot_gt': str(files / 'hr'), 'io_backend': {'type': 'disk'},
                                   'scale': 2, 'gt_size': 16, **opt})


REJECTED = [
    # MetaSRModel's train keys
    ('train typo', lambda f: meta_train(f, inner_step=3),
     "train: unknown key 'inner_step' (did you mean 'inner_steps'?)"),
    ('train inner_lr 0', lambda f: meta_train(f, inner_lr=0), 'train: inner_lr must be a number > 0; got 0'),
    ('train inner_lr negative', lambda f: meta_train(f, inner_lr=-1e-2),
     'train: inner_lr must be a number > 0; got -0.01'),
    ('train inner_steps float', lambda f: meta_train(f, inner_steps=2.5),
     'train: inner_steps must be a whole number >= 1; got 2.5'),
    ('train first_order string', lambda f: meta_train(f, first_order='yes'),
     "train: first_order must be true or false; got 'yes'"),
    ('train first_order_iters negative', lambda f: meta_train(f, first_order_iters=-1),
     'train: first_order_iters must be a whole number >= 0; got -1'),
    ('train loss_weight_decay negative', lambda f: meta_train(f, loss_weight_decay=-1e-5),
     'train: loss_weight_decay must be a number >= 0; got -1e-05'),
    ('train grad_clip_norm 0', lambda f: meta_train(f, grad_clip_norm=0),
     'train: grad_clip_norm must be a number > 0 or ~; got 0'),
    ('train inner_lr_meta_lr negative', lambda f: meta_train(f, learn_inner_lr=True, inner_lr_meta_lr=-1),
     'train: inner_lr_meta_lr must be a number > 0; got -1'),
    ('train learn_inner_lr typo', lambda f: meta_train(f, learn_inner_lrs=True),
     "train: unknown key 'learn_inner_lrs' (did you mean 'learn_inner_lr'?)"),
    ('train nan', lambda f: meta_train(f, inner_lr=float('nan')), 'train: inner_lr must be a number > 0; got nan'),
    # MZSRMetaTaskDataset
    ('tasks typo', lambda f: meta_dataset(f, num_supports=4),
     "dataset 'tasks' (MZSRMetaTaskDataset): unknown key 'num_supports' (did you mean 'num_support'?)"),
    ('tasks isotropic_prob > 1', lambda f: meta_dataset(f, isotropic_prob=1.5),
     "dataset 'tasks' (MZSRMetaTaskDataset): isotropic_prob must be a number >= 0 and <= 1; got 1.5"),
    ('tasks even kernel', lambda f: meta_dataset(f, kernel_size=14),
     "dataset 'tasks' (MZSRMetaTaskDataset): kernel_size must be an odd whole number >= 1; got 14"),
    ('tasks num_query 0', lambda f: meta_dataset(f, num_query=0),
     "dataset 'tasks' (MZSRMetaTaskDataset): num_query must be a whole number >= 1; got 0"),
    ('tasks lambda_min 0', lambda f: meta_dataset(f, lambda_min=0),
     "dataset 'tasks' (MZSRMetaTaskDataset): lambda_min must be a number > 0; got 0"),
    ('tasks scale_list of floats', lambda f: meta_dataset(f, scale_list=[2, 2.5]),
     "dataset 'tasks' (MZSRMetaTaskDataset): scale_list must be a non-empty list of whole numbers >= 1, or ~; "
     'got [2, 2.5]'),
    ('tasks noise negative', lambda f: meta_dataset(f, noise_level=-0.1),
     "dataset 'tasks' (MZSRMetaTaskDataset): noise_level must be a number >= 0; got -0.1"),
    ('tasks use_rot string', lambda f: meta_dataset(f, use_rot='false'),
     "dataset 'tasks' (MZSRMetaTaskDataset): use_rot must be true or false; got 'false'"),
    ('tasks gt_size not a multiple', lambda f: meta_dataset(f, gt_size=15), 'tasks: gt_size 15 must be a multiple'),
    # MZSRKernelTestDataset
    ('val typo', lambda f: kernel_dataset(f, kernel_seeds=3),
     "dataset 'val' (MZSRKernelTestDataset): unknown key 'kernel_seeds' (did you mean 'kernel_seed'?)"),
    ('val max_images 0', lambda f: kernel_dataset(f, max_images=0),
     "dataset 'val' (MZSRKernelTestDataset): max_images must be a whole number >= 1 or ~; got 0"),
    ('val round_lq number', lambda f: kernel_dataset(f, round_lq=1),
     "dataset 'val' (MZSRKernelTestDataset): round_lq must be true or false; got 1"),
    ('val scale 0', lambda f: kernel_dataset(f, scale=0),
     "dataset 'val' (MZSRKernelTestDataset): scale must be a whole number >= 1 or ~; got 0"),
    # MZSRBicubicPairDataset
    ('pairs typo', lambda f: pair_dataset(f, gt_szie=16),
     "dataset 'pairs' (MZSRBicubicPairDataset): unknown key 'gt_szie' (did you mean 'gt_size'?)"),
    ('pairs gt_size 0', lambda f: pair_dataset(f, gt_size=0),
     "dataset 'pairs' (MZSRBicubicPairDataset): gt_size must be a whole number >= 1; got 0"),
]


@pytest.mark.parametrize('case', REJECTED, ids=[c[0] for c in REJECTED])
def test_rejected_option_names_section_key_and_expectation(files, case):
    name, build, message = case
    with pytest.raises(ValueError) as info:
        build(files)
    assert message in str(info.value)
    print(f'{name}: {info.value}')


VAL_ADAPT_REJECTED = [
    ({'steps': -1}, 'val.adapt: steps must be a whole number >= 0; got -1'),
    ({'steps': True}, 'val.adapt: steps must be a whole number >= 0; got True'),
    ({'lr': [1e-2, 0]}, 'val.adapt: lr must be a preset'),
    ({'lr': 'fast'}, "got 'fast'"),
    ({'tile': -5}, 'val.adapt: tile must be a whole number >= 0 or ~; got -5'),
    ({'zssr_iters': 0}, 'val.adapt: zssr_iters must be a whole number >= 1; got 0'),
    ({'self_ensembel': True}, "val.adapt: unknown key 'self_ensembel' (did you mean 'self_ensemble'?)"),
    ({'mode': 'ZSSR'}, "val.adapt: mode must be one of 'mzsr', 'zssr'; got 'ZSSR'"),
]


@pytest.mark.parametrize('adapt,message', VAL_ADAPT_REJECTED)
def test_val_adapt_is_checked_when_the_model_is_built(files, adapt, message):
    opt = {'name': 'schema', 'model_type': 'MetaSRModel', 'scale': 2, 'num_gpu': 0, 'is_train': False,
           'dist': False, 'rank': 0, 'world_size': 1,
           'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3, 'scale': 2},
           'path': {'pretrain_network_g': str(files / 'w.pth'), 'strict_load_g': True}, 'val': {'adapt': adapt}}
    with pytest.raises(OptionError) as info:
        MetaSRModel(opt)
    assert message in str(info.value)


def test_basicsr_keys_of_shared_sections_pass(files):
    model = meta_train(files, warmup_iter=-1, ema_decay=0, pixel_opt={'type': 'L1Loss'})
    assert model.inner_steps == 5
    dataset = meta_dataset(files, batch_size_per_gpu=2, num_worker_per_gpu=0, dataset_enlarge_ratio=1,
                           prefetch_mode=None, pin_memory=False, phase='train', type='MZSRMetaTaskDataset')
    assert len(dataset) == 2


def test_unknown_key_without_a_close_match_lists_the_known_keys():
    with pytest.raises(OptionError) as info:
        check_section(VAL_ADAPT, {'zzz': 1})
    assert "unknown key 'zzz'; known keys: back_projection, crop_budget, jpeg, log_psnr, lr" in str(info.value)


def test_number_checks():
    assert Number(whole=True, low=1).ok(3) and not Number(whole=True, low=1).ok(3.0)
    assert not Number().ok(True) and not Number().ok('1') and not Number().ok(float('inf'))
    assert Number(whole=True, low=1, odd=True).ok(15) and not Number(whole=True, low=1, odd=True).ok(16)
    assert Number(low=0, high=1).ok(1) and not Number(low=0, high=1).ok(1.01)
    assert Number(low=0, low_open=True).ok(1e-9) and not Number(low=0, low_open=True).ok(0)


@pytest.mark.parametrize('option_file', OPTION_FILES, ids=osp.basename)
def test_every_shipped_option_file_passes_the_schemas(option_file):
    with open(option_file) as f:
        opt = yaml.safe_load(f)
    checked = 0
    if opt['model_type'] == 'MetaSRModel':
        if 'train' in opt:
            check_section(META_TRAIN, opt['train'], 'train')
            checked += 1
        if opt.get('val'):
            check_section(VAL_ADAPT, opt['val'].get('adapt'))
            checked += 1
    for dataset in opt['datasets'].values():
        if dataset['type'] in DATASET_SECTIONS:
            check_section(DATASET_SECTIONS[dataset['type']], dataset)
            checked += 1
    # Only a stock-SRModel file (MZSRNet trained by BasicSR's own model and datasets) has nothing of ours to check.
    assert checked or opt['model_type'] == 'SRModel', f'{osp.basename(option_file)}: no section checked'


def test_docs_option_tables_are_the_schemas():
    with open(osp.join(ROOT, 'docs', 'options.md')) as f:
        page = f.read()
    for section in SECTIONS:
        assert markdown_table(section) in page, (
            f'docs/options.md lacks the current table of {section.title}: paste `python scripts/option_tables.py`')


def test_schema_defaults_and_choices_match_the_readers():
    assert set(LR_PRESETS) == set(ADAPT_LR_PRESETS) | {'learned'}
    assert VAL_ADAPT.key('tile').default == DEFAULT_TILE
    assert VAL_ADAPT.key('crop_budget').default == DEFAULT_CROP_BUDGET
    assert VAL_ADAPT.key('zssr_iters').default == ZSSR_DEFAULTS['max_iters']
    assert META_TRAIN.key('inner_steps').default == 5 and META_TRAIN.key('inner_lr').default == 1e-2


@pytest.mark.parametrize('argv,message', [
    (['--lr', '-0.5'], "--lr '-0.5': expected a preset"),
    (['--lr', '1e-2,0'], "--lr '1e-2,0': expected a preset"),
    (['--tile', '-1'], '--tile must be a whole number >= 0 or ~; got -1'),
    (['--crop-budget', '-4'], '--crop-budget must be a whole number >= 0 or ~; got -4'),
    (['--zssr-iters', '0'], '--zssr-iters must be a whole number >= 1; got 0'),
    (['--back-projection', '-2'], '--back-projection must be a whole number >= 0; got -2'),
    (['--seed', '-3'], '--seed must be a whole number >= 0 or ~; got -3'),
])
def test_mzsr_sr_flags_share_the_val_adapt_checks(files, tmp_path, argv, message):
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stderr(stderr):
        cli.main([str(files / 'hr' / 'img000.png'), '-o', str(tmp_path / 'out'), '--kernel', 'g_d_2.0', '--weights',
                  str(files / 'w.pth')] + argv)
    assert message in str(stop.value.code) + stderr.getvalue()
    assert not osp.exists(tmp_path / 'out')
