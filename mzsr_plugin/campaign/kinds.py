"""The four official model kinds a campaign can train, and the named training recipes it can use."""
from dataclasses import dataclass
from os import path as osp

from mzsr_plugin.model_zoo import MODEL_ZOO

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
ROOT = osp.dirname(PACKAGE_DIR)
# The option files: a wheel carries a copy in the package (setup.py's build_py), a checkout has them at its root.
OPTIONS_DIR = next(d for d in (osp.join(PACKAGE_DIR, 'options'), osp.join(ROOT, 'options')) if osp.isdir(d))
# The model card and the campaigns' committed state live in the source tree, wherever the weights are read from.
WEIGHTS_DIR = osp.join(PACKAGE_DIR, 'weights')


@dataclass(frozen=True)
class CampaignKind:
    """How the campaign trains one model of the zoo (:data:`~mzsr_plugin.model_zoo.MODEL_ZOO`).

    Attributes:
        name (str): Campaign name = the zoo model's name, e.g. ``x2_direct``.
        scale (int): Scale of the held-out evaluation (the largest for multi-scale).
        downsample (str): ``'direct'`` or ``'bicubic'``.
        pretrain_options (str): Option file of stage 1 (bicubic pretraining).
        meta_options (str): Option file of stage 2 (meta-transfer).
    """
    name: str
    scale: int
    downsample: str
    pretrain_options: str
    meta_options: str

    @property
    def model(self):
        """The zoo model it ships (its weights file and record)."""
        return MODEL_ZOO[self.name]

    @property
    def weights(self):
        """File name of the shipped weights in ``mzsr_plugin/weights``."""
        return self.model.weights


CAMPAIGN_KINDS = {
    kind.name: kind
    for kind in (
        CampaignKind('x2_direct', 2, 'direct', 'mzsr_pretrain_x2_local.yml', 'mzsr_campaign_x2_direct.yml'),
        CampaignKind('x2_bicubic', 2, 'bicubic', 'mzsr_pretrain_x2_local.yml', 'mzsr_campaign_x2_bicubic.yml'),
        CampaignKind('x4_direct', 4, 'direct', 'mzsr_pretrain_x2_local.yml', 'mzsr_campaign_x4_direct.yml'),
        CampaignKind('multiscale', 4, 'direct', 'mzsr_pretrain_x2_local.yml', 'mzsr_campaign_multiscale.yml'),
    )
}

# Overrides of the meta option file (dotted keys). ``official`` is the released models' recipe (fixed step size,
# uniform loss weights: the official global_step never advanced); the others are what the campaign compares.
RECIPES = {
    'official': {
        'train.learn_inner_lr': False,
        'train.loss_weight_decay': 0.0,
        'datasets.train.lambda_min': 1.0,
    },
    'lslr': {
        'train.learn_inner_lr': True,
        'train.loss_weight_decay': 0.0,
        'datasets.train.lambda_min': 1.0,
    },
    'lslr_wide': {
        'train.learn_inner_lr': True,
        'train.loss_weight_decay': 0.0,
        'datasets.train.lambda_min': 0.2,
    },
    'lslr_wide_first_order': {
        'train.learn_inner_lr': True,
        'train.first_order': True,
        'train.loss_weight_decay': 0.0,
        'datasets.train.lambda_min': 0.2,
    },
    'lslr_wide_fo_warmup': {
        'train.learn_inner_lr': True,
        'train.first_order_iters': 2000,
        'train.loss_weight_decay': 0.0,
        'datasets.train.lambda_min': 0.2,
    },
    'lslr_wide_annealed': {
        'train.learn_inner_lr': True,
        'train.loss_weight_decay': 6e-5,
        'datasets.train.lambda_min': 0.2,
    },
}


def campaign_dir(kind):
    """Where a kind's campaign state and history are committed (kept out of the wheel by MANIFEST.in).

    Args:
        kind (str): A key of :data:`CAMPAIGN_KINDS`.

    Returns:
        str: ``mzsr_plugin/weights/campaign/<kind>``.
    """
    return osp.join(WEIGHTS_DIR, 'campaign', kind)
