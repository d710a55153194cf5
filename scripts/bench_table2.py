#!/usr/bin/env python
"""The paper's Tables 1-3 layout: test sets x kernels, bicubic / ZSSR / MZSR(0, 1, 10), with time, at any scale.

Sets (HR from ../shared/data/benchmark, LR made as the official inputs: correlate, keep every s-th pixel or MATLAB
bicubic, round): Set5, B100 (first 20 images), Urban100 (first 5); ``--sets B100:100`` takes another count.
Kernels: g^d_0.2, g^d_2.0 and the anisotropic g^d_ani of ``options/mzsr_test_x2.yml`` (Table 2); ``--kernels
g_b_1.3`` is the bicubic Table 1, ``--scale 4`` the x4 rows. Without ``--weights`` the model zoo's model for the
scale and the kernels' downsampling is measured (a file whose record contradicts them is refused). ZSSR takes
minutes per image on a CPU: ``--zssr-sets Set5`` limits it (the rest are marked as not run). ZSSR does not depend on
the MZSR weights, so ``--zssr-cache`` keeps its result per image (PSNR, seconds, iterations, machine), written after
every image: a rerun for new weights, or after an interruption, only runs the images not cached. Prints a Markdown
table (PSNR dB, seconds per image in brackets) and writes it with ``--out``.

    python scripts/bench_table2.py --zssr-sets Set5 --zssr-cache zssr.json --out table2.md
    python scripts/bench_table2.py --kernels g_b_1.3 --sets Set5,B100:100,Urban100:5 --zssr-sets Set5
    python scripts/bench_table2.py --scale 4 --kernels g_d_2.0 --sets Set5
"""
import argparse
import json
import numpy as np
import os
import time
import torch
from os import path as osp

import mzsr_plugin  # noqa: F401  (first: makes basicsr importable on any torchvision)
from bench_adapt import zssr_row
from mzsr_plugin.campaign.runner import machine_label
from mzsr_plugin.data.kernel_test_dataset import MZSRKernelTestDataset
from mzsr_plugin.data.kernels import parse_kernel_spec
from mzsr_plugin.evaluation import bicubic_psnr, evaluate_adaptation, file_sha256, images_from_dataset
from mzsr_plugin.inference import load_network
from mzsr_plugin.utils.progress import progress

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCHMARK = osp.join(ROOT, '..', 'shared', 'data', 'benchmark')
SETS = {'Set5': None, 'B100': 20, 'Urban100': 5}
KERNELS = ('g_d_0.2', 'g_d_2.0', 'a_d_2.3562_4.0_1.0')
STEPS = (0, 1, 10)


def cases(benchmark, name, limit, kernel, scale=2):
    dataset = MZSRKernelTestDataset({'name': f'{name}_{kernel}', 'dataroot_gt': osp.join(benchmark, name),
                                     'io_backend': {'type': 'disk'}, 'scale': scale, 'kernel': kernel,
                                     'max_images': limit})
    return images_from_dataset(dataset)


def parse_sets(text):
    """``Set5,B100:100`` -> ``[('Set5', None), ('B100', 100)]`` (default counts: :data:`SETS`)."""
    sets = []
    for item in text.split(','):
        name, _, count = item.partition(':')
        try:
            sets.append((name, int(count) if count else SETS.get(name)))
        except ValueError:
            raise ValueError(f'--sets {item!r}: expected NAME or NAME:COUNT, e.g. B100:100') from None
    return sets


def load_cache(file):
    if not file or not osp.isfile(file):
        return {}
    try:
        with open(file) as f:
            cache = json.load(f)
    except ValueError as error:
        raise ValueError(f'--zssr-cache {file}: not a JSON file of cached ZSSR results ({error})') from None
    if not isinstance(cache, dict):
        raise ValueError(f'--zssr-cache {file}: expected a JSON object keyed by case, got {type(cache).__name__}')
    return cache


def save_cache(file, cache):
    tmp = f'{file}.tmp'
    with open(tmp, 'w') as f:
        json.dump(cache, f, indent=1, sort_keys=True)
    os.replace(tmp, file)


