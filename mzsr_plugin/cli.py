"""``mzsr-sr``: zero-shot super-resolution of your own images with MZSR (or the ZSSR baseline).

Examples::

    mzsr-sr photo.png -o results --scale 2 --kernel photo_kernel.mat --steps 10
    mzsr-sr lr_folder -o results --kernel-dir kernels --gt gt_folder --compare
    mzsr-sr lr_folder -o results --kernel g_d_2.0 --zssr --device cuda

Per image: ``son = degrade(LR, kernel)``, ``--steps`` SGD steps on (son -> LR) from the meta-learned weights,
then SR of the LR (:func:`super_resolve_image`). The blur kernel of each image is required: MZSR adapts to it, and
there is no fallback to bicubic. Large images are handled in bounded memory: adaptation on random crops when the
LR has more than ``--crop-budget`` pixels, and exact tiled inference when a side exceeds ``--tile``.
"""
import argparse
import csv
import json
import numpy as np
import os
import pickle
import sys
import torch
from os import path as osp
from tqdm import tqdm

from mzsr_plugin.data.kernels import load_kernel, parse_kernel_spec, save_kernel
from mzsr_plugin.evaluation import load_mzsr_weights
from mzsr_plugin.kernel_estimation import ESTIMATORS, estimate_kernel
from mzsr_plugin.metrics.official_metric import calculate_mzsr_psnr, calculate_mzsr_ssim
from mzsr_plugin.models.adaptation import (ADAPT_LR_PRESETS, DEFAULT_CROP_BUDGET, DEFAULT_TILE, resolve_adapt_lrs,
                                           super_resolve_image)
from mzsr_plugin.option_schema import LR_SPEC, VAL_ADAPT
from mzsr_plugin.utils.figures import kernel_image, save_comparison
from mzsr_plugin.utils.image_io import list_images, read_image, to_uint8, write_image
from mzsr_plugin.utils.matlab_resize import imresize_pt
from mzsr_plugin.zssr import ZSSR_DEFAULTS, zssr_super_resolve

# mzsr-sr flag -> the val.adapt key whose check it shares (mzsr_plugin.option_schema.VAL_ADAPT).
# (--scale and --steps are checked together in _plan.)
FLAG_KEYS = {'--tile': 'tile', '--crop-budget': 'crop_budget', '--seed': 'seed',
             '--zssr-iters': 'zssr_iters', '--back-projection': 'back_projection'}
DEFAULT_WEIGHTS = osp.join(osp.dirname(osp.abspath(__file__)), 'weights', 'mzsr_x2_direct.pth')
# Kernel files looked up per image in --kernel-dir, first match wins (``_0``: ZSSR/KernelGAN naming).
KERNEL_PATTERNS = ('{stem}.mat', '{stem}_0.mat', '{stem}.npy', '{stem}_0.npy', '{stem}.png', '{stem}_0.png')
# Ground-truth files looked up per image in --gt (``_GT``: the official MZSR test naming).
GT_PATTERNS = ('{stem}.png', '{stem}_GT.png', '{name}')
KERNEL_HELP = ('pass --kernel FILE (.mat with key "kernel" or "Kernel", .npy, or .png) or a spec such as g_d_2.0, '
               'or --kernel-dir DIR holding <stem>.mat, <stem>_0.mat, <stem>.npy or <stem>.png per image')


