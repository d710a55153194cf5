"""How long a photo will take, said before the work starts (``mzsr-sr``, the app).

The cost model of one photo of h x w LR pixels, at the run's scale, with n adaptation steps::

    seconds = fixed + per_pixel * h * w + n * per_step * adapted

``adapted`` is the LR pixels adaptation runs on (the whole LR, or the crops of the crop budget: what
:func:`~mzsr_plugin.models.tiling.adaptation_crops` takes); ``per_pixel`` covers all that grows with the photo
(reading, noise and kernel estimation, the SR at the scale, bicubic, writing), ``fixed`` what does not (a KernelGAN
estimate). The three rates are measured on this machine once per run (:func:`calibrate`) by running small synthetic
photos through the run's own path (:func:`~mzsr_plugin.inference.run_image` and
:func:`~mzsr_plugin.inference.save_outputs` with its settings, network, kernel and file format), so a slower CPU,
fewer threads or another precision is in the estimate.
"""
import dataclasses
import numpy as np
import tempfile
import time
from dataclasses import dataclass
from os import path as osp
from PIL import Image

from mzsr_plugin.models.adaptation import ADAPT_CROP
from mzsr_plugin.utils.image_io import decode_image

# LR sides of the calibration photos (two sizes separate the fixed cost from the per-pixel one) and its steps.
CALIBRATION_SIDES = (96, 192)
CALIBRATION_STEPS = 3
# Photos with fewer LR pixels take seconds: no estimate is printed (nor calibrated) for a run of only those.
ESTIMATE_ABOVE = 512 * 512


@dataclass
class MachineRate:
    """This machine's measured cost of the run's settings.

    Attributes:
        fixed (float): Seconds per photo whatever its size.
        per_pixel (float): Seconds per LR pixel without adaptation.
        per_step (float): Seconds per adapted LR pixel and adaptation step.
        calibration_seconds (float): What measuring them took.
    """
    fixed: float
    per_pixel: float
    per_step: float
    calibration_seconds: float = 0.0

    def seconds(self, height, width, steps, crop_budget):
        """The expected seconds of one photo of (height, width) LR pixels."""
        return self.fixed + self.per_pixel * height * width + steps * self.per_step * adapted_pixels(
            height, width, crop_budget)


def adapted_pixels(height, width, crop_budget):
    """LR pixels adaptation runs on: the whole LR, or the crops the budget allows (as
    :func:`~mzsr_plugin.models.tiling.adaptation_crops` cuts them)."""
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
    times = {}
    with tempfile.TemporaryDirectory(prefix='mzsr_calibration_') as folder:
        # The first run pays one-off costs (allocator, thread pool, estimator weights): a warm-up, not measured.
        # Each case is then run twice and the faster run kept: the other's excess is the machine's other work.
        for side, steps in ((small, 0), (small, 0), (small, 0), (large, 0), (large, 0), (large, CALIBRATION_STEPS),
                            (large, CALIBRATION_STEPS)):
            path = osp.join(folder, f'calibration_{side}{ext}')
            if not osp.exists(path):
                _synthetic_photo(path, side)
            run = dataclasses.replace(settings, steps=steps, crop_budget=0, compare=False)
            began = time.perf_counter()
            result = run_image(path, choice, run, net, rng=np.random.default_rng(0))
            save_outputs(result, osp.join(folder, f'out_{side}_{steps}'), output=output)
            times[side, steps] = min(time.perf_counter() - began, times.get((side, steps), float('inf')))
    per_pixel = max(times[large, 0] - times[small, 0], 0.0) / (large**2 - small**2)
    fixed = max(times[small, 0] - per_pixel * small**2, 0.0)
    per_step = max(times[large, CALIBRATION_STEPS] - times[large, 0], 0.0) / (CALIBRATION_STEPS * large**2)
    return MachineRate(fixed, per_pixel, per_step, time.perf_counter() - start)


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
    return rate, {
        path: (*sizes[path], rate.seconds(*sizes[path], settings.steps, settings.crop_budget))
        for path, _ in large
    }
