"""One inference path: what goes with an image (kernel, ground truth, weights) and the run of one image.

``mzsr-sr``, ``mzsr-app``, the demo and :class:`~mzsr_plugin.data.kernel_test_dataset.MZSRKernelTestDataset`
resolve inputs here and nowhere else. The data path of one image::

    list_inputs(['photos/'])                   -> 'photos/cat.png'
    resolve_kernel('g_d_2.0') | find_kernel_file(dir, path) | 'estimate'  -> KernelChoice(kernel, downsample, source)
    find_gt('gt/', path)                       -> 'gt/cat_GT.png' or None
    load_network(None, scale, downsample)      -> the zoo's model for them (MZSRNet + learned step sizes + record)
    run_image(path, choice, settings, net)     -> ImageResult: son = LR*k↓s, n SGD steps on (son -> LR), SR of
                                                  LR, bicubic, official PSNR/SSIM against the GT
    save_outputs(result, out_dir, output)      -> <stem>.png (or .jpg/.tif/.webp, with the photo's ICC profile and
                                                  EXIF), <stem>_kernel.mat/.png, <stem>_compare.png
"""
import functools
import numpy as np
import os
import pickle
import sys
import time
import torch
from dataclasses import dataclass, field
from os import path as osp

from mzsr_plugin.data.kernels import load_kernel, parse_kernel_spec, save_kernel
from mzsr_plugin.evaluation import load_mzsr_weights
from mzsr_plugin.kernel_estimation import DEFAULT_ESTIMATOR, estimate_kernel
from mzsr_plugin.metrics.official_metric import calculate_mzsr_psnr, calculate_mzsr_ssim
from mzsr_plugin.model_zoo import (MODEL_ZOO, ModelRecordWarning, check_record, record_is_multiscale, weights_record,
                                   zoo_model_for)
from mzsr_plugin.models.adaptation import (AUTO_BUDGET, AUTO_TILE, crop_budget_for, resolve_adapt_lrs,
                                           super_resolve_image, tile_for)
from mzsr_plugin.models.self_check import describe_fallback
from mzsr_plugin.noise_estimation import AUTO, NO_JPEG, auto_noise_std, jpeg_quality, photo_degradation
from mzsr_plugin.precision import resolve_precision
from mzsr_plugin.utils.figures import kernel_image, save_comparison
from mzsr_plugin.utils.image_io import IMAGE_EXTENSIONS, OUTPUT_FORMATS, read_image, read_photo, to_uint8, write_image
from mzsr_plugin.utils.matlab_resize import imresize_pt
from mzsr_plugin.utils.progress import bar, is_terminal, write
from mzsr_plugin.zssr import ZSSR_DEFAULTS, zssr_super_resolve

# Kernel files looked up per image in a kernel folder, first match wins (``_0``: ZSSR/KernelGAN naming; ``_kernel``:
# what blind mode writes, so its output folder serves a later run; its ``_kernel.png`` is a picture, not a kernel).
KERNEL_PATTERNS = ('{stem}.mat', '{stem}_0.mat', '{stem}_kernel.mat', '{stem}.npy', '{stem}_0.npy', '{stem}.png',
                   '{stem}_0.png')
# Ground-truth files looked up per image in a GT folder (``_GT``: the official MZSR test naming).
GT_PATTERNS = ('{stem}.png', '{stem}_GT.png', '{name}')
KERNEL_HELP = ('pass --kernel FILE (.mat with key "kernel" or "Kernel", .npy, or .png) or a spec such as g_d_2.0, '
               'or --kernel-dir DIR holding <stem>.mat, <stem>_0.mat, <stem>_kernel.mat, <stem>.npy or <stem>.png per '
               'image')
ESTIMATE = 'estimate'


# ------------------------------------------------------------------------------------------------------------ inputs
def list_inputs(inputs):
    """Expands files and folders (not recursively) into a sorted list of image files.

    Args:
        inputs (Sequence[str]): Image files and/or folders; folder members with an extension of
            :data:`~mzsr_plugin.utils.image_io.IMAGE_EXTENSIONS` (any case) are taken.

    Returns:
        list[str]: Image paths, in the order of ``inputs`` (folder members sorted by name).
    """
    files = []
    for item in inputs:
        if osp.isdir(item):
            members = sorted(name for name in os.listdir(item) if osp.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
            files.extend(osp.join(item, name) for name in members)
        elif osp.isfile(item):
            if osp.splitext(item)[1].lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f'{item} is not an image file; expected one of {", ".join(IMAGE_EXTENSIONS)}')
            files.append(item)
        else:
            raise FileNotFoundError(f'input {item} does not exist')
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) found in {", ".join(inputs)}')
    return files


