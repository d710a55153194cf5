#!/usr/bin/env python
"""MZSR vs ZSSR per image, in one run: PSNR and wall time of bicubic, MZSR(0/1/10), ZSSR.

Test sets: the official Set5 g^d_2.0 inputs (../shared/data/mzsr_official: LR, GT and kernel as the paper used
them) and scikit-image photos degraded with the demo's anisotropic kernel. MZSR rows are given for each weights
file passed (``--weights``, default: the shipped weights; ``--official`` adds the converted official
bicubic-pretrained network). The last lines give the ZSSR time / MZSR(10) time ratio per image and the achieved
GFLOP/s of one adaptation step beside a large matmul on the same device.

``--precision`` prints only the precision table instead (docs/speed.md): the float32 NCHW reference, float32
channels_last and the bf16 policy (bf16 adaptation steps, float32 SR), plus bf16 everywhere, on Set5 g^d_2.0 at
1 and 10 steps, interleaved per image, with the CPU's bf16 instructions and what ``--precision auto`` picks.
``--tf-python`` adds the official TensorFlow meta-test graph on the same CPU (``scripts/tf_official_meta_test.py``,
run by that interpreter; never in CI) and then runs every row on the official pretrained checkpoint, which both
sides load: the same weights, inputs and step sizes, so the PSNRs must agree and only the times differ.

    python scripts/bench_adapt.py [--device cuda] [--zssr-iters 3000 | --no-zssr] [--official PATH.pth]
    python scripts/bench_adapt.py --precision [--repeats 2] [--tf-python ~/tf/bin/python]
"""
import argparse
import contextlib
import functools
import json
import numpy as np
import os
import subprocess
import tempfile
import time
import torch
from os import path as osp

import mzsr_plugin  # noqa: F401  (first: makes basicsr importable on any torchvision)
from basicsr.utils import tensor2img
# The sibling script's timing helpers (scripts/ is on sys.path when a script in it runs).
from bench_meta import count_flops, matmul_gflops, sync, time_it
from mzsr_plugin.data.kernel_test_dataset import MZSRKernelTestDataset
from mzsr_plugin.demo import DEMO_IMAGES, DEMO_KERNEL, skimage_case
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.evaluation import evaluate_adaptation, images_from_dataset, load_mzsr_weights
from mzsr_plugin.model_zoo import MODEL_ZOO
from mzsr_plugin.metrics.official_metric import calculate_mzsr_psnr
from mzsr_plugin.models.adaptation import at_scale, make_son, resolve_adapt_lrs, super_resolve_image
from mzsr_plugin.models.cuda_graphs import GraphedAdaptation
from mzsr_plugin.models.inner_loop import detached_params, sgd_step
from mzsr_plugin.precision import FP32_REFERENCE, Precision, hardware_line, resolve_precision
from mzsr_plugin.utils.matlab_resize import imresize_pt
from mzsr_plugin.utils.tf_checkpoint import convert_mzsr_checkpoint
from mzsr_plugin.utils.progress import progress
from mzsr_plugin.zssr import zssr_super_resolve

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OFFICIAL = osp.join(ROOT, '..', 'shared', 'data', 'mzsr_official')
STEPS = (0, 1, 10)


def set5_g20(official_dir):
    dataset = MZSRKernelTestDataset({
        'name': 'Set5_g20', 'scale': 2, 'io_backend': {'type': 'disk'},
        'dataroot_lq': osp.join(official_dir, 'Input', 'g20', 'Set5'),
        'dataroot_gt': osp.join(official_dir, 'GT', 'Set5'), 'gt_filename_tmpl': '{}_GT',
        'kernel_file': osp.join(official_dir, 'Input', 'g20', 'kernel.mat')})
    return images_from_dataset(dataset)


def graphed_rows(net, cases, device, repeats=5):
    """CUDA-graph adaptation per image: ms of MZSR(1) and MZSR(10) (steady-state replay and first call) and PSNR."""
    rows = []
    for _, image in cases:
        lr, kernel = image.lr.to(device), image.kernel.to(device)
        son = make_son(lr, kernel, image.scale, image.downsample)
        row = {'name': image.name}
        with at_scale(net, image.scale):
            for steps in (1, 10):
                lrs = resolve_adapt_lrs(None, steps, image.scale, image.downsample, learned=net.inner_lrs)
                graphed = GraphedAdaptation(net, steps)
                start = time.perf_counter()
                sr, _ = graphed(son, lr, lr, lrs)
                sync(device)
                first = time.perf_counter() - start
                start = time.perf_counter()
                for _ in range(repeats):
                    sr, _ = graphed(son, lr, lr, lrs)
                sync(device)
                row[steps] = ((time.perf_counter() - start) / repeats, first,
                              calculate_mzsr_psnr(tensor2img(sr), image.gt, crop_border=image.scale))
        rows.append(row)
    return rows


