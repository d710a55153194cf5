"""Declarative schemas of every option section the plugin reads, used to check the options and to document them.

BasicSR ignores unknown keys, so a one-letter typo (``val.adapt.step`` for ``steps``) silently runs with the
default and reports wrong numbers. Each section the plugin owns is a :class:`Section`: a table of
:class:`Key` (name, type and range, default, meaning). :func:`check_section` runs when the model or dataset is
built, before any work: an unknown key is an error naming the section, the key and the closest known key; a value
of the wrong type or out of range is an error saying what was expected and what was given. Keys that BasicSR
itself reads in the same section pass. The checked section comes back with every absent key set to its default,
and the readers index it (``opt['key']``), so the schema holds the only copy of each default. README's option
tables are :func:`markdown_table` of these schemas (a test keeps them equal), so a key cannot be added without its
check and its documentation line.

``python scripts/option_tables.py`` prints all tables.
"""
import difflib
import math
import numbers
from dataclasses import dataclass

from mzsr_plugin.data.kernels import DOWNSAMPLE_MODES
from mzsr_plugin.kernel_estimation import DEFAULT_ESTIMATOR, ESTIMATORS
from mzsr_plugin.precision import PRECISIONS


class Check:
    """A value check: ``expected`` says in words what passes; ``ok(value)`` decides."""
    expected = 'any value'

    def ok(self, value):
        return True


class Number(Check):
    """A number (``int`` or ``float``), optionally whole, with bounds.

    Args:
        whole (bool): Only whole numbers (``int``; ``bool`` is refused).
        low (float | None): Lower bound. high (float | None): Upper bound.
        low_open (bool): The lower bound itself is refused (``> low``).
        odd (bool): Odd whole numbers only.
        allow_none (bool): ``~`` (None) passes too.
    """

    def __init__(self, whole=False, low=None, high=None, low_open=False, odd=False, allow_none=False):
        self.whole, self.low, self.high, self.low_open = whole, low, high, low_open
        self.odd, self.allow_none = odd, allow_none
        kind = 'an odd whole number' if odd else 'a whole number' if whole else 'a number'
        bounds = []
        if low is not None:
            bounds.append(f'{">" if low_open else ">="} {low:g}')
        if high is not None:
            bounds.append(f'<= {high:g}')
        self.expected = kind + (' ' + ' and '.join(bounds) if bounds else '') + (' or ~' if allow_none else '')

    def ok(self, value):
        if value is None:
            return self.allow_none
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.whole and not isinstance(value, numbers.Integral):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and value > self.high:
            return False
        return not self.odd or value % 2 == 1


class Bool(Check):
    expected = 'true or false'

    def ok(self, value):
        return isinstance(value, bool)


class Choice(Check):
    """One of fixed values (compared exactly: ``'Disk'`` is not ``'disk'``)."""

    def __init__(self, *values):
        self.values = values
        self.expected = 'one of ' + ', '.join(repr(v) if v is not None else '~' for v in values)

    def ok(self, value):
        return any(value == v and type(value) is type(v) for v in self.values)


class Text(Check):
    """A non-empty string, or None when ``allow_none``."""

    def __init__(self, allow_none=False, what='a string'):
        self.allow_none = allow_none
        self.expected = what + (' or ~' if allow_none else '')

    def ok(self, value):
        return (value is None and self.allow_none) or (isinstance(value, str) and bool(value))


class ListOf(Check):
    """A non-empty list whose items all pass ``item``."""

    def __init__(self, item):
        self.item = item
        self.expected = f'a non-empty list, each {item.expected}'

    def ok(self, value):
        return isinstance(value, (list, tuple)) and bool(value) and all(self.item.ok(v) for v in value)


class AnyOf(Check):
    """Passes when one of ``checks`` passes; ``expected`` overrides the joined descriptions."""

    def __init__(self, *checks, expected=None):
        self.checks = checks
        self.expected = expected or ' or '.join(c.expected for c in checks)

    def ok(self, value):
        return any(c.ok(value) for c in self.checks)


class Mapping(Check):
    """A mapping (a YAML block), e.g. ``io_backend``; its own keys are checked by its reader."""

    def __init__(self, what='a mapping'):
        self.expected = what

    def ok(self, value):
        return isinstance(value, dict)