# ----------------------------------------------------------------------------------------------------------- kernels
@dataclass
class KernelChoice:
    """The kernel of an image and how its LR was sub-sampled.

    Attributes:
        kernel (np.ndarray | None): Shape (k, k), summing to 1; None for ``estimate`` (found per image).
        downsample (str): ``'direct'`` or ``'bicubic'``.
        source (str): What it came from, for logs and metrics (file, spec, ``estimate (spectral)``).
    """
    kernel: np.ndarray
    downsample: str
    source: str

    @property
    def estimate(self):
        return self.kernel is None


def resolve_kernel(spec, downsample=None, option='--kernel', estimator=DEFAULT_ESTIMATOR):
    """A kernel given by name: a file, a spec such as ``g_d_2.0``, or ``estimate``.

    Args:
        spec (str): A kernel file (.mat/.npy/.png), a spec (:func:`~mzsr_plugin.data.kernels.parse_kernel_spec`)
            or ``estimate`` (blind: estimated from each image).
        downsample (str | None): The downsampling asked; None takes the spec's (``'direct'`` for files).
        option (str): How the caller calls the setting, for messages (``--kernel``, ``kernel``).
        estimator (str): Shown in the source of ``estimate``.

    Returns:
        KernelChoice
    """
    if spec == ESTIMATE:
        if downsample not in (None, 'direct'):
            raise ValueError(f'{option} estimate models direct sub-sampling; drop --downsample {downsample}')
        return KernelChoice(None, 'direct', f'estimate ({estimator})')
    if osp.exists(spec):
        return KernelChoice(load_kernel(spec), downsample or 'direct', spec)
    if osp.splitext(spec)[1].lower() in ('.mat', '.npy', '.png') or '/' in spec or os.sep in spec:
        raise FileNotFoundError(f'{option} {spec}: no such kernel file (and not a kernel spec either)')
    try:
        parsed = parse_kernel_spec(spec)
    except ValueError as error:
        raise FileNotFoundError(f'{option} {spec}: no such file, and not a kernel spec either ({error})') from None
    if downsample is not None and downsample != parsed.downsample:
        raise ValueError(f'{option} {spec} means {parsed.downsample} downsampling but --downsample {downsample} was '
                         'given; drop one of them')
    return KernelChoice(parsed.kernel, parsed.downsample, spec)


def find_kernel_file(kernel_dir, image_path, option='--kernel-dir'):
    """The kernel file of an image in a kernel folder (see :data:`KERNEL_PATTERNS`), never the image itself.

    Args:
        kernel_dir (str): Folder of kernels.
        image_path (str): The image file (or LMDB key): its stem names the kernel.
        option (str): How the caller calls the folder, for the message (``--kernel-dir``, ``kernel_dir``).

    Returns:
        str: Path of the kernel file.
    """
    stem = osp.splitext(osp.basename(image_path))[0]
    candidates = [osp.join(kernel_dir, pattern.format(stem=stem)) for pattern in KERNEL_PATTERNS]
    for candidate in candidates:
        if osp.isfile(candidate) and not (osp.exists(image_path) and osp.samefile(candidate, image_path)):
            return candidate
    raise FileNotFoundError(f'no kernel for {image_path} in {option} {kernel_dir}: looked for '
                            f'{", ".join(osp.basename(c) for c in candidates)}')


def find_gt(gt_dir, image_path):
    """The ground truth of an image in ``gt_dir`` (see :data:`GT_PATTERNS`), or None."""
    name = osp.basename(image_path)
    stem = osp.splitext(name)[0]
    for pattern in GT_PATTERNS:
        candidate = osp.join(gt_dir, pattern.format(stem=stem, name=name))
        if osp.isfile(candidate) and not osp.samefile(candidate, image_path):
            return candidate
    return None


