"""Test images with a known blur kernel: the input of MZSR's zero-shot adaptation.

Two modes:

* From HR (``dataroot_gt`` without ``dataroot_lq``): the LR is made as the official test inputs, GT mod-cropped to the
  scale (so that SR and GT sizes agree; the official Set5 GT sizes are all even, so this reproduces
  ``Input/g20`` bit-exactly), ``degrade`` in float64, optional noise, then rounded to 8 bit (``round_lq``).
  The kernel is a spec (``kernel: g_d_2.0``, see :func:`mzsr_plugin.data.kernels.parse_kernel_spec`), a file
  (``kernel_file``), or ``kernel: random`` (a meta-training kernel drawn from ``kernel_seed`` and the image index,
  so every run sees the same kernels).
* From LR (``dataroot_lq``): the kernel is ``kernel`` (a spec), ``kernel_file`` (one for all), or ``kernel_dir``
  (one per image, looked up as ``mzsr-sr --kernel-dir`` does: :data:`mzsr_plugin.inference.KERNEL_PATTERNS`).
  ``dataroot_gt`` is optional; GT files are named ``gt_filename_tmpl.format(<lq stem>)`` + the LR extension
  (``'{}_GT'`` for the official ``GT/`` folder) and kept as they are: when they are not mod-cropped, the metrics of
  :mod:`mzsr_plugin.metrics.official_metric` compare the common top-left region.
"""
import numpy as np
import torch
from os import path as osp
from torch.utils import data as data

from basicsr.data.transforms import mod_crop
from basicsr.utils import FileClient, get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from mzsr_plugin.inference import find_kernel_file
from mzsr_plugin.kernel_estimation import estimate_kernel
from mzsr_plugin.option_schema import KERNEL_TEST_DATASET, check_dataset
from mzsr_plugin.utils.image_io import decode_image
from .degradations import add_noise, degrade_np
from .kernels import SPEC_KERNEL_SIZE, load_kernel, parse_kernel_spec, random_gaussian_kernel
from .meta_task_dataset import image_paths


