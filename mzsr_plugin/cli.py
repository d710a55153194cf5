"""``mzsr-sr``: zero-shot super-resolution of your own images with MZSR (or the ZSSR baseline).

Examples::

    mzsr-sr photo.png -o results --scale 2 --kernel photo_kernel.mat --steps 10
    mzsr-sr lr_folder -o results --kernel-dir kernels --gt gt_folder --compare
    mzsr-sr lr_folder -o results --kernel g_d_2.0 --zssr --device cuda
    mzsr-sr IMG_0042.HEIC -o results --kernel estimate --ext jpg --quality 92   # a phone photo, its EXIF and profile

Per image: ``son = degrade(LR, kernel)``, ``--steps`` SGD steps on (son -> LR) from the meta-learned weights,
then SR of the LR (:func:`super_resolve_image`). The blur kernel of each image is required: MZSR adapts to it, and
there is no fallback to bicubic. Large images are handled in bounded memory: adaptation on random crops when the
LR has more than ``--crop-budget`` pixels, and exact tiled inference when a side exceeds ``--tile``.
"""
import argparse
import cv2
import csv
import json
import numpy as np
import os
import sys
import time
import torch
import warnings
from os import path as osp

from mzsr_plugin.inference import (AUTO, KERNEL_HELP, NO_JPEG, ModelRecordWarning, OutputSettings, RunSettings,
                                   describe_fallback, describe_son, find_gt, find_kernel_file, list_inputs,
                                   load_network, output_name, resolve_kernel, run_image, save_outputs)
from mzsr_plugin.kernel_estimation import DEFAULT_ESTIMATOR, ESTIMATORS
from mzsr_plugin.model_zoo import MODEL_ZOO
from mzsr_plugin.models.adaptation import (ADAPT_LR_PRESETS, AUTO_BUDGET, AUTO_TILE, DEFAULT_CROP_BUDGET, LARGE_PHOTO,
                                           LARGE_PHOTO_CROP_BUDGET, SR_TILE)
from mzsr_plugin.option_schema import LR_SPEC, VAL_ADAPT
from mzsr_plugin.precision import PRECISIONS, resolve_precision
from mzsr_plugin.time_estimate import estimate_photos, format_seconds
from mzsr_plugin.utils.image_io import OUTPUT_FORMATS, SUPPORTED_FORMATS
from mzsr_plugin.utils.progress import progress, write
from mzsr_plugin.zssr import ZSSR_DEFAULTS

# mzsr-sr flag -> the val.adapt key whose check it shares (mzsr_plugin.option_schema.VAL_ADAPT).
# (--scale and --steps are checked together in _plan.)
FLAG_KEYS = {'--tile': 'tile', '--crop-budget': 'crop_budget', '--seed': 'seed',
             '--zssr-iters': 'zssr_iters', '--back-projection': 'back_projection'}
ZOO_HELP = ', '.join(f'{m.weights} ({"/".join(f"x{s}" for s in m.scales)} {m.downsample})' for m in MODEL_ZOO.values())