def zssr_cells(images, set_name, kernel, args, cache):
    """ZSSR per image, from the cache where it holds the case (same set, kernel, image, iteration cap and seed)."""
    entries = []
    for image in images:
        # x2 keys carry no scale: the cache predates the other scales.
        key = f'{set_name}/{kernel}/{image.name}/iters{args.zssr_iters}/seed0' + (
            f'/x{args.scale}' if args.scale != 2 else '')
        if key not in cache:
            psnr, seconds, iterations = zssr_row(image, args.device, args.zssr_iters, seed=0)
            cache[key] = {'psnr': psnr, 'seconds': seconds, 'iterations': iterations,
                          'machine': machine_label(args.device)}
            print(f'  ZSSR {key}: {psnr:.2f} dB, {iterations} iterations, {seconds:.0f} s', flush=True)
            if args.zssr_cache:
                save_cache(args.zssr_cache, cache)
        entries.append(cache[key])
    return entries


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--weights', help='MZSR weights (default: the model zoo\'s for --scale and the kernels)')
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--benchmark', default=BENCHMARK)
    parser.add_argument('--sets', default=','.join(SETS), help='NAME or NAME:COUNT (first COUNT images), comma-'
                        f'separated; default counts {SETS}')
    parser.add_argument('--kernels', default=','.join(KERNELS))
    parser.add_argument('--zssr-sets', default='', help='comma-separated sets to run ZSSR on (default: none)')
    parser.add_argument('--zssr-iters', type=int, default=3000)
    parser.add_argument('--zssr-cache', help='JSON file of ZSSR results per image, read and extended')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', help='write the Markdown table here (and the numbers as .json beside it)')
    args = parser.parse_args(argv)
    try:
        sets = parse_sets(args.sets)
        downsample = {parse_kernel_spec(k).downsample for k in args.kernels.split(',')}
        if len(downsample) != 1:
            raise ValueError(f'--kernels {args.kernels}: one table is one downsampling (direct g_d_/a_d_ or '
                             'bicubic g_b_/a_b_ kernels), not both')
        downsample = downsample.pop()
        net = load_network(args.weights, args.scale, downsample, args.device)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    args.weights = net.weights_path
    zssr_sets = {s for s in args.zssr_sets.split(',') if s}
    machine = machine_label(args.device)
    try:
        cache = load_cache(args.zssr_cache)
    except ValueError as error:
        parser.error(str(error))
    columns, cells, zssr_machines = [], {}, set()
    for name, limit in sets:
        for kernel in args.kernels.split(','):
            images = cases(args.benchmark, name, limit, kernel, args.scale)
            column = f'{name} ({len(images)}) {kernel}'
            columns.append(column)
            start = time.perf_counter()
            bicubic = [bicubic_psnr(image) for image in images]
            cells[('Bicubic', column)] = (float(np.mean(bicubic)), (time.perf_counter() - start) / len(images))
            results = evaluate_adaptation(net, progress(images, f'MZSR {column}', name=lambda im: im.name), STEPS,
                                          device=args.device)
            for steps in STEPS:
                cells[(f'MZSR({steps})', column)] = (float(np.mean([r.psnr[steps] for r in results])),
                                                     float(np.mean([r.seconds[steps] for r in results])))
            if name in zssr_sets:
                entries = zssr_cells(images, name, kernel, args, cache)
                cells[('ZSSR', column)] = (float(np.mean([e['psnr'] for e in entries])),
                                           float(np.mean([e['seconds'] for e in entries])))
                zssr_machines.update(e['machine'] for e in entries)
            print(f'{column}: ' + ', '.join(f'{m} {v[0]:.2f}' for (m, c), v in cells.items() if c == column),
                  flush=True)
    methods = ['Bicubic', 'ZSSR'] + [f'MZSR({s})' for s in STEPS]
    zssr_note = f'; ZSSR (at most {args.zssr_iters} iterations) on {", ".join(sorted(zssr_machines))}'
    lines = [f'x{args.scale} {downsample}, weights `{osp.relpath(args.weights, ROOT)}`, MZSR on {machine}'
             f'{zssr_note if zssr_machines else ""}: PSNR dB (seconds per image)', '',
             '| method | ' + ' | '.join(columns) + ' |', '|---|' + '---|' * len(columns)]
    for method in methods:
        row = [f'{cells[(method, c)][0]:.2f} ({cells[(method, c)][1]:.2f} s)' if (method, c) in cells else 'not run'
               for c in columns]
        lines.append(f'| {method} | ' + ' | '.join(row) + ' |')
    table = '\n'.join(lines)
    print('\n' + table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table + '\n')
        with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
            json.dump({'machine': machine, 'zssr_machines': sorted(zssr_machines), 'scale': args.scale,
                       'downsample': downsample,
                       'weights': osp.relpath(args.weights, ROOT), 'weights_sha256': file_sha256(args.weights),
                       'cells': {f'{m} | {c}': v for (m, c), v in cells.items()}}, f, indent=1)


if __name__ == '__main__':
    main()