# The policies compared by ``--precision``: (label, precision, bf16 SR forward too). The last row shows why the bf16
# policy keeps its SR forward in float32.
def precision_variants(device):
    device_type = torch.device(device).type
    return [('fp32 NCHW (reference)', FP32_REFERENCE, False),
            ('fp32 channels_last', Precision('fp32', True, 'fp32', 'bench', device_type), False),
            ('bf16 steps, fp32 SR (bf16)', resolve_precision('bf16', device), False),
            ('bf16 steps and SR', resolve_precision('bf16', device), True)]


def auto_label(device):
    """The row of :func:`precision_variants` that ``--precision auto`` runs on ``device``."""
    auto = resolve_precision('auto', device)
    for label, precision, bf16_sr in precision_variants(device):
        if not bf16_sr and (precision.name, precision.channels_last) == (auto.name, auto.channels_last):
            return label
    raise AssertionError(f'no row for {auto}')


def precision_table(net, images, device, steps_list=(1, 10), repeats=2):
    """PSNR and seconds per image of each precision policy (:func:`precision_variants`), interleaved per image so
    that load on a shared machine hits every policy alike; the time is the best of ``repeats`` runs.

    Returns:
        dict: ``{(label, steps): [(psnr, seconds) per image]}``.
    """
    rows = {}
    for image in progress(images, 'precision', name=lambda im: im.name):
        lr, kernel = image.lr.to(device), image.kernel.to(device)
        for steps in steps_list:
            lrs = resolve_adapt_lrs(None, steps, image.scale, image.downsample, learned=net.inner_lrs)
            for label, precision, bf16_sr in precision_variants(device):
                seconds = []
                for _ in range(repeats):
                    outer = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16_sr else
                             contextlib.nullcontext())
                    with outer:
                        sr, info = super_resolve_image(net, lr, kernel, image.scale, steps, lrs, image.downsample,
                                                       tile=None, crop_budget=None, precision=precision)
                    seconds.append(info['seconds'])
                psnr = calculate_mzsr_psnr(tensor2img(sr.float()), image.gt, crop_border=image.scale)
                rows.setdefault((label, steps), []).append((psnr, min(seconds)))
    return rows


TF_LABEL = 'official TF graph (fp32)'


def official_pretrained(official_dir, device):
    """The official bicubic-pretrained network (its TF checkpoint, converted in memory) and the checkpoint prefix."""
    prefix = osp.join(official_dir, 'Pretrained', 'Pretrained')
    state, _ = convert_mzsr_checkpoint(prefix)
    net = MZSRNet(scale=2)
    net.load_state_dict(state)
    return net.to(device).eval(), prefix


def tf_official_rows(images, python, checkpoint, steps_list=(1, 10), repeats=2):
    """The official TF meta-test graph on the images, timed by ``scripts/tf_official_meta_test.py`` under
    ``python``: the son and the bicubic upsampling come from the plugin (outside TF's time), the SGD steps with the
    official direct step sizes and the SR forward from TensorFlow.

    Returns:
        dict: ``{(TF_LABEL, steps): [(psnr, seconds) per image]}``, as :func:`precision_table`.
    """
    arrays = {}
    for i, image in enumerate(images):
        son = make_son(image.lr, image.kernel, image.scale, image.downsample)
        son_up = imresize_pt(son, image.scale)[..., :image.lr.shape[-2], :image.lr.shape[-1]]
        for key, tensor in (('son_up', son_up), ('lr', image.lr), ('lr_up', imresize_pt(image.lr, image.scale))):
            arrays[f'{key}_{i}'] = tensor[0].permute(1, 2, 0).numpy().astype(np.float32)
    for steps in steps_list:
        arrays[f'lrs_{steps}'] = np.array(resolve_adapt_lrs(None, steps, 2, 'direct'), dtype=np.float64)
    script = osp.join(osp.dirname(osp.abspath(__file__)), 'tf_official_meta_test.py')
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = osp.join(tmp, 'inputs.npz'), osp.join(tmp, 'out.npz')
        np.savez(inputs, **arrays)
        command = [python, script, inputs, checkpoint, out, '--threads', str(torch.get_num_threads()),
                   '--repeats', str(repeats)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f'--tf-python {python}: {" ".join(command)} failed (exit {done.returncode}):\n'
                             f'{done.stderr[-2000:]}')
        print(done.stdout.strip().splitlines()[-1])
        results = dict(np.load(out))
    rows = {}
    for steps in steps_list:
        for i, image in enumerate(images):
            sr = torch.from_numpy(results[f'sr_{steps}_{i}']).permute(2, 0, 1)[None]
            psnr = calculate_mzsr_psnr(tensor2img(sr), image.gt, crop_border=image.scale)
            rows.setdefault((TF_LABEL, steps), []).append((psnr, float(results[f'seconds_{steps}'][i])))
    return rows


