"""DIV2K preparation as BasicSR's data-preparation scripts do it: sub-images, bicubic LR and LMDBs.

BasicSR's ``scripts/data_preparation/extract_subimages.py`` and ``create_lmdb.py`` are not part of the installed
package, so this module re-states their rules on top of BasicSR's library functions (``scandir``,
``make_lmdb_from_imgs``, MATLAB ``imresize``):

* sub-images: a ``crop_size`` window slides by ``step`` over each image, plus a last window flush with the
  bottom/right border when more than ``thresh_size`` pixels would be left out; names ``0001_s001.png`` (row-major),
  PNG compression level 3. DIV2K uses 480/240/0 for HR and 480/s, 240/s for X``s``.
* LMDB: keys are the file stems, values the PNG bytes at compression level 1, and ``meta_info.txt`` lines
  ``name.png (h,w,c) level``.

Unlike BasicSR's scripts, an existing output is never silently kept or left with ``sys.exit``: it is an error that
names the path unless ``overwrite`` is set, and an output that fails half-way is removed so that a re-run starts
clean. The folder layout is BasicSR's (see :func:`div2k_paths`).
"""
import cv2
import functools
import lmdb
import numpy as np
import os
import re
import shutil
import torch
from contextlib import contextmanager
from mmengine.utils import ProgressBar, track_parallel_progress, track_progress
from os import path as osp

from basicsr.utils import imfrombytes, scandir
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from basicsr.utils.matlab_functions import imresize
from mzsr_plugin.inference import list_inputs

HR_CROP_SIZE = 480
HR_STEP = 240
# LmdbMaker's default. BasicSR's estimate (10x the first image) can be too small for tiny or uneven images, and
# LMDB only reserves address space for the map, so a large map costs nothing on 64-bit systems.
LMDB_MAP_SIZE = 1024**4
_META_LINE = re.compile(r'^(?P<name>\S+) \((?P<h>\d+),(?P<w>\d+),(?P<c>\d+)\) (?P<level>\d)$')


def div2k_paths(root, scale=None):
    """The folders of BasicSR's DIV2K layout.

    Args:
        root (str): DIV2K root, e.g. ``datasets/DIV2K``.
        scale (int | None): LR scale, or None for the HR folders.

    Returns:
        dict[str, str]: ``images`` (source folder), ``sub`` (sub-image folder) and ``lmdb``; for HR
        ``DIV2K_train_HR``, ``DIV2K_train_HR_sub``, ``DIV2K_train_HR_sub.lmdb``; for scale 2
        ``DIV2K_train_LR_bicubic/X2``, ``DIV2K_train_LR_bicubic/X2_sub``, ``DIV2K_train_LR_bicubic_X2_sub.lmdb``.
    """
    if scale is None:
        return dict(
            images=osp.join(root, 'DIV2K_train_HR'),
            sub=osp.join(root, 'DIV2K_train_HR_sub'),
            lmdb=osp.join(root, 'DIV2K_train_HR_sub.lmdb'))
    return dict(
        images=osp.join(root, 'DIV2K_train_LR_bicubic', f'X{scale}'),
        sub=osp.join(root, 'DIV2K_train_LR_bicubic', f'X{scale}_sub'),
        lmdb=osp.join(root, f'DIV2K_train_LR_bicubic_X{scale}_sub.lmdb'))


def sub_image_positions(length, crop_size, step, thresh_size=0):
    """Start offsets of the sliding crop windows along one axis, as BasicSR's ``extract_subimages.py``.

    Args:
        length (int): Image size along the axis.
        crop_size (int): Window size.
        step (int): Stride between windows.
        thresh_size (int): A last window flush with the border is added only when more than this many pixels
            would otherwise be left out. Default: 0.

    Returns:
        list[int]: Offsets ``range(0, length - crop_size + 1, step)``, plus ``length - crop_size`` if needed.
    """
    if length < crop_size:
        raise ValueError(f'size {length} is smaller than crop_size {crop_size}')
    positions = list(range(0, length - crop_size + 1, step))
    if length - (positions[-1] + crop_size) > thresh_size:
        positions.append(length - crop_size)
    return positions


def list_images(folder):
    """Sorted image file names (not paths) directly in ``folder``, as ``mzsr-sr`` lists a folder.

    Args:
        folder (str): Image folder.

    Returns:
        list[str]: File names with one of :data:`~mzsr_plugin.utils.image_io.IMAGE_EXTENSIONS` (any case).
    """
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder} does not exist')
    return [osp.basename(path) for path in list_inputs([folder])]


