import numpy as np
import torch

from basicsr.utils.registry import DATASET_REGISTRY
from mzsr_plugin.option_schema import RANDOM_KERNEL_PAIR_DATASET
from .bicubic_pair_dataset import MZSRBicubicPairDataset
from .degradations import degrade_pt
from .kernels import random_gaussian_kernel


@DATASET_REGISTRY.register()
class MZSRRandomKernelPairDataset(MZSRBicubicPairDataset):
    """(LR, HR) pairs under MZSR's degradations: each HR patch blurred by its own random meta-training kernel.

    For stock ``SRModel`` training of any BasicSR arch on the kernels MZSR meta-trains on (the paper's
    kernel-agnostic baselines), and for learned kernel estimators (each item carries its kernel).

    Options (besides :class:`MZSRBicubicPairDataset`'s):
        kernel_size (int): Kernel side (odd). Default: 15.
        lambda_min (float): Smallest kernel variance. Default: 1 (official; 0.2 adds nearly unblurred inputs).
        isotropic_prob (float): Probability of an isotropic kernel. Default: 0.
        downsample (str): ``direct`` or ``bicubic``. Default: ``direct``.
        noise_level (float): Std of Gaussian noise on the LR ([0, 1] scale). Default: 0.

    Kernels and noise come from NumPy's global generator, which BasicSR seeds per worker (``manual_seed``).

    Returns per item: ``lq`` (3, gt_size/scale, gt_size/scale), ``gt`` (3, gt_size, gt_size), ``kernel``
    (k, k), RGB float32 in [0, 1], ``lq_path``, ``gt_path``.
    """

    schema = RANDOM_KERNEL_PAIR_DATASET

    def degrade(self, gt):
        opt = self.opt
        kernel = random_gaussian_kernel(self.scale, int(opt['kernel_size']),
                                        isotropic_prob=float(opt['isotropic_prob']),
                                        lambda_min=float(opt['lambda_min']))
        lq = degrade_pt(gt[None], kernel, self.scale, opt['downsample'])[0]
        noise = float(opt['noise_level'])
        if noise > 0:
            lq = lq + torch.from_numpy(np.random.normal(0.0, noise, size=tuple(lq.shape))).float()
        return {'lq': lq.clamp(0, 1), 'kernel': torch.from_numpy(kernel)}
