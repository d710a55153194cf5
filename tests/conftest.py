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
