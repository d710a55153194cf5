#!/usr/bin/env python
"""Adaptation crop budgets of big photos: PSNR of MZSR(n) adapted on fewer LR pixels, against today's budget.

A big photo adapts on random crops of at most ``crop_budget`` LR pixels (``adaptation_crops``: crops of 512, all in
each step). The test: a mosaic of held-out HR images (64 HQ70 centre crops of 480x480, never trained on: the zoo's
x2 model is trained on BSDS400, HQ70 selects it) large enough that every budget binds, degraded by each kernel
(official protocol: blur, direct sub-sampling, 8-bit rounding), adapted with the zoo's model for each budget on
crops drawn by the same seeds, and scored (official PSNR: Y, shave = scale) on the same random LR windows, each
super-resolved with the margins that make it exact. The windows are a sample of the mosaic: the whole mosaic's SR
would cost as much as all the adaptations. Adaptation runs as ``mzsr-sr`` runs it (the ``auto`` precision, the
weights' step sizes), without the self-check: its held-out eighth is the same for every budget.

    nice -n 10 python scripts/bench_crop_budget.py [--budgets 1048576 524288 262144] [--kernels g_d_2.0 ...]
"""
import argparse
import cv2
import glob
import math
import numpy as np
import time
import torch
from os import path as osp

import mzsr_plugin  # noqa: F401  (first: makes basicsr importable on any torchvision)
from mzsr_plugin.data.kernels import parse_kernel_spec
from mzsr_plugin.evaluation import degraded_case
from mzsr_plugin.inference import adaptation_lrs, load_network
from mzsr_plugin.metrics.official_metric import calculate_mzsr_psnr
from mzsr_plugin.models.adaptation import ADAPT_CROP, at_scale, make_son, super_resolve
from mzsr_plugin.models.inner_loop import adapt, detached_params
from mzsr_plugin.models.tiling import adaptation_crops, required_overlap
from mzsr_plugin.precision import resolve_precision

HQ70 = osp.join(osp.dirname(__file__), '..', '..', 'shared', 'data', 'train', 'HQ70')
# The anisotropic kernel: the shape of the paper's aniso test kernels (45 degrees, variances 4 and 1).
KERNELS = ('g_d_2.0', 'aniso_0.785_4.0_1.0')


def mosaic(folder, side=480, grid=8):
    """HR mosaic (grid * side)^2, RGB uint8, of the centre crops of the first grid^2 images of ``folder`` at least
    ``side`` pixels on both sides (sorted by name)."""
    tiles = []
    for path in sorted(glob.glob(osp.join(folder, '*.png'))):
        img = cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]
        h, w = img.shape[:2]
        if min(h, w) >= side:
            tiles.append(img[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side])
        if len(tiles) == grid * grid:
            break
    if len(tiles) < grid * grid:
        raise SystemExit(f'{folder}: {len(tiles)} images of at least {side}x{side}; a {grid}x{grid} mosaic needs '
                         f'{grid * grid} (pass --hr-folder)')
    return np.concatenate([np.concatenate(tiles[r * grid:(r + 1) * grid], axis=1) for r in range(grid)], axis=0)


def windows(lr_shape, count, side, seed):
    """``count`` random LR windows (top, left) of side x side, the same for every budget."""
    h, w = lr_shape
    rng = np.random.default_rng(seed)
    return list(zip(rng.integers(0, h - side + 1, count).tolist(), rng.integers(0, w - side + 1, count).tolist()))


def window_psnr(net, params, case, spots, side, scale):
    """Mean official PSNR over the windows, each super-resolved with a margin that makes it exact."""
    margin = required_overlap(len(net.convs), scale)
    h, w = case.lr.shape[-2:]
    scores = []
    for top, left in spots:
        y0, x0 = max(top - margin, 0), max(left - margin, 0)
        sr = super_resolve(net, params, case.lr[..., y0:min(top + side + margin, h), x0:min(left + side + margin, w)])
        sr = sr[0, :, (top - y0) * scale:(top - y0 + side) * scale, (left - x0) * scale:(left - x0 + side) * scale]
        sr_bgr = np.round(sr.clamp(0, 1).permute(1, 2, 0).numpy()[..., ::-1] * 255).astype(np.uint8)
        gt = case.gt[top * scale:(top + side) * scale, left * scale:(left + side) * scale]
        scores.append(calculate_mzsr_psnr(sr_bgr, gt, scale))
    return float(np.mean(scores))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--budgets', type=int, nargs='+', default=[1024 * 1024, 512 * 1024, 256 * 1024],
                        help='crop budgets in LR pixels, the first the reference (default: %(default)s)')
    parser.add_argument('--kernels', nargs='+', default=list(KERNELS), help='kernel specs (default: %(default)s)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0], help='crop seeds (default: %(default)s)')
    parser.add_argument('--steps', type=int, default=10, help='adaptation steps (default: %(default)s)')
    parser.add_argument('--windows', type=int, default=12, help='LR windows of 256 scored (default: %(default)s)')
    parser.add_argument('--hr-folder', default=HQ70, help='held-out HR images (default: the shared HQ70)')
    parser.add_argument('--threads', type=int, default=2, help='torch threads (default: %(default)s)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale, side = 2, 256
    net = load_network(None, scale)
    precision = resolve_precision('auto', 'cpu')
    lrs = adaptation_lrs(None, net, args.steps, scale, 'direct')
    hr = mosaic(args.hr_folder)
    print(f'x{scale} MZSR({args.steps}), {osp.basename(net.weights_path)}, precision {precision}, '
          f'{args.threads} thread(s); HR mosaic {hr.shape[1]}x{hr.shape[0]} of 64 HQ70 crops, PSNR on '
          f'{args.windows} LR windows of {side}', flush=True)
    for spec in args.kernels:
        case = degraded_case(spec, hr, parse_kernel_spec(spec).kernel, scale)
        lr = precision.layout(case.lr)
        spots = windows(lr.shape[-2:], args.windows, side, seed=1)
        with at_scale(net, scale):
            start = precision.params(detached_params(net))
            base = window_psnr(net, start, case, spots, side, scale)
            print(f'{spec}: LR {lr.shape[-1]}x{lr.shape[-2]} ({lr.shape[-2] * lr.shape[-1] / 1e6:.2f} MP), '
                  f'MZSR(0) {base:.2f} dB', flush=True)
            reference = {}
            for budget in args.budgets:
                for seed in args.seeds:
                    began = time.perf_counter()
                    father = adaptation_crops(lr, budget, min(ADAPT_CROP, math.isqrt(budget)),
                                              np.random.default_rng(seed))
                    son = make_son(father, case.kernel, scale, 'direct')
                    with precision.steps():
                        params = adapt(net, start, son, father, lrs)
                    seconds = time.perf_counter() - began
                    psnr = window_psnr(net, params, case, spots, side, scale)
                    reference.setdefault(seed, psnr)
                    print(f'  budget {budget:>8} ({father.shape[0]} crops of {father.shape[-1]}), seed {seed}: '
                          f'{psnr:.2f} dB ({psnr - base:+.2f} over MZSR(0), {psnr - reference[seed]:+.3f} against '
                          f'budget {args.budgets[0]}), adaptation {seconds:.0f} s', flush=True)


if __name__ == '__main__':
    main()