def print_precision_table(rows, names, device):
    reference = 'fp32 NCHW (reference)'
    print(f'\n{"policy":<28}{"steps":>6}' + ''.join(f'{n[:10]:>11}' for n in names) +
          f'{"mean dB":>9}{"vs ref":>8}{"worst":>8}{"s/img":>8}{"speed":>7}')
    for (label, steps), cells in rows.items():
        psnr = np.array([c[0] for c in cells])
        ref = np.array([c[0] for c in rows[(reference, steps)]])
        seconds = np.mean([c[1] for c in cells])
        speed = np.mean([c[1] for c in rows[(reference, steps)]]) / seconds
        print(f'{label:<28}{steps:>6}' + ''.join(f'{p:>11.3f}' for p in psnr) +
              f'{psnr.mean():>9.3f}{(psnr - ref).mean():>+8.3f}{(psnr - ref).min():>+8.3f}{seconds:>8.2f}'
              f'{speed:>6.2f}x')
    for steps in sorted({steps for label, steps in rows if label == TF_LABEL}):
        tf_seconds = np.mean([c[1] for c in rows[(TF_LABEL, steps)]])
        ours = np.mean([c[1] for c in rows[(auto_label(device), steps)]])
        print(f'{steps} step(s): --precision auto ({auto_label(device)}) {ours:.2f} s/img, the official TF graph '
              f'{tf_seconds:.2f} s/img: {tf_seconds / ours:.2f}x as fast as TensorFlow')


def conv_kernel_table(device, size=256, rounds=7):
    """What one hidden conv (64 -> 64, 3x3, on a ``size``² LR) costs per policy: forward, the input gradient and the
    weight gradient, in ms and GFLOP/s. An adaptation step is one of each per hidden layer, so the slowest kernel
    bounds what a policy can gain. The kernels take turns, one call each per round, and the best round is kept, so
    that a slow spell of a shared machine does not land on one policy.

    Returns:
        list[tuple[str, dict[str, tuple[float, float]]]]: Per policy, ``{kernel: (ms, GFLOP/s)}``.
    """
    flops = 2 * 64 * 64 * 9 * size * size
    kernels = {}
    for label, dtype, memory_format in (('fp32 NCHW', torch.float32, torch.contiguous_format),
                                        ('fp32 channels_last', torch.float32, torch.channels_last),
                                        ('bf16 channels_last', torch.bfloat16, torch.channels_last)):
        def tensor(*shape, dtype=dtype, memory_format=memory_format):
            return torch.randn(*shape, device=device, dtype=dtype).contiguous(memory_format=memory_format)

        x, grad, weight = tensor(1, 64, size, size), tensor(1, 64, size, size), tensor(64, 64, 3, 3)
        bias = torch.randn(64, device=device, dtype=dtype)
        backward = functools.partial(torch.ops.aten.convolution_backward, grad, x, weight, [64], [1, 1], [1, 1],
                                     [1, 1], False, [0, 0], 1)
        kernels[label] = {'forward': functools.partial(torch.nn.functional.conv2d, x, weight, bias, padding=1),
                          'input grad': functools.partial(backward, [True, False, False]),
                          'weight grad': functools.partial(backward, [False, True, True])}
    best = {(label, name): float('inf') for label, row in kernels.items() for name in row}
    for _ in range(rounds):
        for label, row in kernels.items():
            for name, fn in row.items():
                best[label, name] = min(best[label, name], time_it(fn, device, 1))
    return [(label, {name: (best[label, name] * 1e3, flops / best[label, name] / 1e9) for name in row})
            for label, row in kernels.items()]