def _read_image(path):
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'cannot read image {path}')
    if img.ndim not in (2, 3):
        raise ValueError(f'image {path} has {img.ndim} dimensions; expected 2 (gray) or 3 (colour)')
    return img


def _extract_one(task, save_folder, crop_size, step, thresh_size, compression_level):
    """Crops one image, ``task`` = (path, stem), into sub-images; returns (stem, (h, w), sub-image names)."""
    path, stem = task
    img = _read_image(path)
    h, w = img.shape[:2]
    try:
        rows = sub_image_positions(h, crop_size, step, thresh_size)
        cols = sub_image_positions(w, crop_size, step, thresh_size)
    except ValueError as err:
        raise ValueError(f'image {path} ({h}x{w}): {err}') from None
    names = []
    for y in rows:
        for x in cols:
            # Always PNG, whatever the input format: re-encoding stays lossless and the LMDB step finds them.
            name = f'{stem}_s{len(names) + 1:03d}.png'
            crop = np.ascontiguousarray(img[y:y + crop_size, x:x + crop_size, ...])
            if not cv2.imwrite(osp.join(save_folder, name), crop, [cv2.IMWRITE_PNG_COMPRESSION, compression_level]):
                raise OSError(f'cannot write {osp.join(save_folder, name)}')
            names.append(name)
    return stem, (h, w), names


def _make_lr_one(path, save_folder, scale):
    """Writes the MATLAB-bicubic 1/scale image of one HR image as ``{stem}x{scale}.png``; returns its name."""
    img = _read_image(path)
    h, w = img.shape[:2]
    if h % scale or w % scale:
        # A cropped HR would no longer line up with the HR sub-images, which are cut from the full image.
        raise ValueError(f'HR image {path} is {h}x{w}, not a multiple of scale {scale}: crop the HR images to a '
                         'multiple of every scale first')
    peak = np.iinfo(img.dtype).max if img.dtype.kind in 'ui' else 1.0
    lr = imresize(img.astype(np.float32) / peak, 1 / scale)
    # As MATLAB's imresize on integer images: round to the nearest level and saturate.
    lr = np.clip(np.round(lr * peak), 0, peak).astype(img.dtype)
    name = f'{osp.splitext(osp.basename(path))[0]}x{scale}.png'
    if not cv2.imwrite(osp.join(save_folder, name), lr):
        raise OSError(f'cannot write {osp.join(save_folder, name)}')
    return name


def _catching(func, task):
    """Runs ``func(task)``; returns (result, None), or (None, exception) if it raised."""
    try:
        return func(task), None
    except Exception as err:
        return None, err


def _single_threaded_worker():
    """Pool initializer: a forked worker must not enter the OpenMP pool it inherited from a parent that used torch
    (libgomp is not fork-safe: the worker hangs), so torch runs single-threaded there, as in DataLoader workers."""
    torch.set_num_threads(1)


def _track(func, tasks, n_thread):
    """Runs ``func`` over ``tasks`` with mmengine's progress bar, in ``n_thread`` processes when above 1."""
    if n_thread <= 1:
        return track_progress(func, tasks)
    # track_parallel_progress never closes its pool when a task raises; errors come back as values instead and
    # the first is raised once the pool has shut down.
    outcomes = track_parallel_progress(
        functools.partial(_catching, func), tasks, nproc=min(n_thread, len(tasks)), initializer=_single_threaded_worker)
    for _, err in outcomes:
        if err is not None:
            raise err
    return [result for result, _ in outcomes]


@contextmanager
def _new_output(path, overwrite):
    """Guards a folder about to be created: refuses or removes an existing one, removes it again on failure."""
    if osp.lexists(path):
        if not overwrite:
            raise FileExistsError(f'{path} already exists: remove it or pass overwrite=True (--overwrite) to replace '
                                  'it')
        _remove(path)
    try:
        yield
    except BaseException:
        # A half-written output would pass the existence check of the next run.
        if osp.lexists(path):
            _remove(path)
        raise


