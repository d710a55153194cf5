#!/usr/bin/env python
"""Blind MZSR: kernel estimates and MZSR(10) with them, beside the true kernel and a bicubic assumption, in one run.

Cases: B100 (first ``--images``, default 20) each degraded with a seeded random training-distribution kernel
(official range, λ in [1, 5]), and Set5 with g^d_2.0 and g^d_0.2, made as the official inputs (direct x2, rounded).
Per estimator (``spectral``, and the ``kernelgan`` baseline unless ``--no-kernelgan``): kernel PSNR against the true
kernel (both on a 21x21 grid, peak = the true kernel's maximum), relative error of the kernel's covariance
(second moments), seconds per image; then MZSR(10) PSNR with the estimated kernel, with the true kernel, and
assuming bicubic (son = MATLAB bicubic downscale of the LR, no blur). ``--figure`` draws true vs estimated kernels.

    python scripts/bench_kernel.py [--images 20] [--kernelgan-iters 1000] [--figure kernels.png] [--json out.json]
"""
import argparse
import cv2
import glob
import json
import numpy as np
import torch
from os import path as osp

import mzsr_plugin  # noqa: F401  (first: makes basicsr importable on any torchvision)
from mzsr_plugin.data.kernels import parse_kernel_spec, random_gaussian_kernel
from mzsr_plugin.model_zoo import MODEL_ZOO
from mzsr_plugin.evaluation import DegradedImage, degraded_case, evaluate_adaptation, load_mzsr_weights
from mzsr_plugin.kernel_estimation import estimate_kernel
from mzsr_plugin.utils.figures import kernel_image, new_figure

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCHMARK = osp.join(ROOT, '..', 'shared', 'data', 'benchmark')
GRID = 21


def on_grid(kernel, size=GRID):
    """A kernel zero-padded (or cut) around its centre to size x size."""
    k = np.asarray(kernel, dtype=np.float64)
    pad = (size - k.shape[0]) // 2
    return np.pad(k, pad) if pad >= 0 else k[-pad:k.shape[0] + pad, -pad:k.shape[0] + pad]


def covariance(kernel):
    k = kernel / kernel.sum()
    coords = np.arange(k.shape[0]) - (k.shape[0] - 1) / 2
    yy, xx = np.meshgrid(coords, coords, indexing='ij')
    my, mx = (k * yy).sum(), (k * xx).sum()
    cyy, cxx, cxy = (k * (yy - my)**2).sum(), (k * (xx - mx)**2).sum(), (k * (yy - my) * (xx - mx)).sum()
    return np.array([[cyy, cxy], [cxy, cxx]])


def kernel_errors(estimate, truth):
    est, true = on_grid(estimate), on_grid(truth)
    psnr = 10 * np.log10(true.max()**2 / np.mean((est - true)**2))
    c_true = covariance(true)
    return float(psnr), float(np.linalg.norm(covariance(est) - c_true) / np.linalg.norm(c_true))


def rgb(path):
    return cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]


def make_cases(benchmark, images, seed=100):
    cases = []
    for index, path in enumerate(sorted(glob.glob(osp.join(benchmark, 'B100', '*.png')))[:images]):
        kernel = random_gaussian_kernel(2, 15, rng=np.random.default_rng((seed, index)))
        cases.append(('B100 random', degraded_case(osp.basename(path), rgb(path), kernel, 2)))
    for spec in ('g_d_2.0', 'g_d_0.2'):
        for path in sorted(glob.glob(osp.join(benchmark, 'Set5', '*.png'))):
            cases.append((f'Set5 {spec}', degraded_case(osp.basename(path), rgb(path), parse_kernel_spec(spec).kernel,
                                                        2)))
    return cases