def print_conv_kernel_table(table, size=256):
    print(f'\none hidden conv (64->64, 3x3) on a {size}x{size} LR, best of 7 interleaved rounds: ms (GFLOP/s)')
    names = list(table[0][1])
    print(f'{"":<22}' + ''.join(f'{n:>20}' for n in names) + f'{"step vs fp32 NCHW":>20}')
    reference = sum(ms for ms, _ in table[0][1].values())
    for label, row in table:
        step = sum(ms for ms, _ in row.values())
        print(f'{label:<22}' + ''.join(f'{f"{ms:.1f} ({rate:.0f})":>20}' for ms, rate in row.values()) +
              f'{reference / step:>19.2f}x')


def bicubic_row(image, device):
    start = time.perf_counter()
    sr = imresize_pt(image.lr.to(device), image.scale)
    sync(device)
    seconds = time.perf_counter() - start
    return calculate_mzsr_psnr(tensor2img(sr), image.gt, crop_border=image.scale), seconds


def zssr_row(image, device, iters, seed):
    sr, info = zssr_super_resolve(image.lr, image.kernel, image.scale, image.downsample, device=device,
                                  max_iters=iters, seed=seed)
    return calculate_mzsr_psnr(tensor2img(sr), image.gt, crop_border=image.scale), info['seconds'], info['iterations']


