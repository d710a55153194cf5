import os
import pytest
import torch
from os import path as osp

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = os.environ.get('MZSR_SHARED_DATA', osp.join(REPO_ROOT, '..', 'shared', 'data'))


def shared_path(*parts):
    """Path under ../shared/data, or skip the calling test with the reason when it is absent."""
    path = osp.join(SHARED_DATA, *parts)
    if not osp.exists(path):
        pytest.skip(f'needs the shared third-party data: {osp.normpath(path)} is absent '
                    '(set MZSR_SHARED_DATA to its folder)')
    return path


@pytest.fixture
def shared():
    """The shared-data path helper as a fixture: ``shared('benchmark', 'Set5')``."""
    return shared_path


@pytest.fixture
def one_thread():
    """Tiny tensors run fastest on one thread; more oversubscribe a shared machine's cores (10x slower under load).

    Use with ``pytestmark = pytest.mark.usefixtures('one_thread')``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# What a fresh clone holds: build outputs of an earlier `pip install .` (build/lib keeps files since moved or
# deleted) and local environments never reach the wheel the tests build.
NOT_IN_A_CLONE = ('.git', '.venv', '.venv-ci', 'build', 'dist', '*.egg-info', '__pycache__', '.pytest_cache',
                  'experiments', 'results', 'tb_logger', 'datasets', 'mzsr_demo')


@pytest.fixture(scope='session')
def wheel(tmp_path_factory):
    """The project's wheel, built from a copy of the working tree without build outputs (as from a fresh clone)."""
    import shutil
    import subprocess
    import sys
    source = tmp_path_factory.mktemp('source') / 'mzsr-plugin'
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_IN_A_CLONE))
    folder = tmp_path_factory.mktemp('wheel')
    run = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
                          str(folder), str(source)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return folder / next(p for p in os.listdir(folder) if p.endswith('.whl'))


@pytest.fixture(scope='session')
def installed_wheel(wheel, tmp_path_factory):
    """A folder the wheel is installed into (``pip install --target``; put it on PYTHONPATH to run the package)."""
    import subprocess
    import sys
    site = tmp_path_factory.mktemp('site')
    run = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-compile', '--target',
                          str(site), str(wheel)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return site