def _remove(path):
    if osp.isdir(path) and not osp.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def extract_subimages(input_folder,
                      save_folder,
                      crop_size=HR_CROP_SIZE,
                      step=HR_STEP,
                      thresh_size=0,
                      compression_level=3,
                      strip_suffix='',
                      n_thread=1,
                      overwrite=False):
    """Crops every image of a folder into overlapping sub-images, as BasicSR's ``extract_subimages.py``.

    Args:
        input_folder (str): Folder of images.
        save_folder (str): Output folder; must not exist unless ``overwrite``.
        crop_size (int): Sub-image size. Default: 480 (DIV2K HR).
        step (int): Stride of the sliding window. Default: 240 (DIV2K HR).
        thresh_size (int): Border remainder below which no flush window is added. Default: 0.
        compression_level (int): PNG compression level (0-9). Default: 3.
        strip_suffix (str): Suffix removed from the file stems, e.g. ``'x2'`` for DIV2K LR names. Default: ''.
        n_thread (int): Worker processes. Default: 1.
        overwrite (bool): Replace an existing ``save_folder``. Default: False.

    Returns:
        dict[str, dict]: Per image stem, ``size`` (h, w) of the source image and ``names`` of its sub-images.
    """
    if crop_size <= 0 or step <= 0 or thresh_size < 0:
        raise ValueError(f'crop_size ({crop_size}) and step ({step}) must be positive and thresh_size '
                         f'({thresh_size}) non-negative')
    if not 0 <= compression_level <= 9:
        raise ValueError(f'compression_level must be in 0..9, got {compression_level}')
    tasks, sources = [], {}
    for name in list_images(input_folder):
        stem = osp.splitext(name)[0]
        # DIV2K names LR images '0001x2.png'; dropping the suffix gives HR and LR sub-images the same keys.
        if strip_suffix and stem.endswith(strip_suffix):
            stem = stem[:-len(strip_suffix)]
        if stem in sources:
            raise ValueError(f'{osp.join(input_folder, sources[stem])} and {name} would both give sub-images '
                             f'{stem}_s001.png, ...: keep one of them')
        sources[stem] = name
        tasks.append((osp.join(input_folder, name), stem))
    with _new_output(save_folder, overwrite):
        os.makedirs(save_folder)
        print(f'Extract {crop_size}x{crop_size} sub-images (step {step}) of {len(tasks)} images: {input_folder} -> '
              f'{save_folder}')
        worker = functools.partial(
            _extract_one,
            save_folder=save_folder,
            crop_size=crop_size,
            step=step,
            thresh_size=thresh_size,
            compression_level=compression_level)
        results = _track(worker, tasks, n_thread)
    return {stem: dict(size=size, names=names) for stem, size, names in results}


def make_bicubic_lr(hr_folder, lr_folder, scale, n_thread=1, overwrite=False):
    """Writes MATLAB-bicubic downscaled images as DIV2K's ``LR_bicubic`` set (``0001.png`` -> ``0001x2.png``).

    Args:
        hr_folder (str): Folder of HR images; their sizes must be multiples of ``scale``.
        lr_folder (str): Output folder; must not exist unless ``overwrite``.
        scale (int): Downscaling factor.
        n_thread (int): Worker processes. Default: 1.
        overwrite (bool): Replace an existing ``lr_folder``. Default: False.

    Returns:
        list[str]: The LR file names.
    """
    if int(scale) != scale or scale < 2:
        raise ValueError(f'scale must be an integer >= 2, got {scale}')
    paths = [osp.join(hr_folder, name) for name in list_images(hr_folder)]
    with _new_output(lr_folder, overwrite):
        os.makedirs(lr_folder)
        print(f'Make MATLAB-bicubic x{scale} LR images of {len(paths)} images: {hr_folder} -> {lr_folder}')
        return _track(functools.partial(_make_lr_one, save_folder=lr_folder, scale=int(scale)), paths, n_thread)


def make_lmdb(folder, lmdb_path, compress_level=1, overwrite=False, map_size=LMDB_MAP_SIZE):
    """Packs the PNG images of a folder into an LMDB with BasicSR's ``make_lmdb_from_imgs``.

    Keys and file list follow BasicSR's ``create_lmdb.py`` for DIV2K: the sorted ``*.png`` files directly in
    ``folder``, keyed by their stem.

    Args:
        folder (str): Folder of PNG images (e.g. sub-images).
        lmdb_path (str): Output path ending with ``.lmdb``; must not exist unless ``overwrite``.
        compress_level (int): PNG compression level of the stored values. Default: 1.
        overwrite (bool): Replace an existing ``lmdb_path``. Default: False.
        map_size (int): LMDB map size in bytes. Default: :data:`LMDB_MAP_SIZE`.

    Returns:
        int: Number of images stored.
    """
    if not lmdb_path.endswith('.lmdb'):
        raise ValueError(f'lmdb path {lmdb_path} must end with ".lmdb"')
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder} does not exist')
    names = sorted(scandir(folder, suffix='png'))
    if not names:
        raise FileNotFoundError(f'image folder {folder} holds no .png images')
    keys = [name[:-len('.png')] for name in names]
    for key in keys:
        # BasicSR's readers take the key as the meta_info name up to its first dot, and LMDB keys are ASCII.
        if '.' in key or not key.isascii() or ' ' in key:
            raise ValueError(f'{osp.join(folder, key)}.png: LMDB keys must be ASCII without dots or spaces')
    with _new_output(lmdb_path, overwrite):
        make_lmdb_from_imgs(folder, lmdb_path, names, keys, compress_level=compress_level, map_size=map_size)
    return len(keys)


