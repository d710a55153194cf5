import importlib
from os import path as osp

from basicsr.utils import scandir

# Registration happens on import: every '*_dataset.py' module in this folder, as BasicSR scans its own.
_folder = osp.dirname(osp.abspath(__file__))
_names = sorted(osp.splitext(osp.basename(v))[0] for v in scandir(_folder) if v.endswith('_dataset.py'))
_modules = [importlib.import_module(f'mzsr_plugin.data.{name}') for name in _names]