def build_parser():
    """The ``mzsr-sr`` argument parser."""
    parser = argparse.ArgumentParser(
        prog='mzsr-sr',
        description='Zero-shot super-resolution of images with a known blur kernel: MZSR (meta-learned weights '
        'adapted in a few steps) or the ZSSR baseline (--zssr).')
    parser.add_argument('inputs', nargs='+', metavar='INPUT', help='LR image files and/or folders of images')
    parser.add_argument('-o', '--output', required=True, metavar='OUT', help='output folder')
    parser.add_argument('--scale', type=int, default=2, help='SR scale (default: %(default)s)')
    kernels = parser.add_mutually_exclusive_group()
    kernels.add_argument(
        '--kernel',
        metavar='K',
        help='blur kernel of all inputs: a .mat (key kernel or Kernel), .npy or .png file, a spec such as g_d_2.0 '
        '(isotropic Gaussian of variance 2.0, direct sub-sampling) or g_b_1.3 (bicubic), or estimate (blind: '
        'estimated from each image, written as <stem>_kernel.mat/.png)')
    kernels.add_argument(
        '--kernel-dir',
        metavar='DIR',
        help='folder with one kernel per image: <stem>.mat, <stem>_0.mat, <stem>.npy, <stem>_0.npy, <stem>.png or '
        '<stem>_0.png (first found)')
    parser.add_argument('--steps', type=int, default=10, help='MZSR adaptation steps (default: %(default)s)')
    parser.add_argument(
        '--weights', metavar='W.pth', help=f'MZSR weights (BasicSR .pth, key "params"); default: {DEFAULT_WEIGHTS}')
    parser.add_argument(
        '--lr',
        metavar='PRESET_OR_VALUES',
        help=f'adaptation learning rates: a preset ({", ".join(sorted(ADAPT_LR_PRESETS))}), learned (the '
        'per-layer step sizes meta-learned with the weights), one number, or comma-separated per-step numbers (the '
        'last repeats); default: learned when the weights carry step sizes, else the official preset for the scale '
        'and downsampling')
    parser.add_argument(
        '--downsample',
        choices=('direct', 'bicubic'),
        help='how the LR was sub-sampled after the blur; default: direct, or what a --kernel spec says')
    parser.add_argument(
        '--gt',
        metavar='DIR',
        help='ground-truth folder (<stem>.png, <stem>_GT.png or same name) '
        'for PSNR/SSIM (Y channel, shave = scale, as the paper)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default: %(default)s)')
    parser.add_argument(
        '--compare',
        action='store_true',
        help='also write <stem>_compare.png: LR | bicubic | '
        '0 steps | n steps | GT, with PSNR')
    parser.add_argument(
        '--zssr', action='store_true', help='run the ZSSR baseline (trained from scratch per image) '
        'instead of MZSR')
    parser.add_argument(
        '--zssr-iters',
        type=int,
        default=ZSSR_DEFAULTS['max_iters'],
        help='ZSSR iteration cap (default: %(default)s, official)')
    parser.add_argument(
        '--self-ensemble',
        action='store_true',
        help='x8 geometric self-ensemble (MZSR: mean; ZSSR: median of back-projected outputs, official output_flip)')
    parser.add_argument(
        '--back-projection',
        type=int,
        metavar='N',
        help=f'back-projection iterations; default: 0 for MZSR, {ZSSR_DEFAULTS["back_projection_iters"]} for ZSSR '
        '(official given-kernel config)')
    parser.add_argument(
        '--tile',
        type=int,
        default=DEFAULT_TILE,
        help='LR tile size for inference of larger images (0: never tile; default: %(default)s)')
    parser.add_argument(
        '--crop-budget',
        type=int,
        default=DEFAULT_CROP_BUDGET,
        metavar='PIXELS',
        help='adapt on random crops of at most this many LR pixels in all when the image is larger (0: never; '
        'default: %(default)s)')
    parser.add_argument('--seed', type=int, help='seed of the adaptation crops, of ZSSR and of kernel estimation')
    parser.add_argument('--estimator', choices=ESTIMATORS, default='spectral',
                        help='--kernel estimate: spectral (Gaussian fit to the spectrum, default) or kernelgan')
    parser.add_argument('--estimator-iters', type=int, default=1000, help='KernelGAN iterations (default: %(default)s)')
    return parser


def parse_lrs(text, steps, scale, downsample):
    """``--lr`` as one learning rate per step (see :func:`~mzsr_plugin.models.adaptation.resolve_adapt_lrs`).

    None (no ``--lr``) and ``learned`` give None: the weights' learned step sizes, known once they are loaded.
    """
    if text is None or text == 'learned':
        return None
    if text in ADAPT_LR_PRESETS:
        return resolve_adapt_lrs(text, steps, scale, downsample)
    try:
        values = [float(v) for v in text.split(',')]
    except ValueError:
        values = None
    if values is None or not LR_SPEC.ok(values):
        raise ValueError(f'--lr {text!r}: expected a preset ({", ".join(sorted(ADAPT_LR_PRESETS))}, learned), a number '
                         '> 0 or comma-separated numbers > 0 (a negative step size climbs the loss)')
    return resolve_adapt_lrs(values, steps, scale, downsample)


def resolve_kernel_option(spec, downsample):
    """The kernel of ``--kernel`` (file or spec) and the downsampling mode to use with it.

    Args:
        spec (str): A kernel file or a spec such as ``g_d_2.0``.
        downsample (str | None): ``--downsample``; None takes the spec's mode (``'direct'`` for files).

    Returns:
        tuple[ndarray, str, str]: Kernel (k, k), downsampling mode, and a description for the logs.
    """
    if osp.exists(spec):
        return load_kernel(spec), downsample or 'direct', spec
    if osp.splitext(spec)[1].lower() in ('.mat', '.npy', '.png') or '/' in spec or os.sep in spec:
        raise FileNotFoundError(f'--kernel {spec}: no such kernel file (and not a kernel spec either)')
    try:
        parsed = parse_kernel_spec(spec)
    except ValueError as error:
        raise FileNotFoundError(f'--kernel {spec}: no such file, and not a kernel spec either ({error})') from None
    if downsample is not None and downsample != parsed.downsample:
        raise ValueError(f'--kernel {spec} means {parsed.downsample} downsampling but --downsample {downsample} was '
                         'given; drop one of them')
    return parsed.kernel, parsed.downsample, spec


