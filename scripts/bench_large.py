#!/usr/bin/env python
"""Large photos on CPU: what ``mzsr-sr`` says it will take, what it takes, and its peak memory.

Each case is a synthetic photo of the given megapixels (4:3, a smooth texture with noise, JPEG quality 90, as a
phone writes) run through ``mzsr-sr --kernel estimate`` with its defaults (tiles of 512, the ``auto`` crop budget:
fewer adapted pixels above 4 LR megapixels, the self-check) in a fresh child process, so that the peak resident
memory (``ru_maxrss``) is the case's own. The child prints one JSON line: the estimate ``mzsr-sr`` printed before
the work (``expected_seconds``), the photo's measured time (``wall_seconds``: reading to writing), the whole
command's (with loading and calibration), the LR pixels adapted on and the peak RSS.

    nice -n 10 python scripts/bench_large.py [--megapixels 2 12 24] [--scales 2 4] [--steps 10] [--json out.json]
    python scripts/bench_large.py --megapixels 2 --scales 2 --precision fp32 auto    # side by side (docs/speed.md)
"""
import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from os import path as osp

# The target: a 12-megapixel photo at x2 with MZSR(10) within 4 GB, and within 20% of its estimate.
MEMORY_TARGET_GIB = 4
ESTIMATE_TOLERANCE = 0.2


def photo_shape(megapixels):
    """(height, width) of a 4:3 photo of about ``megapixels``, sides multiple of 8 (2 MP: 1224x1632)."""
    width = round((megapixels * 1e6 * 4 / 3)**0.5 / 8) * 8
    return width * 3 // 4, width


def write_photo(path, megapixels, seed=0):
    """A synthetic photo (smooth texture + noise 2/255, JPEG quality 90); its content does not change the costs."""
    import cv2
    import numpy as np
    height, width = photo_shape(megapixels)
    rng = np.random.default_rng(seed)
    low = rng.random((height // 32, width // 32, 3)).astype(np.float32)
    img = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC) * 255
    img += rng.standard_normal(img.shape, dtype=np.float32) * 2
    cv2.imwrite(path, np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])


def run_case(args):
    """Runs one case through mzsr-sr in this process and prints its result as one JSON line."""
    import torch
    torch.set_num_threads(args.threads)
    from mzsr_plugin import cli
    from mzsr_plugin.time_estimate import adapted_pixels
    with tempfile.TemporaryDirectory(prefix='bench_large_') as folder:
        photo = osp.join(folder, f'photo_{args.megapixels[0]:g}mp.jpg')
        write_photo(photo, args.megapixels[0])
        out = osp.join(folder, 'out')
        argv = [photo, '-o', out, '--kernel', 'estimate', '--scale', str(args.scales[0]), '--steps', str(args.steps),
                '--seed', '0', '--precision', args.precision[0]]
        start = time.perf_counter()
        cli.main(argv)
        command_seconds = time.perf_counter() - start
        with open(osp.join(out, 'metrics.json')) as f:
            row = json.load(f)['images'][0]
    print(json.dumps({
        'megapixels': args.megapixels[0], 'lr_size': row['lr_size'], 'scale': args.scales[0], 'steps': args.steps,
        'expected_seconds': row['expected_seconds'], 'wall_seconds': row['wall_seconds'],
        'adapted_pixels': adapted_pixels(*photo_shape(args.megapixels[0]), 'auto'),
        'command_seconds': round(command_seconds, 1), 'peak_rss_gib': round(_peak_gib(), 2),
        'threads': args.threads, 'precision': args.precision[0]
    }))


def _peak_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--megapixels', type=float, nargs='+', default=[2, 12, 24], help='photo sizes (default: '
                        '%(default)s)')
    parser.add_argument('--scales', type=int, nargs='+', default=[2, 4], help='SR scales (default: %(default)s)')
    parser.add_argument('--steps', type=int, default=10, help='adaptation steps (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=2, help='torch threads per case (default: %(default)s)')
    parser.add_argument('--precision', nargs='+', default=['auto'], choices=('auto', 'fp32', 'bf16'),
                        help='mzsr-sr --precision of each case, side by side (default: auto); the first is the '
                        'baseline of the speed ratio')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)  # a child: run one case
    args = parser.parse_args()
    if args.one:
        run_case(args)
        return
    results, baseline = [], {}
    for scale, megapixels, precision in itertools.product(args.scales, args.megapixels, args.precision):
        command = [sys.executable, __file__, '--one', '--megapixels', str(megapixels), '--scales', str(scale),
                   '--steps', str(args.steps), '--threads', str(args.threads), '--precision', precision]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f'case {megapixels:g} MP x{scale} failed:\n{child.stderr[-3000:]}')
        lines = child.stdout.strip().splitlines()
        r = json.loads(lines[-1])
        results.append(r)
        print(*[line for line in lines if line.startswith('mzsr-sr: this machine')], sep='\n')
        error = r['wall_seconds'] / r['expected_seconds'] - 1
        key = (scale, megapixels)
        baseline.setdefault(key, r['wall_seconds'])
        ratio = baseline[key] / r['wall_seconds']
        speed = f' ({ratio:.2f}x as fast as {args.precision[0]})' if len(args.precision) > 1 else ''
        print(f'{megapixels:g} MP ({r["lr_size"]} LR) x{scale}, MZSR({args.steps}), --precision {precision}{speed}, on '
              f'{r["adapted_pixels"] / 2**10:.0f}K LR pixels: expected '
              f'{r["expected_seconds"]:.0f} s, took {r["wall_seconds"]:.0f} s ({error:+.0%}; '
              f'{"within" if abs(error) <= ESTIMATE_TOLERANCE else "OUTSIDE"} {ESTIMATE_TOLERANCE:.0%}), whole '
              f'command {r["command_seconds"]:.0f} s, peak RSS {r["peak_rss_gib"]:.2f} GiB '
              f'({"under" if r["peak_rss_gib"] < MEMORY_TARGET_GIB else "OVER"} {MEMORY_TARGET_GIB} GiB)',
              flush=True)
    print(f'{args.threads} torch thread(s)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
