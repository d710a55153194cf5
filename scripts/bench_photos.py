#!/usr/bin/env python
"""Photos as they come: the default blind command against bicubic and the oracle, over a grid of degradations.

Each cell of the grid is a degradation of held-out HR images (the last ``--images`` of B100, a test set: nothing is
tuned on it), written to disk as a photo would be (PNG, or JPEG at the cell's quality) and super-resolved by the
same :func:`~mzsr_plugin.inference.run_image` as ``mzsr-sr``:

- ``blind``: what ``mzsr-sr photo --kernel estimate`` does by default (kernel estimated, noise and JPEG quality read
  from the file and reproduced in the son, the per-image self-check on);
- ``oracle``: the true kernel and downsampling (the zoo's bicubic model for plainly downscaled inputs), the true
  noise level and JPEG quality, the self-check on.

Degradations (``--kernels``): ``div2krk`` (a seeded DIV2KRK-style kernel per image: anisotropic, variances
U[0.175 s, min(2.5 s, 10)], 25% kernel noise; direct sub-sampling), ``g_d_0.2`` (nearly unblurred, aliased) and
``bicubic`` (plain MATLAB bicubic downscaling, the LR of most benchmarks and of every resize call); then Gaussian
noise (``--noise``, grey levels, 8-bit rounded) and JPEG (``--jpeg``, OpenCV, 0: PNG), at each ``--scales``.

Per cell: bicubic, blind and oracle PSNR (official: Y, shave = scale), blind - bicubic (mean and worst image),
images more than 0.2 dB under bicubic, blind - oracle, and how often the self-check fell back. ``--unchecked`` also
runs blind with ``--no-self-check``: what the self-check changes (dB) and costs (time ratio, adaptation + SR).

    python scripts/bench_photos.py --images 4 --kernels div2krk --noise 0,5 --jpeg 0,85 --scales 2
    python scripts/bench_photos.py --images 8 --json photos.json     # the whole grid (hours on a 2-core CPU)
"""
import argparse
import cv2
import glob
import itertools
import json
import numpy as np
import os
import tempfile
from bench_kernel import numbers  # scripts/ is on the path of a script run from it
from os import path as osp

import mzsr_plugin  # noqa: F401  (first: makes basicsr importable on any torchvision)
from mzsr_plugin.data.degradations import add_noise, degrade_np
from mzsr_plugin.data.kernels import div2krk_kernel, parse_kernel_spec
from mzsr_plugin.inference import KernelChoice, RunSettings, load_network, resolve_kernel, run_image
from mzsr_plugin.utils.progress import progress, write

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCHMARK = osp.join(ROOT, '..', 'shared', 'data', 'benchmark')
KERNELS = ('div2krk', 'g_d_0.2', 'bicubic')
# A blind result this far under bicubic counts as worse than bicubic (the self-check's promise).
TOLERANCE = 0.2


def degradation(name, scale, rng):
    """Kernel (k, k) and downsampling of a degradation of the grid."""
    if name == 'div2krk':
        return div2krk_kernel(scale, rng), 'direct'
    if name == 'bicubic':
        return np.ones((1, 1)), 'bicubic'
    if name.startswith('g_'):
        spec = parse_kernel_spec(name)
        return spec.kernel, spec.downsample
    raise ValueError(f'--kernels: unknown degradation {name!r}; known: {", ".join(KERNELS)} or a spec such as '
                     'g_d_2.0')


