import os
import pytest
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