@dataclass(frozen=True)
class Key:
    """One option key.

    Attributes:
        name (str): Key.
        check (Check): Type and range.
        default (object): The value readers get when the key is absent (:func:`check_section` fills it in). None
            may stand for a rule the reader applies (the doc says which); :data:`REQUIRED` makes the key's absence
            an error.
        doc (str): Meaning, one line.
    """
    name: str
    check: Check
    default: object
    doc: str


@dataclass(frozen=True)
class Section:
    """A table of keys the plugin reads in one option section.

    Attributes:
        title (str): How messages and docs name the section, e.g. ``val.adapt``.
        keys (tuple[Key]): The plugin's keys.
        foreign (frozenset[str]): Keys of the same section that BasicSR (or another reader) owns: they pass.
    """
    title: str
    keys: tuple
    foreign: frozenset = frozenset()

    def key(self, name):
        return next(k for k in self.keys if k.name == name)


class _Required:
    """The default of a key without which the reader cannot work: its absence is an :class:`OptionError`."""

    def __repr__(self):
        return 'REQUIRED'


REQUIRED = _Required()
POSITIVE = Number(low=0, low_open=True)
PROBABILITY = Number(low=0, high=1)
WHOLE_GE0 = Number(whole=True, low=0)
WHOLE_GE1 = Number(whole=True, low=1)
SCALE = Number(whole=True, low=1)
SCALE_OR_NONE = Number(whole=True, low=1, allow_none=True)
LR_PRESETS = ('bicubic', 'direct_x2', 'direct_x4', 'multiscale', 'learned')
LR_SPEC = AnyOf(Choice(*LR_PRESETS), POSITIVE, ListOf(POSITIVE), Choice(None),
                expected=f'a preset ({", ".join(LR_PRESETS)}), a number > 0, a list of numbers > 0, or ~')

VAL_ADAPT = Section('val.adapt', (
    Key('mode', Choice('mzsr', 'zssr'), 'mzsr', 'mzsr: adapt the meta-learned weights; zssr: the ZSSR baseline, '
        'trained from scratch per image'),
    Key('steps', WHOLE_GE0, 0, 'SGD steps on (son -> LR) per image before SR (0: the weights as they are)'),
    Key('lr', LR_SPEC, None,
        'step sizes: a preset (direct_x2, direct_x4, bicubic, multiscale), learned (the step sizes meta-learned '
        'with the weights), a number or per-step numbers; ~: learned when the weights have them, else the official '
        'preset'),
    Key('multiscale', Bool(), False, 'the weights were meta-trained on several scales (picks the multiscale preset)'),
    Key('self_ensemble', Bool(), False, 'average the SR of the 8 flips/rotations'),
    Key('back_projection', WHOLE_GE0, 0, 'iterations of back-projection on the SR'),
    Key('tile', Number(whole=True, low=0, allow_none=True), 512, 'LR tile size for inference of large images '
        '(0 or ~: never tile)'),
    Key('crop_budget', Number(whole=True, low=0, allow_none=True), 1048576, 'most LR pixels to adapt on; larger '
        'images adapt on random crops (0 or ~: whole image)'),
    Key('seed', Number(whole=True, low=0, allow_none=True), None, 'seed of the adaptation crops and of ZSSR'),
    Key('zssr_iters', WHOLE_GE1, 3000, 'ZSSR iteration cap (mode: zssr)'),
    Key('log_psnr', Bool(), True, 'log PSNR after every step when GT exists (mean per dataset, TensorBoard)'),
    Key('noise', AnyOf(Choice('auto'), Number(low=0, high=255)), 'auto', 'noise std of the LR in grey levels, '
        'reproduced in the son; auto: read from each image (colour differences, or matched to the son under JPEG)'),
    Key('jpeg', AnyOf(Choice('auto', 'none'), Number(whole=True, low=1, high=100)), 'auto', 'JPEG quality the son '
        'is encoded at; auto: a JPEG LR file\'s own quality (none for other files, LMDB and LR made from HR)'),
    Key('self_check', Bool(), True, 'hold out an eighth of the LR from adaptation; the output falls back to bicubic '
        'or the unadapted weights when adaptation does not score best on it (logged per image)'),
    Key('precision', Choice(*PRECISIONS), 'auto', 'auto: bf16 adaptation steps where the device has bf16 units '
        '(AMX, AVX512-BF16, a bf16 GPU), else float32 channels_last; fp32: the float32 NCHW reference (official '
        'parity); bf16: bf16 steps anyway. The SR forward is float32 in every mode'),
))