def find_kernel(kernel_dir, image_path):
    """The kernel file of an image in ``kernel_dir`` (see :data:`KERNEL_PATTERNS`), never the image itself.

    Args:
        kernel_dir (str): Folder of kernels.
        image_path (str): The image.

    Returns:
        str: Path of the kernel file.
    """
    stem = osp.splitext(osp.basename(image_path))[0]
    candidates = [osp.join(kernel_dir, pattern.format(stem=stem)) for pattern in KERNEL_PATTERNS]
    for candidate in candidates:
        if osp.isfile(candidate) and not osp.samefile(candidate, image_path):
            return candidate
    raise FileNotFoundError(f'no kernel for {image_path} in --kernel-dir {kernel_dir}: looked for '
                            f'{", ".join(osp.basename(c) for c in candidates)}; {KERNEL_HELP}')


def find_gt(gt_dir, image_path):
    """The ground truth of an image in ``gt_dir`` (see :data:`GT_PATTERNS`), or None."""
    name = osp.basename(image_path)
    stem = osp.splitext(name)[0]
    for pattern in GT_PATTERNS:
        candidate = osp.join(gt_dir, pattern.format(stem=stem, name=name))
        if osp.isfile(candidate) and not osp.samefile(candidate, image_path):
            return candidate
    return None


