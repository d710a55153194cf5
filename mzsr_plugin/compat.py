"""Every fix that basicsr 1.4.2 needs on today's stack, in one place, applied on import.

- ``import basicsr`` fails on torchvision >= 0.17 (``torchvision.transforms.functional_tensor`` is gone):
  the module is provided again by :mod:`mzsr_plugin_hook`.
- ``basicsr.train.load_resume_state`` maps every tensor to CUDA and looks for ``experiments/`` relative to the
  current directory: replaced by :func:`load_resume_state` (device-aware, absolute experiment path, and it
  skips an unreadable newest state instead of crashing).
- ``BaseModel.save_network`` / ``save_training_state`` write checkpoints in place, so a process killed mid-save
  leaves a truncated file that ``--auto_resume`` then picks: ``torch.save`` as seen by
  ``basicsr.models.base_model`` becomes :func:`atomic_torch_save` (temp file in the same folder, fsync, rename).
- ``basicsr.utils.dist_util.init_dist`` calls ``torch.cuda.set_device`` and uses NCCL: replaced by
  :func:`init_dist`, which uses ``mmengine.dist`` with NCCL on GPUs and plain gloo on CPU-only machines.

Stock ``basicsr/train.py`` run as a script keeps its own copy of ``load_resume_state`` in ``__main__``; the
wrapped ``parse_options`` swaps that copy too, right before ``train_pipeline`` calls it.
"""
import functools
import logging
import os
import sys
import tempfile
import torch
import types
from os import path as osp

import mzsr_plugin_hook

mzsr_plugin_hook.install_torchvision_shim()

import basicsr.models.base_model  # noqa: E402
import basicsr.test  # noqa: E402
import basicsr.train  # noqa: E402
import basicsr.utils.dist_util  # noqa: E402
import basicsr.utils.options  # noqa: E402
from basicsr.utils import check_resume, scandir  # noqa: E402


def atomic_torch_save(obj, f, *args, **kwargs):
    """``torch.save`` that never leaves a partial file at ``f``: it writes a temp file beside it, then renames.

    Args:
        obj: What to save.
        f (str | os.PathLike | file): Destination; file objects are passed to ``torch.save`` unchanged.
        *args, **kwargs: Passed to ``torch.save``.
    """
    if not isinstance(f, (str, os.PathLike)):
        torch.save(obj, f, *args, **kwargs)
        return
    folder = osp.dirname(osp.abspath(f))
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(f)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as handle:
            torch.save(obj, handle, *args, **kwargs)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, f)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


class _TorchWithAtomicSave(types.ModuleType):
    """``torch`` as BasicSR's base_model sees it: every attribute is torch's, except ``save``."""

    def __init__(self):
        super().__init__('torch')

    def __getattr__(self, name):
        return getattr(torch, name)

    save = staticmethod(atomic_torch_save)


def init_dist(launcher, backend=None, **kwargs):
    """Initialises the process group for ``--launcher pytorch|slurm`` on GPU or CPU.

    Args:
        launcher (str): ``'pytorch'`` (torchrun) or ``'slurm'``.
        backend (str | None): ``'nccl'``, ``'gloo'`` or None to pick NCCL when CUDA is available, else gloo.
        **kwargs: Passed on to ``init_process_group``.
    """
    import mmengine.dist
    if backend is None:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if torch.distributed.is_initialized():
        return
    if backend == 'nccl' or launcher != 'pytorch':
        mmengine.dist.init_dist(launcher, backend=backend, **kwargs)
    else:
        # mmengine's pytorch launcher calls torch.cuda.set_device, which fails on CPU-only machines.
        torch.distributed.init_process_group(backend=backend, **kwargs)


