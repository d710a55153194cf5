#!/usr/bin/env python
"""The real-photo gallery: photos as they are (no ground truth, unknown blur, their own noise and JPEG), enlarged by
bicubic, blind MZSR and blind ZSSR, side by side with zoomed crops, and BasicSR's NIQE of each (lower is better).

Photos: scikit-image's (``astronaut``, ``chelsea``, ``coffee``, ``rocket`` -- the last one a JPEG), ``phone`` (a
phone-style JPEG made here from ``chelsea``: lens blur, sensor noise 4/255, JPEG quality 85 with 4:2:0 chroma, as a
phone writes it) and, when ../shared/data is beside the project, ZSSR's real example ``charlie.png``. Blind = what
``mzsr-sr --kernel estimate`` does by default: the learned kernel estimate, the noise and JPEG quality read from the
photo and reproduced in the son, the self-check; ZSSR gets the same kernel, noise and JPEG. Both go through
:func:`mzsr_plugin.inference.run_image`, the one inference path.

The LR is the centre ``--crop`` pixels of each photo (pixels as they are, cut on JPEG's 16-pixel block grid; 0: the
whole photo), which keeps blind ZSSR to minutes on a CPU; a JPEG's crop is saved losslessly and runs with the
photo's own quality (``--jpeg Q``). Writes ``<out>/<photo>.png`` (LR | bicubic | MZSR | ZSSR | estimated kernel,
each over a ``--view``-pixel LR region, with a row of zoomed crops), ``<out>/gallery.json`` and prints the table
docs/blind_mode.md shows. Files made from third-party photos (charlie) must never be committed: ``.gitignore`` keeps
``docs/gallery/charlie*`` and ``docs/gallery/lr/`` out.

    python scripts/gallery_real.py --out docs/gallery [--zssr-iters 200] [--photos astronaut,charlie]
"""
import argparse
import cv2
import json
import numpy as np
import os
import skimage.data
import time
import torch
from os import path as osp

import mzsr_plugin  # noqa: F401  (first: makes basicsr importable on any torchvision)
from basicsr.metrics.niqe import calculate_niqe
from mzsr_plugin.data.degradations import add_noise, degrade_np
from mzsr_plugin.data.kernels import anisotropic_gaussian_kernel
from mzsr_plugin.inference import ESTIMATE, RunSettings, load_network, resolve_kernel, run_image
from mzsr_plugin.kernel_estimation import DEFAULT_ESTIMATOR, ESTIMATORS
from mzsr_plugin.noise_estimation import jpeg_quality
from mzsr_plugin.utils.figures import kernel_image, save_comparison, zoom_region
from mzsr_plugin.utils.image_io import to_uint8

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SKIMAGE_PHOTOS = {name: osp.join(skimage.data.data_dir, file)
                  for name, file in (('astronaut', 'astronaut.png'), ('chelsea', 'chelsea.png'),
                                     ('coffee', 'coffee.png'), ('rocket', 'rocket.jpg'))}
# NIQE fits its statistics on 96x96 blocks: fewer than two a side do not give a stable fit.
NIQE_MIN_SIDE = 192
CHARLIE = osp.join(ROOT, '..', 'shared', 'data', 'kernels', 'real_example', 'charlie.png')
PHONE = 'phone'
# JPEG's 4:2:0 macroblocks: a crop on this grid keeps the photo's blocks where they were.
JPEG_GRID = 16