def build_parser():
    """The ``mzsr-sr`` argument parser."""
    parser = argparse.ArgumentParser(
        prog='mzsr-sr',
        description='Zero-shot super-resolution of images with a known blur kernel: MZSR (meta-learned weights '
        'adapted in a few steps) or the ZSSR baseline (--zssr).')
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help=f'LR image files and/or folders of images ({SUPPORTED_FORMATS})')
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
        help='folder with one kernel per image: <stem>.mat, <stem>_0.mat, <stem>_kernel.mat (what --kernel estimate '
        'writes), <stem>.npy, <stem>_0.npy, <stem>.png or <stem>_0.png (first found)')
    parser.add_argument('--steps', type=int, default=10, help='MZSR adaptation steps (default: %(default)s)')
    parser.add_argument(
        '--weights', metavar='W.pth', help='MZSR weights (BasicSR .pth, key "params"); default: the shipped model of '
        f'the model zoo for --scale and the downsampling ({ZOO_HELP}); weights whose record names another scale or '
        'downsampling are refused')
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
        '--precision',
        choices=PRECISIONS,
        default='auto',
        help='auto (default): bfloat16 adaptation steps where the device has bf16 units (AMX, AVX512-BF16, a bf16 '
        'GPU), else float32 channels_last; fp32: the float32 NCHW reference (the official-parity numbers); bf16: '
        'bf16 steps anyway (emulated, slow, on other CPUs). The SR forward is float32 in every mode')
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
        type=auto_or_pixels,
        default=AUTO_TILE,
        metavar='PIXELS',
        help=f'LR tile size for inference of larger images (0: never tile; default: auto, the LR tile whose SR is '
        f'{SR_TILE} pixels a side: {SR_TILE // 2} at x2, {SR_TILE // 4} at x4)')
    parser.add_argument(
        '--crop-budget',
        type=auto_or_pixels,
        default=AUTO_BUDGET,
        metavar='PIXELS',
        help='adapt on random crops of at most this many LR pixels in all when the image is larger (0: never; '
        f'default: auto, {DEFAULT_CROP_BUDGET}, and {LARGE_PHOTO_CROP_BUDGET} for photos above {LARGE_PHOTO} LR '
        'pixels)')
    parser.add_argument('--seed', type=int, help='seed of the adaptation crops, of ZSSR and of kernel estimation')
    parser.add_argument('--estimator', choices=tuple(ESTIMATORS), default=DEFAULT_ESTIMATOR,
                        help='--kernel estimate: learned (a regressor on the LR\'s spectrum, trained beyond the '
                        'Gaussian family; x2, the spectral fit elsewhere), spectral (Gaussian fit to the spectrum) or '
                        'kernelgan (the KernelGAN-style baseline); default: %(default)s')
    parser.add_argument('--estimator-iters', type=int, default=1000, help='KernelGAN iterations (default: %(default)s)')
    parser.add_argument(
        '--noise',
        default=AUTO,
        metavar='auto|STD',
        help='noise std of the inputs in grey levels (0-255), reproduced in the son so that adaptation removes it '
        'instead of sharpening it, and taken out of the kernel estimate; auto (default) reads it from each image\'s '
        'colour differences, or for a JPEG input matches it to the son (the level whose son reads as noisy as the '
        'input); 0: the official clean son')
    parser.add_argument(
        '--jpeg',
        default=AUTO,
        metavar='auto|none|Q',
        help='JPEG quality the son is encoded at, so that adaptation undoes blocks instead of sharpening them: auto '
        '(default) takes a JPEG input\'s own quality (from its quantisation tables) and leaves other formats alone; '
        'none never encodes; Q: 1..100')
    parser.add_argument(
        '--ext',
        choices=tuple(OUTPUT_FORMATS),
        default='png',
        help='format of the SR files, written with the photo\'s ICC profile and EXIF (camera, date; orientation 1) '
        '(default: %(default)s)')
    parser.add_argument('--quality', type=int, metavar='Q',
                        help='quality of jpg and webp outputs, 1..100 (default: '
                        f'{", ".join(f"{k} {f.quality}" for k, f in OUTPUT_FORMATS.items() if f.quality)})')
    parser.add_argument('--keep-gps', action='store_true',
                        help='keep the photo\'s GPS position in the EXIF written (dropped by default)')
    parser.add_argument('--skip-existing', action='store_true',
                        help='skip inputs whose output is already in the output folder (rerun a killed run)')
    parser.add_argument(
        '--no-self-check',
        dest='self_check',
        action='store_false',
        help='adapt on the whole LR and always output the adapted net; by default an eighth of the LR is held out '
        'and the output falls back to bicubic or MZSR(0) when adaptation does not score best on it')
    return parser