@DATASET_REGISTRY.register()
class MZSRKernelTestDataset(data.Dataset):
    """LR/GT test pairs with their blur kernels (see the module docstring for the two modes).

    Options (besides BasicSR's ``name``, ``phase``...):
        scale (int): SR scale.
        io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
        dataroot_gt (str): HR folder or LMDB (mode a), or optional GT (mode b).
        dataroot_lq (str, optional): LR folder or LMDB: selects mode b.
        meta_info_file (str, optional): Disk backend: names of the images of the primary folder.
        kernel (str, optional): A spec such as ``g_d_2.0``, or ``random`` (mode a only).
        kernel_file (str, optional): One kernel file for all images. kernel_dir (str, optional): Mode b only.
        kernel_size (int, optional): Size of spec kernels (default 21, the official test kernels) and of
            random and estimated kernels (default 15, the meta-training kernels).
        kernel_seed (int): Seed of ``kernel: random``. Default: 0.
        downsample (str): For ``kernel_file`` / ``kernel_dir`` / ``random``: ``direct`` or ``bicubic``.
            Default: ``direct``. Specs carry their own mode.
        noise_level (float): Mode a: std of Gaussian noise added to LR ([0, 1] scale), clipped to [0, 1].
            Default: 0. noise_seed (int): Its seed, combined with the image index. Default: 0.
        round_lq (bool): Mode a: quantise LR to 8 bit as saved inputs. Default: True.
        gt_filename_tmpl (str): Mode b: GT name from the LR stem. Default: ``'{}'``.
        max_images (int, optional): Use only the first images (sorted by name), e.g. for a short validation.

    Returns per item: ``lq`` (3, h, w) and, when there is GT, ``gt`` (3, H, W), RGB float32 in [0, 1];
    ``lq_path``, ``gt_path`` (mode a: both the HR image), ``kernel`` (k, k) float32, ``downsample`` (str) and
    ``scale`` (int).
    """

    def __init__(self, opt):
        super().__init__()
        given = opt  # as written: some checks below are about keys the user set, not their defaults
        opt = check_dataset(KERNEL_TEST_DATASET, opt)
        self.opt = opt
        name = opt.get('name', 'MZSRKernelTestDataset')
        self.io_backend_opt = dict(opt['io_backend'])
        self.file_client = None
        if opt['scale'] is None:
            raise ValueError(f'{name}: option scale is missing (a positive integer; BasicSR sets it from the '
                             'top-level scale)')
        self.scale = int(opt['scale'])
        self.from_lq = opt['dataroot_lq'] is not None
        if not self.from_lq and opt['dataroot_gt'] is None:
            raise ValueError(f'{name}: set dataroot_gt (LR made from HR) or dataroot_lq (given LR)')
        self.paths = image_paths(opt, 'dataroot_lq' if self.from_lq else 'dataroot_gt', 'lq' if self.from_lq else 'gt',
                                 self.io_backend_opt)
        if opt['max_images']:
            self.paths = self.paths[:int(opt['max_images'])]
        self.gt_tmpl = opt['gt_filename_tmpl']
        if self.from_lq and opt['dataroot_gt'] is not None:
            if not osp.exists(opt['dataroot_gt']):
                raise FileNotFoundError(f'dataroot_gt: {opt["dataroot_gt"]} does not exist')
            if self.io_backend_opt['type'] == 'lmdb':
                self.io_backend_opt['db_paths'].append(opt['dataroot_gt'])
                self.io_backend_opt['client_keys'].append('gt')
        self.has_gt = opt['dataroot_gt'] is not None

        self.downsample = opt['downsample']
        sources = [key for key in ('kernel', 'kernel_file', 'kernel_dir') if opt[key] is not None]
        if len(sources) != 1:
            raise ValueError(f'{name}: set exactly one of kernel (spec or "random"), kernel_file, kernel_dir; '
                             f'got {sources or "none"}')
        self.kernel_source = sources[0]
        # kernel_size ~: the official sizes, 21 for specs (the test kernels), 15 for random and estimated kernels
        # (the meta-training ones).
        size = opt['kernel_size']
        spec_size, drawn_size = (SPEC_KERNEL_SIZE, 15) if size is None else (int(size), int(size))
        self.kernel = None
        self.random_kernel = False
        self.estimate = self.kernel_source == 'kernel' and str(opt['kernel']).lower() == 'estimate'
        if self.estimate:
            if not self.from_lq:
                raise ValueError(f'{name}: kernel: estimate needs dataroot_lq (given LR images whose kernel is '
                                 'unknown); with dataroot_gt the LR is made with a kernel you set')
            if self.downsample != 'direct':
                raise ValueError(f'{name}: kernel: estimate models direct sub-sampling, but downsample is '
                                 f'{self.downsample}')
            self.kernel_size = drawn_size
        elif self.kernel_source == 'kernel' and str(opt['kernel']).lower() == 'random':
            if self.from_lq:
                raise ValueError(f'{name}: kernel: random needs dataroot_gt without dataroot_lq (the LR of given '
                                 'images has its own kernel)')
            self.random_kernel = True
            self.kernel_seed = int(opt['kernel_seed'])
            self.kernel_size = drawn_size
        elif self.kernel_source == 'kernel':
            spec = parse_kernel_spec(opt['kernel'], spec_size)
            # A spec carries its own sub-sampling: only a downsample the user wrote can contradict it.
            if 'downsample' in given and opt['downsample'] != spec.downsample:
                raise ValueError(f'{name}: kernel spec "{opt["kernel"]}" implies downsample {spec.downsample}, but '
                                 f'option downsample is {opt["downsample"]}')
            self.kernel, self.downsample = spec.kernel, spec.downsample
        elif self.kernel_source == 'kernel_file':
            self.kernel = load_kernel(opt['kernel_file'])
        else:
            if not self.from_lq:
                raise ValueError(f'{name}: kernel_dir needs dataroot_lq (per-image kernels of given LR images)')
            if not osp.isdir(opt['kernel_dir']):
                raise FileNotFoundError(f'kernel_dir: {opt["kernel_dir"]} is not a folder')
        self.noise_level = float(opt['noise_level'])
        self.round_lq = bool(opt['round_lq'])
        if self.from_lq and (self.noise_level > 0 or 'round_lq' in given):
            raise ValueError(f'{name}: noise_level and round_lq apply to LR made from HR; given LR (dataroot_lq) is '
                             'used as it is')

    def _kernel(self, index, path, lq=None):
        if self.estimate:
            try:
                kernel, info = estimate_kernel(lq[..., ::-1], self.scale, self.opt['kernel_estimator'],
                                               size=self.kernel_size, seed=int(self.opt['kernel_seed']))
            except ValueError as error:
                raise ValueError(f'{path}: kernel estimation: {error}') from None
            if info['warning']:
                get_root_logger().warning(f'{path}: {info["warning"]}')
            return kernel
        if self.kernel is not None:
            return self.kernel
        if self.random_kernel:
            rng = np.random.default_rng((self.kernel_seed, index))
            return random_gaussian_kernel(self.scale, self.kernel_size, rng=rng)
        return load_kernel(find_kernel_file(self.opt['kernel_dir'], path, 'kernel_dir'))

    def _read(self, path, key):
        return decode_image(self.file_client.get(path, key), path)[0]

    def __getitem__(self, index):
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        path = self.paths[index]
        kernel = None if self.estimate else self._kernel(index, path)
        if self.from_lq:
            lq_path = path
            lq = self._read(path, 'lq')
            if self.estimate:
                kernel = self._kernel(index, path, lq)
            gt_path, gt = None, None
            if self.has_gt:
                stem, ext = osp.splitext(osp.basename(path))
                gt_path = osp.join(self.opt['dataroot_gt'], self.gt_tmpl.format(stem) + ext)
                if self.io_backend_opt['type'] == 'lmdb':
                    gt_path = self.gt_tmpl.format(stem)
                elif not osp.isfile(gt_path):
                    raise FileNotFoundError(f'no GT for {path}: {gt_path} does not exist (gt_filename_tmpl '
                                            f'"{self.gt_tmpl}")')
                gt = self._read(gt_path, 'gt')
        else:
            lq_path = gt_path = path
            hr = self._read(path, 'gt')
            if min(hr.shape[:2]) < self.scale:
                raise ValueError(f'{path}: HR image {hr.shape[1]}x{hr.shape[0]} is smaller than the scale '
                                 f'{self.scale}; it has no x{self.scale} LR image (remove it from dataroot_gt)')
            gt = mod_crop(hr, self.scale)
            lq = degrade_np(gt, kernel, self.scale, self.downsample)
            if self.noise_level > 0:
                rng = np.random.default_rng((int(self.opt['noise_seed']), index))
                lq = add_noise(lq, self.noise_level, rng=rng)
            if self.round_lq:
                lq = np.clip(np.round(lq * 255.), 0, 255) / 255.
        out = {
            'lq': img2tensor(lq.astype(np.float32), bgr2rgb=True, float32=True),
            'lq_path': lq_path,
            'kernel': torch.from_numpy(kernel),
            'downsample': self.downsample,
            'scale': self.scale
        }
        if gt is not None:
            out['gt'] = img2tensor(gt.astype(np.float32), bgr2rgb=True, float32=True)
            out['gt_path'] = gt_path
        return out

    def __len__(self):
        return len(self.paths)
