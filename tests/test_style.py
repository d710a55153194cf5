"""The code passes the project's lint settings (setup.cfg: flake8 as BasicSR, max-line-length 120)."""
import subprocess
import sys
from os import path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_flake8_clean():
    probe = subprocess.run([sys.executable, '-m', 'flake8', '--version'], capture_output=True)
    if probe.returncode != 0:
        pytest.skip('flake8 is not installed (pip install -e ".[dev]")')
    result = subprocess.run([sys.executable, '-m', 'flake8', 'mzsr_plugin', 'mzsr_plugin_hook.py', 'scripts', 'tests',
                             'setup.py'], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