def auto_or_pixels(text):
    """``--tile`` and ``--crop-budget``: ``auto`` (:data:`AUTO_TILE`, :data:`AUTO_BUDGET`) or a whole number of LR
    pixels (checked against ``val.adapt`` in _plan)."""
    if text in (AUTO_TILE, AUTO_BUDGET):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected auto or a whole number of LR pixels, got {text!r}') from None


def parse_noise(text):
    """``--noise`` as :class:`~mzsr_plugin.inference.RunSettings` takes it: ``auto`` or a std in grey levels."""
    if text == AUTO:
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 255:
        raise ValueError(f'--noise {text!r}: expected auto or a noise std in grey levels, 0..255 (e.g. 5)')
    return value


def parse_jpeg(text):
    """``--jpeg`` as :class:`~mzsr_plugin.inference.RunSettings` takes it: ``auto``, ``none`` or a quality."""
    if text in (AUTO, NO_JPEG):
        return text
    if not (text.isdigit() and 1 <= int(text) <= 100):
        raise ValueError(f'--jpeg {text!r}: expected auto, none or a JPEG quality 1..100 (e.g. 85)')
    return int(text)


def parse_lrs(text):
    """``--lr`` as :class:`~mzsr_plugin.inference.RunSettings` takes it: None/``learned`` (the weights' learned
    step sizes), a preset name, or a list of numbers (the last repeats)."""
    if text is None or text == 'learned' or text in ADAPT_LR_PRESETS:
        return text
    try:
        values = [float(v) for v in text.split(',')]
    except ValueError:
        values = None
    if values is None or not LR_SPEC.ok(values):
        raise ValueError(f'--lr {text!r}: expected a preset ({", ".join(sorted(ADAPT_LR_PRESETS))}, learned), a number '
                         '> 0 or comma-separated numbers > 0 (a negative step size climbs the loss)')
    return values


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
        if value is not None and value not in (AUTO_BUDGET, AUTO_TILE) and not check.ok(value):
            parser.error(f'{flag} must be {check.expected}; got {value!r}')
    if args.kernel == 'estimate' and args.downsample == 'bicubic':
        parser.error('--kernel estimate models direct sub-sampling; drop --downsample bicubic')
    if args.kernel == 'estimate' and args.estimator_iters < 1:
        parser.error(f'--estimator-iters must be >= 1, got {args.estimator_iters}')
    images = list_inputs(args.inputs)
    stems = [osp.splitext(osp.basename(p))[0] for p in images]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(f'several inputs share the names {duplicates}; their outputs would overwrite each other')
    shared = resolve_kernel(args.kernel, args.downsample, estimator=args.estimator) if args.kernel else None
    jobs = []
    for path in images:
        choice = shared
        if choice is None:
            kernel_path = find_kernel_file(args.kernel_dir, path)
            choice = resolve_kernel(kernel_path, args.downsample)
        jobs.append((path, choice, find_gt(args.gt, path) if args.gt else None))
    if args.gt and not any(gt for _, _, gt in jobs):
        raise FileNotFoundError(f'--gt {args.gt}: no ground truth for any input (looked for <stem>.png, '
                                '<stem>_GT.png and the input\'s own name)')
    return jobs


def _output(args):
    return OutputSettings(ext=args.ext, quality=args.quality, keep_gps=args.keep_gps)


def _settings(args):
    return RunSettings(scale=args.scale, steps=args.steps, lr=parse_lrs(args.lr), zssr=args.zssr,
                       zssr_iters=args.zssr_iters, self_ensemble=args.self_ensemble,
                       back_projection=args.back_projection, tile=args.tile, crop_budget=args.crop_budget,
                       seed=args.seed, estimator=args.estimator, estimator_iters=args.estimator_iters,
                       noise=parse_noise(args.noise), jpeg=parse_jpeg(args.jpeg), self_check=args.self_check,
                       compare=args.compare, device=args.device, precision=args.precision)