def phone_photo(out_dir):
    """A phone-style JPEG made from scikit-image's chelsea: lens blur (Gaussian, variance 1), sensor noise 4/255,
    JPEG quality 85 with 4:2:0 chroma (OpenCV's default, as phones write); saved under ``out_dir/lr``."""
    rgb = skimage.data.chelsea() / 255.0
    blurred = degrade_np(rgb, anisotropic_gaussian_kernel(15, 0.0, 1.0, 1.0), 1)
    noisy = add_noise(blurred, 4 / 255, rng=np.random.default_rng(0))
    path = osp.join(out_dir, 'lr', f'{PHONE}.jpg')
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.round(noisy[..., ::-1] * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def photos(names, out_dir):
    """{name: path} of the photos asked for (``charlie`` only when ../shared/data has it; ``phone`` made here)."""
    available = dict(SKIMAGE_PHOTOS, **{PHONE: None})
    if osp.isfile(CHARLIE):
        available['charlie'] = CHARLIE
    chosen = {}
    for name in names:
        if name not in available:
            hint = ' (../shared/data/kernels/real_example/charlie.png is missing)' if name == 'charlie' else ''
            raise ValueError(f'--photos: unknown photo {name!r}{hint}; known: {", ".join(available)}')
        chosen[name] = available[name] or phone_photo(out_dir)
    return chosen


def niqe(rgb):
    """BasicSR's NIQE of an RGB image in [0, 1] (Y channel, no border cropped); lower is more natural."""
    return float(calculate_niqe(to_uint8(rgb, False)[..., ::-1].astype(np.float64), 0, input_order='HWC',
                                convert_to='y'))


def centre_crop(path, side, out_dir):
    """The centre ``side`` x ``side`` pixels of a photo, saved losslessly under ``out_dir/lr`` (pixels unchanged);
    the photo itself when ``side`` is 0 or not smaller than the photo."""
    if not side:
        return path
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    if side >= min(h, w):
        return path
    top, left = (h - side) // 2 // JPEG_GRID * JPEG_GRID, (w - side) // 2 // JPEG_GRID * JPEG_GRID
    crop = osp.join(out_dir, 'lr', osp.splitext(osp.basename(path))[0] + '_crop.png')
    os.makedirs(osp.dirname(crop), exist_ok=True)
    cv2.imwrite(crop, image[top:top + side, left:left + side])
    return crop


def view(image, scale, side):
    """The centre ``side``-LR-pixel square of an image at ``scale`` times the LR size (all of it when smaller)."""
    h, w = image.shape[0] // scale, image.shape[1] // scale
    side = min(side, h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top * scale:(top + side) * scale, left * scale:(left + side) * scale]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='mzsr_gallery', help='output folder (default: %(default)s)')
    parser.add_argument('--photos', default=','.join(list(SKIMAGE_PHOTOS) + [PHONE, 'charlie']),
                        help='comma-separated (default: %(default)s; charlie needs ../shared/data)')
    parser.add_argument('--scale', type=int, default=2, help='2 or 4: the model zoo\'s direct model')
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--zssr-iters', type=int, default=200,
                        help='ZSSR iteration cap (official: 3000; the default keeps a CPU run to minutes a photo)')
    parser.add_argument('--crop', type=int, default=256,
                        help='LR: the centre crop of this many pixels a side of each photo (0: the whole photo)')
    parser.add_argument('--view', type=int, default=160, help='LR pixels a side of the region shown')
    parser.add_argument('--estimator', choices=tuple(ESTIMATORS), default=DEFAULT_ESTIMATOR,
                        help='kernel estimator of blind MZSR and ZSSR (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    if args.crop and args.crop * args.scale < NIQE_MIN_SIDE:
        parser.error(f'--crop {args.crop}: the SR would be under {NIQE_MIN_SIDE} pixels a side, too small for NIQE '
                     f'(its 96-pixel blocks); use --crop {-(-NIQE_MIN_SIDE // args.scale)} or more')
    try:
        net = load_network(None, args.scale, 'direct', args.device)
        os.makedirs(args.out, exist_ok=True)
        chosen = photos([p for p in args.photos.split(',') if p], args.out)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    choice = resolve_kernel(ESTIMATE, estimator=args.estimator)
    common = dict(scale=args.scale, seed=args.seed, estimator=args.estimator, device=args.device)
    rows = []
    for name, path in chosen.items():
        start = time.perf_counter()
        lr_path = centre_crop(path, args.crop, args.out)
        # The crop is a PNG: the photo's own JPEG quality goes with it.
        jpeg = jpeg_quality(path) or 'auto'
        mzsr = RunSettings(steps=args.steps, jpeg=jpeg, **common)
        zssr = RunSettings(zssr=True, zssr_iters=args.zssr_iters, jpeg=jpeg, **common)
        ours = run_image(lr_path, choice, mzsr, net, rng=np.random.default_rng(args.seed))
        theirs = run_image(lr_path, choice, zssr, progress=True)
        row = {
            'photo': name, 'lr_size': f'{ours.lr.shape[1]}x{ours.lr.shape[0]}', 'noise': ours.noise['std'] * 255,
            'jpeg_quality': jpeg_quality(path), 'niqe_bicubic': niqe(ours.bicubic), 'niqe_mzsr': niqe(ours.sr),
            'niqe_zssr': niqe(theirs.sr), 'seconds_mzsr': ours.seconds, 'seconds_zssr': theirs.seconds,
            'zssr_iterations': theirs.steps, 'self_check': ours.self_check['choice'] if ours.self_check else None
        }
        rows.append(row)
        s = args.scale
        panels = [('LR (nearest)', view(np.repeat(np.repeat(ours.lr, s, axis=0), s, axis=1), s, args.view)),
                  (f'Bicubic\nNIQE {row["niqe_bicubic"]:.2f}', view(ours.bicubic, s, args.view)),
                  (f'blind MZSR ({args.steps} steps)\nNIQE {row["niqe_mzsr"]:.2f}', view(ours.sr, s, args.view)),
                  (f'blind ZSSR ({theirs.steps} it.)\nNIQE {row["niqe_zssr"]:.2f}', view(theirs.sr, s, args.view))]
        shape = panels[0][1].shape[:2]
        panels.append(('estimated kernel', kernel_image(ours.kernel, shape)))
        # No ground truth: zoom where the SR has the most detail (the kernel panel's crop is of no interest).
        region = zoom_region(panels[2][1], size=max(8, min(shape) // 6 * 2))
        save_comparison(osp.join(args.out, f'{name}.png'), panels, region=region)
        print(f'{name}: {row["lr_size"]}, noise read {row["noise"]:.1f}/255, JPEG {row["jpeg_quality"]}; NIQE '
              f'bicubic {row["niqe_bicubic"]:.2f} MZSR {row["niqe_mzsr"]:.2f} ZSSR {row["niqe_zssr"]:.2f} '
              f'({time.perf_counter() - start:.0f} s) -> {osp.join(args.out, name + ".png")}', flush=True)
    header = (f'| photo | LR size | noise read (/255) | JPEG | NIQE bicubic | NIQE blind MZSR({args.steps}) | '
              f'NIQE blind ZSSR ({args.zssr_iters} it.) | MZSR self-check | MZSR s | ZSSR s |')
    lines = [header, '|' + '---|' * 10]
    for r in rows:
        lines.append(f'| {r["photo"]} | {r["lr_size"]} | {r["noise"]:.1f} | {r["jpeg_quality"] or "-"} | '
                     f'{r["niqe_bicubic"]:.2f} | {r["niqe_mzsr"]:.2f} | {r["niqe_zssr"]:.2f} | {r["self_check"]} | '
                     f'{r["seconds_mzsr"]:.1f} | {r["seconds_zssr"]:.0f} |')
    print(f'\nx{args.scale}, weights {net.weights_path}, {args.device}, {args.estimator} kernel estimate; NIQE '
          '(BasicSR, Y, lower is better)\n')
    print('\n'.join(lines))
    with open(osp.join(args.out, 'gallery.json'), 'w') as f:
        json.dump({'scale': args.scale, 'steps': args.steps, 'zssr_iters': args.zssr_iters,
                   'estimator': args.estimator, 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