def with_kernel(case, kernel, downsample='direct'):
    return DegradedImage(case.name, case.lr, case.gt, torch.from_numpy(np.asarray(kernel, dtype=np.float32)),
                         case.scale, downsample)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--weights', default=MODEL_ZOO['x2_direct'].path)
    parser.add_argument('--benchmark', default=BENCHMARK)
    parser.add_argument('--images', type=int, default=20, help='B100 images')
    parser.add_argument('--no-kernelgan', action='store_true')
    parser.add_argument('--kernelgan-iters', type=int, default=1000)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--figure', help='PNG of true vs estimated kernels')
    parser.add_argument('--json', help='all numbers')
    args = parser.parse_args(argv)
    net = load_mzsr_weights(args.weights, 2, args.device)
    estimators = ['spectral'] + ([] if args.no_kernelgan else ['kernelgan'])
    cases = make_cases(args.benchmark, args.images)
    rows = []
    for group, case in cases:
        lr = case.lr[0].permute(1, 2, 0).numpy()
        truth = case.kernel.numpy()
        row = {'group': group, 'name': case.name, 'kernels': {'true': truth.tolist()}}
        variants = {'true': with_kernel(case, truth),
                    'bicubic assumption': with_kernel(case, np.ones((1, 1), np.float32), 'bicubic')}
        for method in estimators:
            kernel, info = estimate_kernel(lr, 2, method, iterations=args.kernelgan_iters, device=args.device)
            row[method] = dict(zip(('kernel_psnr', 'cov_error'), kernel_errors(kernel, truth)),
                               seconds=info['seconds'])
            row['kernels'][method] = kernel.tolist()
            variants[method] = with_kernel(case, kernel)
        for label, variant in variants.items():
            result = evaluate_adaptation(net, [variant], (args.steps, ), device=args.device)[0]
            row.setdefault('mzsr', {})[label] = result.psnr[args.steps]
        rows.append(row)
        estimates = '  '.join(f'{m}: k {row[m]["kernel_psnr"]:.1f} dB, cov {row[m]["cov_error"]:.2f}, '
                              f'{row[m]["seconds"]:.2f} s' for m in estimators)
        adapted = ' '.join(f'{k} {v:.2f}' for k, v in row['mzsr'].items())
        print(f'{group:<14} {case.name:<12} {estimates}  MZSR({args.steps}) {adapted}', flush=True)
    labels = estimators + ['true', 'bicubic assumption']
    print(f'\n{"set":<14} {"n":>3}  ' + '  '.join(f'{m + " kPSNR/cov/s":>26}' for m in estimators) + '  ' +
          '  '.join(f'{f"MZSR({args.steps}) " + label:>26}' for label in labels))
    groups = list(dict.fromkeys(r['group'] for r in rows)) + ['all']
    summary = {}
    for group in groups:
        members = [r for r in rows if group in ('all', r['group'])]
        summary[group] = {
            m: {k: float(np.mean([r[m][k] for r in members]))
                for k in ('kernel_psnr', 'cov_error', 'seconds')}
            for m in estimators
        }
        summary[group]['mzsr'] = {label: float(np.mean([r['mzsr'][label] for r in members])) for label in labels}
        s = summary[group]
        estimates = '  '.join(f'{s[m]["kernel_psnr"]:>12.2f} / {s[m]["cov_error"]:.2f} / {s[m]["seconds"]:.2f}'
                              for m in estimators)
        adapted = '  '.join(f'{s["mzsr"][label]:>26.2f}' for label in labels)
        print(f'{group:<14} {len(members):>3}  {estimates}  {adapted}')
    if args.figure:
        shown = rows[:min(len(rows), 8)]
        fig = new_figure(1.6 * len(shown), 1.7 * (1 + len(estimators)))
        axes = np.atleast_2d(fig.subplots(1 + len(estimators), len(shown), squeeze=False))
        for column, row in enumerate(shown):
            for line, label in enumerate(['true'] + estimators):
                ax = axes[line, column]
                ax.imshow(kernel_image(on_grid(np.array(row['kernels'][label]))), interpolation='nearest')
                title = osp.splitext(row['name'])[0][:10] if line == 0 else f'{row[label]["kernel_psnr"]:.1f} dB'
                ax.set_title(title, fontsize=7)
                ax.set_xticks([])
                ax.set_yticks([])
                if column == 0:
                    ax.set_ylabel(label, fontsize=8)
        fig.tight_layout()
        fig.savefig(args.figure, dpi=110)
        print(f'saved {args.figure}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'summary': summary, 'rows': [{k: v for k, v in r.items() if k != 'kernels'} for r in rows],
                       'kernelgan_iters': args.kernelgan_iters, 'device': args.device}, f, indent=1)


if __name__ == '__main__':
    main()