def metrics_row(result, sr_path):
    """One line of ``metrics.csv`` for an :class:`~mzsr_plugin.inference.ImageResult` written to ``sr_path``."""
    m = result.metrics
    return {
        'image': osp.basename(result.path),
        'output': osp.basename(sr_path),
        'method': result.method,
        'steps': result.steps,
        'kernel': result.kernel_source,
        'downsample': result.downsample,
        'lr_size': f'{result.lr.shape[0]}x{result.lr.shape[1]}',
        'noise': round(result.noise['std'] * 255, 2),
        'noise_source': result.noise['source'],
        'jpeg_quality': result.noise['jpeg_quality'] or '',
        'son_jpeg': result.noise['son_jpeg'] or '',
        'self_check': result.self_check['choice'] if result.self_check else '',
        'seconds': round(result.seconds, 4),
        **{key: m.get(key, '') for key in ('psnr', 'ssim', 'psnr_bicubic', 'ssim_bicubic')}
    }


def _write_metrics(out_dir, rows, config):
    fields = [
        'image', 'output', 'method', 'steps', 'kernel', 'downsample', 'lr_size', 'noise', 'noise_source',
        'jpeg_quality', 'son_jpeg', 'self_check', 'seconds', 'psnr', 'ssim', 'psnr_bicubic', 'ssim_bicubic'
    ]
    with open(osp.join(out_dir, 'metrics.csv'), 'w', newline='') as f:
        # The self-check's per-candidate scores go to metrics.json only.
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
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


def _report_estimate(result, paths):
    info = result.estimated
    if info['warning']:
        write(f'mzsr-sr: warning: {result.path}: {info["warning"]}')
    write(f'{osp.basename(result.path)}: kernel estimated ({info["method"]}) in {info["seconds"]:.2f} s -> '
          f'{paths["kernel_mat"]}')


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
        settings, output = _settings(args), _output(args)
        net = None
        if not args.zssr:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always', ModelRecordWarning)
                net = load_network(args.weights, args.scale, jobs[0][1].downsample, device)
            for warning in caught:
                print(f'mzsr-sr: warning: {warning.message}', file=sys.stderr)
        if net is not None and args.lr == 'learned' and not net.inner_lrs:
            parser.error(f'--lr learned: {net.weights_path} carries no learned step sizes; use a preset '
                         f'({", ".join(sorted(ADAPT_LR_PRESETS))}) or numbers')
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f'mzsr-sr: error: {error}') from None
    precision = resolve_precision(args.precision, device)
    print(f'mzsr-sr: precision {precision}')
    os.makedirs(args.output, exist_ok=True)
    expected = {} if args.zssr else _print_estimates(jobs, settings, net, output)
    rng = np.random.default_rng(args.seed)
    rows, failed, skipped = [], [], 0
    start = time.perf_counter()
    for path, choice, gt in progress(jobs, 'mzsr-sr', lines=False):  # _report prints each image's line
        stem = osp.splitext(osp.basename(path))[0]
        name = output_name(stem, 'ZSSR' if args.zssr else 'MZSR', args.ext)
        if args.skip_existing and osp.isfile(osp.join(args.output, name)):
            skipped += 1
            continue
        began = time.perf_counter()
        try:
            result = run_image(path, choice, settings, net, gt, rng=rng, progress=True)
            paths = save_outputs(result, args.output, args.compare, output)
        except (FileNotFoundError, ValueError, OSError, cv2.error) as error:
            # One bad photo in a folder is reported and the others are still processed.
            where = '' if path in str(error) else f'{path}: '  # once is enough
            failed.append(f'{where}{error}')
            write(f'mzsr-sr: error: {failed[-1]}', file=sys.stderr)
            continue
        rows.append(_report(result, paths, time.perf_counter() - began, expected.get(path)))
    done = len(rows)
    if skipped:
        rows = _earlier_rows(args.output, rows) + rows
    if rows:
        config = dict(vars(args))
        config['weights'] = None if net is None else net.weights_path
        config['model_record'] = None if net is None else net.record
        config['precision'] = precision.record()
        summary = _write_metrics(args.output, rows, config)
        if 'psnr' in summary:
            print(f'mean PSNR {summary["psnr"]:.2f} dB, SSIM {summary["ssim"]:.4f} over the images with ground truth '
                  f'(bicubic {summary["psnr_bicubic"]:.2f} dB)')
    skipped_text = f', {skipped} skipped (output exists)' if skipped else ''
    print(f'mzsr-sr: {done} done, {len(failed)} failed{skipped_text} in {time.perf_counter() - start:.1f} s')
    if len(jobs) == 1 and failed:
        raise SystemExit(f'mzsr-sr: error: {failed[0]}')
    if failed:
        raise SystemExit(f'mzsr-sr: error: {len(failed)} of {len(jobs)} images failed: ' + '; '.join(failed))
    return 0


