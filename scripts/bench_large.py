#!/usr/bin/env python
"""Large images on CPU: wall time and peak memory of MZSR adaptation + SR, as ``mzsr-sr`` runs it.

Each case runs in a fresh child process, so that its peak resident memory (``ru_maxrss``) is its own: a 2048x2048
LR at x2 with tiled inference and adaptation on random crops (``mzsr-sr``'s defaults: ``--tile 512``,
``--crop-budget 1048576``) for each step count, beside untiled inference on a 512x512 LR. The LR is a synthetic
smooth image; the network is the shipped official-size MZSRNet (8 convs x 64 features) unless ``--weights``.

    nice -n 10 python scripts/bench_large.py [--size 2048] [--steps 0 1] [--threads 2] [--json out.json]
"""
import argparse
import json
import numpy as np
import resource
import subprocess
import sys
import time
import torch

MEMORY_LIMIT_GIB = 24


def _rss_gib():
    """Current resident memory of this process, GiB (Linux /proc)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 2**20
    return float('nan')


def _peak_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def synthetic_lr(size, seed=0):
    """A smooth, textured RGB LR image of shape (1, 3, size, size) in [0, 1] (the content does not change costs)."""
    import cv2
    rng = np.random.default_rng(seed)
    low = rng.random((max(size // 16, 2), max(size // 16, 2), 3)).astype(np.float32)
    img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img + 0.03 * rng.standard_normal(img.shape, dtype=np.float32), 0, 1)
    return torch.from_numpy(img.transpose(2, 0, 1).copy()).unsqueeze(0)


def run_case(args):
    """Runs one case in this process and prints its result as one JSON line."""
    torch.set_num_threads(args.threads)
    steps = args.steps[0]
    from mzsr_plugin.data.kernels import parse_kernel_spec
    from mzsr_plugin.inference import adaptation_lrs, load_network
    from mzsr_plugin.models.adaptation import super_resolve_image

    net = load_network(args.weights, args.scale, 'direct', 'cpu')
    lr = synthetic_lr(args.size)
    kernel = torch.from_numpy(parse_kernel_spec('g_d_2.0').kernel)
    lrs = adaptation_lrs(None, net, steps, args.scale, 'direct')
    setup_gib = _rss_gib()
    start = time.perf_counter()
    sr, info = super_resolve_image(net, lr, kernel, args.scale, steps, lrs, downsample='direct', tile=args.tile,
                                   crop_budget=args.crop_budget, rng=np.random.default_rng(0))
    seconds = time.perf_counter() - start
    assert sr.shape[-2:] == (args.size * args.scale, args.size * args.scale), sr.shape
    assert torch.isfinite(sr).all()
    print(json.dumps({
        'lr_size': args.size, 'scale': args.scale, 'steps': steps, 'tile': args.tile,
        'crop_budget': args.crop_budget, 'adapted_on': info['adapted_on'], 'seconds': round(seconds, 2),
        'setup_rss_gib': round(setup_gib, 3), 'peak_rss_gib': round(_peak_gib(), 3), 'threads': args.threads,
        'params': sum(p.numel() for p in net.parameters())
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=2048, help='LR side of the large image (default: %(default)s)')
    parser.add_argument('--small', type=int, default=512, help='LR side of the untiled baseline (default: %(default)s)')
    parser.add_argument('--steps', type=int, nargs='+', default=[0, 1], help='adaptation step counts (default: 0 1)')
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--tile', type=int, default=None, help="LR tile size (default: mzsr-sr's, 512)")
    parser.add_argument('--crop-budget', type=int, default=None, help="adaptation pixels (default: mzsr-sr's)")
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch threads per case')
    parser.add_argument('--weights', help='MZSRNet weights (default: the shipped ones)')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)  # a child: run one case
    args = parser.parse_args()
    if args.one:
        run_case(args)
        return

    from mzsr_plugin.models.adaptation import DEFAULT_CROP_BUDGET, DEFAULT_TILE
    tile = DEFAULT_TILE if args.tile is None else args.tile
    budget = DEFAULT_CROP_BUDGET if args.crop_budget is None else args.crop_budget
    cases = [(args.size, steps, tile) for steps in args.steps] + [(args.small, steps, 0) for steps in args.steps]
    results = []
    for size, steps, case_tile in cases:
        command = [sys.executable, __file__, '--one', '--size', str(size), '--steps', str(steps), '--scale',
                   str(args.scale), '--tile', str(case_tile), '--crop-budget', str(budget), '--threads',
                   str(args.threads)] + (['--weights', args.weights] if args.weights else [])
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f'case {size}x{size}, {steps} steps failed:\n{child.stderr[-3000:]}')
        result = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(result)
        mode = f'tiles of {case_tile}' if case_tile and size > case_tile else 'untiled'
        print(f'{size}x{size} LR -> x{args.scale}, {steps} step(s), {mode}, adapted on {result["adapted_on"]}: '
              f'{result["seconds"]:.1f} s, peak RSS {result["peak_rss_gib"]:.2f} GiB '
              f'(after loading: {result["setup_rss_gib"]:.2f} GiB)', flush=True)
    worst = max(r['peak_rss_gib'] for r in results)
    print(f'largest peak: {worst:.2f} GiB ({"within" if worst < MEMORY_LIMIT_GIB else "OVER"} '
          f'{MEMORY_LIMIT_GIB} GiB); {args.threads} torch thread(s)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
