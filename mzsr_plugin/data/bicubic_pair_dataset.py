import numpy as np
import random
from torch.utils import data as data

from basicsr.data.transforms import augment
from basicsr.utils import FileClient, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from mzsr_plugin.data.meta_task_dataset import image_paths
from mzsr_plugin.option_schema import BICUBIC_PAIR_DATASET, check_dataset
from mzsr_plugin.utils.matlab_resize import imresize_pt
from mzsr_plugin.utils.image_io import decode_image


@DATASET_REGISTRY.register()
class MZSRBicubicPairDataset(data.Dataset):
    """HR patches and their MATLAB-bicubic LR, made on the fly: pretraining data from HR images alone.

    DIV2K users can keep BasicSR's ``PairedImageDataset`` on the prepared LMDB pairs; this dataset serves any HR
    folder or LMDB (e.g. the training images of the model card) without a prepared LR set.

    Options (besides BasicSR's ``name``, ``phase``, ``batch_size_per_gpu``...):
        dataroot_gt (str): HR folder, or ``.lmdb`` with ``io_backend.type: lmdb``.
        meta_info_file (str, optional): Disk backend: image names to use, one per line.
        io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
        scale (int): Downscaling factor.
        gt_size (int): HR patch size, a multiple of ``scale``.
        use_hflip (bool), use_rot (bool): Augmentation.

    Returns per item: ``lq`` (3, gt_size/scale, gt_size/scale), ``gt`` (3, gt_size, gt_size), RGB float32 in
    [0, 1], ``lq_path``, ``gt_path``.
    """

    schema = BICUBIC_PAIR_DATASET

    def __init__(self, opt):
        super().__init__()
        opt = check_dataset(self.schema, opt)
        self.opt = opt
        self.io_backend_opt = dict(opt['io_backend'])
        self.file_client = None
        self.scale = int(opt['scale'])
        self.gt_size = int(opt['gt_size'])
        if self.gt_size % self.scale:
            raise ValueError(f'{opt.get("name", "dataset")}: gt_size {self.gt_size} must be a multiple of scale '
                             f'{self.scale}')
        self.paths = image_paths(opt, 'dataroot_gt', 'gt', self.io_backend_opt)

    def __getitem__(self, index):
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        path = self.paths[index]
        # Not basicsr's imfrombytes: it cuts 16-bit images to 8 bit and fails without naming a corrupt file.
        img = decode_image(self.file_client.get(path, 'gt'), path)[0].astype(np.float32)
        h, w = img.shape[:2]
        if h < self.gt_size or w < self.gt_size:
            raise ValueError(f'{path}: image {w}x{h} is smaller than gt_size {self.gt_size}')
        top, left = random.randint(0, h - self.gt_size), random.randint(0, w - self.gt_size)
        gt = img[top:top + self.gt_size, left:left + self.gt_size]
        gt = augment(gt, self.opt['use_hflip'], self.opt['use_rot'])
        gt = img2tensor(gt, bgr2rgb=True, float32=True)
        return dict(self.degrade(gt), gt=gt, lq_path=path, gt_path=path)

    def degrade(self, gt):
        """The LR of one HR patch (3, H, W): ``{'lq': (3, H/s, W/s)}`` plus anything the degradation adds."""
        return {'lq': imresize_pt(gt, 1 / self.scale).clamp_(0, 1)}

    def __len__(self):
        return len(self.paths)