def step_gflops(net, image, device, repeats=3):
    """Achieved GFLOP/s of one adaptation step (forward + backward on the son -> LR pair) of this image."""
    lr = image.lr.to(device)
    son = make_son(lr, image.kernel.to(device), image.scale, image.downsample)
    params = detached_params(net)

    def step():
        return sgd_step(net, params, son, lr, 1e-2, create_graph=False)

    flops = count_flops(step)
    seconds = time_it(step, device, repeats)
    return flops / seconds / 1e9, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--weights', nargs='*', default=[MODEL_ZOO['x2_direct'].path], help='MZSR weights to compare')
    parser.add_argument('--official', help='converted official pretrained weights (scripts/convert_official_mzsr.py)')
    parser.add_argument('--official-dir', default=OFFICIAL, help='the official MZSR test data (Set5 g20)')
    parser.add_argument('--skimage', nargs='*', default=list(DEMO_IMAGES), help='skimage.data photos to add')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--zssr-iters', type=int, default=3000, help='ZSSR iteration cap (official: 3000)')
    parser.add_argument('--no-zssr', action='store_true')
    parser.add_argument('--only', nargs='*', help='Set5 images to use (names), e.g. to time ZSSR on a CPU')
    parser.add_argument('--json', help='write all numbers to this file')
    parser.add_argument('--precision', action='store_true',
                        help='only the precision table: fp32 NCHW vs fp32 channels_last vs bf16, MZSR(1) and '
                        'MZSR(10) of the first --weights on Set5 g20, side by side')
    parser.add_argument('--repeats', type=int, default=2, help='--precision: runs per cell, the best is kept')
    parser.add_argument('--tf-python', metavar='PYTHON',
                        help='--precision: a Python with TensorFlow 2.x: adds the official TF meta-test graph and '
                        'runs every row on the official pretrained checkpoint')
    args = parser.parse_args()
    if args.precision:
        images = set5_g20(args.official_dir) if osp.isdir(args.official_dir) else []
        if not images:
            raise SystemExit(f'--precision needs the official Set5 g20 inputs: {args.official_dir} not found')
        images = [im for im in images if not args.only or im.name in args.only]
        print(hardware_line(args.device))
        if args.tf_python:
            net, weights = official_pretrained(args.official_dir, args.device)
        else:
            net, weights = load_mzsr_weights(args.weights[0], 2, args.device), args.weights[0]
        rows = precision_table(net, images, args.device, repeats=args.repeats)
        if args.tf_python:
            rows.update(tf_official_rows(images, args.tf_python, weights, repeats=args.repeats))
            rows = dict(sorted(rows.items(), key=lambda item: item[0][1]))  # stable: each step count's rows together
        print(f'weights {weights}; Set5 g^d_2.0 (official inputs), direct x2; seconds: adaptation + SR, '
              f'best of {args.repeats}')
        print_precision_table(rows, [im.name for im in images], args.device)
        kernels = conv_kernel_table(args.device)
        print_conv_kernel_table(kernels)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump({'hardware': hardware_line(args.device), 'conv_kernels': kernels,
                           'rows': {f'{k[0]} ({k[1]})': v for k, v in rows.items()}}, f, indent=1)
        return

    cases = []
    if osp.isdir(args.official_dir):
        cases += [('Set5_g20', image) for image in set5_g20(args.official_dir)
                  if not args.only or image.name in args.only]
    else:
        print(f'skipping Set5 g20: {args.official_dir} not found')
    cases += [(f'skimage_{DEMO_KERNEL}', skimage_case(name)) for name in args.skimage]
    weights = {osp.splitext(osp.basename(w))[0]: w for w in args.weights}
    if args.official:
        weights['official_pretrained'] = args.official

    rows = {}
    for label, path in weights.items():
        net = load_mzsr_weights(path, 2, args.device)
        results = evaluate_adaptation(net, progress([c[1] for c in cases], label, name=lambda im: im.name), STEPS,
                                      device=args.device)
        for (group, image), result in zip(cases, results):
            for steps in STEPS:
                rows.setdefault((group, image.name), {})[f'{label} ({steps})'] = (result.psnr[steps],
                                                                                  result.seconds[steps])
    for group, image in cases:
        rows[(group, image.name)]['bicubic'] = bicubic_row(image, args.device)
        if not args.no_zssr:
            psnr, seconds, iters = zssr_row(image, args.device, args.zssr_iters, seed=0)
            rows[(group, image.name)][f'ZSSR ({iters} it)'] = (psnr, seconds)

    device_name = torch.cuda.get_device_name() if torch.device(args.device).type == 'cuda' else 'cpu'
    print(f'device: {device_name}, threads: {torch.get_num_threads()}')
    methods = list(dict.fromkeys(m for r in rows.values() for m in r if not m.startswith('ZSSR')))
    for group in dict.fromkeys(g for g, _ in rows):
        names = [n for g, n in rows if g == group]
        print(f'\n{group}: PSNR dB / seconds per image')
        print(f'{"method":<34}' + ''.join(f'{n[:12]:>16}' for n in names) + f'{"mean":>16}')
        zssr = [m for m in rows[(group, names[0])] if m.startswith('ZSSR')]
        for method in methods + zssr:
            cells = [rows[(group, n)].get(method) for n in names]
            if method.startswith('ZSSR'):
                cells = [next(v for k, v in rows[(group, n)].items() if k.startswith('ZSSR')) for n in names]
            mean = (np.mean([c[0] for c in cells]), np.mean([c[1] for c in cells]))
            print(f'{method:<34}' + ''.join(f'{c[0]:>8.2f}/{c[1]:<7.2f}' for c in cells + [mean]))
        if zssr:
            for label in weights:
                ratios = [next(v for k, v in rows[(group, n)].items() if k.startswith('ZSSR'))[1] /
                          rows[(group, n)][f'{label} (10)'][1] for n in names]
                print(f'ZSSR time / {label} (10) time: ' + ' '.join(f'{r:.0f}x' for r in ratios) +
                      f'  (mean {np.mean(ratios):.0f}x)')

    net = load_mzsr_weights(next(iter(weights.values())), 2, args.device)
    graphed = graphed_rows(net, cases, args.device) if torch.device(args.device).type == 'cuda' else []
    if graphed:
        label = next(iter(weights))
        print(f'\nCUDA graphs, {label}: ms per image (replay; first call with capture in brackets), PSNR dB')
        for row in graphed:
            eager = rows[next((g, n) for g, n in rows if n == row['name'])]
            print(f'{row["name"][:16]:<16} ' + '  '.join(
                f'MZSR({s}) {row[s][0] * 1e3:6.1f} ms [{row[s][1] * 1e3:6.0f}] {row[s][2]:.2f} dB '
                f'(eager {eager[f"{label} ({s})"][1] * 1e3:6.1f} ms)' for s in (1, 10)))
    gflops, seconds = step_gflops(net, cases[0][1], args.device)
    peak = matmul_gflops(args.device, 8192 if torch.device(args.device).type == 'cuda' else 2048, iters=5)
    print(f'\none adaptation step on {cases[0][1].name}: {seconds * 1e3:.1f} ms, {gflops:.1f} GFLOP/s = '
          f'{100 * gflops / peak:.0f}% of a large matmul ({peak:.1f} GFLOP/s)')
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump({'device': device_name, 'rows': {f'{g}/{n}': r for (g, n), r in rows.items()},
                       'graphed': [{k if k == 'name' else str(k): v for k, v in r.items()} for r in graphed],
                       'step_gflops': gflops, 'matmul_gflops': peak}, f, indent=1)


if __name__ == '__main__':
    main()