def _check_pair(hr, lr, scale, lr_folder):
    """Problems that would make HR and LR sub-images of one scale disagree."""
    problems = []
    for stem in sorted(set(hr) | set(lr)):
        if stem not in lr or stem not in hr:
            problems.append(f'{stem}: only in {"HR" if stem in hr else lr_folder}')
        elif tuple(s * scale for s in lr[stem]['size']) != tuple(hr[stem]['size']):
            problems.append(f'{stem}: HR is {hr[stem]["size"]} but LR x{scale} is {lr[stem]["size"]}')
    return problems


def prepare_div2k(root,
                  scales=(2, 3, 4),
                  steps=('extract', 'lmdb'),
                  make_lr=False,
                  crop_size=HR_CROP_SIZE,
                  step=HR_STEP,
                  thresh_size=0,
                  n_thread=1,
                  overwrite=False):
    """Prepares DIV2K in BasicSR's layout (:func:`div2k_paths`): HR and X``s`` sub-images, then their LMDBs.

    Every output is checked before any work starts, so a re-run without ``overwrite`` fails at once.

    Args:
        root (str): DIV2K root holding ``DIV2K_train_HR`` (and ``DIV2K_train_LR_bicubic/X{s}`` unless ``make_lr``).
        scales (Sequence[int]): LR scales; empty for HR only. Default: (2, 3, 4).
        steps (Sequence[str]): Any of ``'extract'`` and ``'lmdb'``, run in that order. Default: both.
        make_lr (bool): Make the LR images from HR with MATLAB bicubic first (with ``'extract'``). Default: False.
        crop_size (int): HR sub-image size; LR uses ``crop_size / s``. Default: 480.
        step (int): HR stride; LR uses ``step / s``. Default: 240.
        thresh_size (int): HR border threshold; LR uses ``thresh_size // s``. Default: 0.
        n_thread (int): Worker processes for extraction and LR making. Default: 1.
        overwrite (bool): Replace existing outputs. Default: False.

    Returns:
        list[str]: The folders and LMDBs written.
    """
    unknown = set(steps) - {'extract', 'lmdb'}
    if unknown or not steps:
        raise ValueError(f'steps must be a non-empty subset of ("extract", "lmdb"), got {tuple(steps)}')
    if make_lr and 'extract' not in steps:
        raise ValueError('make_lr needs the "extract" step')
    scales = sorted({int(s) for s in scales})
    for scale in scales:
        if scale < 2 or crop_size % scale or step % scale:
            raise ValueError(f'scale {scale}: scales must be >= 2 and divide crop_size ({crop_size}) and step '
                             f'({step})')
    layouts = [(None, div2k_paths(root))] + [(s, div2k_paths(root, s)) for s in scales]

    outputs, inputs = [], []
    for scale, paths in layouts:
        if 'extract' in steps:
            if make_lr and scale is not None:
                outputs.append(paths['images'])
            else:
                inputs.append(paths['images'])
            outputs.append(paths['sub'])
        if 'lmdb' in steps:
            outputs.append(paths['lmdb'])
            if 'extract' not in steps:
                inputs.append(paths['sub'])
    missing = [path for path in inputs if not osp.isdir(path)]
    if missing:
        hint = ' (pass make_lr / --make-lr to make the LR images from HR)' if 'extract' in steps else ''
        raise FileNotFoundError(f'missing input folder(s): {", ".join(missing)}{hint}')
    existing = [path for path in outputs if osp.lexists(path)]
    if existing and not overwrite:
        raise FileExistsError(f'output(s) already exist: {", ".join(existing)}; remove them or pass overwrite=True '
                              '(--overwrite) to replace them')

    if 'extract' in steps:
        hr_paths = layouts[0][1]
        if make_lr:
            # First, so that HR sizes that are no multiple of a scale stop the run before any extraction.
            for scale, paths in layouts[1:]:
                make_bicubic_lr(hr_paths['images'], paths['images'], scale, n_thread=n_thread, overwrite=overwrite)
        hr = extract_subimages(
            hr_paths['images'], hr_paths['sub'], crop_size, step, thresh_size, n_thread=n_thread, overwrite=overwrite)
        for scale, paths in layouts[1:]:
            lr = extract_subimages(
                paths['images'],
                paths['sub'],
                crop_size // scale,
                step // scale,
                thresh_size // scale,
                strip_suffix=f'x{scale}',
                n_thread=n_thread,
                overwrite=overwrite)
            problems = _check_pair(hr, lr, scale, paths['images'])
            if problems:
                shutil.rmtree(paths['sub'])
                more = f'; and {len(problems) - 5} more' if len(problems) > 5 else ''
                raise ValueError(f'HR {hr_paths["images"]} and LR {paths["images"]} do not pair up (HR must be '
                                 f'{scale}x the LR size, same names); removed {paths["sub"]}: ' +
                                 '; '.join(problems[:5]) + more)
    if 'lmdb' in steps:
        for _, paths in layouts:
            make_lmdb(paths['sub'], paths['lmdb'], overwrite=overwrite)
    return outputs


