"""``python -m mzsr_plugin.demo`` (console: ``mzsr-demo``): MZSR on an embedded default, in one command.

A scikit-image photo is degraded with an anisotropic Gaussian kernel that no training task used (direct sub-sampling,
as the paper's inputs; x2 by default, ``--scale 4`` for x4), then super-resolved with the model zoo's weights for
that scale after 0, 1, 5 and 10 adaptation steps. It prints a PSNR/time table beside bicubic, and saves a comparison
figure and a PSNR-vs-steps plot.
"""
import argparse
import json
import os
import time
import torch
from os import path as osp

from basicsr.utils import tensor2img
from mzsr_plugin.data.kernels import parse_kernel_spec
from mzsr_plugin.evaluation import degraded_case, evaluate_adaptation, file_sha256
from mzsr_plugin.inference import load_network
from mzsr_plugin.metrics.official_metric import calculate_mzsr_psnr
from mzsr_plugin.utils.figures import plot_psnr_vs_steps, save_comparison
from mzsr_plugin.utils.matlab_resize import imresize_pt

# theta = 0.6 rad, variances 3.5 and 1.2 at x2: anisotropic, inside the training range (lambda <= 2.5 * s), never
# drawn exactly by a training task; the variances grow with the scale as the training range does.
DEMO_KERNELS = {2: 'a_d_0.6_3.5_1.2', 3: 'a_d_0.6_5.2_1.8', 4: 'a_d_0.6_7.0_2.4'}
DEMO_KERNEL = DEMO_KERNELS[2]
DEMO_IMAGES = ('astronaut', 'chelsea', 'coffee')
DEMO_STEPS = (0, 1, 5, 10)


def skimage_case(name, kernel_spec=DEMO_KERNEL, scale=2):
    """A scikit-image photo (``skimage.data.<name>``) degraded with ``kernel_spec`` as the official test inputs.

    Args:
        name (str): Name of a colour image in ``skimage.data``.
        kernel_spec (str): Kernel spec (see :func:`~mzsr_plugin.data.kernels.parse_kernel_spec`).
        scale (int): Scale.

    Returns:
        DegradedImage: LR (uint8-rounded), GT (BGR uint8, modcropped), kernel.
    """
    import skimage.data
    rgb = getattr(skimage.data, name)()
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'skimage.data.{name} is not an RGB image')
    spec = parse_kernel_spec(kernel_spec)
    return degraded_case(name, rgb, spec.kernel, scale, spec.downsample)


def rgb(tensor):
    """(1, 3, H, W) RGB tensor -> (H, W, 3) RGB uint8, rounded as the official outputs."""
    return tensor2img(tensor, rgb2bgr=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--weights', help='MZSRNet weights (.pth, BasicSR format); default: the model zoo\'s for the '
                        'scale and the kernel\'s downsampling')
    parser.add_argument('--scale', type=int, default=2, choices=sorted(DEMO_KERNELS), help='SR scale (default: 2)')
    parser.add_argument('--image', default=DEMO_IMAGES[0], help=f'skimage.data image, e.g. {", ".join(DEMO_IMAGES)}')
    parser.add_argument('--kernel', help=f'kernel spec of the degradation (default: {DEMO_KERNELS})')
    parser.add_argument('--out', default='mzsr_demo', help='folder for the figures and results.json')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)

    args.kernel = args.kernel or DEMO_KERNELS[args.scale]
    case = skimage_case(args.image, args.kernel, args.scale)
    try:
        net = load_network(args.weights, case.scale, case.downsample, args.device)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    args.weights = net.weights_path
    os.makedirs(args.out, exist_ok=True)
    shown = osp.relpath(args.weights)  # what a user in the repository would type, not this machine's path
    print(f'{args.image}: LR {case.lr.shape[-1]}x{case.lr.shape[-2]}, kernel {args.kernel} ({case.downsample} '
          f'x{case.scale}), weights {args.weights if shown.startswith("..") else shown}, device {args.device}')

    start = time.perf_counter()
    bicubic = imresize_pt(case.lr, case.scale)
    bicubic_time = time.perf_counter() - start
    bicubic_psnr = calculate_mzsr_psnr(tensor2img(bicubic), case.gt, crop_border=case.scale)
    result = evaluate_adaptation(net, [case], DEMO_STEPS, device=args.device)[0]

    print(f'\n{"method":<16} {"PSNR (dB)":>10} {"time (s)":>9}')
    print(f'{"bicubic":<16} {bicubic_psnr:>10.2f} {bicubic_time:>9.3f}')
    for steps in DEMO_STEPS:
        print(f'{f"MZSR ({steps} steps)":<16} {result.psnr[steps]:>10.2f} {result.seconds[steps]:>9.3f}')

    # The SR images are the ones measured above (BGR, as the metrics take them), not a second adaptation run.
    panels = [('LR (nearest)', rgb(torch.nn.functional.interpolate(case.lr, scale_factor=case.scale))),
              (f'bicubic {bicubic_psnr:.2f} dB', rgb(bicubic)),
              (f'MZSR 0 steps {result.psnr[0]:.2f} dB', result.images[0][..., ::-1]),
              (f'MZSR 10 steps {result.psnr[10]:.2f} dB', result.images[10][..., ::-1]), ('GT', case.gt[..., ::-1])]
    compare = osp.join(args.out, f'{args.image}_compare.png')
    save_comparison(compare, panels)
    curve = osp.join(args.out, f'{args.image}_psnr_vs_steps.png')
    plot_psnr_vs_steps({f'MZSR ({args.image})': {s: result.psnr[s] for s in DEMO_STEPS}, 'bicubic': bicubic_psnr},
                       curve, title=f'{args.image}, kernel {args.kernel}')
    with open(osp.join(args.out, 'results.json'), 'w') as f:
        json.dump({'image': args.image, 'kernel': args.kernel, 'scale': case.scale, 'weights': args.weights,
                   'weights_sha256': file_sha256(args.weights), 'device': args.device,
                   'bicubic': {'psnr': bicubic_psnr, 'seconds': bicubic_time},
                   'mzsr': {str(s): {'psnr': result.psnr[s], 'seconds': result.seconds[s]} for s in DEMO_STEPS}},
                  f, indent=1)
    print(f'\nsaved {compare}, {curve} and {osp.join(args.out, "results.json")}')


if __name__ == '__main__':
    main()