BASICSR_TRAIN_KEYS = frozenset({
    'optim_g', 'optim_d', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'perceptual_opt', 'gan_opt',
    'ldl_opt', 'ema_decay', 'net_d_iters', 'net_d_init_iters', 'fix_flow', 'tsa_iter', 'path_batch_shrink'
})

META_TRAIN = Section('train (MetaSRModel)', (
    Key('mode', Choice('pretrain', 'meta'), 'pretrain', 'pretrain: L1 on (LR, HR) pairs as SRModel; meta: MAML '
        'over kernel tasks from path.pretrain_network_g'),
    Key('inner_lr', POSITIVE, 0.01, 'α: inner-loop SGD step size (with learn_inner_lr: where the learned ones '
        'start)'),
    Key('inner_steps', WHOLE_GE1, 5, 'inner SGD steps per task'),
    Key('learn_inner_lr', Bool(), False, 'meta-learn one step size per inner step and parameter tensor (MAML++ '
        'LSLR); saved in the .pth as inner_lrs and used at test time'),
    Key('inner_lr_meta_lr', POSITIVE, None, 'Adam lr of the learned log step sizes (~: optim_g.lr)'),
    Key('first_order', Bool(), False, 'first-order MAML (no second derivatives)'),
    Key('first_order_iters', WHOLE_GE0, 0, 'first-order warm-up: this many iterations first order, then second'),
    Key('loss_weight_decay', Number(low=0), 6e-5, 'MAML++ multi-step loss annealing per iteration (0: uniform '
        'weights, as the released models)'),
    Key('meta_engine', Choice('auto', 'loop', 'batched'), 'auto', 'loop: task by task; batched: torch.func.vmap; '
        'auto: batched on GPU, loop on CPU'),
    Key('grad_clip_norm', Number(low=0, low_open=True, allow_none=True), None, 'clip the meta-gradient to this '
        'L2 norm (~: no clipping)'),
    Key('cuda_graph', Choice(False, True, 'auto'), False, 'replay the whole meta-update as a CUDA graph (one CUDA '
        'process, one task scale; elsewhere the eager engine runs); off until verified on a GPU'),
    Key('tf32', AnyOf(Bool(), Choice(None), expected='true, false or ~'), None, 'TF32 in CUDA matmuls and '
        'convolutions, both set to this (~: PyTorch\'s defaults, TF32 convolutions but not matmuls)'),
    Key('precision', Choice(*PRECISIONS), 'fp32', 'dtype and layout of the training steps, as val.adapt.precision: '
        'fp32 (the reference, NCHW), auto (bf16 where the device has bf16 units, else float32 channels_last) or '
        'bf16 (convolutions in bf16 autocast, float32 master weights and loss)'),
), BASICSR_TRAIN_KEYS)

BASICSR_DATASET_KEYS = frozenset({
    'name', 'type', 'phase', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio', 'prefetch_mode',
    'pin_memory', 'num_prefetch_queue', 'persistent_workers', 'use_shuffle'
})
IO_BACKEND = Key('io_backend', Mapping('a mapping with type: disk, lmdb or memcached'), REQUIRED,
                 'BasicSR file client: {type: disk} or {type: lmdb}')
DOWNSAMPLE = Choice(*DOWNSAMPLE_MODES)
FLIPS = (Key('use_hflip', Bool(), True, 'random horizontal flips of the patches'),
         Key('use_rot', Bool(), True, 'random 90° rotations of the patches'))

