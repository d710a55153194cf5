"""mzsr-plugin: MZSR (Soh, Cho and Cho, CVPR 2020) as a BasicSR plugin.

Importing the package applies the basicsr compatibility fixes first, then registers the plugin's archs, datasets,
models and metrics in BasicSR's registries.
"""
from . import compat  # noqa: F401  (must come first: it makes basicsr importable)
from . import archs, data, metrics, models  # noqa: F401,E402
from . import mmengine_registry  # noqa: F401,E402  (the archs in an mmengine registry, scope "mzsr")
from .version import __version__  # noqa: F401,E402
