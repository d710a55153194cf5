"""Import hook that makes stock BasicSR entrypoints find the mzsr-plugin types.

A ``.pth`` file installed beside this module calls :func:`install` at interpreter start. It only puts a small
finder on ``sys.meta_path`` (standard library only, no import of torch or basicsr), so it costs nothing until
``basicsr`` is imported. Then it:

1. provides ``torchvision.transforms.functional_tensor``, removed in torchvision 0.17 but imported by
   basicsr 1.4.2, so that ``import basicsr`` works on today's torchvision;
2. imports ``mzsr_plugin`` right after ``basicsr`` has finished importing, which registers the plugin's
   archs, datasets, models and metrics and applies the fixes in ``mzsr_plugin.compat``.

``python basicsr/train.py -opt options/mzsr_meta_x2.yml`` from a BasicSR checkout therefore works with no edit
to BasicSR.
"""
import sys

_TV_SHIM = 'torchvision.transforms.functional_tensor'


class _ShimLoader:
    """Builds the removed torchvision module as a view on its private successor."""

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        import importlib
        try:
            target = importlib.import_module('torchvision.transforms._functional_tensor')
        except ImportError:  # pragma: no cover - very old or very new torchvision
            target = importlib.import_module('torchvision.transforms.functional')
        module.__dict__.update({k: v for k, v in vars(target).items() if not k.startswith('__')})


class _BasicsrLoader:
    """Runs basicsr's own loader, then imports the plugin so that its registrations exist."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        import importlib
        self._loader.exec_module(module)
        importlib.import_module('mzsr_plugin')

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _PluginFinder:

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in (_TV_SHIM, 'basicsr'):
            return None
        import importlib.util
        spec = self._find_elsewhere(fullname, path, target)
        if fullname == _TV_SHIM:
            # A torchvision that has the module again wins over the shim.
            return spec or importlib.util.spec_from_loader(fullname, _ShimLoader())
        if spec is not None and spec.loader is not None:
            spec.loader = _BasicsrLoader(spec.loader)
        return spec

    def _find_elsewhere(self, fullname, path, target):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


def install_torchvision_shim():
    """Makes ``torchvision.transforms.functional_tensor`` importable (used by ``mzsr_plugin.compat``)."""
    import importlib
    import importlib.util
    import types
    if _TV_SHIM not in sys.modules and importlib.util.find_spec('torchvision') is not None:
        try:
            importlib.import_module(_TV_SHIM)
        except ImportError:
            module = types.ModuleType(_TV_SHIM)
            _ShimLoader().exec_module(module)
            sys.modules[_TV_SHIM] = module


def install():
    """Puts the finder first on ``sys.meta_path`` once; called from ``mzsr_plugin_hook.pth``."""
    if not any(isinstance(f, _PluginFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PluginFinder())
