"""``mzsr-app`` (``python -m mzsr_plugin.app``): MZSR in the browser, served on 127.0.0.1 by default.

Two tabs, both on the functions the command line uses (no second pipeline):

- *Your photo*: an LR image, its kernel (``estimate`` by default: a photo's kernel is unknown; a spec such as
  ``g_d_2.0``, or an uploaded ``.mat``/``.npy``/``.png``), a scale among those of the shipped models, adaptation
  steps, weights (the model zoo's for the scale, or uploaded), MZSR or ZSSR. The photo goes through the path
  ``mzsr-sr`` runs (:func:`mzsr_plugin.inference.run_image` and :func:`~mzsr_plugin.inference.save_outputs`), so
  its messages, outputs and metrics are the command line's; the page shows the SR against bicubic on a
  before/after slider, the kernel, the comparison figure with zoomed crops and the time, and offers the PNG and the
  kernel ``.mat`` for download.
- *Try on a clean photo*: a bundled scikit-image photo or an uploaded HR image is degraded as the official test
  inputs are (:func:`~mzsr_plugin.evaluation.degraded_case`) and adapted step by step
  (:func:`~mzsr_plugin.evaluation.evaluate_adaptation`): PSNR after each step beside bicubic, as a plot and a table.

Needs the optional extra: ``pip install -e ".[app]"``.
"""
import argparse
import numpy as np
import os
import tempfile
import time
import torch
import warnings
from os import path as osp

from mzsr_plugin.data.kernels import load_kernel, save_kernel
from mzsr_plugin.demo import DEMO_IMAGES, DEMO_KERNEL
from mzsr_plugin.evaluation import bicubic_psnr, degraded_case, evaluate_adaptation
from mzsr_plugin.inference import (ESTIMATE, KernelChoice, OutputSettings, RunSettings, describe_fallback,
                                   describe_son, load_network, resolve_kernel, run_image, save_outputs)
from mzsr_plugin.model_zoo import shipped_models, shipped_scales
from mzsr_plugin.models.self_check import scores_text
from mzsr_plugin.utils.figures import kernel_image, plot_psnr_vs_steps, save_comparison
from mzsr_plugin.time_estimate import estimate_photos, format_seconds
from mzsr_plugin.utils.image_io import OUTPUT_FORMATS, SUPPORTED_FORMATS, read_image, write_image
from mzsr_plugin.utils.matlab_resize import imresize_pt

MAX_STEPS = 20
# Larger photos belong to mzsr-sr (tiling, crop budgets); a page request should not hold the server for minutes.
DEFAULT_MAX_PIXELS = 1024 * 1024
# Output formats a browser shows; another (TIFF) gets a PNG beside it for the before/after slider.
SHOWN_FORMATS = ('png', 'jpg', 'webp')
# This machine's measured rates per (scale, steps, kernel, input format, output format): calibrated once a server.
RATES = {}


class AppError(Exception):
    """A bad input: the message is shown in the page, exactly as the command line words it."""


def resolve_kernel_fields(spec, kernel_file):
    """The kernel the page asks for: an uploaded file, else a spec or ``estimate``; errors say which field."""
    if kernel_file:
        try:
            return KernelChoice(load_kernel(kernel_file), 'direct', osp.basename(kernel_file))
        except (ValueError, OSError) as error:
            raise AppError(f'kernel file: {error}') from None
    spec = (spec or '').strip()
    if not spec:
        raise AppError('a blur kernel is required: type a spec such as g_d_2.0 or estimate, or upload a kernel file')
    if osp.exists(spec):  # the page takes kernel files as uploads, never as paths of the server's disk
        raise AppError(f'kernel: {spec!r} is not a kernel spec; upload the kernel file instead')
    try:
        return resolve_kernel(spec, option='kernel')
    except (ValueError, FileNotFoundError) as error:
        raise AppError(str(error)) from None