META_TASK_DATASET = Section('MZSRMetaTaskDataset', (
    Key('dataroot_gt', Text(what='a folder or .lmdb path'), REQUIRED, 'HR training images'),
    IO_BACKEND,
    Key('meta_info_file', Text(allow_none=True, what='a file path'), None, 'disk backend: the image names to '
        'use, one per line'),
    Key('scale', SCALE_OR_NONE, None, 'scale of every task (set by BasicSR from the top-level scale; ~ with '
        'scale_list)'),
    Key('scale_list', AnyOf(ListOf(SCALE), Choice(None), expected='a non-empty list of whole numbers >= 1, or ~'),
        None, 'scales to draw a task\'s scale from '
        '(multi-scale meta-training)'),
    Key('gt_size', WHOLE_GE1, 64, 'HR patch size (a multiple of the scale)'),
    Key('num_support', WHOLE_GE1, 8, 'support patches per task (inner-loop SGD)'),
    Key('num_query', WHOLE_GE1, 8, 'query patches per task (meta-loss)'),
    Key('kernel_size', Number(whole=True, low=1, odd=True), 15, 'size of the random Gaussian kernels'),
    Key('lambda_min', POSITIVE, 1.0, 'smallest kernel variance (official 1; 0.2 also covers g^d_0.2)'),
    Key('isotropic_prob', PROBABILITY, 0.0, 'probability of an isotropic kernel'),
    Key('downsample', DOWNSAMPLE, 'direct', 'direct: blur, keep every s-th pixel; bicubic: blur, MATLAB bicubic'),
    Key('noise_level', Number(low=0), 0.0, 'std of Gaussian noise added to the LR patches ([0, 1] scale)'),
    Key('round_lq', Bool(), False, 'quantise the LR to 8 bit as saved test inputs are'),
) + FLIPS, BASICSR_DATASET_KEYS)

KERNEL_TEST_DATASET = Section('MZSRKernelTestDataset', (
    Key('dataroot_gt', Text(allow_none=True, what='a folder or .lmdb path'), None, 'HR images (mode a: LR made '
        'from them; mode b: optional GT)'),
    Key('dataroot_lq', Text(allow_none=True, what='a folder or .lmdb path'), None, 'given LR images (mode b)'),
    IO_BACKEND,
    Key('meta_info_file', Text(allow_none=True, what='a file path'), None, 'disk backend: the image names to '
        'use, one per line'),
    Key('scale', SCALE_OR_NONE, None, 'SR scale (set by BasicSR from the top-level scale)'),
    Key('kernel', Text(allow_none=True, what='a kernel spec (g_d_2.0, a_d_..., ...), random or estimate'), None,
        'one kernel for all images; random: a seeded training-distribution kernel per image; estimate: blind, '
        'each given LR image\'s kernel estimated from the image (with dataroot_lq)'),
    Key('kernel_estimator', Choice(*ESTIMATORS), DEFAULT_ESTIMATOR, 'kernel: estimate: the estimator (spectral: '
        'Gaussian fit to the power spectrum; learned: a regressor on it at x2, the fit elsewhere; kernelgan: the '
        'KernelGAN-style baseline)'),
    Key('kernel_file', Text(allow_none=True, what='a kernel file path'), None, 'one kernel file (.mat/.npy/.png) '
        'for all images'),
    Key('kernel_dir', Text(allow_none=True, what='a folder path'), None, 'one kernel file per image '
        '(<stem>.mat, <stem>_0.mat, <stem>_kernel.mat, ...)'),
    Key('kernel_size', Number(whole=True, low=1, odd=True), None, 'size of spec, random and estimated kernels (~: 21 '
        'for specs, the official test kernels; 15 for random and estimated ones, the meta-training kernels)'),
    Key('kernel_seed', WHOLE_GE0, 0, 'seed of kernel: random (and of the kernelgan estimator)'),
    Key('downsample', DOWNSAMPLE, 'direct', 'sub-sampling of kernel_file / kernel_dir / random'),
    Key('noise_level', Number(low=0), 0.0, 'std of Gaussian noise added to LR made from HR'),
    Key('noise_seed', WHOLE_GE0, 0, 'seed of that noise'),
    Key('round_lq', Bool(), True, 'quantise LR made from HR to 8 bit (as the official inputs)'),
    Key('gt_filename_tmpl', Text(what='a template with {}'), '{}', 'mode b: GT name from the LR stem'),
    Key('max_images', Number(whole=True, low=1, allow_none=True), None, 'use only the first N images'),
), BASICSR_DATASET_KEYS | {'gt_size', 'use_hflip', 'use_rot', 'filename_tmpl'})

