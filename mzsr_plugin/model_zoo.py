"""The model zoo: the MZSR models this package ships, what each serves, and the record each weights file carries.

The paper trained four models (its Tables 1-3) and the official repository releases four: x2 and x4 for "direct"
kernels (blur, then keep every s-th pixel), x2 for bicubic downsampling, and one multi-scale model (x2/x3/x4). The
weights campaign (:mod:`mzsr_plugin.campaign`) trains them and writes each shipped file with a ``model_record``
(:meth:`ZooModel.record`), so that a file says what it is and is never used at a scale or downsampling it was not
trained for.
"""
import os
import torch
import warnings
from dataclasses import dataclass
from os import path as osp

# Where the zoo's weights live: the package's folder, or $MZSR_WEIGHTS_DIR (weights kept elsewhere, e.g. on a shared
# disk, or a test's empty folder).
WEIGHTS_DIR = os.environ.get('MZSR_WEIGHTS_DIR') or osp.join(osp.dirname(osp.abspath(__file__)), 'weights')
# The key of a weights file's record, beside BasicSR's ``params``.
RECORD_KEY = 'model_record'


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo.

    Attributes:
        name (str): Its kind, e.g. ``x2_direct``; also the campaign that trains it.
        scales (tuple[int]): Scales it serves.
        downsample (str): ``'direct'`` or ``'bicubic'``.
        weights (str): File name in ``mzsr_plugin/weights``.
    """
    name: str
    scales: tuple
    downsample: str
    weights: str

    @property
    def path(self):
        """The shipped file (it exists only once the campaign has shipped this model)."""
        return osp.join(WEIGHTS_DIR, self.weights)

    @property
    def multiscale(self):
        return len(self.scales) > 1

    def record(self, **training):
        """The ``model_record`` of a shipped file: kind, scales, downsampling, plus ``training`` facts (campaign
        meta-iteration, training hours)."""
        return {'kind': self.name, 'scales': list(self.scales), 'downsample': self.downsample, **training}

    def describe(self):
        """``x2 direct (mzsr_x2_direct.pth)``: how messages name it."""
        return f'{"/".join(f"x{s}" for s in self.scales)} {self.downsample} ({self.weights})'


MODEL_ZOO = {
    model.name: model
    for model in (
        ZooModel('x2_direct', (2, ), 'direct', 'mzsr_x2_direct.pth'),
        ZooModel('x2_bicubic', (2, ), 'bicubic', 'mzsr_x2_bicubic.pth'),
        ZooModel('x4_direct', (4, ), 'direct', 'mzsr_x4_direct.pth'),
        ZooModel('multiscale', (2, 3, 4), 'direct', 'mzsr_multiscale.pth'),
    )
}


def shipped_models():
    """The zoo's models whose weights are installed, in zoo order."""
    return [model for model in MODEL_ZOO.values() if osp.isfile(model.path)]


def shipped_scales():
    """Every scale some installed model serves, sorted (the app's scale choices)."""
    return sorted({scale for model in shipped_models() for scale in model.scales})


def zoo_model_for(scale, downsample):
    """The installed model for ``scale`` and ``downsample``: a single-scale one first, then the multi-scale one.

    Args:
        scale (int): SR scale.
        downsample (str): ``'direct'`` or ``'bicubic'``.

    Returns:
        ZooModel

    Raises:
        ValueError: No installed model serves them; the message lists those that exist.
    """
    serving = [m for m in shipped_models() if scale in m.scales and m.downsample == downsample]
    if serving:
        return min(serving, key=lambda m: m.multiscale)
    shipped = ', '.join(m.describe() for m in shipped_models()) or 'none'
    raise ValueError(f'no shipped MZSR model serves x{scale} with {downsample} downsampling (shipped: {shipped}); '
                     f'pass --weights FILE trained for x{scale} {downsample}, or use ZSSR (--zssr), which needs no '
                     'weights')


def record_is_multiscale(record):
    """Whether a ``model_record`` (or None) names several scales: its adaptation preset is ``multiscale``."""
    return bool(record) and len(record.get('scales', [])) > 1


class ModelRecordWarning(UserWarning):
    """Weights without a ``model_record`` are used at the scale and downsampling asked, unchecked."""


def weights_record(path):
    """The ``model_record`` of a weights file (kind, scales, downsampling, training), or None if it has none."""
    state = torch.load(path, map_location='cpu', weights_only=True)
    return state.get(RECORD_KEY) if isinstance(state, dict) else None


def check_record(record, weights, scale, downsample, option='--weights'):
    """Refuses weights whose record contradicts the scale or downsampling asked.

    Args:
        record (dict | None): The file's ``model_record``; None warns (:class:`ModelRecordWarning`) and passes.
        weights (str): The file, for messages.
        scale (int): Scale asked.
        downsample (str): Downsampling asked.
        option (str): How the caller names the weights setting.
    """
    if record is None:
        warnings.warn(f'{option} {weights} carries no model record (e.g. converted official weights): used for '
                      f'x{scale} {downsample} downsampling as asked, unchecked', ModelRecordWarning, stacklevel=3)
        return
    scales = [int(s) for s in record.get('scales', [])]
    if scale not in scales or record.get('downsample') != downsample:
        trained = f'{"/".join(f"x{s}" for s in scales)} {record.get("downsample")}'
        try:
            fitting = zoo_model_for(scale, downsample).path
            hint = f'drop {option} to use the shipped x{scale} {downsample} model ({fitting})'
        except ValueError:
            hint = f'no shipped model serves x{scale} {downsample}'
        raise ValueError(f'{option} {weights} is a {record.get("kind", "?")} model ({trained} downsampling) but '
                         f'x{scale} with {downsample} downsampling was asked; {hint}')