def _print_estimates(jobs, settings, net, output):
    """Prints the expected time of each large photo before the work; returns ``path -> expected seconds``."""
    rate, estimates = estimate_photos(jobs, settings, net, output)
    if rate is None:
        return {}
    print(f'mzsr-sr: this machine, measured in {rate.calibration_seconds:.1f} s: {rate.per_pixel * 1e6:.2f} s per '
          f'LR megapixel, {rate.per_adapted * 1e6:.2f} s per adapted megapixel and {rate.per_step * 1e6:.2f} s more '
          f'per step, {rate.fixed:.2f} s per photo')
    for path, (h, w, seconds) in estimates.items():
        print(f'{osp.basename(path)}: {w}x{h} LR ({h * w / 1e6:.1f} MP) -> x{settings.scale}, MZSR({settings.steps}): '
              f'expected {format_seconds(seconds)}')
    if len(estimates) > 1:
        print(f'mzsr-sr: expected {format_seconds(sum(e[2] for e in estimates.values()))} for these '
              f'{len(estimates)} photos')
    return {path: e[2] for path, e in estimates.items()}


def _earlier_rows(out_dir, rows):
    """The metrics rows an earlier run wrote for images this run skipped (``--skip-existing`` keeps them)."""
    try:
        with open(osp.join(out_dir, 'metrics.json')) as f:
            earlier = json.load(f)['images']
    except (OSError, ValueError, KeyError):
        return []
    done = {row['image'] for row in rows}
    return [row for row in earlier if row.get('image') not in done]


def _report(result, paths, wall_seconds, expected=None):
    """Prints what one image's run says (kernel estimate, noise and JPEG, self-check, time) and returns its row."""
    if result.estimated is not None:
        _report_estimate(result, paths)
    if result.noise['warning']:
        write(f'mzsr-sr: warning: {result.path}: {result.noise["warning"]}')
    if result.noise['std'] > 0 or result.noise['son_jpeg']:
        write(f'{osp.basename(result.path)}: {describe_son(result.noise)}')
    check = result.self_check
    if check and check['choice'] != f'MZSR({result.steps})':
        write(f'mzsr-sr: warning: {result.path}: {describe_fallback(check)} (--no-self-check keeps the '
              'adapted net)')
    row = metrics_row(result, paths['sr'])
    row['self_check_psnr'] = check['psnr'] if check else None
    row['wall_seconds'], row['expected_seconds'] = round(wall_seconds, 2), expected and round(expected, 2)
    psnr = f', {row["psnr"]:.2f} dB' if row['psnr'] != '' else ''
    took = f' ({format_seconds(wall_seconds)} in all, expected {format_seconds(expected)})' if expected else ''
    write(f'{row["image"]}: {row["seconds"]:.2f} s{psnr} -> {paths["sr"]}{took}')
    return row


if __name__ == '__main__':
    sys.exit(main())