def write_case(folder, stem, hr, kernel, downsample, scale, noise, quality, seed):
    """Writes the GT (PNG) and the degraded LR as a photo file (PNG, or JPEG at ``quality``); returns both paths."""
    h, w = hr.shape[:2]
    gt = hr[:h - h % scale, :w - w % scale]
    lr = degrade_np(gt.astype(np.float64) / 255, kernel, scale, downsample)
    lr = np.clip(np.round(lr * 255), 0, 255) / 255
    if noise:
        lr = np.round(add_noise(lr, noise / 255, rng=np.random.default_rng(seed)) * 255) / 255
    gt_path = osp.join(folder, f'{stem}_GT.png')
    cv2.imwrite(gt_path, gt[..., ::-1])
    bgr = np.round(lr[..., ::-1] * 255).astype(np.uint8)
    lr_path = osp.join(folder, f'{stem}.jpg' if quality else f'{stem}.png')
    cv2.imwrite(lr_path, bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if quality else [])
    return lr_path, gt_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--benchmark', default=BENCHMARK, help='folder with B100/ (HR images)')
    parser.add_argument('--hr', help='another folder of HR images (e.g. ../shared/data/benchmark/Set5) instead of B100')
    parser.add_argument('--images', type=int, default=8, help='the last N images')
    parser.add_argument('--kernels', default=','.join(KERNELS), help=f'comma-separated, of {", ".join(KERNELS)}')
    parser.add_argument('--noise', default='0,2,5,10', help='noise stds in grey levels')
    parser.add_argument('--jpeg', default='0,95,85,75', help='JPEG qualities, 0 = PNG')
    parser.add_argument('--scales', default='2,4')
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--no-oracle', action='store_true', help='skip the oracle runs (half the time)')
    parser.add_argument('--unchecked', action='store_true', help='also run blind without the self-check')
    parser.add_argument('--json', help='all numbers')
    args = parser.parse_args(argv)
    try:
        noises, qualities = numbers(args.noise, '--noise'), numbers(args.jpeg, '--jpeg', int)
        scales = numbers(args.scales, '--scales', int)
        kinds = [k for k in args.kernels.split(',') if k]
        for kind in kinds:
            degradation(kind, 2, np.random.default_rng(0))
        folder = args.hr or osp.join(args.benchmark, 'B100')
        paths = sorted(glob.glob(osp.join(folder, '*.png')))[-args.images:]
        if not paths:
            raise FileNotFoundError(f'no HR images (*.png) in {folder} (--hr, --benchmark)')
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    nets = {}

    def net_for(scale, downsample):
        if (scale, downsample) not in nets:
            try:
                nets[scale, downsample] = load_network(None, scale, downsample)
            except (ValueError, FileNotFoundError):
                nets[scale, downsample] = None  # the zoo serves no such model
        return nets[scale, downsample]

    blind_choice = resolve_kernel('estimate')

    def run_case(lr_path, gt_path, scale, kernel, downsample, noise, quality):
        """One image of a cell: blind (and unchecked) and the oracle, as ``mzsr-sr`` runs them."""
        settings = RunSettings(scale=scale, steps=args.steps, seed=0)
        blind = run_image(lr_path, blind_choice, settings, net_for(scale, 'direct'), gt_path)
        row = {'bicubic': blind.metrics['psnr_bicubic'], 'blind': blind.metrics['psnr'],
               'noise_read': blind.noise['std'] * 255, 'seconds': blind.seconds,
               'fallback': blind.self_check['choice'] if blind.self_check else None}
        if args.unchecked:
            settings.self_check = False
            unchecked = run_image(lr_path, blind_choice, settings, net_for(scale, 'direct'), gt_path)
            row['unchecked'], row['unchecked_seconds'] = unchecked.metrics['psnr'], unchecked.seconds
        oracle_net = net_for(scale, downsample)
        if not args.no_oracle and oracle_net is not None:
            truth = RunSettings(scale=scale, steps=args.steps, seed=0, noise=noise, jpeg=quality or 'none')
            oracle = run_image(lr_path, KernelChoice(kernel, downsample, 'true'), truth, oracle_net, gt_path)
            row['oracle'] = oracle.metrics['psnr']
        return row

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for scale, kind, noise, quality in itertools.product(scales, kinds, noises, qualities):
            cell = f'x{scale} {kind} n{noise:g} ' + (f'q{quality}' if quality else 'png')
            for index, path in progress(list(enumerate(paths)), cell, lines=False):  # one printed line per image
                kernel, downsample = degradation(kind, scale, np.random.default_rng((100, scale, index)))
                stem = osp.splitext(osp.basename(path))[0]
                hr = cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]
                lr_path, gt_path = write_case(folder, stem, hr, kernel, downsample, scale, noise, quality, index)
                row = run_case(lr_path, gt_path, scale, kernel, downsample, noise, quality)
                row.update(cell=cell, image=stem, noise=noise)
                rows.append(row)
                os.remove(lr_path)
                write(f'{cell:<22} {stem:<10} bicubic {row["bicubic"]:.2f} blind {row["blind"]:.2f} '
                      f'(noise read {row["noise_read"]:.1f}, self-check: {row["fallback"]})'
                      + (f' oracle {row["oracle"]:.2f}' if 'oracle' in row else ''))
    summary = {}
    print(f'\n{"cell":<22} {"n":>2} {"bicubic":>8} {"blind":>7} {"blind-bic":>9} {"worst":>7} {"under":>5} '
          f'{"oracle":>7} {"blind-oracle":>12} {"fallbacks":>9} {"noise read":>10} {"noise err":>9}'
          + (f' {"check dB":>8} {"check time":>10}' if args.unchecked else ''))
    for cell in dict.fromkeys(r['cell'] for r in rows):
        members = [r for r in rows if r['cell'] == cell]
        gains = [r['blind'] - r['bicubic'] for r in members]
        oracle = [r['oracle'] for r in members if 'oracle' in r]
        s = summary[cell] = {
            'images': len(members), 'bicubic': float(np.mean([r['bicubic'] for r in members])),
            'blind': float(np.mean([r['blind'] for r in members])), 'gain': float(np.mean(gains)),
            'worst': float(min(gains)), 'under': int(sum(g < -TOLERANCE for g in gains)),
            'oracle': float(np.mean(oracle)) if len(oracle) == len(members) else None,
            'fallbacks': int(sum(r['fallback'] not in (None, f'MZSR({args.steps})') for r in members)),
            'noise_read': float(np.mean([r['noise_read'] for r in members])),
            'noise_error': float(np.mean([abs(r['noise_read'] - r['noise']) for r in members]))
        }
        if args.unchecked:
            s['check_gain'] = float(np.mean([r['blind'] - r['unchecked'] for r in members]))
            s['check_time'] = float(sum(r['seconds'] for r in members) / sum(r['unchecked_seconds'] for r in members))
        oracle_text = (f'{s["oracle"]:>7.2f} {s["blind"] - s["oracle"]:>12.2f}' if s['oracle'] is not None else
                       f'{"n/a":>7} {"n/a":>12}')
        print(f'{cell:<22} {s["images"]:>2} {s["bicubic"]:>8.2f} {s["blind"]:>7.2f} {s["gain"]:>9.2f} '
              f'{s["worst"]:>7.2f} {s["under"]:>5} {oracle_text} {s["fallbacks"]:>9} {s["noise_read"]:>10.2f} '
              f'{s["noise_error"]:>9.2f}'
              + (f' {s["check_gain"]:>8.2f} {s["check_time"]:>10.2f}' if args.unchecked else ''))
    print(f'\nblind = mzsr-sr --kernel estimate with its defaults (noise and JPEG read from the file, self-check on); '
          f'oracle = true kernel, noise and JPEG quality; worst = the worst image\'s blind - bicubic; under = images '
          f'more than {TOLERANCE} dB under bicubic; fallbacks = images whose self-check chose bicubic or MZSR(0); '
          'noise read / err = the level blind read (grey levels) and its mean absolute error'
          + ('; check dB / time = blind with the self-check against without it (PSNR difference, time ratio).'
             if args.unchecked else '.'))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'summary': summary, 'rows': rows, 'args': vars(args)}, f, indent=1)


if __name__ == '__main__':
    main()
