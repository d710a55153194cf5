"""How long a photo will take, said before the work starts (``mzsr-sr``, the app).

The cost model of one photo of h x w LR pixels, at the run's scale, with n adaptation steps::

    seconds = fixed + per_pixel * run + (per_adapted + n * per_step) * adapted

``run`` is the LR pixels the SR runs on (h * w, and the margins of its tiles); ``adapted`` the LR pixels adaptation
runs on (the whole LR, or the crops of the photo's crop budget: what
:func:`~mzsr_plugin.models.tiling.adaptation_crops` takes). ``per_pixel`` covers all that grows with the photo
(reading, noise and kernel estimation, the SR at the scale, writing), ``per_adapted`` what adapting costs once
(making the son), ``fixed`` what does not grow (a KernelGAN estimate). The rates are measured on
this machine once per run (:func:`calibrate`) by running synthetic photos through the run's own path
(:func:`~mzsr_plugin.inference.run_image` and :func:`~mzsr_plugin.inference.save_outputs` with its settings,
network, kernel and file format), so a slower CPU, fewer threads or another precision is in the estimate. The
larger calibration photo is the size of the work a big photo is cut into (an SR tile, an adaptation crop): rates
measured on tiny photos, whose per-pixel costs are higher, put a 12-megapixel estimate 45% above its time.
"""
import dataclasses
import numpy as np
import tempfile
import time
from dataclasses import dataclass
from os import path as osp
from PIL import Image

from mzsr_plugin.models.adaptation import ADAPT_CROP, crop_budget_for, tile_for
from mzsr_plugin.models.tiling import required_overlap
from mzsr_plugin.utils.image_io import decode_image

# LR sides of the calibration photos: two sizes separate the fixed cost from the per-pixel one, both above the
# central crop a JPEG's noise matching reads (MATCH_SIDE, a cost that stops growing; calibrated on 256 and 512, the
# 12 and 24 MP estimates came out 13% and 23% high); the smaller is the size of a big photo's tiles and adaptation
# crops. A warm-up photo of WARM_UP_SIDE first.
CALIBRATION_SIDES = (512, 768)
WARM_UP_SIDE = 256
# Adaptation steps of two calibration runs on the smaller photo: their difference is the cost of a step. Four steps
# apart: with two, the per-step rates of two calibrations on one machine differed by 30% (5.3 and 7.0 s per
# adapted megapixel and step, bf16), a difference of a few seconds between two runs being all they measure.
CALIBRATION_STEPS = (1, 5)
# The self-check's two forward passes over the adapted pixels (models/self_check.py), in steps: a step is a forward
# and a backward pass, about three forwards. The calibration runs go without it (see calibrate), so it is added.
SELF_CHECK_STEPS = 2 / 3
# Photos with fewer LR pixels take less than calibrating does: no estimate is printed (nor calibrated) for a run of
# only those.
ESTIMATE_ABOVE = 1024 * 1024


@dataclass
class MachineRate:
    """This machine's measured cost of the run's settings.

    Attributes:
        fixed (float): Seconds per photo whatever its size.
        per_pixel (float): Seconds per LR pixel the SR runs on, without adaptation.
        per_adapted (float): Seconds per adapted LR pixel, once (the son).
        per_step (float): Seconds per adapted LR pixel and adaptation step.
        calibration_seconds (float): What measuring them took.
    """
    fixed: float
    per_pixel: float
    per_adapted: float
    per_step: float
    calibration_seconds: float = 0.0

    def seconds(self, height, width, steps, crop_budget, run=None, self_check=False):
        """The expected seconds of one photo of (height, width) LR pixels.

        Args:
            height (int): LR height. width (int): LR width.
            steps (int): Adaptation steps.
            crop_budget (str | int | None): The run's crop budget (``'auto'`` resolved for this size).
            run (int | None): LR pixels the SR runs on, tile margins included (:func:`run_pixels`); None: h * w.
            self_check (bool): The run checks adaptation on held-out blocks (:data:`SELF_CHECK_STEPS` more).

        Returns:
            float: Seconds.
        """
        adapted = adapted_pixels(height, width, crop_budget) if steps else 0
        steps = steps + (SELF_CHECK_STEPS if self_check and steps else 0)
        adapting = (self.per_adapted + steps * self.per_step) * adapted
        return self.fixed + self.per_pixel * (run or height * width) + adapting


def run_pixels(height, width, tile, overlap):
    """LR pixels a tiled SR runs on: each tile with its margins, clipped at the border (as
    :func:`~mzsr_plugin.models.tiling.tiled_forward` cuts them); h * w when not tiled."""
    if not tile or max(height, width) <= tile:
        return height * width

    def covered(length):
        return sum(min(start + tile + overlap, length) - max(start - overlap, 0) for start in range(0, length, tile))

    return covered(height) * covered(width)


def sr_tiling(settings, net):
    """The LR tile and margin of a run's SR: only a plain conv stack (MZSRNet) is tiled, with the margins its
    receptive field needs (as :func:`~mzsr_plugin.inference.run_image` runs it).

    Returns:
        tuple[int | None, int]: The tile (None: untiled) and the margin, in LR pixels.
    """
    tile = tile_for(settings.tile, settings.scale) if hasattr(net, 'convs') else None
    return tile, required_overlap(len(net.convs), settings.scale) if tile else 0


