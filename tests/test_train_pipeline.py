"""Pretraining through the stock BasicSR entrypoint, run as users run it: checkpoints, TensorBoard, resume."""
import glob
import os
import re
import shutil
import subprocess
import sys
import torch
from os import path as osp

import basicsr
from helpers import write_images, write_options

STOCK_TRAIN = osp.join(osp.dirname(basicsr.__file__), 'train.py')


def _pretrain_options(root, total_iter):
    hr = osp.join(root, 'hr')
    val_hr = osp.join(root, 'val_hr')
    if not osp.isdir(hr):
        write_images(hr, 3, 80, 96, seed=1)
        write_images(val_hr, 2, 48, 40, seed=2)
    return {
        'name': 'pretrain_smoke',
        'model_type': 'MetaSRModel',
        'scale': 2,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            'train': {
                'name': 'synthetic', 'type': 'MZSRBicubicPairDataset', 'dataroot_gt': hr,
                'io_backend': {'type': 'disk'}, 'gt_size': 32, 'use_hflip': True, 'use_rot': True,
                'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 20
            },
            'val': {
                'name': 'synthetic_val', 'type': 'MZSRBicubicPairDataset', 'dataroot_gt': val_hr,
                'io_backend': {'type': 'disk'}, 'gt_size': 32, 'use_hflip': False, 'use_rot': False
            },
        },
        'network_g': {'type': 'MZSRNet', 'num_feat': 16, 'num_conv': 4, 'scale': 2},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'mode': 'pretrain',
            'optim_g': {'type': 'Adam', 'lr': 1e-3},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5},
            'total_iter': total_iter,
            'warmup_iter': -1,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
        },
        'val': {'val_freq': 4, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True}}},
        'logger': {'print_freq': 2, 'save_checkpoint_freq': 4, 'use_tb_logger': True},
    }


def _run_stock_train(checkout, opt_file, *extra):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    return subprocess.run([sys.executable, osp.join(checkout, 'basicsr', 'train.py'), '-opt', opt_file, *extra],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=600)


def test_stock_basicsr_train_pretrains_and_resumes(tmp_path):
    # A BasicSR checkout as users have it: its basicsr/train.py, run as a script, no edit.
    checkout = tmp_path / 'BasicSR'
    (checkout / 'basicsr').mkdir(parents=True)
    shutil.copy(STOCK_TRAIN, checkout / 'basicsr' / 'train.py')
    opt_file = write_options(tmp_path / 'pretrain.yml', _pretrain_options(str(tmp_path / 'data'), 8))

    first = _run_stock_train(str(checkout), str(opt_file))
    assert first.returncode == 0, first.stderr[-3000:]
    exp = checkout / 'experiments' / 'pretrain_smoke'
    assert sorted(p.name for p in (exp / 'models').iterdir()) == ['net_g_4.pth', 'net_g_8.pth', 'net_g_latest.pth']
    assert sorted(p.name for p in (exp / 'training_states').iterdir()) == ['4.state', '8.state']
    assert glob.glob(str(checkout / 'tb_logger' / 'pretrain_smoke' / 'events.out.tfevents.*'))
    log = open(glob.glob(str(exp / 'train_*.log'))[0]).read()
    psnrs = [float(v) for v in re.findall(r'# psnr: ([0-9.]+)', log)]
    assert len(psnrs) >= 2 and all(15 < v < 60 for v in psnrs), psnrs
    weights = torch.load(exp / 'models' / 'net_g_8.pth', weights_only=True)['params']
    assert weights['convs.0.weight'].shape == (16, 3, 3, 3)

    # Resume on a CPU-only machine: 8 -> 12 iterations, optimizer state carried over.
    opt_file = write_options(tmp_path / 'pretrain.yml', _pretrain_options(str(tmp_path / 'data'), 12))
    second = _run_stock_train(str(checkout), str(opt_file), '--auto_resume')
    assert second.returncode == 0, second.stderr[-3000:]
    log = open(sorted(glob.glob(str(exp / 'train_*.log')))[-1]).read()
    assert 'Resuming training from epoch' in log and 'iter: 8.' in log
    assert (exp / 'training_states' / '12.state').exists()
    state = torch.load(exp / 'training_states' / '12.state', weights_only=False)
    assert state['iter'] == 12 and state['optimizers'][0]['state'][0]['step'] == 12