def read_meta_info(lmdb_path):
    """Parses ``meta_info.txt`` of a BasicSR LMDB.

    Args:
        lmdb_path (str): LMDB folder.

    Returns:
        tuple[list[tuple], list[str]]: Entries ``(line_no, key, (h, w, c), level)`` and problems with lines that do
        not read as ``name.png (h,w,c) level``.
    """
    entries, problems = [], []
    with open(osp.join(lmdb_path, 'meta_info.txt')) as f:
        for line_no, line in enumerate(f, 1):
            match = _META_LINE.match(line.rstrip('\n'))
            if match is None:
                problems.append(f'meta_info.txt line {line_no}: {line.strip()!r} is not "name.png (h,w,c) level"')
                continue
            # The key is the name up to its first dot, as BasicSR's paths_from_lmdb reads it.
            key = match['name'].split('.')[0]
            shape = (int(match['h']), int(match['w']), int(match['c']))
            entries.append((line_no, key, shape, int(match['level'])))
    return entries, problems


def check_lmdb(lmdb_path, show_progress=False):
    """Verifies a BasicSR LMDB: every ``meta_info.txt`` entry has a key, every value decodes to its listed shape.

    Args:
        lmdb_path (str): LMDB folder (``data.mdb``, ``meta_info.txt``).
        show_progress (bool): Show a progress bar over the stored images. Default: False.

    Returns:
        list[str]: Problems found, one sentence each; empty when the LMDB is consistent.
    """
    if not osp.isdir(lmdb_path):
        raise FileNotFoundError(f'LMDB folder {lmdb_path} does not exist')
    if osp.isfile(osp.join(lmdb_path, 'meta_info.txt')):
        entries, problems = read_meta_info(lmdb_path)
    else:
        entries, problems = [], [f'{osp.join(lmdb_path, "meta_info.txt")} is missing']
    expected = {}
    for line_no, key, shape, _ in entries:
        if key in expected:
            problems.append(f'meta_info.txt line {line_no}: key {key!r} is listed again (first on line '
                            f'{expected[key][0]})')
        else:
            expected[key] = (line_no, shape)

    try:
        # Read-only and lock-free as BasicSR's LmdbBackend opens it, so read-only copies can be checked too.
        env = lmdb.open(lmdb_path, readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as err:
        return problems + [f'cannot open {lmdb_path} as an LMDB: {err}']
    seen = set()
    # Closed on any exit: lmdb refuses to open an environment twice in one process.
    with env, env.begin(write=False) as txn:
        progress = ProgressBar(txn.stat()['entries']) if show_progress else None
        for key_bytes, value in txn.cursor():
            key = key_bytes.decode('ascii', errors='replace')
            seen.add(key)
            if progress is not None:
                progress.update()
            try:
                img = imfrombytes(value, flag='unchanged')
            except cv2.error:
                img = None
            if img is None:
                problems.append(f'key {key!r}: the stored value does not decode as an image')
                continue
            shape = img.shape if img.ndim == 3 else (*img.shape, 1)
            if key not in expected:
                problems.append(f'key {key!r} ({",".join(map(str, shape))}) is not listed in meta_info.txt')
            elif tuple(shape) != expected[key][1]:
                line_no, listed = expected[key]
                problems.append(f'meta_info.txt line {line_no}: {key}.png is listed as ({",".join(map(str, listed))}) '
                                f'but the stored image is ({",".join(map(str, shape))})')
    problems += [
        f'meta_info.txt line {line_no}: key {key!r} is not in the LMDB' for key, (line_no, _) in expected.items()
        if key not in seen
    ]
    return problems