# ----------------------------------------------------------------------------------------------------------- weights
def load_network(weights, scale, downsample='direct', device='cpu', option='--weights'):
    """MZSRNet for ``scale`` and ``downsample``: the given weights (checked) or the zoo's model.

    Args:
        weights (str | None): A BasicSR ``.pth`` (key ``params``) or None for the shipped model.
        scale (int): Scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        device (str | torch.device): Device.
        option (str): How the caller names the weights setting, for messages.

    Returns:
        MZSRNet: In eval mode; ``net.inner_lrs`` (learned step sizes or None), ``net.record`` (the file's
        ``model_record`` or None) and ``net.weights_path`` set.
    """
    if weights is None:
        path = zoo_model_for(scale, downsample).path
    elif not osp.isfile(weights):
        raise FileNotFoundError(f'{option} {weights}: file not found')
    else:
        path = weights
    try:
        net = load_mzsr_weights(path, scale, device)
    except (RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as error:
        reason = str(error).replace(f'{path}: ', '')  # the file is named once, in front
        raise ValueError(f'{option} {path}: cannot load MZSRNet weights from it ({reason})') from None
    if weights is not None:  # the zoo's own files serve what they are picked for
        check_record(net.record, weights, scale, downsample, option)
    net.weights_path = path
    return net


def is_multiscale(net):
    """Whether the net's record says it serves several scales (its default adaptation preset is ``multiscale``)."""
    return record_is_multiscale(getattr(net, 'record', None))


# ------------------------------------------------------------------------------------------------------- one image
@dataclass
class RunSettings:
    """How one image is super-resolved (``mzsr-sr``'s flags; the app's fields).

    Attributes:
        scale (int): SR scale.
        steps (int): MZSR adaptation steps.
        lr (str | float | list | None): Adaptation learning rates (a preset, ``learned``, numbers); None: the
            weights' learned step sizes, else the official preset of the model kind.
        zssr (bool): Run the ZSSR baseline instead of MZSR.
        zssr_iters (int): ZSSR iteration cap.
        self_ensemble (bool): x8 geometric self-ensemble.
        back_projection (int | None): Back-projection iterations; None: 0 for MZSR, ZSSR's official default.
        tile (str | int): LR tile size of inference (0: never); ``'auto'``: the same SR tile at every scale (512 LR
            pixels at x2, 256 at x4).
        crop_budget (str | int): Most LR pixels adaptation runs on (0: the whole image); ``'auto'``: fewer for
            photos above a size (:func:`~mzsr_plugin.models.adaptation.crop_budget_for`).
        seed (int | None): Seed of the adaptation crops, of ZSSR and of kernel estimation.
        estimator (str): Kernel estimator of ``estimate``.
        estimator_iters (int): KernelGAN iterations.
        noise (str | float): The LR's noise std in grey levels (0..255 scale), reproduced in the son and taken out of
            the kernel estimate: ``'auto'`` reads it from the image (:mod:`~mzsr_plugin.noise_estimation`), 0 is
            the official clean son.
        jpeg (str | int): JPEG quality the son is encoded at: ``'auto'`` (the input file's, none for other
            formats), ``'none'``, or a quality 1..100.
        self_check (bool): Hold out an eighth of the LR from adaptation and fall back to bicubic or MZSR(0) when
            adaptation does not score best on it (:mod:`~mzsr_plugin.models.self_check`).
        compare (bool): Also compute the SR before adaptation (for the comparison figure).
        device (str): Device.
        precision (str): ``auto``, ``fp32`` or ``bf16``: dtype of the SGD steps and layout of the tensors
            (:func:`~mzsr_plugin.precision.resolve_precision`).
    """
    scale: int = 2
    steps: int = 10
    lr: object = None
    zssr: bool = False
    zssr_iters: int = ZSSR_DEFAULTS['max_iters']
    self_ensemble: bool = False
    back_projection: int = None
    tile: object = AUTO_TILE
    crop_budget: object = AUTO_BUDGET
    seed: int = None
    estimator: str = DEFAULT_ESTIMATOR
    estimator_iters: int = 1000
    noise: object = AUTO
    jpeg: object = AUTO
    self_check: bool = True
    compare: bool = False
    device: str = 'cpu'
    precision: str = 'auto'


@dataclass
class OutputSettings:
    """How the super-resolved photo is written (``mzsr-sr --ext --quality --keep-gps``; the app's fields).

    Attributes:
        ext (str): A key of :data:`~mzsr_plugin.utils.image_io.OUTPUT_FORMATS` (``png``, ``jpg``, ``tif``, ``webp``).
        quality (int | None): JPEG/WebP quality 1..100; None: the format's default.
        keep_gps (bool): Keep the photo's GPS position in the EXIF written (dropped by default).
    """
    ext: str = 'png'
    quality: int = None
    keep_gps: bool = False

    def __post_init__(self):
        if self.ext not in OUTPUT_FORMATS:
            raise ValueError(f'output format {self.ext!r}: expected one of {", ".join(OUTPUT_FORMATS)}')
        lossy = [name for name, fmt in OUTPUT_FORMATS.items() if fmt.quality]
        if self.quality is not None and (self.ext not in lossy or not 1 <= self.quality <= 100):
            raise ValueError(f'quality {self.quality}: applies to {" and ".join(lossy)} outputs, 1..100 (the output '
                             f'format is {self.ext})')


def output_name(stem, method, ext='png'):
    """The SR file's name: ``<stem>.<ext>``, ``<stem>_zssr.<ext>`` for the ZSSR baseline."""
    return f'{stem}_zssr.{ext}' if method == 'ZSSR' else f'{stem}.{ext}'


@dataclass
class ImageResult:
    """One super-resolved image and what was measured of it.

    Attributes:
        path (str): The LR image. stem (str): Its name without extension.
        lr (np.ndarray): The LR, (h, w, 3) float32 RGB in [0, 1]. gray (bool): The file was grayscale.
        sr (np.ndarray): The SR, (h*s, w*s, 3) float RGB in [0, 1]. bicubic (np.ndarray): MATLAB bicubic, same,
            made when first asked for (a 12-megapixel photo's x2 is 0.6 GB that writing the SR does not need).
        sr0 (np.ndarray | None): MZSR before adaptation (``settings.compare`` and steps > 0).
        adapted_on (list[int] | None): Shape of the batch MZSR adapted on, (n, C, h, w): the LR or its crops.
        kernel (np.ndarray): The kernel used, (k, k). kernel_source (str). downsample (str). scale (int).
        method (str): ``MZSR`` or ``ZSSR``. steps (int): Adaptation steps, or ZSSR iterations run.
        seconds (float): Adaptation + SR (or ZSSR training + SR).
        estimated (dict | None): Kernel estimation info (``seconds``, ``warning``) when the kernel was estimated.
        noise (dict): ``std`` (per channel, [0, 1] scale, reproduced in the son), ``source`` (``given``,
            ``auto (colour)`` or ``auto (matched)``), ``jpeg_quality`` (of a JPEG file, else None), ``son_jpeg``
            (the quality the son is encoded at, or None), ``warning`` (None, or why the photo is beyond what
            adaptation undoes); see :func:`~mzsr_plugin.noise_estimation.photo_degradation`.
        self_check (dict | None): Held-out PSNR of each candidate (``psnr``), the one that made the output
            (``choice``) and the share held out (``held_out``); None when not checked.
        gt_path (str | None), gt (np.ndarray | None): Ground truth (uint8 RGB, mod-cropped).
        metrics (dict): ``psnr``, ``ssim``, ``psnr_bicubic``, ``ssim_bicubic``, ``psnr0`` (with GT).
        metadata (PhotoMetadata | None): The photo's colour profile and EXIF, carried to the output.
        precision (Precision | None): What ran (:class:`~mzsr_plugin.precision.Precision`: ``str()`` for people,
            ``record()`` for metrics.json).
    """
    path: str
    stem: str
    lr: np.ndarray
    gray: bool
    sr: np.ndarray
    kernel: np.ndarray
    kernel_source: str
    downsample: str
    scale: int
    method: str
    steps: int
    seconds: float
    sr0: np.ndarray = None
    adapted_on: list = None
    estimated: dict = None
    noise: dict = field(default_factory=dict)
    self_check: dict = None
    gt_path: str = None
    gt: np.ndarray = None
    metrics: dict = field(default_factory=dict)
    metadata: object = None
    precision: object = None

    @functools.cached_property
    def bicubic(self):
        lr = torch.from_numpy(np.ascontiguousarray(self.lr.transpose(2, 0, 1))).unsqueeze(0)
        return _to_numpy(imresize_pt(lr, self.scale))


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


def adaptation_lrs(lr, net, steps, scale, downsample, option='--lr'):
    """One learning rate per step for ``net`` (see :func:`~mzsr_plugin.models.adaptation.resolve_adapt_lrs`);
    the record of a multi-scale model selects its preset."""
    learned = getattr(net, 'inner_lrs', None)
    if lr == 'learned' and not learned:
        raise ValueError(f'{option} learned: {getattr(net, "weights_path", "the weights")} carries no learned step '
                         'sizes; use a preset or numbers')
    return resolve_adapt_lrs(lr, steps, scale, downsample, is_multiscale(net), learned=learned)


def describe_son(noise):
    """What the son reproduces of a photo, for logs: its noise and JPEG quality."""
    parts = []
    if noise['std'] > 0:
        parts.append(f'noise std {noise["std"] * 255:.1f}/255 ({noise["source"]})')
    if noise['son_jpeg']:
        parts.append(f'JPEG quality {noise["son_jpeg"]}')
    return ' and '.join(parts) + ' reproduced in the son'


def _to_numpy(sr):
    """(H, W, C) view of a fresh SR tensor (1, C, H, W), clipped in place: no second copy of a big photo's SR."""
    return sr[0].clamp_(0, 1).permute(1, 2, 0).cpu().numpy()


class TileProgress:
    """Progress over the tiles of one image's SR (untiled images show none): a bar on a terminal, else a line per
    tile (:mod:`~mzsr_plugin.utils.progress`)."""

    def __init__(self, name):
        self.name, self.bar, self.start = name, None, time.perf_counter()

    def __call__(self, done, total):
        if not is_terminal():
            write(f'{self.name}: SR tile {done}/{total}, {time.perf_counter() - self.start:.1f} s', file=sys.stderr)
            return
        if self.bar is None:
            self.bar = bar(total, f'{self.name}: SR tiles', unit='tile', leave=False)
        self.bar.update(done - self.bar.n)
        if done == total:
            self.bar.close()


def run_image(path, choice, settings, net=None, gt_path=None, rng=None, progress=False):
    """Super-resolves one image file: kernel (estimated if asked), adaptation, SR, bicubic, metrics.

    Args:
        path (str): LR image file.
        choice (KernelChoice): Its kernel (None kernel: estimated here).
        settings (RunSettings): How.
        net (MZSRNet | None): From :func:`load_network` (None with ``settings.zssr``).
        gt_path (str | None): Ground truth, for PSNR/SSIM.
        rng (np.random.Generator | None): Adaptation crops of large images.
        progress (bool): tqdm bars (ZSSR, kernel estimation, the tiles of a tiled SR).

    Returns:
        ImageResult
    """
    img, gray, metadata = read_photo(path)
    stem = osp.splitext(osp.basename(path))[0]
    scale, device = settings.scale, torch.device(settings.device)
    precision = resolve_precision(settings.precision, device)
    downsample = choice.downsample
    # The colour-difference reading (or the level given) takes the noise out of the kernel estimate; under JPEG it
    # reads nothing, and the level matched to the son with that kernel estimates the kernel once more.
    first_std = auto_noise_std(img) if settings.noise == AUTO else float(settings.noise) / 255

    def kernel_for(noise_std):
        if not choice.estimate:
            return choice.kernel, None
        return estimate_kernel(
            img,
            scale,
            settings.estimator,
            seed=settings.seed or 0,
            iterations=settings.estimator_iters,
            device=device,
            progress=progress,
            noise_std=noise_std)

    kernel_np, estimated = kernel_for(first_std)
    noise = photo_degradation(
        img,
        jpeg_quality(path),
        kernel_np,
        scale,
        downsample,
        settings.noise,
        settings.jpeg,
        seed=settings.seed or 0,
        colour_std=first_std if settings.noise == AUTO else None)
    if noise['std'] != first_std and choice.estimate:
        kernel_np, estimated = kernel_for(noise['std'])
    lr = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).unsqueeze(0).to(device)
    kernel = torch.from_numpy(kernel_np).to(device)
    tile = tile_for(settings.tile, scale)
    sr0 = adapted_on = None
    if settings.zssr:
        overrides = {'output_flip': True} if settings.self_ensemble else {}
        if settings.back_projection is not None:
            overrides['back_projection_iters'] = settings.back_projection
        if noise['std'] > 0:
            overrides['noise_std'] = noise['std']
        if noise['son_jpeg']:
            overrides['jpeg_quality'] = noise['son_jpeg']
        sr, info = zssr_super_resolve(
            lr,
            kernel,
            scale,
            downsample,
            device,
            max_iters=settings.zssr_iters,
            seed=settings.seed,
            progress=progress,
            tile=tile if tile and max(lr.shape[-2:]) > tile else None,
            precision=precision,
            **overrides)
        method, steps = 'ZSSR', info['iterations']
    else:
        common = dict(downsample=downsample, self_ensemble=settings.self_ensemble,
                      back_projection=settings.back_projection or 0, tile=tile,
                      crop_budget=crop_budget_for(settings.crop_budget, *img.shape[:2]), precision=precision)
        lrs = adaptation_lrs(settings.lr, net, settings.steps, scale, downsample)
        sr, info = super_resolve_image(
            net,
            lr,
            kernel,
            scale,
            settings.steps,
            lrs,
            rng=rng,
            noise_std=noise['std'],
            noise_seed=settings.seed or 0,
            jpeg_quality=noise['son_jpeg'],
            self_check=settings.self_check,
            on_tile=TileProgress(stem) if progress else None,
            **common)
        method, steps = 'MZSR', settings.steps
        adapted_on = info['adapted_on'] if steps else None
        if settings.compare and steps:
            sr0 = _to_numpy(super_resolve_image(net, lr, kernel, scale, 0, [], **common)[0])
    result = ImageResult(
        path,
        stem,
        img,
        gray,
        _to_numpy(sr),
        kernel_np,
        choice.source,
        downsample,
        scale,
        method,
        steps,
        info['seconds'],
        sr0=sr0,
        adapted_on=adapted_on,
        estimated=estimated,
        noise=noise,
        self_check=info.get('self_check'),
        gt_path=gt_path,
        metadata=metadata,
        precision=precision)
    if gt_path:
        m = result.metrics
        m['psnr'], m['ssim'], result.gt = image_metrics(to_uint8(result.sr, gray), gt_path, scale, gray)
        m['psnr_bicubic'], m['ssim_bicubic'], _ = image_metrics(to_uint8(result.bicubic, gray), gt_path, scale, gray)
        if sr0 is not None:
            m['psnr0'] = image_metrics(to_uint8(sr0, gray), gt_path, scale, gray)[0]
    return result


