"""``mzsr-app`` (``python -m mzsr_plugin.app``): MZSR in the browser, served on 127.0.0.1 by default.

Two tabs, both on the functions the command line uses (no second pipeline):

- *Your photo*: an LR image, its kernel (a spec such as ``g_d_2.0``, ``estimate`` for blind SR, or an uploaded
  ``.mat``/``.npy``/``.png``), scale, adaptation steps, weights (shipped or uploaded), MZSR or ZSSR. The photo goes
  through ``mzsr-sr`` itself (:func:`mzsr_plugin.cli.main`), so its messages, outputs and metrics are the command
  line's; the page shows the SR against bicubic on a before/after slider, the kernel, the comparison figure with
  zoomed crops and the time, and offers the PNG and the kernel ``.mat`` for download.
- *Try on a clean photo*: a bundled scikit-image photo or an uploaded HR image is degraded as the official test
  inputs are (:func:`~mzsr_plugin.evaluation.degraded_case`) and adapted step by step
  (:func:`~mzsr_plugin.evaluation.evaluate_adaptation`): PSNR after each step beside bicubic, as a plot and a table.

Needs the optional extra: ``pip install -e ".[app]"``.
"""
import argparse
import contextlib
import io
import json
import numpy as np
import os
import tempfile
import time
import torch
from os import path as osp

from mzsr_plugin import cli
from mzsr_plugin.data.kernels import load_kernel, parse_kernel_spec, save_kernel
from mzsr_plugin.demo import DEFAULT_WEIGHTS, DEMO_IMAGES, DEMO_KERNEL
from mzsr_plugin.evaluation import bicubic_psnr, degraded_case, evaluate_adaptation, load_mzsr_weights
from mzsr_plugin.utils.figures import kernel_image, plot_psnr_vs_steps, save_comparison
from mzsr_plugin.utils.image_io import read_image, write_image
from mzsr_plugin.utils.matlab_resize import imresize_pt

MAX_STEPS = 20
# Larger photos belong to mzsr-sr (tiling, crop budgets); a page request should not hold the server for minutes.
DEFAULT_MAX_PIXELS = 1024 * 1024


class AppError(Exception):
    """A bad input: the message is shown in the page, exactly as the command line words it."""


