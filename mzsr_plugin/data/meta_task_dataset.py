"""Meta-training tasks of MZSR: one item is one task, a random Gaussian degradation and its support/query patches.

One task draws a kernel (:func:`mzsr_plugin.data.kernels.random_gaussian_kernel`, per task, as the official data
generator), a scale s from ``scale_list``, then ``num_support + num_query`` HR patches, each cropped from a random
image of the dataset; every LR patch is ``degrade(HR patch, kernel, s)``.

Multi-scale convention. BasicSR's default collate stacks the tasks of a batch, so every task of a dataset must have
the same tensor sizes. With a single scale s, ``gt_size`` must be a multiple of s and nothing is padded. With
several scales, every task is zero-padded to ``lq`` (gt_size // min_scale) and ``gt`` gt_size; a task of scale s
only fills the top-left (gt_size // s) of ``lq`` and (gt_size // s) * s of ``gt``. The model cuts the valid region
of a group of tasks sharing a scale with :func:`crop_task_to_scale`::

    support_lq, support_gt = crop_task_to_scale(batch['support_lq'][idx], batch['support_gt'][idx], s, gt_size)
"""
import numpy as np
import torch
from os import path as osp
from torch.utils import data as data

from basicsr.data.data_util import paths_from_folder, paths_from_lmdb
from basicsr.data.transforms import augment
from basicsr.utils import FileClient, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from mzsr_plugin.option_schema import META_TASK_DATASET, check_dataset
from mzsr_plugin.utils.image_io import decode_image
from .degradations import degrade_pt
from .kernels import random_gaussian_kernel


def crop_task_to_scale(lq, gt, scale, gt_size):
    """Cuts the valid (unpadded) region of tasks of one scale, see the module docstring.

    Args:
        lq (Tensor): LR patches, shape (..., h_pad, w_pad), e.g. (B, S, 3, gt_size // min_scale, ...).
        gt (Tensor): HR patches, shape (..., gt_size, gt_size).
        scale (int): The scale of these tasks.
        gt_size (int): The dataset's ``gt_size``.

    Returns:
        tuple[Tensor, Tensor]: ``lq`` (..., gt_size // scale, gt_size // scale) and
        ``gt`` (..., (gt_size // scale) * scale, (gt_size // scale) * scale), views of the inputs.
    """
    lq_size = gt_size // int(scale)
    hr_size = lq_size * int(scale)
    return lq[..., :lq_size, :lq_size], gt[..., :hr_size, :hr_size]


def image_paths(opt, root_key, client_key, io_backend_opt):
    """Lists the images of a folder, an LMDB or a meta_info file, as BasicSR's paired datasets do.

    Args:
        opt (dict): Dataset options as :func:`~mzsr_plugin.option_schema.check_dataset` returns them (every key
            present); ``opt[root_key]`` is the folder (or ``.lmdb``), ``opt['meta_info_file']`` (disk only; None:
            the whole folder) lists one image name per line (first field).
        root_key (str): ``'dataroot_gt'`` or ``'dataroot_lq'``.
        client_key (str): The FileClient key for LMDB (``'gt'`` or ``'lq'``).
        io_backend_opt (dict): Updated in place with ``db_paths`` / ``client_keys`` for LMDB.

    Returns:
        list[str]: Sorted paths (LMDB: keys).
    """
    root = opt[root_key]
    if not osp.exists(root):
        raise FileNotFoundError(f'{root_key}: {root} does not exist')
    # Checked here: FileClient is only built at the first item, which may be hours into a run (validation).
    backend = io_backend_opt.get('type')
    if backend not in FileClient._backends:
        raise ValueError(f'io_backend.type must be one of {sorted(FileClient._backends)}, got {backend!r}')
    if io_backend_opt['type'] == 'lmdb':
        io_backend_opt.setdefault('db_paths', []).append(root)
        io_backend_opt.setdefault('client_keys', []).append(client_key)
        paths = paths_from_lmdb(root)
    elif opt['meta_info_file'] is not None:
        with open(opt['meta_info_file'], 'r') as fin:
            paths = [osp.join(root, line.strip().split(' ')[0]) for line in fin if line.strip()]
        missing = [path for path in paths if not osp.isfile(path)] if io_backend_opt['type'] == 'disk' else []
        if missing:
            raise FileNotFoundError(f'meta_info_file {opt["meta_info_file"]} lists {len(missing)} image(s) that '
                                    f'are not in {root_key} {root}, e.g. {osp.basename(missing[0])}')
    else:
        paths = paths_from_folder(root)
    if not paths:
        raise ValueError(f'{root_key}: no images found in {root}')
    return sorted(paths)


