#!/usr/bin/env python
"""Blind MZSR: kernel estimates and MZSR(10) with them, beside the true kernel and a bicubic assumption, in one run.

Sets (``--sets``; HR from ../shared/data/benchmark, LR made as the official inputs: blur, keep every s-th pixel,
round to 8 bit):

- ``B100_random``: the first ``--images`` B100 images, each with a seeded random training-distribution kernel
  (official range, λ in [1, 5]);
- ``Set5_g_d_2.0``, ``Set5_g_d_0.2``: the paper's kernels;
- ``div2krk_x2``, ``div2krk_x4``: the last ``--images`` B100 images, each with a seeded DIV2KRK-style kernel
  (:func:`~mzsr_plugin.data.kernels.div2krk_kernel`: anisotropic, variances U[0.175 s, min(2.5 s, 10)], up to 25%
  multiplicative noise per kernel pixel), at x2 and x4 (the zoo's x4 model);
- ``--div2krk DIR``: a real DIV2KRK folder (``lr_x2/im_<i>.png``, ``gt/img_<i>_gt.png``, ``gt_k_x2/kernel_<i>.mat``;
  ``--div2krk-scale 4`` for ``lr_x4``/``gt_k_x4``), to compare with published numbers (KernelGAN+ZSSR x2: 30.36 dB).
  Its kernels are KernelGAN's, shifted for KernelGAN's sub-sampling: the true-kernel column uses them as given.

Every case is also run with each ``--noise`` (Gaussian std in grey levels, added to the 8-bit LR) and ``--jpeg``
quality (0: none), e.g. ``--noise 0,5 --jpeg 0,85``: the degradations of real photos.

Per estimator (``spectral``, ``learned``, and the ``kernelgan`` baseline unless ``--no-kernelgan``): kernel PSNR
against the true kernel (both on a 21x21 grid, peak = the true kernel's maximum), relative error of the kernel's
covariance (second moments), seconds per image; then PSNR of bicubic interpolation, of MZSR(0) (no adaptation: no
kernel), of MZSR(steps) with each estimated kernel and a clean son, with ``blind`` -- what ``mzsr-sr --kernel
estimate`` does by default: the default estimator, the noise read from the image (``--noise auto``) taken out of
its spectrum and reproduced in the son --, with the true kernel (clean son, and ``true + noise``: the noise read
reproduced in the son), and assuming bicubic (son = MATLAB bicubic downscale of the LR, no blur; skipped with
``--no-bicubic-assumption``). The per-set checks (the issue's targets) are of ``blind``. ``--figure`` draws true vs
estimated kernels.

    python scripts/bench_kernel.py [--images 20] [--kernelgan-iters 1000] [--figure kernels.png] [--json out.json]
    python scripts/bench_kernel.py --sets div2krk_x2,div2krk_x4 --images 10 --noise 0,5 --jpeg 0,85 --no-kernelgan
"""
import argparse
import cv2
import glob
import json
import numpy as np
import torch
from os import path as osp

import mzsr_plugin  # noqa: F401  (first: makes basicsr importable on any torchvision)
from mzsr_plugin.data.degradations import add_noise, jpeg_compress
from mzsr_plugin.data.kernels import (div2krk_kernel, kernel_covariance, load_kernel, parse_kernel_spec,
                                      random_gaussian_kernel)
from mzsr_plugin.evaluation import DegradedImage, bicubic_psnr, degraded_case, evaluate_adaptation
from mzsr_plugin.inference import load_network
from mzsr_plugin.kernel_estimation import DEFAULT_ESTIMATOR, estimate_kernel
from mzsr_plugin.noise_estimation import auto_noise_std
from mzsr_plugin.utils.figures import kernel_image, new_figure
from mzsr_plugin.utils.progress import progress, write

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCHMARK = osp.join(ROOT, '..', 'shared', 'data', 'benchmark')
GRID = 21
# The column of what mzsr-sr --kernel estimate does by default (see the loop in main).
BLIND = 'blind'
# The known kernel with the noise read reproduced in the son (mzsr-sr --kernel <file> --noise auto).
TRUE_NOISE = 'true + noise'


