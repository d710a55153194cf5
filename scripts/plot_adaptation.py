#!/usr/bin/env python
"""The paper's Figure 3, measured: PSNR against adaptation steps (0-10) on Set5 g^d_2.0.

Curves: the bicubic-pretrained network (stage 1; by default the official one, converted from
../shared/data/mzsr_official/Pretrained on the fly, never committed), the meta-trained weights (the shipped ones
by default) with their own step sizes, and ZSSR's final PSNR as a horizontal line (``--zssr-psnr`` from a run of
``bench_adapt.py``, or ``--zssr-iters N`` to train it here: minutes per image on a CPU). Bicubic is drawn too.

    python scripts/plot_adaptation.py --out mzsr_plugin/weights/campaign/x2_direct/figure3.png --zssr-psnr 35.13
"""
import argparse
import json
import numpy as np
import os
import torch
from os import path as osp

import mzsr_plugin  # noqa: F401  (first: makes basicsr importable on any torchvision)
from bench_adapt import OFFICIAL, set5_g20, zssr_row
from mzsr_plugin.campaign.runner import machine_label
from mzsr_plugin.model_zoo import MODEL_ZOO
from mzsr_plugin.evaluation import bicubic_psnr, evaluate_adaptation, file_sha256, load_mzsr_weights, mean_psnr
from mzsr_plugin.utils.figures import plot_psnr_vs_steps

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
STEPS = tuple(range(11))


def official_pretrained(work_dir):
    """The official bicubic-pretrained θ_T converted to a .pth under ``work_dir`` (once)."""
    out = osp.join(work_dir, 'MZSR_official_pretrained_x2.pth')
    if not osp.isfile(out):
        from convert_official_mzsr import convert
        os.makedirs(work_dir, exist_ok=True)
        convert(osp.join(OFFICIAL, 'Pretrained', 'Pretrained'), out)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--weights', default=MODEL_ZOO['x2_direct'].path, help='meta-trained weights')
    parser.add_argument('--pretrained', help='bicubic-pretrained weights (default: the official, converted)')
    parser.add_argument('--official-dir', default=OFFICIAL)
    parser.add_argument('--zssr-psnr', type=float, help="ZSSR's mean Set5 g^d_2.0 PSNR, from bench_adapt.py")
    parser.add_argument('--zssr-iters', type=int, help='train ZSSR here instead, with this iteration cap')
    parser.add_argument('--out', default='figure3.png')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    images = set5_g20(args.official_dir)
    pretrained = args.pretrained or official_pretrained(osp.join(ROOT, 'experiments', 'pretrained_models'))
    curves, table = {}, {}
    for label, path in (('pretrained (stage 1)', pretrained), ('meta-trained', args.weights)):
        net = load_mzsr_weights(path, 2, args.device)
        psnr = mean_psnr(evaluate_adaptation(net, images, STEPS, device=args.device))
        step_sizes = 'learned step sizes' if net.inner_lrs else 'official direct_x2 step sizes'
        curves[f'{label}, {step_sizes}'] = psnr
        table[label] = psnr
        print(f'{label:<22} ' + ' '.join(f'{psnr[s]:6.2f}' for s in STEPS) + f'   ({path})', flush=True)
    curves['bicubic'] = float(np.mean([bicubic_psnr(image) for image in images]))
    zssr = args.zssr_psnr
    if args.zssr_iters:
        zssr = float(np.mean([zssr_row(image, args.device, args.zssr_iters, seed=0)[0] for image in images]))
    if zssr is not None:
        curves['ZSSR (final)'] = zssr
    print(f'{"bicubic":<22} {curves["bicubic"]:6.2f}' + (f'   ZSSR {zssr:.2f}' if zssr is not None else ''))
    plot_psnr_vs_steps(curves, args.out, title='Set5, g^d_2.0 x2: PSNR vs adaptation steps')
    with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
        json.dump({'steps': list(STEPS), 'curves': {k: v for k, v in table.items()}, 'bicubic': curves['bicubic'],
                   'zssr': zssr, 'weights': osp.relpath(args.weights, ROOT),
                   'weights_sha256': file_sha256(args.weights), 'machine': machine_label(args.device)}, f, indent=1)
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