def load_network(weights, scale, device):
    """MZSRNet from BasicSR-format weights, shapes read from the file; errors name the file and the fix."""
    if weights is None:
        weights = DEFAULT_WEIGHTS
        if not osp.isfile(weights):
            raise FileNotFoundError(f'the default MZSR weights {weights} are not installed; pass --weights FILE (a '
                                    'BasicSR .pth with the network under "params"), or use --zssr, which needs none')
    elif not osp.isfile(weights):
        raise FileNotFoundError(f'--weights {weights}: file not found')
    try:
        return load_mzsr_weights(weights, scale, device)
    except (RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as error:
        reason = str(error).replace(f'{weights}: ', '')  # the file is named once, in front
        raise ValueError(f'--weights {weights}: cannot load MZSRNet weights from it ({reason})') from None


def image_metrics(sr_uint8, gt_path, scale, gray):
    """Official PSNR/SSIM (Y channel, shave = scale) of an SR image against its GT, GT mod-cropped to the scale.

    Args:
        sr_uint8 (ndarray): SR as written, uint8 RGB (H, W, 3) or gray (H, W).
        gt_path (str): Ground-truth image.
        scale (int): Scale.
        gray (bool): Compare as gray images (both replicated to 3 channels).

    Returns:
        tuple[float, float, ndarray]: PSNR, SSIM and the GT as uint8 RGB (mod-cropped).
    """
    gt = to_uint8(read_image(gt_path)[0], gray)
    gt = np.repeat(gt[..., None], 3, axis=2) if gray else gt
    h, w = gt.shape[:2]
    gt = gt[:h - h % scale, :w - w % scale]
    sr = np.repeat(sr_uint8[..., None], 3, axis=2) if sr_uint8.ndim == 2 else sr_uint8
    # An LR of ceil(H / s) rows gives at most s more SR rows than the mod-cropped GT has; more means a wrong GT.
    if not all(0 <= s - g <= scale for s, g in zip(sr.shape[:2], gt.shape[:2])):
        raise ValueError(
            f'ground truth {gt_path} is {h}x{w} (mod-cropped {gt.shape[0]}x{gt.shape[1]}) but the x{scale} '
            f'SR is {sr.shape[0]}x{sr.shape[1]}; expected the HR image of this input')
    sr = sr[:gt.shape[0], :gt.shape[1]]
    gt_bgr, sr_bgr = gt[..., ::-1], sr[..., ::-1]
    return calculate_mzsr_psnr(sr_bgr, gt_bgr, scale), calculate_mzsr_ssim(sr_bgr, gt_bgr, scale), gt


def _to_numpy(sr):
    return sr[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def _plan(args, parser):
    """Resolves every input's kernel and ground truth before any work, so that a bad file stops the run early."""
    if args.kernel is None and args.kernel_dir is None:
        parser.error(f'a blur kernel is required (MZSR adapts to it; there is no bicubic fallback): {KERNEL_HELP}')
    if args.scale < 1 or args.steps < 0:
        parser.error(f'--scale must be >= 1 and --steps >= 0, got {args.scale} and {args.steps}')
    # The flags that reach the adaptation code get the same checks as val.adapt in option files.
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag.lstrip('-').replace('-', '_'))
        check = VAL_ADAPT.key(key).check
        if value is not None and not check.ok(value):
            parser.error(f'{flag} must be {check.expected}; got {value!r}')
    images = list_images(args.inputs)
    stems = [osp.splitext(osp.basename(p))[0] for p in images]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(f'several inputs share the names {duplicates}; their outputs would overwrite each other')
    jobs = []
    estimate = args.kernel == 'estimate'
    if estimate and args.downsample == 'bicubic':
        parser.error('--kernel estimate models direct sub-sampling; drop --downsample bicubic')
    if estimate and args.estimator_iters < 1:
        parser.error(f'--estimator-iters must be >= 1, got {args.estimator_iters}')
    shared = resolve_kernel_option(args.kernel, args.downsample) if args.kernel is not None and not estimate else None
    for path in images:
        if estimate:
            kernel, downsample, source = None, 'direct', f'estimate ({args.estimator})'
        elif shared is None:
            kernel_path = find_kernel(args.kernel_dir, path)
            kernel, downsample, source = load_kernel(kernel_path), args.downsample or 'direct', kernel_path
        else:
            kernel, downsample, source = shared
        gt = find_gt(args.gt, path) if args.gt else None
        lrs = None if args.zssr else parse_lrs(args.lr, args.steps, args.scale, downsample)
        jobs.append({
            'path': path,
            'kernel': kernel,
            'downsample': downsample,
            'kernel_source': source,
            'gt': gt,
            'lrs': lrs
        })
    if args.gt and not any(job['gt'] for job in jobs):
        raise FileNotFoundError(f'--gt {args.gt}: no ground truth for any input (looked for <stem>.png, '
                                '<stem>_GT.png and the input\'s own name)')
    return jobs


def _write_metrics(out_dir, rows, config):
    fields = [
        'image', 'output', 'method', 'steps', 'kernel', 'downsample', 'lr_size', 'seconds', 'psnr', 'ssim',
        'psnr_bicubic', 'ssim_bicubic'
    ]
    with open(osp.join(out_dir, 'metrics.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    summary = {'seconds': float(np.mean([r['seconds'] for r in rows]))}
    for key in ('psnr', 'ssim', 'psnr_bicubic', 'ssim_bicubic'):
        values = [r[key] for r in rows if r[key] != '']
        if values:
            summary[key] = float(np.mean(values))
    with open(osp.join(out_dir, 'metrics.json'), 'w') as f:
        json.dump({'config': config, 'mean': summary, 'images': rows}, f, indent=2)
    return summary


def _estimate(args, job, img, stem):
    """``--kernel estimate``: the image's kernel, written as <stem>_kernel.mat and .png beside the output."""
    kernel, info = estimate_kernel(img, args.scale, args.estimator, seed=args.seed or 0,
                                   iterations=args.estimator_iters, device=args.device, progress=True)
    if info['warning']:
        tqdm.write(f'mzsr-sr: warning: {job["path"]}: {info["warning"]}')
    os.makedirs(args.output, exist_ok=True)
    save_kernel(osp.join(args.output, f'{stem}_kernel.mat'), kernel)
    write_image(osp.join(args.output, f'{stem}_kernel.png'), kernel_image(kernel), False)
    tqdm.write(f'{osp.basename(job["path"])}: kernel estimated ({args.estimator}) in {info["seconds"]:.2f} s -> '
               f'{osp.join(args.output, stem + "_kernel.mat")}')
    return kernel


def _process(args, job, net, device, rng):
    """Super-resolves one planned input, writes its outputs and returns its metrics row."""
    img, gray = read_image(job['path'])
    stem = osp.splitext(osp.basename(job['path']))[0]
    if job['kernel'] is None:
        job = dict(job, kernel=_estimate(args, job, img, stem))
    lr = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).unsqueeze(0).to(device)
    kernel = torch.from_numpy(job['kernel']).to(device)
    downsample, scale = job['downsample'], args.scale
    tile = args.tile or None
    if args.zssr:
        overrides = {'output_flip': True} if args.self_ensemble else {}
        if args.back_projection is not None:
            overrides['back_projection_iters'] = args.back_projection
        sr, info = zssr_super_resolve(
            lr,
            kernel,
            scale,
            downsample,
            device,
            max_iters=args.zssr_iters,
            seed=args.seed,
            progress=True,
            tile=tile if tile and max(lr.shape[-2:]) > tile else None,
            **overrides)
        steps, method, out_name = info['iterations'], 'ZSSR', f'{stem}_zssr.png'
    else:
        common = dict(
            downsample=downsample,
            self_ensemble=args.self_ensemble,
            back_projection=args.back_projection or 0,
            tile=tile,
            crop_budget=args.crop_budget)
        sr, info = super_resolve_image(net, lr, kernel, scale, args.steps, job['lrs'], rng=rng, **common)
        steps, method, out_name = args.steps, 'MZSR', f'{stem}.png'
    out_path = osp.join(args.output, out_name)
    sr_np = _to_numpy(sr)
    write_image(out_path, sr_np, gray)
    row = {
        'image': osp.basename(job['path']),
        'output': out_name,
        'method': method,
        'steps': steps,
        'kernel': job['kernel_source'],
        'downsample': downsample,
        'lr_size': f'{img.shape[0]}x{img.shape[1]}',
        'seconds': round(info['seconds'], 4),
        'psnr': '',
        'ssim': '',
        'psnr_bicubic': '',
        'ssim_bicubic': ''
    }
    bicubic = _to_numpy(imresize_pt(lr, scale))
    if job['gt']:
        row['psnr'], row['ssim'], gt = image_metrics(to_uint8(sr_np, gray), job['gt'], scale, gray)
        row['psnr_bicubic'], row['ssim_bicubic'], _ = image_metrics(to_uint8(bicubic, gray), job['gt'], scale, gray)
    if args.compare:
        results = [('Bicubic', bicubic, row['psnr_bicubic'])]
        if not args.zssr and args.steps:
            sr0 = _to_numpy(super_resolve_image(net, lr, kernel, scale, 0, [], **common)[0])
            psnr0 = image_metrics(to_uint8(sr0, gray), job['gt'], scale, gray)[0] if job['gt'] else ''
            results.append(('MZSR 0 steps', sr0, psnr0))
        results.append((f'ZSSR ({steps} iterations)' if args.zssr else f'MZSR {steps} steps', sr_np, row['psnr']))
        panels = [('LR (nearest)', np.repeat(np.repeat(img, scale, axis=0), scale, axis=1))]
        panels += [(f'{title}\n{psnr:.2f} dB' if psnr != '' else title, image) for title, image, psnr in results]
        if job['gt']:
            panels.append(('GT', gt))
        panels.append((f'kernel ({job["kernel_source"]})', kernel_image(job['kernel'], panels[0][1].shape[:2])))
        save_comparison(osp.join(args.output, f'{stem}_compare.png'), panels)
    return row


def main(argv=None):
    """Entry point of ``mzsr-sr``; ``argv`` defaults to ``sys.argv[1:]``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available in this PyTorch build or machine; use --device '
                     'cpu')
    try:
        jobs = _plan(args, parser)
        net = None if args.zssr else load_network(args.weights, args.scale, device)
        if net is not None and args.lr == 'learned' and not net.inner_lrs:
            parser.error(f'--lr learned: {args.weights or DEFAULT_WEIGHTS} carries no learned step sizes; use a preset '
                         f'({", ".join(sorted(ADAPT_LR_PRESETS))}) or numbers')
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f'mzsr-sr: error: {error}') from None
    os.makedirs(args.output, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    rows = []
    for job in tqdm(jobs, desc='mzsr-sr', unit='img'):
        try:
            row = _process(args, job, net, device, rng)
        except (FileNotFoundError, ValueError) as error:
            where = '' if job['path'] in str(error) else f'{job["path"]}: '  # once is enough
            raise SystemExit(f'mzsr-sr: error: {where}{error}') from None
        rows.append(row)
        psnr = f', {row["psnr"]:.2f} dB' if row['psnr'] != '' else ''
        tqdm.write(f'{row["image"]}: {row["seconds"]:.2f} s{psnr} -> {osp.join(args.output, row["output"])}')
    config = dict(vars(args))
    config['weights'] = None if args.zssr else (args.weights or DEFAULT_WEIGHTS)
    summary = _write_metrics(args.output, rows, config)
    if 'psnr' in summary:
        print(f'mean PSNR {summary["psnr"]:.2f} dB, SSIM {summary["ssim"]:.4f} over the images with ground truth '
              f'(bicubic {summary["psnr_bicubic"]:.2f} dB)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
