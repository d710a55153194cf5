#!/usr/bin/env python
"""Installs mzsr_plugin and the import hook that lets stock BasicSR entrypoints find it."""
import os
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HOOK_PTH = 'mzsr_plugin_hook.pth'
HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    scope = {}
    with open(os.path.join(HERE, 'mzsr_plugin', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_hook_pth():
    with open(os.path.join(HERE, HOOK_PTH), encoding='utf-8') as f:
        return f.read()


class BuildPyWithHook(build_py):
    """Puts the hook's .pth at the root of site-packages for regular (wheel) installs, and the option files into the
    package (``mzsr_plugin/options``), so that the weights campaign runs from a wheel."""

    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, HOOK_PTH), os.path.join(self.build_lib, HOOK_PTH))
        options = os.path.join(self.build_lib, 'mzsr_plugin', 'options')
        self.mkpath(options)
        for name in sorted(os.listdir(os.path.join(HERE, 'options'))):
            if name.endswith('.yml'):
                self.copy_file(os.path.join(HERE, 'options', name), os.path.join(options, name))


cmdclass = {'build_py': BuildPyWithHook}

try:
    from setuptools.command.editable_wheel import editable_wheel

    class _StrategyWithHook:
        """Wraps setuptools' editable strategy to also write the hook's .pth into the editable wheel."""

        def __init__(self, strategy):
            self._strategy = strategy

        def __enter__(self):
            self._strategy.__enter__()
            return self

        def __exit__(self, *exc_info):
            return self._strategy.__exit__(*exc_info)

        def __call__(self, wheel, files, mapping):
            self._strategy(wheel, files, mapping)
            wheel.writestr(HOOK_PTH, read_hook_pth())

    class EditableWheelWithHook(editable_wheel):
        """``pip install -e .`` gets the hook too (PEP 660 editable installs skip build_py outputs)."""

        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithHook(super()._select_strategy(*args, **kwargs))

    cmdclass['editable_wheel'] = EditableWheelWithHook
except ImportError:  # setuptools without PEP 660 support: `pip install .` still installs the hook
    pass

setup(
    name='mzsr-plugin',
    version=read_version(),
    description='MZSR (meta-transfer learning for zero-shot super-resolution) as a BasicSR plugin',
    long_description=open(os.path.join(HERE, 'README.md'), encoding='utf-8').read()
    if os.path.exists(os.path.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['mzsr_plugin', 'mzsr_plugin.*']),
    py_modules=['mzsr_plugin_hook'],
    package_data={'mzsr_plugin': ['weights/*.pth', 'weights/*.md', 'assets/*']},
    include_package_data=True,
    install_requires=[
        'torch>=2.0',
        'torchvision',
        'basicsr==1.4.2',
        'mmengine>=0.10',
        'opencv-python',
        'lmdb',
        'pyyaml',
        'tensorboard',
        'numpy',
        'scipy',
        'scikit-image',
        'matplotlib',
        'tqdm',
        # HEIC/HEIF photos (an iPhone's default format), registered as Pillow's opener in utils/image_io.py.
        'pillow-heif>=0.16',
        # basicsr 1.4.2 imports distutils, which Python 3.12 only has through setuptools.
        'setuptools; python_version >= "3.12"',
    ],
    extras_require={
        'test': ['pytest>=7', 'selenium>=4.10'],
        # setuptools >= 70.1 builds wheels itself: tests/test_wheel.py builds one without build isolation.
        'dev': ['pytest>=7', 'selenium>=4.10', 'flake8', 'yapf', 'isort', 'setuptools>=70.1'],
        'app': ['gradio>=5'],
    },
    entry_points={
        'console_scripts': [
            'mzsr-train=mzsr_plugin.train:main',
            'mzsr-test=mzsr_plugin.test:main',
            'mzsr-sr=mzsr_plugin.cli:main',
            'mzsr-demo=mzsr_plugin.demo:main',
            'mzsr-app=mzsr_plugin.app:main',
            'mzsr-campaign=mzsr_plugin.campaign.cli:main',
        ],
    },
    cmdclass=cmdclass,
    zip_safe=False,
)