def _resume_device(opt):
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def find_resume_states(state_dir):
    """Lists ``<iter>.state`` files of a training-state folder, newest iteration first.

    Args:
        state_dir (str): Folder with BasicSR training states.

    Returns:
        list[str]: Absolute paths, highest iteration first; empty when the folder is missing.
    """
    if not osp.isdir(state_dir):
        return []
    states = []
    for name in scandir(state_dir, suffix='.state', recursive=False, full_path=False):
        stem = name[:-len('.state')]
        if stem.isdigit():
            states.append((int(stem), osp.join(state_dir, name)))
    return [path for _, path in sorted(states, reverse=True)]


def remove_stale_temp_files(folders, logger):
    """Deletes the temp files of :func:`atomic_torch_save` that a killed process left behind (``.<name>.*.tmp``).

    Args:
        folders (Iterable[str]): Checkpoint folders; missing ones are skipped.
        logger (logging.Logger): Where each deletion is reported.

    Returns:
        list[str]: The deleted files.
    """
    removed = []
    for folder in folders:
        if not folder or not osp.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.startswith('.') and name.endswith('.tmp') and ('.state.' in name or '.pth.' in name):
                path = osp.join(folder, name)
                os.remove(path)
                removed.append(path)
                logger.warning(f'Removed {path}, the partial checkpoint of an interrupted save')
    return removed


def load_resume_state(opt):
    """Drop-in for ``basicsr.train.load_resume_state`` that works on CPU and from any working directory.

    With ``--auto_resume`` it takes the newest readable state under ``<experiments_root>/training_states``;
    an unreadable one (a crash mid-write by an older version) is reported and the previous one is used, and the
    temp files of saves that a kill interrupted are deleted from the state and model folders.

    Args:
        opt (dict): Parsed BasicSR options.

    Returns:
        dict | None: The training state, mapped to the training device, or None to start fresh.
    """
    # Not get_root_logger(): called before train_pipeline sets up the log file, it would stop the file logging.
    logger = logging.getLogger('basicsr')
    if opt['auto_resume']:
        state_dir = opt['path'].get('training_states')
        if not state_dir:
            state_dir = osp.join(opt['path']['experiments_root'], 'training_states')
        candidates = find_resume_states(state_dir)
        if opt.get('rank', 0) == 0:  # one process cleans; the others only read
            remove_stale_temp_files([state_dir, opt['path'].get('models')], logger)
    elif opt['path'].get('resume_state'):
        candidates = [opt['path']['resume_state']]
        if not osp.isfile(candidates[0]):
            raise FileNotFoundError(f"path.resume_state: no training state at {candidates[0]}")
    else:
        candidates = []
    device = _resume_device(opt)
    for path in candidates:
        try:
            state = torch.load(path, map_location=device, weights_only=False)
        except Exception as error:  # a truncated file must not stop a resumable run
            if not opt['auto_resume']:
                raise RuntimeError(f'path.resume_state: cannot read training state {path}: {error}') from error
            logger.warning(f'Skipping unreadable training state {path}: {error}')
            continue
        opt['path']['resume_state'] = path
        check_resume(opt, state['iter'])
        return state
    return None


@functools.wraps(basicsr.utils.options.parse_options)
def parse_options(root_path, is_train=True):
    opt, args = _stock_parse_options(root_path, is_train)
    main = sys.modules.get('__main__')
    stock = getattr(main, 'load_resume_state', None)
    if stock is not None and getattr(stock, '__code__', None) is not None \
            and stock.__code__.co_filename.replace(os.sep, '/').endswith('basicsr/train.py'):
        main.load_resume_state = load_resume_state
    return opt, args


_stock_parse_options = basicsr.utils.options.parse_options
basicsr.utils.options.parse_options = parse_options
basicsr.utils.options.init_dist = init_dist
basicsr.utils.dist_util.init_dist = init_dist
basicsr.train.load_resume_state = load_resume_state
basicsr.train.parse_options = parse_options
basicsr.test.parse_options = parse_options
basicsr.models.base_model.torch = _TorchWithAtomicSave()
