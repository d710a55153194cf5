"""The plugin's networks in an OpenMMLab (mmengine) registry, for configs written the OpenMMLab way.

BasicSR builds them from its own ``ARCH_REGISTRY``; this child of ``mmengine.registry.MODELS`` (scope ``mzsr``)
makes the same classes buildable by mmengine-based code::

    from mzsr_plugin.mmengine_registry import MODELS
    net = MODELS.build(dict(type='MZSRNet', scale=2))

    # or through mmengine's root registry, with the scope prefix
    import mzsr_plugin.mmengine_registry  # noqa: F401
    from mmengine.registry import MODELS
    net = MODELS.build(dict(type='mzsr.MZSRNet', num_feat=64, num_conv=8))

An OpenMMLab config file imports it by itself with
``custom_imports = dict(imports=['mzsr_plugin.mmengine_registry'], allow_failed_imports=False)``.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

from mzsr_plugin.archs.mzsr_arch import MZSRNet

SCOPE = 'mzsr'

# ``locations``: a build through this registry, or through a scope switch to 'mzsr', imports this module first.
MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE, locations=['mzsr_plugin.mmengine_registry'])
MODELS.register_module(module=MZSRNet)