def on_grid(kernel, size=GRID):
    """A kernel zero-padded (or cut) around its centre to size x size."""
    k = np.asarray(kernel, dtype=np.float64)
    pad = (size - k.shape[0]) // 2
    return np.pad(k, pad) if pad >= 0 else k[-pad:k.shape[0] + pad, -pad:k.shape[0] + pad]


def kernel_errors(estimate, truth):
    est, true = on_grid(estimate), on_grid(truth)
    psnr = 10 * np.log10(true.max()**2 / np.mean((est - true)**2))
    c_true = kernel_covariance(true)
    return float(psnr), float(np.linalg.norm(kernel_covariance(est) - c_true) / np.linalg.norm(c_true))


def rgb(path):
    return cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]


SETS = ('B100_random', 'Set5_g_d_2.0', 'Set5_g_d_0.2', 'div2krk_x2', 'div2krk_x4')


def make_cases(benchmark, images, sets=SETS[:3], seed=100):
    """(group, case) pairs of the synthetic sets (see the module docstring), clean."""
    b100 = sorted(glob.glob(osp.join(benchmark, 'B100', '*.png')))
    cases = []
    for name in sets:
        if name == 'B100_random':
            for index, path in enumerate(b100[:images]):
                kernel = random_gaussian_kernel(2, 15, rng=np.random.default_rng((seed, index)))
                cases.append(('B100 random', degraded_case(osp.basename(path), rgb(path), kernel, 2)))
        elif name.startswith('Set5_'):
            spec = parse_kernel_spec(name[len('Set5_'):])
            for path in sorted(glob.glob(osp.join(benchmark, 'Set5', '*.png'))):
                cases.append((f'Set5 {spec.name}', degraded_case(osp.basename(path), rgb(path), spec.kernel, 2)))
        elif name.startswith('div2krk_x'):
            scale = int(name[len('div2krk_x'):])
            for index, path in enumerate(b100[-images:]):
                kernel = div2krk_kernel(scale, np.random.default_rng((seed, scale, index)))
                cases.append((f'DIV2KRK-style x{scale}', degraded_case(osp.basename(path), rgb(path), kernel, scale)))
        else:
            raise ValueError(f'--sets: unknown set {name!r}; known: {", ".join(SETS)}')
    return cases


def div2krk_cases(folder, scale=2, images=None):
    """(group, case) pairs of a real DIV2KRK folder: its LR, GT and KernelGAN's ground-truth kernels."""
    lr_paths = sorted(glob.glob(osp.join(folder, f'lr_x{scale}', 'im_*.png')),
                      key=lambda p: int(osp.basename(p)[3:-4]))[:images]
    if not lr_paths:
        raise FileNotFoundError(f'--div2krk {folder}: no lr_x{scale}/im_<i>.png (the DIV2KRK layout: lr_x2, gt, '
                                'gt_k_x2)')
    cases = []
    for path in lr_paths:
        index = osp.basename(path)[3:-4]
        gt_path = osp.join(folder, 'gt', f'img_{index}_gt.png')
        kernel_path = osp.join(folder, f'gt_k_x{scale}', f'kernel_{index}.mat')
        for needed in (gt_path, kernel_path):
            if not osp.isfile(needed):
                raise FileNotFoundError(f'--div2krk {folder}: {needed} is missing (next to {path})')
        lr = rgb(path).astype(np.float32) / 255
        gt = cv2.imread(gt_path, cv2.IMREAD_COLOR)
        gt = gt[:lr.shape[0] * scale, :lr.shape[1] * scale]
        lr_tensor = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None]
        kernel = torch.from_numpy(load_kernel(kernel_path))
        cases.append((f'DIV2KRK x{scale}', DegradedImage(f'im_{index}', lr_tensor, np.ascontiguousarray(gt), kernel,
                                                         scale)))
    return cases


def degraded(case, noise, quality, seed):
    """The case with Gaussian noise (std in grey levels, 8-bit rounded) and JPEG of ``quality`` (0: none) on its LR."""
    if not noise and not quality:
        return case
    lr = case.lr[0].permute(1, 2, 0).numpy()
    if noise:
        lr = np.round(add_noise(lr, noise / 255, rng=np.random.default_rng(seed)) * 255) / 255
    if quality:
        lr = jpeg_compress(lr, quality)
    lr_tensor = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1), dtype=np.float32))[None]
    return DegradedImage(case.name, lr_tensor, case.gt, case.kernel, case.scale, case.downsample)