def adapted_pixels(height, width, crop_budget):
    """LR pixels adaptation runs on: the whole LR, or the crops the budget allows (as
    :func:`~mzsr_plugin.models.tiling.adaptation_crops` cuts them; ``'auto'`` resolved for this size)."""
    crop_budget = crop_budget_for(crop_budget, height, width)
    if not crop_budget or height * width <= crop_budget:
        return height * width
    crop = min(ADAPT_CROP, int(np.sqrt(crop_budget)))
    ch, cw = min(crop, height), min(crop, width)
    return (crop_budget // (ch * cw)) * ch * cw


def photo_size(path):
    """(height, width) of an image file, upright, without decoding its pixels where Pillow reads the header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
            return height, width
    except OSError:
        return decode_image(np.fromfile(path, dtype=np.uint8), path)[0].shape[:2]


def format_seconds(seconds):
    """``42 s``, ``6 min 40 s``, ``1 h 05 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f'{seconds} s'
    if seconds < 3600:
        return f'{seconds // 60} min {seconds % 60:02d} s'
    return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'


def _synthetic_photo(path, side, seed=0):
    """A smooth, textured RGB photo of side x side pixels, written as the extension says (JPEG at quality 90)."""
    import cv2
    rng = np.random.default_rng(seed)
    low = rng.random((side // 16, side // 16, 3)).astype(np.float32)
    img = cv2.resize(low, (side, side), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img + 0.02 * rng.standard_normal(img.shape, dtype=np.float32), 0, 1)
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path, quality=90)


def calibrate(ext, choice, settings, net, output=None):
    """Measures :class:`MachineRate` for the run's settings, on synthetic photos of :data:`CALIBRATION_SIDES`.

    Args:
        ext (str): Extension of the photos estimated (``.jpg``: the JPEG path, matched noise and JPEG son).
        choice (KernelChoice): The run's kernel (``estimate`` is estimated on the calibration photos too).
        settings (RunSettings): The run's settings (steps and crop budget are the calibration's own).
        net (MZSRNet): The run's network.
        output (OutputSettings | None): The run's output format.

    Returns:
        MachineRate
    """
    from mzsr_plugin.inference import run_image, save_outputs
    start = time.perf_counter()
    small, large = CALIBRATION_SIDES
    few, more = CALIBRATION_STEPS
    times = {}
    with tempfile.TemporaryDirectory(prefix='mzsr_calibration_') as folder:

        def measure(side, steps):
            path = osp.join(folder, f'calibration_{side}{ext}')
            if not osp.exists(path):
                _synthetic_photo(path, side)
            # Without the self-check: where it picks bicubic on a synthetic photo the SR is skipped, so runs of 1 and
            # 5 steps that choose differently do not differ by 4 steps (two calibrations with it measured per-step
            # rates 50% apart). Its two forward passes over the crops are added as SELF_CHECK_STEPS.
            run = dataclasses.replace(settings, steps=steps, crop_budget=0, compare=False, self_check=False)
            began = time.perf_counter()
            result = run_image(path, choice, run, net, rng=np.random.default_rng(0))
            save_outputs(result, osp.join(folder, f'out_{side}_{steps}'), output=output)
            return time.perf_counter() - began

        # The first run pays one-off costs (allocator, thread pool, estimator weights): a warm-up, not measured.
        measure(min(WARM_UP_SIDE, small), 0)
        for side, steps in ((small, 0), (large, 0), (small, few), (small, more)):
            times[side, steps] = measure(side, steps)
    # The SR of the larger photo runs in tiles, with their margins, as a big photo's does.
    tiling = sr_tiling(settings, net)
    run_small, run_large = (run_pixels(side, side, *tiling) for side in (small, large))
    per_pixel = max(times[large, 0] - times[small, 0], 0.0) / (run_large - run_small)
    fixed = max(times[small, 0] - per_pixel * run_small, 0.0)
    per_step = max(times[small, more] - times[small, few], 0.0) / ((more - few) * small**2)
    per_adapted = max(times[small, few] - times[small, 0] - few * per_step * small**2, 0.0) / small**2
    return MachineRate(fixed, per_pixel, per_adapted, per_step, time.perf_counter() - start)


def estimate_photos(jobs, settings, net, output=None, rate=None):
    """The expected seconds of each photo above :data:`ESTIMATE_ABOVE` LR pixels, calibrated once for the run.

    Args:
        jobs (Sequence[tuple]): ``(path, KernelChoice, ...)`` per photo, as ``mzsr-sr`` plans them.
        settings (RunSettings): The run's settings.
        net (MZSRNet): The run's network.
        output (OutputSettings | None): The run's output format.
        rate (MachineRate | None): Rates measured earlier for these settings (the app keeps them); None: measured.

    Returns:
        tuple[MachineRate | None, dict[str, tuple[int, int, float]]]: The rates (None when no photo is large
        enough to be worth it) and ``path -> (height, width, seconds)``.
    """
    sizes = {}
    for path, *_ in jobs:
        try:
            sizes[path] = photo_size(path)
        except (OSError, ValueError):  # reported when the photo's turn comes
            continue
    large = [(path, choice) for path, choice, *_ in jobs if path in sizes and np.prod(sizes[path]) > ESTIMATE_ABOVE]
    if not large:
        return None, {}
    path, choice = large[0]
    rate = rate or calibrate(osp.splitext(path)[1].lower(), choice, settings, net, output)
    tiling = sr_tiling(settings, net)
    return rate, {
        path: (*sizes[path], rate.seconds(*sizes[path], settings.steps, settings.crop_budget,
                                          run_pixels(*sizes[path], *tiling), settings.self_check))
        for path, _ in large
    }
