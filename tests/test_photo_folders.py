"""A folder of photos at a time: a file that cannot be read is reported, the others are processed, the run ends with
a summary and a non-zero exit; ``--skip-existing`` continues a killed run."""
import cv2
import json
import numpy as np
import os
import pytest
import torch

from mzsr_plugin import cli
from mzsr_plugin.archs.mzsr_arch import MZSRNet

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(10):
        image = cv2.GaussianBlur((rng.random((24, 28, 3)) * 255).astype(np.uint8), (5, 5), 1.0)
        cv2.imwrite(str(photos / f'p{index}.jpg'), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    data = (photos / 'p4.jpg').read_bytes()
    (photos / 'p4.jpg').write_bytes(data[:len(data) // 3])  # truncated, as a copy cut short
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, tmp_path / 'w.pth')
    return tmp_path


def test_one_corrupt_file_among_ten_leaves_nine_outputs_and_a_failing_exit(folder, capsys):
    out = folder / 'out'
    argv = [str(folder / 'photos'), '-o', str(out), '--kernel', 'g_d_2.0', '--steps', '1', '--weights',
            str(folder / 'w.pth')]
    with pytest.raises(SystemExit, match=r'1 of 10 images failed: .*p4\.jpg'):
        cli.main(argv)
    printed = capsys.readouterr()
    assert 'p4.jpg' in printed.err and 'mzsr-sr: 9 done, 1 failed in' in printed.out
    outputs = sorted(name for name in os.listdir(out) if name.endswith('.png'))
    assert outputs == [f'p{i}.png' for i in range(10) if i != 4]
    assert [r['image'] for r in json.load(open(out / 'metrics.json'))['images']] == [
        f'p{i}.jpg' for i in range(10) if i != 4]
    # A rerun after the file is fixed does only what is missing.
    (folder / 'photos' / 'p4.jpg').write_bytes((folder / 'photos' / 'p3.jpg').read_bytes())
    before = os.path.getmtime(out / 'p0.png')
    assert cli.main(argv + ['--skip-existing']) == 0
    assert 'mzsr-sr: 1 done, 0 failed, 9 skipped (output exists) in' in capsys.readouterr().out
    assert (out / 'p4.png').is_file() and os.path.getmtime(out / 'p0.png') == before
    # The metrics of the first run are kept beside the new image's.
    assert sorted(r['image'] for r in json.load(open(out / 'metrics.json'))['images']) == [
        f'p{i}.jpg' for i in range(10)]