def load_weights(weights, scale, downsample):
    """The uploaded weights (checked against their record) or the shipped model of the zoo for the scale.

    Returns:
        tuple[MZSRNet, list[str]]: The net and the warnings to show (weights without a record).
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            net = load_network(weights or None, int(scale), downsample, option='weights')
    except (ValueError, OSError, RuntimeError) as error:
        raise AppError(str(error)) from None
    return net, [str(w.message) for w in caught]


def check_size(path, max_pixels):
    """Refuses images above ``max_pixels`` LR pixels before any work (the command line tiles them instead)."""
    img, _ = read_image(path)
    h, w = img.shape[:2]
    if h * w > max_pixels:
        raise AppError(f'{osp.basename(path)} is {w}x{h} = {h * w:,} pixels; this page takes at most '
                       f'{max_pixels:,} (mzsr-app --max-pixels N), or use the command line: mzsr-sr {path} -o OUT')
    return img


def super_resolve_photo(image, kernel_spec, kernel_file, scale, steps, weights, zssr, work_dir,
                        max_pixels=DEFAULT_MAX_PIXELS, output=None, announce=None):
    """Your-photo tab: one image through :func:`mzsr_plugin.inference.run_image`, as ``mzsr-sr`` runs it.

    Args:
        image (str): Path of the uploaded LR image.
        kernel_spec (str): Kernel spec or ``estimate`` (used when no file is given).
        kernel_file (str | None): Uploaded kernel file.
        scale (int): SR scale.
        steps (int): Adaptation steps.
        weights (str | None): Uploaded weights (.pth); None: the zoo's shipped model for the scale.
        zssr (bool): Run the ZSSR baseline instead.
        work_dir (str): Folder for this request's files.
        max_pixels (int): Largest LR the page accepts.
        output (OutputSettings | None): Format of the SR file, with the photo's profile and EXIF; None: PNG.
        announce (callable | None): Called with the expected time before the work, for photos large enough to
            have one (:mod:`~mzsr_plugin.time_estimate`).

    Returns:
        dict: ``bicubic``, ``sr`` (the file in the chosen format), ``shown`` (the SR as the browser shows it),
        ``compare``, ``kernel_png``, ``kernel_mat`` (paths), ``expected`` (seconds or None), ``info`` (Markdown).
    """
    if not image:
        raise AppError('upload an LR image first')
    try:
        check_size(image, max_pixels)
    except (ValueError, OSError) as error:
        raise AppError(str(error)) from None
    choice = resolve_kernel_fields(kernel_spec, kernel_file)
    settings = RunSettings(scale=int(scale), steps=int(steps), zssr=bool(zssr), compare=True)
    net, notes = (None, []) if zssr else load_weights(weights, scale, choice.downsample)
    output = output or OutputSettings()
    expected = None if zssr else _expected_seconds(image, choice, settings, net, output, announce)
    start = time.perf_counter()
    try:
        result = run_image(image, choice, settings, net, progress=True)
    except (ValueError, OSError) as error:
        raise AppError(str(error)) from None
    out = tempfile.mkdtemp(dir=work_dir)
    paths = save_outputs(result, out, compare=True, output=output)
    seconds = time.perf_counter() - start
    shown = paths['sr']
    if output.ext not in SHOWN_FORMATS:
        shown = osp.join(out, f'{result.stem}_shown.png')
        write_image(shown, result.sr, result.gray)
    if result.estimated is None:
        paths['kernel_mat'], paths['kernel_png'] = osp.join(out, 'kernel.mat'), osp.join(out, 'kernel.png')
        save_kernel(paths['kernel_mat'], result.kernel)
        write_image(paths['kernel_png'], kernel_image(result.kernel), False)
    elif result.estimated['warning']:
        notes.append(result.estimated['warning'])
    if result.noise['warning']:
        notes.append(result.noise['warning'])
    bicubic = osp.join(out, f'{result.stem}_bicubic.png')
    write_image(bicubic, result.bicubic, result.gray)
    h, w = result.lr.shape[:2]
    method = f'ZSSR ({result.steps} iterations)' if zssr else f'MZSR, {result.steps} adaptation step(s)'
    model = '' if net is None else f', weights {osp.basename(net.weights_path)}'
    took = f', expected {format_seconds(expected)}' if expected else ''
    info = (f'**{method}** on {osp.basename(image)}: LR {w}x{h} → SR {w * settings.scale}x{h * settings.scale}, '
            f'kernel {result.kernel_source} ({result.downsample} x{settings.scale}){model}; {result.seconds:.2f} s '
            f'for SR ({seconds:.2f} s in all{took}), precision {result.precision}')
    carried = result.metadata.describe() if result.metadata else ''
    info += f'\n\nWritten as {output.ext.upper()}' + (f' with the photo\'s {carried}' if carried else '')
    if result.noise['std'] > 0 or result.noise['son_jpeg']:
        info += f'; {describe_son(result.noise)}'
    check = result.self_check
    if check:
        info += f'\n\nSelf-check on held-out crops: {scores_text(check)}; the output is **{check["choice"]}**'
        if check['choice'] != f'MZSR({result.steps})':
            notes.append(describe_fallback(check))
    info += ''.join(f'\n\n⚠ {note}' for note in notes)
    return {'bicubic': bicubic, 'sr': paths['sr'], 'shown': shown, 'compare': paths['compare'],
            'kernel_png': paths['kernel_png'], 'kernel_mat': paths['kernel_mat'], 'expected': expected, 'info': info}


def _expected_seconds(image, choice, settings, net, output, announce):
    """The photo's expected time (None under :data:`~mzsr_plugin.time_estimate.ESTIMATE_ABOVE` pixels), measured
    once per server for its settings and told through ``announce`` before the work."""
    key = (settings.scale, settings.steps, choice.source, osp.splitext(image)[1].lower(), output.ext,
           getattr(net, 'weights_path', None))
    rate, estimates = estimate_photos([(image, choice)], settings, net, output, RATES.get(key))
    if rate is None:
        return None
    RATES[key] = rate
    h, w, seconds = estimates[image]
    if announce:
        announce(f'{osp.basename(image)}: {w}x{h} LR → x{settings.scale}, MZSR({settings.steps}): expected '
                 f'{format_seconds(seconds)} on this machine')
    return seconds


def clean_photo_case(photo, hr_upload, kernel_spec, kernel_file, scale):
    """The degraded test case of the clean-photo tab (an uploaded HR image, else a bundled skimage photo)."""
    choice = resolve_kernel_fields(kernel_spec, kernel_file)
    if choice.estimate:
        raise AppError('kernel: this tab degrades a clean photo with a kernel you choose; estimate is for your own '
                       'photos (first tab)')
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
    return degraded_case(name, rgb, choice.kernel, int(scale), choice.downsample), choice.source


def try_clean_photo(photo, hr_upload, kernel_spec, kernel_file, scale, steps, weights, work_dir):
    """Clean-photo tab: degrade, adapt step by step, PSNR after each step beside bicubic.

    Returns:
        dict: ``plot``, ``compare`` (paths), ``table`` (rows of steps/PSNR), ``info`` (Markdown).
    """
    case, source = clean_photo_case(photo, hr_upload, kernel_spec, kernel_file, scale)
    net, notes = load_weights(weights, scale, case.downsample)
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
    info += ''.join(f'\n\n⚠ {note}' for note in notes)
    return {'plot': plot, 'compare': compare, 'table': table, 'info': info}


def build_app(work_dir, max_pixels=DEFAULT_MAX_PIXELS):
    """The Gradio page (not launched)."""
    import gradio as gr
    scales = shipped_scales()
    if not scales:
        raise SystemExit('mzsr-app: no MZSR weights are installed in mzsr_plugin/weights (reinstall the package)')
    zoo = ', '.join(m.describe() for m in shipped_models())

    def photo_handler(image, kernel_spec, kernel_file, scale, steps, weights, zssr, ext, quality, keep_gps,
                      progress=gr.Progress(track_tqdm=True)):
        try:
            output = OutputSettings(ext, int(quality) if OUTPUT_FORMATS[ext].quality else None, bool(keep_gps))
            r = super_resolve_photo(image, kernel_spec, kernel_file, scale, steps, weights, zssr, work_dir,
                                    max_pixels, output, announce=lambda text: gr.Info(text, duration=None))
        except (AppError, ValueError) as error:
            raise gr.Error(str(error), print_exception=False) from None
        return (r['bicubic'], r['shown']), r['sr'], r['kernel_png'], r['kernel_mat'], r['compare'], r['info']

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
                    image = gr.File(label=f'LR image ({SUPPORTED_FORMATS}; turned upright by its EXIF)',
                                    type='filepath', elem_id='lr_image')
                    kernel_spec = gr.Textbox(value=ESTIMATE, label='kernel: estimate (blind: a photo\'s kernel is '
                                             'unknown) or a spec (g_d_<var>, g_b_<var>, a_d_<theta>_<l1>_<l2>)',
                                             elem_id='kernel_spec')
                    kernel_file = gr.File(label='or a kernel file (.mat, .npy, .png)', type='filepath',
                                          elem_id='kernel_file')
                    scale = gr.Radio(scales, value=scales[0], label='scale (those of the shipped models)',
                                     elem_id='scale')
                    steps = gr.Slider(0, MAX_STEPS, value=10, step=1, label='adaptation steps', elem_id='steps')
                    weights = gr.File(label=f'weights (.pth; empty: the shipped model for the scale: {zoo})',
                                      type='filepath')
                    zssr = gr.Checkbox(label='ZSSR baseline instead (minutes on CPU)', value=False)
                    with gr.Row():
                        ext = gr.Radio(list(OUTPUT_FORMATS), value='png', label='output format (with the photo\'s '
                                       'colour profile and EXIF)', elem_id='ext')
                        quality = gr.Slider(1, 100, value=OUTPUT_FORMATS['jpg'].quality, step=1,
                                            label='quality (jpg, webp)', elem_id='quality')
                        keep_gps = gr.Checkbox(label='keep the GPS position', value=False, elem_id='keep_gps')
                    run = gr.Button('Super-resolve', variant='primary', elem_id='run_photo')
                with gr.Column():
                    info = gr.Markdown(elem_id='photo_info')
                    slider = gr.ImageSlider(label='bicubic | SR', type='filepath', elem_id='slider')
                    sr_file = gr.File(label='SR (the chosen format)', elem_id='sr_file')
                    with gr.Row():
                        kernel_png = gr.Image(label='kernel', type='filepath', elem_id='kernel_png')
                        kernel_mat = gr.File(label='kernel (.mat)')
                    compare = gr.Image(label='comparison (zoomed crops below)', type='filepath', elem_id='compare')
            run.click(photo_handler, [image, kernel_spec, kernel_file, scale, steps, weights, zssr, ext, quality,
                                      keep_gps],
                      [slider, sr_file, kernel_png, kernel_mat, compare, info])
        with gr.Tab('Try on a clean photo'):
            with gr.Row():
                with gr.Column():
                    photo = gr.Dropdown(list(DEMO_IMAGES), value=DEMO_IMAGES[1], label='bundled photo')
                    hr_upload = gr.File(label='or your HR image', type='filepath', elem_id='hr_image')
                    clean_spec = gr.Textbox(value=DEMO_KERNEL, label='kernel spec')
                    clean_file = gr.File(label='or a kernel file', type='filepath')
                    clean_scale = gr.Radio(scales, value=scales[0], label='scale')
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