def run_mzsr_sr(argv):
    """Runs ``mzsr-sr`` with ``argv``; its error message (argparse or its own) becomes an :class:`AppError`."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            cli.main(argv)
    except SystemExit as stop:
        if stop.code not in (0, None):
            message = stop.code if isinstance(stop.code, str) else stderr.getvalue().strip().splitlines()[-1]
            raise AppError(message) from None


def resolve_kernel(spec, kernel_file):
    """The kernel the page asks for: an uploaded file, else a spec; errors say which field is wrong."""
    if kernel_file:
        try:
            return load_kernel(kernel_file), 'direct', osp.basename(kernel_file)
        except (ValueError, OSError) as error:
            raise AppError(f'kernel file: {error}') from None
    spec = (spec or '').strip()
    if not spec:
        raise AppError('a blur kernel is required: type a spec such as g_d_2.0 or estimate, or upload a kernel file')
    if spec == 'estimate':
        return None, 'direct', 'estimate (spectral)'
    try:
        parsed = parse_kernel_spec(spec)
    except ValueError as error:
        raise AppError(f'kernel: {error}') from None
    return parsed.kernel, parsed.downsample, spec


def check_size(path, max_pixels):
    """Refuses images above ``max_pixels`` LR pixels before any work (the command line tiles them instead)."""
    img, _ = read_image(path)
    h, w = img.shape[:2]
    if h * w > max_pixels:
        raise AppError(f'{osp.basename(path)} is {w}x{h} = {h * w:,} pixels; this page takes at most '
                       f'{max_pixels:,} (mzsr-app --max-pixels N), or use the command line: mzsr-sr {path} -o OUT')
    return img


def super_resolve_photo(image, kernel_spec, kernel_file, scale, steps, weights, zssr, work_dir,
                        max_pixels=DEFAULT_MAX_PIXELS):
    """Your-photo tab: ``mzsr-sr`` on one image, then what the page shows.

    Args:
        image (str): Path of the uploaded LR image.
        kernel_spec (str): Kernel spec (used when no file is given).
        kernel_file (str | None): Uploaded kernel file.
        scale (int): SR scale.
        steps (int): Adaptation steps.
        weights (str | None): Uploaded weights (.pth); None: the shipped ones.
        zssr (bool): Run the ZSSR baseline instead.
        work_dir (str): Folder for this request's files.
        max_pixels (int): Largest LR the page accepts.

    Returns:
        dict: ``bicubic``, ``sr``, ``compare``, ``kernel_png``, ``kernel_mat`` (paths), ``info`` (Markdown).
    """
    if not image:
        raise AppError('upload an LR image first')
    try:
        img = check_size(image, max_pixels)
    except (ValueError, OSError) as error:
        raise AppError(str(error)) from None
    kernel, downsample, source = resolve_kernel(kernel_spec, kernel_file)
    out = tempfile.mkdtemp(dir=work_dir)
    stem = osp.splitext(osp.basename(image))[0]
    if kernel is None:  # blind: mzsr-sr estimates it and writes <stem>_kernel.mat
        kernel_mat, kernel_arg = osp.join(out, f'{stem}_kernel.mat'), 'estimate'
    else:
        kernel_mat = kernel_arg = osp.join(out, 'kernel.mat')
        save_kernel(kernel_mat, kernel)
    argv = [image, '-o', out, '--scale', str(int(scale)), '--steps', str(int(steps)), '--kernel', kernel_arg,
            '--downsample', downsample, '--compare']
    if weights:
        argv += ['--weights', weights]
    if zssr:
        argv.append('--zssr')
    start = time.perf_counter()
    run_mzsr_sr(argv)
    seconds = time.perf_counter() - start
    with open(osp.join(out, 'metrics.json')) as f:
        row = json.load(f)['images'][0]
    kernel = load_kernel(kernel_mat)
    bicubic = osp.join(out, f'{stem}_bicubic.png')
    lr = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).unsqueeze(0)
    write_image(bicubic, imresize_pt(lr, int(scale))[0].clamp(0, 1).permute(1, 2, 0).numpy(), False)
    kernel_png = osp.join(out, 'kernel.png')
    write_image(kernel_png, kernel_image(kernel), False)
    h, w = img.shape[:2]
    method = f'ZSSR ({row["steps"]} iterations)' if zssr else f'MZSR, {row["steps"]} adaptation step(s)'
    info = (f'**{method}** on {osp.basename(image)}: LR {w}x{h} → SR {w * int(scale)}x{h * int(scale)}, kernel '
            f'{source} ({downsample} x{int(scale)}); {row["seconds"]:.2f} s for SR ({seconds:.2f} s in all)')
    return {'bicubic': bicubic, 'sr': osp.join(out, row['output']), 'compare': osp.join(out, f'{stem}_compare.png'),
            'kernel_png': kernel_png, 'kernel_mat': kernel_mat, 'info': info}


def clean_photo_case(photo, hr_upload, kernel_spec, kernel_file, scale):
    """The degraded test case of the clean-photo tab (an uploaded HR image, else a bundled skimage photo)."""
    kernel, downsample, source = resolve_kernel(kernel_spec, kernel_file)
    if hr_upload:
        try:
            hr, _ = read_image(hr_upload)
        except (ValueError, OSError) as error:
            raise AppError(str(error)) from None
        rgb, name = (hr * 255).round().astype(np.uint8), osp.splitext(osp.basename(hr_upload))[0]
    else:
        import skimage.data
        if photo not in DEMO_IMAGES:
            raise AppError(f'photo {photo!r}: choose one of {", ".join(DEMO_IMAGES)} or upload an HR image')
        rgb, name = getattr(skimage.data, photo)(), photo
    if min(rgb.shape[:2]) < 4 * scale:
        raise AppError(f'{name}: the HR image is {rgb.shape[1]}x{rgb.shape[0]}; it needs at least {4 * scale} pixels '
                       'per side')
    return degraded_case(name, rgb, kernel, int(scale), downsample), source


def try_clean_photo(photo, hr_upload, kernel_spec, kernel_file, scale, steps, weights, work_dir):
    """Clean-photo tab: degrade, adapt step by step, PSNR after each step beside bicubic.

    Returns:
        dict: ``plot``, ``compare`` (paths), ``table`` (rows of steps/PSNR), ``info`` (Markdown).
    """
    case, source = clean_photo_case(photo, hr_upload, kernel_spec, kernel_file, scale)
    try:
        net = load_mzsr_weights(weights or DEFAULT_WEIGHTS, int(scale))
    except (ValueError, OSError, RuntimeError) as error:
        raise AppError(f'weights: {error}') from None
    steps = int(steps)
    result = evaluate_adaptation(net, [case], tuple(range(steps + 1)))[0]
    bicubic = bicubic_psnr(case)
    out = tempfile.mkdtemp(dir=work_dir)
    plot = osp.join(out, 'psnr_vs_steps.png')
    plot_psnr_vs_steps({f'MZSR ({case.name})': result.psnr, 'bicubic': bicubic}, plot,
                       title=f'{case.name}, kernel {source}')
    lr_up = torch.nn.functional.interpolate(case.lr, scale_factor=case.scale)[0].permute(1, 2, 0).numpy()
    bic = imresize_pt(case.lr, case.scale)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    panels = [('LR (nearest)', lr_up), (f'bicubic\n{bicubic:.2f} dB', bic),
              (f'MZSR 0 steps\n{result.psnr[0]:.2f} dB', result.images[0][..., ::-1])]
    if steps:
        panels.append((f'MZSR {steps} steps\n{result.psnr[steps]:.2f} dB', result.images[steps][..., ::-1]))
    panels.append(('GT', case.gt[..., ::-1]))
    compare = osp.join(out, 'compare.png')
    save_comparison(compare, panels)
    table = [['bicubic', f'{bicubic:.2f}', '']]
    table += [[f'MZSR {s}', f'{result.psnr[s]:.2f}', f'{result.seconds[s]:.2f}'] for s in range(steps + 1)]
    info = (f'**{case.name}**, kernel {source} ({case.downsample} x{case.scale}): bicubic {bicubic:.2f} dB, MZSR '
            f'{result.psnr[0]:.2f} dB before adaptation, {result.psnr[steps]:.2f} dB after {steps} step(s)')
    return {'plot': plot, 'compare': compare, 'table': table, 'info': info}


def build_app(work_dir, max_pixels=DEFAULT_MAX_PIXELS):
    """The Gradio page (not launched)."""
    import gradio as gr

    def photo_handler(image, kernel_spec, kernel_file, scale, steps, weights, zssr,
                      progress=gr.Progress(track_tqdm=True)):
        try:
            r = super_resolve_photo(image, kernel_spec, kernel_file, scale, steps, weights, zssr, work_dir,
                                    max_pixels)
        except AppError as error:
            raise gr.Error(str(error), print_exception=False) from None
        return (r['bicubic'], r['sr']), r['sr'], r['kernel_png'], r['kernel_mat'], r['compare'], r['info']

    def clean_handler(photo, hr_upload, kernel_spec, kernel_file, scale, steps, weights,
                      progress=gr.Progress(track_tqdm=True)):
        try:
            r = try_clean_photo(photo, hr_upload, kernel_spec, kernel_file, scale, steps, weights, work_dir)
        except AppError as error:
            raise gr.Error(str(error), print_exception=False) from None
        return r['plot'], r['compare'], r['table'], r['info']

    with gr.Blocks(title='MZSR: zero-shot super-resolution') as page:
        gr.Markdown('# MZSR — meta-transfer zero-shot super-resolution\nAdapts the meta-learned network to your '
                    "image's blur kernel in a few gradient steps, then super-resolves it.")
        with gr.Tab('Your photo'):
            with gr.Row():
                with gr.Column():
                    # A file, not gr.Image: the bytes reach mzsr-sr untouched (16-bit, gray), and a broken file
                    # gets the command line's message instead of the widget's decoder error.
                    image = gr.File(label='LR image (PNG, JPEG, BMP, TIFF)', type='filepath', elem_id='lr_image')
                    kernel_spec = gr.Textbox(value='g_d_2.0', label='kernel: a spec (g_d_<var>, g_b_<var>, '
                                             'a_d_<theta>_<l1>_<l2>) or estimate (blind)', elem_id='kernel_spec')
                    kernel_file = gr.File(label='or a kernel file (.mat, .npy, .png)', type='filepath',
                                          elem_id='kernel_file')
                    scale = gr.Slider(2, 4, value=2, step=1, label='scale', elem_id='scale')
                    steps = gr.Slider(0, MAX_STEPS, value=10, step=1, label='adaptation steps', elem_id='steps')
                    weights = gr.File(label='weights (.pth; empty: the shipped x2 direct weights)', type='filepath')
                    zssr = gr.Checkbox(label='ZSSR baseline instead (minutes on CPU)', value=False)
                    run = gr.Button('Super-resolve', variant='primary', elem_id='run_photo')
                with gr.Column():
                    info = gr.Markdown(elem_id='photo_info')
                    slider = gr.ImageSlider(label='bicubic | SR', type='filepath', elem_id='slider')
                    sr_file = gr.File(label='SR (PNG)', elem_id='sr_file')
                    with gr.Row():
                        kernel_png = gr.Image(label='kernel', type='filepath', elem_id='kernel_png')
                        kernel_mat = gr.File(label='kernel (.mat)')
                    compare = gr.Image(label='comparison (zoomed crops below)', type='filepath', elem_id='compare')
            run.click(photo_handler, [image, kernel_spec, kernel_file, scale, steps, weights, zssr],
                      [slider, sr_file, kernel_png, kernel_mat, compare, info])
        with gr.Tab('Try on a clean photo'):
            with gr.Row():
                with gr.Column():
                    photo = gr.Dropdown(list(DEMO_IMAGES), value=DEMO_IMAGES[1], label='bundled photo')
                    hr_upload = gr.File(label='or your HR image', type='filepath', elem_id='hr_image')
                    clean_spec = gr.Textbox(value=DEMO_KERNEL, label='kernel spec')
                    clean_file = gr.File(label='or a kernel file', type='filepath')
                    clean_scale = gr.Slider(2, 4, value=2, step=1, label='scale')
                    clean_steps = gr.Slider(0, MAX_STEPS, value=5, step=1, label='adaptation steps')
                    clean_weights = gr.File(label='weights (.pth)', type='filepath')
                    clean_run = gr.Button('Degrade and adapt', variant='primary', elem_id='run_clean')
                with gr.Column():
                    clean_info = gr.Markdown(elem_id='clean_info')
                    plot = gr.Image(label='PSNR vs adaptation steps', type='filepath')
                    table = gr.Dataframe(headers=['method', 'PSNR (dB)', 'seconds'], label='PSNR after each step')
                    clean_compare = gr.Image(label='comparison', type='filepath')
            clean_run.click(clean_handler, [photo, hr_upload, clean_spec, clean_file, clean_scale, clean_steps,
                                            clean_weights], [plot, clean_compare, table, clean_info])
    return page


def main(argv=None):
    parser = argparse.ArgumentParser(description='MZSR in the browser (Gradio), on this machine')
    parser.add_argument('--host', default='127.0.0.1', help='address to serve on (default: %(default)s)')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument('--share', action='store_true', help="Gradio's public share link (off by default)")
    parser.add_argument('--max-pixels', type=int, default=DEFAULT_MAX_PIXELS, help='largest LR image accepted')
    parser.add_argument('--work-dir', help='folder for uploads and results (default: a temporary folder)')
    args = parser.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        parser.error('the web app needs Gradio: pip install -e ".[app]"')
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='mzsr_app_')
    os.makedirs(work_dir, exist_ok=True)
    page = build_app(work_dir, args.max_pixels)
    print(f'mzsr-app: serving on http://{args.host}:{args.port} (results in {work_dir})', flush=True)
    page.queue().launch(server_name=args.host, server_port=args.port, share=args.share, inbrowser=False,
                        allowed_paths=[work_dir], show_error=True)


if __name__ == '__main__':
    main()