@DATASET_REGISTRY.register()
class MZSRMetaTaskDataset(data.Dataset):
    """Meta-training tasks: random Gaussian kernel, support and query patch pairs (see the module docstring).

    Options (besides BasicSR's ``name``, ``phase``, ``batch_size_per_gpu`` (tasks per meta-batch)...):
        dataroot_gt (str): HR folder, or ``.lmdb`` with ``io_backend.type: lmdb``.
        meta_info_file (str, optional): Disk backend: image names to use, one per line.
        io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
        scale (int) or scale_list (list[int]): Scale(s); one is drawn per task.
        gt_size (int): HR patch size. Default: 64.
        num_support (int), num_query (int): Patches per task. Default: 8 and 8.
        kernel_size (int): Default: 15. isotropic_prob (float): Default: 0.
        lambda_min (float): Smallest kernel variance drawn. Default: 1 (official); 0.2 also covers g^d_0.2.
        downsample (str): ``direct`` or ``bicubic``. Default: ``direct``.
        noise_level (float): Std of Gaussian noise on LR ([0, 1] scale); noisy LR is clipped to [0, 1]. Default: 0.
        round_lq (bool): Quantise LR to 8 bit as saved test inputs are. Default: False (the official generator
            trains on float LR).
        use_hflip (bool), use_rot (bool): Augmentation of each patch. Default: True.

    Randomness comes from NumPy's and Python's global generators, which BasicSR seeds (``manual_seed``, and per
    dataloader worker), so tasks are reproducible.

    Returns per item (RGB float32 in [0, 1]): ``support_lq`` (S, 3, h, w), ``support_gt`` (S, 3, H, W),
    ``query_lq`` (Q, 3, h, w), ``query_gt`` (Q, 3, H, W), ``kernel`` (k, k), ``scale`` (int64 scalar tensor),
    ``downsample`` (str) and ``gt_path`` (the first support patch's image).
    """

    def __init__(self, opt):
        super().__init__()
        opt = check_dataset(META_TASK_DATASET, opt)
        self.opt = opt
        name = opt.get('name', 'MZSRMetaTaskDataset')
        self.io_backend_opt = dict(opt['io_backend'])
        self.file_client = None
        self.paths = image_paths(opt, 'dataroot_gt', 'gt', self.io_backend_opt)

        scales = opt['scale_list'] or [opt['scale']]
        if any(s is None or int(s) != s or s < 1 for s in scales):
            raise ValueError(f'{name}: scale / scale_list must give positive integers, got {scales}')
        self.scales = sorted({int(s) for s in scales})
        self.gt_size = int(opt['gt_size'])
        if len(self.scales) == 1 and self.gt_size % self.scales[0]:
            raise ValueError(f'{name}: gt_size {self.gt_size} must be a multiple of scale {self.scales[0]}')
        if self.gt_size // self.scales[-1] < 1:
            raise ValueError(f'{name}: gt_size {self.gt_size} is smaller than the largest scale {self.scales[-1]}')
        self.lq_pad_size = self.gt_size // self.scales[0]
        self.num_support = int(opt['num_support'])
        self.num_query = int(opt['num_query'])
        self.kernel_size = int(opt['kernel_size'])
        self.isotropic_prob = float(opt['isotropic_prob'])
        self.lambda_min = float(opt['lambda_min'])
        self.downsample = opt['downsample']
        self.noise_level = float(opt['noise_level'])
        self.round_lq = bool(opt['round_lq'])

    def _random_patch(self, index, size):
        """Reads image ``index`` and crops a random (size, size) float32 BGR patch."""
        path = self.paths[index]
        img = decode_image(self.file_client.get(path, 'gt'), path)[0]
        h, w = img.shape[:2]
        if h < size or w < size:
            raise ValueError(f'{path}: image {w}x{h} is smaller than the patch size {size} (gt_size '
                             f'{self.gt_size}); remove it or lower gt_size')
        top, left = np.random.randint(0, h - size + 1), np.random.randint(0, w - size + 1)
        patch = img[top:top + size, left:left + size].astype(np.float32)
        return augment(patch, self.opt['use_hflip'], self.opt['use_rot'])

    def __getitem__(self, index):
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        scale = self.scales[np.random.randint(len(self.scales))]
        kernel = random_gaussian_kernel(scale, self.kernel_size, isotropic_prob=self.isotropic_prob,
                                        lambda_min=self.lambda_min)
        hr_size = (self.gt_size // scale) * scale
        num = self.num_support + self.num_query
        # The task's first patch comes from the indexed image so that every image is visited once per epoch.
        indices = [index] + list(np.random.randint(0, len(self.paths), size=num - 1))
        gt = torch.stack(img2tensor([self._random_patch(i, hr_size) for i in indices], bgr2rgb=True, float32=True))
        lq = degrade_pt(gt, kernel, scale, self.downsample)
        if self.noise_level > 0:
            noise = np.random.normal(0.0, self.noise_level, size=tuple(lq.shape))
            lq = (lq + torch.from_numpy(noise).float()).clamp(0, 1)
        if self.round_lq:
            lq = (lq.clamp(0, 1) * 255).round() / 255
        if len(self.scales) > 1:
            lq_size = lq.shape[-1]
            lq = torch.nn.functional.pad(lq, (0, self.lq_pad_size - lq_size, 0, self.lq_pad_size - lq_size))
            gt = torch.nn.functional.pad(gt, (0, self.gt_size - hr_size, 0, self.gt_size - hr_size))
        split = self.num_support
        return {
            'support_lq': lq[:split].contiguous(),
            'support_gt': gt[:split].contiguous(),
            'query_lq': lq[split:].contiguous(),
            'query_gt': gt[split:].contiguous(),
            'kernel': torch.from_numpy(kernel),
            'scale': torch.tensor(scale, dtype=torch.int64),
            'downsample': self.downsample,
            'gt_path': self.paths[index]
        }

    def __len__(self):
        return len(self.paths)
