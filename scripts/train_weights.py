#!/usr/bin/env python
"""The recipe of the shipped weights: bicubic pretraining from scratch, meta-transfer, checkpoint selection.

Each stage is a normal ``mzsr_plugin.train`` run of an option file (overridden here only in data paths, names
and lengths), stopped after a wall-clock budget; checkpoints are written atomically, so stopping is safe and a
rerun continues (``--auto_resume``). Every meta checkpoint is then scored by PSNR after 0/1/10 adaptation steps on
held-out images with seeded random kernels, and the best one (PSNR after 10 steps) is copied to ``--out``.

Example (the GPU run of the model card)::

    python scripts/train_weights.py --train-dir ../shared/data/train/BSDS400 --val-dir ../shared/data/train/HQ70 \\
        --pretrain-minutes 3 --meta-minutes 4 --out mzsr_plugin/weights/mzsr_x2_direct.pth
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time
import torch
import yaml
from os import path as osp

from mzsr_plugin.data.kernel_test_dataset import MZSRKernelTestDataset
from mzsr_plugin.evaluation import evaluate_adaptation, images_from_dataset, load_mzsr_weights, mean_psnr

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pretrain-options', default=osp.join(ROOT, 'options', 'mzsr_pretrain_x2_local.yml'))
    parser.add_argument('--meta-options', default=osp.join(ROOT, 'options', 'mzsr_meta_x2_local.yml'))
    parser.add_argument('--train-dir', required=True, help='folder of HR training images')
    parser.add_argument('--val-dir', required=True, help='folder of held-out HR images for checkpoint selection')
    parser.add_argument('--val-images', type=int, default=6, help='how many held-out images to use')
    parser.add_argument('--pretrain-minutes', type=float, default=3.0)
    parser.add_argument('--meta-minutes', type=float, default=4.0)
    parser.add_argument('--pretrained', help='skip stage 1 and start meta-transfer from these weights')
    parser.add_argument('--workers', type=int, default=None, help='data loader workers per process')
    parser.add_argument('--checkpoint-every', type=int, default=None,
                        help='checkpoint interval (iterations) of both stages')
    parser.add_argument('--meta-engine', choices=['auto', 'loop', 'batched'], help='override train.meta_engine')
    parser.add_argument('--work-dir', default='.', help='where experiments/ and tb_logger/ are written')
    parser.add_argument('--out', required=True, help='where the selected weights (.pth) are written')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return parser.parse_args(argv)


def stage_options(template, name, train_dir, total_iter, workers, checkpoint_every, pretrained=None,
                  meta_engine=None):
    with open(template) as f:
        opt = yaml.safe_load(f)
    opt['name'] = name
    opt['num_gpu'] = 'auto'
    opt['datasets'] = {'train': dict(opt['datasets']['train'], dataroot_gt=osp.abspath(train_dir))}
    if workers is not None:
        opt['datasets']['train']['num_worker_per_gpu'] = workers
    opt.pop('val', None)  # checkpoints are scored afterwards, so training time goes to training
    if total_iter:
        opt['train']['total_iter'] = total_iter
    if meta_engine:
        opt['train']['meta_engine'] = meta_engine
    if checkpoint_every:
        opt['logger']['save_checkpoint_freq'] = checkpoint_every
    if pretrained:
        opt['path']['pretrain_network_g'] = osp.abspath(pretrained)
    return opt


def run_stage(opt, minutes, work_dir):
    """Runs one training stage for at most ``minutes``; returns its checkpoints, oldest first."""
    opt_file = osp.join(work_dir, f'{opt["name"]}.yml')
    with open(opt_file, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    cmd = [sys.executable, '-m', 'mzsr_plugin.train', '-opt', opt_file, '--auto_resume']
    print(f'[{opt["name"]}] {" ".join(cmd)}  (budget {minutes:.1f} min)', flush=True)
    start = time.time()
    try:
        subprocess.run(cmd, cwd=work_dir, timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        print(f'[{opt["name"]}] stopped after its budget ({time.time() - start:.0f} s)', flush=True)
    models = glob.glob(osp.join(work_dir, 'experiments', opt['name'], 'models', 'net_g_*.pth'))
    numbered = sorted((int(m), p) for p in models for m in re.findall(r'net_g_(\d+)\.pth$', p))
    if not numbered:
        print(f'[{opt["name"]}] produced no checkpoint; see its log under {work_dir}/experiments', flush=True)
    return [p for _, p in numbered]


def held_out_images(val_dir, count, scale=2, seed=100):
    """Held-out images degraded with seeded random meta-training kernels (the same every run)."""
    dataset = MZSRKernelTestDataset({'name': 'held_out', 'dataroot_gt': val_dir, 'io_backend': {'type': 'disk'},
                                     'scale': scale, 'kernel': 'random', 'kernel_seed': seed, 'max_images': count})
    return images_from_dataset(dataset)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    started = time.time()
    if args.pretrained:
        pretrained = args.pretrained
    else:
        opt = stage_options(args.pretrain_options, 'weights_pretrain_x2', args.train_dir, None, args.workers,
                            args.checkpoint_every)
        checkpoints = run_stage(opt, args.pretrain_minutes, args.work_dir)
        if not checkpoints:
            raise RuntimeError('pretraining produced no checkpoint: give it more time or a smaller --checkpoint-every')
        pretrained = checkpoints[-1]
    opt = stage_options(args.meta_options, 'weights_meta_x2', args.train_dir, 10**7, args.workers,
                        args.checkpoint_every, pretrained, args.meta_engine)
    checkpoints = [pretrained] + run_stage(opt, args.meta_minutes, args.work_dir)
    train_seconds = time.time() - started

    images = held_out_images(args.val_dir, args.val_images)
    scores = []
    for path in checkpoints:
        net = load_mzsr_weights(path, device=args.device)
        psnr = mean_psnr(evaluate_adaptation(net, images, (0, 1, 10), device=args.device))
        scores.append({'checkpoint': path, 'psnr': psnr})
        print(f'{osp.basename(path):>20}: ' + '  '.join(f'{s:>2} steps {v:.3f}' for s, v in psnr.items()), flush=True)
    best = max(scores[1:] or scores, key=lambda s: s['psnr'][10])
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    params = torch.load(best['checkpoint'], map_location='cpu', weights_only=True)['params']
    torch.save({'params': params}, args.out)
    summary = {'selected': best, 'scores': scores, 'train_seconds': train_seconds, 'device': args.device,
               'cuda_device': torch.cuda.get_device_name() if args.device.startswith('cuda') else None,
               'held_out': [i.name for i in images]}
    with open(osp.splitext(args.out)[0] + '_selection.json', 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'selected {best["checkpoint"]} -> {args.out}')


if __name__ == '__main__':
    main()