BICUBIC_PAIR_DATASET = Section('MZSRBicubicPairDataset', (
    Key('dataroot_gt', Text(what='a folder or .lmdb path'), REQUIRED, 'HR images; their LR is made by MATLAB '
        'bicubic'),
    IO_BACKEND,
    Key('meta_info_file', Text(allow_none=True, what='a file path'), None, 'disk backend: the image names to '
        'use, one per line'),
    Key('scale', SCALE, None, 'SR scale (set by BasicSR from the top-level scale)'),
    Key('gt_size', WHOLE_GE1, REQUIRED, 'HR patch size (a multiple of the scale)'),
) + FLIPS, BASICSR_DATASET_KEYS)

RANDOM_KERNEL_PAIR_DATASET = Section('MZSRRandomKernelPairDataset', BICUBIC_PAIR_DATASET.keys + tuple(
    META_TASK_DATASET.key(name) for name in ('kernel_size', 'lambda_min', 'isotropic_prob', 'downsample',
                                             'noise_level')), BASICSR_DATASET_KEYS)

DATASET_SECTIONS = {
    s.title: s
    for s in (META_TASK_DATASET, KERNEL_TEST_DATASET, BICUBIC_PAIR_DATASET, RANDOM_KERNEL_PAIR_DATASET)
}
SECTIONS = (META_TRAIN, VAL_ADAPT, META_TASK_DATASET, KERNEL_TEST_DATASET, BICUBIC_PAIR_DATASET,
            RANDOM_KERNEL_PAIR_DATASET)


class OptionError(ValueError):
    """An option the plugin cannot use; the message names the section, the key and what was expected."""


def check_section(section, options, where=None):
    """Checks one option section against its schema, before any work.

    Args:
        section (Section): The schema.
        options (dict | None): The section's options (None: empty).
        where (str | None): How to name the section in messages (default: ``section.title``), e.g.
            ``"dataset 'val' (MZSRKernelTestDataset)"``.

    Returns:
        dict: A new dict: ``options`` plus the default of every schema key they lack (``options`` itself is left
        as it is; BasicSR's own keys pass unchanged).

    Raises:
        OptionError: On an unknown key, a wrong type or an out-of-range value.
    """
    where = where or section.title
    options = options or {}
    if not isinstance(options, dict):
        raise OptionError(f'{where}: expected a mapping of keys, got {options!r}')
    known = {k.name: k for k in section.keys}
    for name, value in options.items():
        if name in known:
            key = known[name]
            # ~ where the default is ~ asks for the default's rule, and keeps a checked section valid when rechecked.
            if not (value is None and key.default is None) and not key.check.ok(value):
                raise OptionError(f'{where}: {name} must be {key.check.expected}; got {value!r}')
        elif name not in section.foreign:
            candidates = sorted(set(known) | set(section.foreign))
            close = difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ''
            raise OptionError(f"{where}: unknown key '{name}'{hint}; known keys: {', '.join(sorted(known))}" +
                              (' (and BasicSR\'s own: ' + ', '.join(sorted(section.foreign)) + ')'
                               if section.foreign else ''))
    missing = [k for k in section.keys if k.default is REQUIRED and k.name not in options]
    if missing:
        raise OptionError(f'{where}: ' + '; '.join(f'{k.name} is required ({k.check.expected}: {k.doc})'
                                                   for k in missing))
    return {**options, **{k.name: k.default for k in section.keys if k.name not in options}}


def check_dataset(section, opt):
    """:func:`check_section` for a dataset's options, named by its ``name`` and type in messages."""
    return check_section(section, opt, f"dataset '{opt.get('name', section.title)}' ({section.title})")


def markdown_table(section):
    """The documentation table of a section (README's option tables are these).

    Args:
        section (Section): The schema.

    Returns:
        str: A Markdown table: key | expected | default | meaning.
    """

    def default(value):
        if value is REQUIRED:
            return 'required'
        if isinstance(value, bool):
            return f'`{str(value).lower()}`'
        return '~' if value is None else f'`{value}`'

    lines = [f'**`{section.title}`**', '', '| key | expected | default | meaning |', '|---|---|---|---|']
    lines += [f'| `{k.name}` | {k.check.expected} | {default(k.default)} | {k.doc} |' for k in section.keys]
    return '\n'.join(lines)