def save_outputs(result, out_dir, compare=False, output=None):
    """Writes what ``mzsr-sr`` writes of one image.

    Args:
        result (ImageResult): From :func:`run_image`.
        out_dir (str): Output folder.
        compare (bool): Also the comparison figure (LR | bicubic | 0 steps | n steps | GT | kernel, zoomed crops).
        output (OutputSettings | None): Format of the SR file, with the photo's profile and EXIF; None: PNG.

    Returns:
        dict: Paths: ``sr``, and ``kernel_mat``/``kernel_png`` (estimated kernels), ``compare``.
    """
    os.makedirs(out_dir, exist_ok=True)
    output = output or OutputSettings()
    paths = {'sr': osp.join(out_dir, output_name(result.stem, result.method, output.ext))}
    write_image(paths['sr'], result.sr, result.gray, result.metadata, output.quality, output.keep_gps)
    if result.estimated is not None:
        paths['kernel_mat'] = osp.join(out_dir, f'{result.stem}_kernel.mat')
        paths['kernel_png'] = osp.join(out_dir, f'{result.stem}_kernel.png')
        save_kernel(paths['kernel_mat'], result.kernel)
        write_image(paths['kernel_png'], kernel_image(result.kernel), False)
    if compare:
        m, s = result.metrics, result.scale
        results = [('Bicubic', result.bicubic, m.get('psnr_bicubic'))]
        if result.sr0 is not None:
            results.append(('MZSR 0 steps', result.sr0, m.get('psnr0')))
        title = f'ZSSR ({result.steps} iterations)' if result.method == 'ZSSR' else f'MZSR {result.steps} steps'
        results.append((title, result.sr, m.get('psnr')))
        panels = [('LR (nearest)', np.repeat(np.repeat(result.lr, s, axis=0), s, axis=1))]
        panels += [(f'{name}\n{psnr:.2f} dB' if psnr is not None else name, image) for name, image, psnr in results]
        if result.gt is not None:
            panels.append(('GT', result.gt))
        panels.append((f'kernel ({result.kernel_source})', kernel_image(result.kernel, panels[0][1].shape[:2])))
        paths['compare'] = osp.join(out_dir, f'{result.stem}_compare.png')
        save_comparison(paths['compare'], panels)
    return paths


__all__ = [
    'AUTO', 'ESTIMATE', 'GT_PATTERNS', 'KERNEL_HELP', 'KERNEL_PATTERNS', 'MODEL_ZOO', 'NO_JPEG', 'ImageResult',
    'KernelChoice', 'ModelRecordWarning', 'OutputSettings', 'RunSettings', 'adaptation_lrs', 'check_record', 'find_gt',
    'describe_fallback', 'describe_son', 'find_kernel_file', 'image_metrics', 'is_multiscale', 'list_inputs',
    'load_network', 'output_name', 'resolve_kernel', 'run_image', 'save_outputs', 'weights_record'
]