def with_kernel(case, kernel, downsample='direct', noise_std=0.0):
    return DegradedImage(case.name, case.lr, case.gt, torch.from_numpy(np.asarray(kernel, dtype=np.float32)),
                         case.scale, downsample, noise_std)


def numbers(text, what, kind=float):
    """A comma-separated option as a list of ``kind`` (``--noise 0,5``); an error naming the option otherwise."""
    try:
        return [kind(v) for v in text.split(',')]
    except ValueError:
        raise ValueError(f'{what} {text!r}: expected comma-separated numbers, e.g. 0,5') from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--weights', help='MZSR weights (default: the model zoo\'s for each scale)')
    parser.add_argument('--benchmark', default=BENCHMARK)
    parser.add_argument('--sets', default=','.join(SETS[:3]), help=f'comma-separated, of {", ".join(SETS)}')
    parser.add_argument('--images', type=int, default=20, help='B100 images (B100_random, and div2krk_x* sets)')
    parser.add_argument('--div2krk', help='a real DIV2KRK folder (lr_x2/, gt/, gt_k_x2/), added to --sets')
    parser.add_argument('--div2krk-scale', type=int, default=2, choices=(2, 4))
    parser.add_argument('--noise', default='0', help='Gaussian noise std(s) in grey levels, e.g. 0,5')
    parser.add_argument('--jpeg', default='0', help='JPEG quality(ies), 0 = none, e.g. 0,85')
    parser.add_argument('--no-kernelgan', action='store_true')
    parser.add_argument('--no-bicubic-assumption', action='store_true', help='skip the bicubic-assumption column')
    parser.add_argument('--kernelgan-iters', type=int, default=1000)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--figure', help='PNG of true vs estimated kernels')
    parser.add_argument('--json', help='all numbers')
    args = parser.parse_args(argv)
    try:
        noises, qualities = numbers(args.noise, '--noise'), [int(q) for q in numbers(args.jpeg, '--jpeg')]
        clean = make_cases(args.benchmark, args.images, [s for s in args.sets.split(',') if s])
        if args.div2krk:
            clean += div2krk_cases(args.div2krk, args.div2krk_scale, args.images)
        nets = {scale: load_network(args.weights, scale, 'direct', args.device)
                for scale in sorted({case.scale for _, case in clean})}
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    estimators = ['spectral', 'learned'] + ([] if args.no_kernelgan else ['kernelgan'])
    cases = []
    for noise in noises:
        for quality in qualities:
            suffix = (f' n{noise:g}' if noise else '') + (f' q{quality}' if quality else '')
            cases += [(group + suffix, degraded(case, noise, quality, seed=index))
                      for index, (group, case) in enumerate(clean)]
    rows = []
    for group, case in progress(cases, 'bench_kernel', lines=False):  # one printed line per image below
        lr = case.lr[0].permute(1, 2, 0).numpy()
        truth = case.kernel.numpy()
        net = nets[case.scale]
        row = {'group': group, 'name': case.name, 'kernels': {'true': truth.tolist()}, 'bicubic': bicubic_psnr(case)}
        variants = {'true': with_kernel(case, truth)}
        if not args.no_bicubic_assumption:
            variants['bicubic assumption'] = with_kernel(case, np.ones((1, 1), np.float32), 'bicubic')
        for method in estimators:
            kernel, info = estimate_kernel(lr, case.scale, method, iterations=args.kernelgan_iters,
                                           device=args.device)
            row[method] = dict(zip(('kernel_psnr', 'cov_error'), kernel_errors(kernel, truth)),
                               seconds=info['seconds'])
            row['kernels'][method] = kernel.tolist()
            variants[method] = with_kernel(case, kernel)
        # What mzsr-sr --kernel estimate does by default: noise read from the image (--noise auto), taken out of the
        # spectrum and reproduced in the son.
        row['noise_read'] = auto_noise_std(lr) * 255
        if row['noise_read'] > 0:
            kernel, _ = estimate_kernel(lr, case.scale, DEFAULT_ESTIMATOR, noise_std=row['noise_read'] / 255)
            row[BLIND] = dict(zip(('kernel_psnr', 'cov_error'), kernel_errors(kernel, truth)))
            variants[BLIND] = with_kernel(case, kernel, noise_std=row['noise_read'] / 255)
            variants[TRUE_NOISE] = with_kernel(case, truth, noise_std=row['noise_read'] / 255)
        for label, variant in variants.items():
            result = evaluate_adaptation(net, [variant], (0, args.steps), device=args.device)[0]
            row.setdefault('mzsr', {})[label] = result.psnr[args.steps]
            row['mzsr0'] = result.psnr[0]  # no adaptation: the same for every kernel
        if row['noise_read'] == 0:  # nothing read: the default is the clean-son run of the default estimator
            row[BLIND] = {k: row[DEFAULT_ESTIMATOR][k] for k in ('kernel_psnr', 'cov_error')}
            row['mzsr'][BLIND] = row['mzsr'][DEFAULT_ESTIMATOR]
            row['mzsr'][TRUE_NOISE] = row['mzsr']['true']
        rows.append(row)
        estimates = '  '.join(f'{m}: k {row[m]["kernel_psnr"]:.1f} dB, cov {row[m]["cov_error"]:.2f}, '
                              f'{row[m]["seconds"]:.2f} s' for m in estimators)
        adapted = ' '.join(f'{k} {v:.2f}' for k, v in row['mzsr'].items())
        write(f'{group:<22} {case.name:<12} {estimates}  noise read {row["noise_read"]:.1f}  bicubic '
              f'{row["bicubic"]:.2f} MZSR(0) {row["mzsr0"]:.2f} MZSR({args.steps}) {adapted}')
    labels = estimators + [BLIND, 'true', TRUE_NOISE] + ([] if args.no_bicubic_assumption else ['bicubic assumption'])
    print(f'\n{"set":<22} {"n":>3}  ' + '  '.join(f'{m + " kPSNR/cov/s":>26}' for m in estimators) +
          f'  {"bicubic":>8} {"MZSR(0)":>8}  ' + '  '.join(f'{f"MZSR({args.steps}) " + label:>26}' for label in labels))
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
        summary[group]['bicubic'] = float(np.mean([r['bicubic'] for r in members]))
        summary[group]['mzsr0'] = float(np.mean([r['mzsr0'] for r in members]))
        # The per-image checks: the worst gap of the estimate to the true kernel, and images where
        # adaptation with the estimate ends under no adaptation at all.
        summary[group]['worst_gap'] = float(max(r['mzsr']['true'] - r['mzsr'][BLIND] for r in members))
        summary[group]['under_mzsr0'] = int(sum(r['mzsr'][BLIND] < r['mzsr0'] for r in members))
        summary[group]['noise_read'] = float(np.mean([r['noise_read'] for r in members]))
        s = summary[group]
        estimates = '  '.join(f'{s[m]["kernel_psnr"]:>12.2f} / {s[m]["cov_error"]:.2f} / {s[m]["seconds"]:.2f}'
                              for m in estimators)
        adapted = '  '.join(f'{s["mzsr"][label]:>26.2f}' for label in labels)
        print(f'{group:<22} {len(members):>3}  {estimates}  {s["bicubic"]:>8.2f} {s["mzsr0"]:>8.2f}  {adapted}')
    print(f'\n{BLIND} = the default of mzsr-sr --kernel estimate ({DEFAULT_ESTIMATOR} estimator without the noise '
          'floor, noise read from the image reproduced in the son); the estimator columns: clean son')
    print(f'{"set":<22} {"noise read":>10} {"blind - true (mean)":>20} {"worst image":>12} {"blind - bicubic":>16} '
          f'{"learned - spectral":>19} {"images under MZSR(0)":>21}')
    for group in groups:
        s = summary[group]
        m = s['mzsr']
        print(f'{group:<22} {s["noise_read"]:>10.2f} {m[BLIND] - m["true"]:>20.2f} {-s["worst_gap"]:>12.2f} '
              f'{m[BLIND] - s["bicubic"]:>16.2f} {m["learned"] - m["spectral"]:>19.2f} {s["under_mzsr0"]:>21}')
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
                       'kernelgan_iters': args.kernelgan_iters, 'device': args.device, 'noise': noises,
                       'jpeg': qualities, 'sets': args.sets, 'div2krk': args.div2krk}, f, indent=1)


if __name__ == '__main__':
    main()
