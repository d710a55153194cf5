"""DIV2K preparation (mzsr_plugin.data.prepare, scripts/prepare_div2k.py) against BasicSR's data-preparation rules."""
import cv2
import importlib.util
import lmdb
import numpy as np
import os
import re
import shutil
import subprocess
import sys
import torch
from os import path as osp

import pytest
from basicsr.utils import FileClient, imfrombytes

from conftest import REPO_ROOT, shared_path
from helpers import smooth_image
from mzsr_plugin.data.prepare import (check_lmdb, div2k_paths, extract_subimages, make_bicubic_lr, make_lmdb,
                                      prepare_div2k, sub_image_positions)
from mzsr_plugin.utils.matlab_resize import imresize_pt

SCRIPT = osp.join(REPO_ROOT, 'scripts', 'prepare_div2k.py')
HR_SIZES = {'0001': (520, 700), '0002': (720, 960)}
META_LINE = re.compile(r'^(\d{4}_s\d{3})\.png \((\d+),(\d+),(\d+)\) 1$')


def write_hr(root, sizes, seed=0):
    folder = div2k_paths(root)['images']
    os.makedirs(folder)
    rng = np.random.default_rng(seed)
    for stem, (h, w) in sizes.items():
        cv2.imwrite(osp.join(folder, f'{stem}.png'), smooth_image(rng, h, w))
    return folder


def expected_positions(length, crop, step, thresh=0):
    """BasicSR's rule, spelled out: range(0, length - crop + 1, step), plus a flush last window if needed."""
    positions = list(range(0, length - crop + 1, step))
    if length - (positions[-1] + crop) > thresh:
        positions.append(length - crop)
    return positions


@pytest.fixture(scope='module')
def div2k(tmp_path_factory):
    """HR-only DIV2K root prepared once with make_lr for scales 2 and 4, in two worker processes."""
    root = str(tmp_path_factory.mktemp('DIV2K'))
    write_hr(root, HR_SIZES)
    prepare_div2k(root, scales=(2, 4), make_lr=True, n_thread=2)
    return root


def test_sub_image_positions():
    assert sub_image_positions(520, 480, 240) == [0, 40]
    assert sub_image_positions(720, 480, 240) == [0, 240]  # flush already: no extra window
    assert sub_image_positions(960, 480, 240) == [0, 240, 480]
    assert sub_image_positions(500, 480, 240, thresh_size=30) == [0]  # 20 px left over <= thresh_size
    assert sub_image_positions(500, 480, 240, thresh_size=10) == [0, 20]
    with pytest.raises(ValueError, match='size 100 is smaller than crop_size 120'):
        sub_image_positions(100, 120, 60)


@pytest.mark.parametrize('scale', [None, 2, 4])
def test_sub_images_follow_basicsr_rule(div2k, scale):
    paths = div2k_paths(div2k, scale)
    factor = scale or 1
    crop, step = 480 // factor, 240 // factor
    expected = []
    for stem, (h, w) in HR_SIZES.items():
        source = cv2.imread(osp.join(paths['images'], f'{stem}x{scale}.png' if scale else f'{stem}.png'))
        assert source.shape[:2] == (h // factor, w // factor)
        index = 0
        for y in expected_positions(h // factor, crop, step):
            for x in expected_positions(w // factor, crop, step):
                index += 1
                name = f'{stem}_s{index:03d}.png'
                expected.append(name)
                sub_path = osp.join(paths['sub'], name)
                crop_img = source[y:y + crop, x:x + crop]
                np.testing.assert_array_equal(cv2.imread(sub_path), crop_img)
                # Same bytes as BasicSR's cv2.imwrite with PNG compression level 3.
                with open(sub_path, 'rb') as f:
                    assert f.read() == cv2.imencode('.png', crop_img, [cv2.IMWRITE_PNG_COMPRESSION, 3])[1].tobytes()
    assert sorted(os.listdir(paths['sub'])) == expected
    assert len(expected) == 4 + 6


@pytest.mark.parametrize('scale', [2, 4])
def test_make_lr_is_matlab_bicubic(div2k, scale):
    hr_folder, lr_folder = div2k_paths(div2k)['images'], div2k_paths(div2k, scale)['images']
    assert sorted(os.listdir(lr_folder)) == [f'{stem}x{scale}.png' for stem in sorted(HR_SIZES)]
    hr = cv2.imread(osp.join(hr_folder, '0001.png'))
    lr = cv2.imread(osp.join(lr_folder, f'0001x{scale}.png'))
    # imresize_pt applies the same MATLAB weights as dense matrices, in float64 here.
    ref = imresize_pt(torch.from_numpy(hr.transpose(2, 0, 1)).double() / 255, 1 / scale)
    ref = (ref.clamp(0, 1) * 255).round().numpy().transpose(1, 2, 0)
    assert lr.shape == ref.shape
    assert np.abs(lr.astype(np.int64) - ref).max() <= 1


@pytest.mark.parametrize('scale', [None, 2, 4])
def test_lmdb_layout_and_basicsr_reading(div2k, scale):
    paths = div2k_paths(div2k, scale)
    names = sorted(os.listdir(paths['sub']))
    with open(osp.join(paths['lmdb'], 'meta_info.txt')) as f:
        lines = f.read().splitlines()
    assert [line.split(' ')[0] for line in lines] == names
    # First: lmdb 3 refuses a second open of an LMDB in one process, and the FileClient below keeps it open.
    assert check_lmdb(paths['lmdb']) == []
    client = FileClient('lmdb', db_paths=[paths['lmdb']], client_keys=['gt'])
    for line in lines:
        match = META_LINE.match(line)
        assert match, line
        key = match[1]
        png = cv2.imread(osp.join(paths['sub'], f'{key}.png'))
        assert tuple(int(v) for v in match.groups()[1:]) == png.shape
        value = client.get(key, 'gt')
        np.testing.assert_array_equal(imfrombytes(value, float32=False), png)
        assert value == cv2.imencode('.png', png, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()


def test_rerun_needs_overwrite(tmp_path):
    root = str(tmp_path)
    write_hr(root, {'0001': (480, 480)})
    prepare_div2k(root, scales=(2, ), make_lr=True)
    paths = div2k_paths(root)
    with pytest.raises(FileExistsError, match=r'already exist: .*DIV2K_train_HR_sub, .*--overwrite'):
        prepare_div2k(root, scales=(2, ), make_lr=True)
    with pytest.raises(FileExistsError, match=r'DIV2K_train_HR_sub\.lmdb already exists.*--overwrite'):
        make_lmdb(paths['sub'], paths['lmdb'])
    with pytest.raises(FileExistsError, match=r'DIV2K_train_HR_sub already exists'):
        extract_subimages(paths['images'], paths['sub'])

    # A stale extra file must go: overwrite replaces the folders instead of adding to them.
    open(osp.join(paths['sub'], 'stale_s001.png'), 'wb').close()
    prepare_div2k(root, scales=(2, ), make_lr=True, overwrite=True)
    assert os.listdir(paths['sub']) == ['0001_s001.png']
    assert check_lmdb(paths['lmdb']) == []
    assert check_lmdb(div2k_paths(root, 2)['lmdb']) == []


def test_bad_inputs_are_named_and_leave_nothing_behind(tmp_path):
    root = str(tmp_path)
    with pytest.raises(FileNotFoundError, match='DIV2K_train_HR'):
        prepare_div2k(root, scales=(2, ))
    write_hr(root, {'0001': (480, 480)})
    with pytest.raises(FileNotFoundError, match=r'DIV2K_train_LR_bicubic/X2.*--make-lr'):
        prepare_div2k(root, scales=(2, ))
    with pytest.raises(ValueError, match=r'0001\.png is 480x480, not a multiple of scale 7'):
        make_bicubic_lr(div2k_paths(root)['images'], str(tmp_path / 'X7'), 7, n_thread=2)
    assert not osp.exists(tmp_path / 'X7')
    with pytest.raises(ValueError, match=r'0001\.png \(480x480\): size 480 is smaller than crop_size 500'):
        extract_subimages(div2k_paths(root)['images'], str(tmp_path / 'sub'), crop_size=500)
    assert not osp.exists(tmp_path / 'sub')
    with pytest.raises(ValueError, match=r'out\.db must end with "\.lmdb"'):
        make_lmdb(div2k_paths(root)['images'], str(tmp_path / 'out.db'))
    shutil.copy(osp.join(div2k_paths(root)['images'], '0001.png'), osp.join(div2k_paths(root)['images'], '0001x2.png'))
    with pytest.raises(ValueError, match=r'0001\.png and 0001x2\.png would both give sub-images 0001_s001\.png'):
        extract_subimages(div2k_paths(root)['images'], str(tmp_path / 'sub'), strip_suffix='x2')


def test_unpaired_lr_is_refused(tmp_path):
    root = str(tmp_path)
    write_hr(root, {'0001': (480, 720), '0002': (480, 480)})
    lr_folder = div2k_paths(root, 2)['images']
    os.makedirs(lr_folder)
    rng = np.random.default_rng(1)
    cv2.imwrite(osp.join(lr_folder, '0001x2.png'), smooth_image(rng, 240, 240))  # should be 240x360
    cv2.imwrite(osp.join(lr_folder, '0003x2.png'), smooth_image(rng, 240, 240))  # no HR 0003
    with pytest.raises(
            ValueError,
            match=r'do not pair up.*0001: HR is \(480, 720\) but LR x2 is \(240, 240\); '
            r'0002: only in HR; 0003: only in .*X2$'):
        prepare_div2k(root, scales=(2, ), steps=('extract', ))
    assert not osp.exists(div2k_paths(root, 2)['sub'])


def test_check_lmdb_reports_inconsistencies(div2k, tmp_path):
    lmdb_path = str(tmp_path / 'broken.lmdb')
    shutil.copytree(div2k_paths(div2k, 4)['lmdb'], lmdb_path)
    with lmdb.open(lmdb_path, map_size=1024**3) as env, env.begin(write=True) as txn:
        txn.put(b'0001_s002', b'not a png')
        txn.delete(b'0002_s006')
        txn.put(b'extra', cv2.imencode('.png', np.zeros((3, 5), np.uint8))[1].tobytes())
    with open(osp.join(lmdb_path, 'meta_info.txt'), 'a') as f:
        f.write('0001_s001.png (120,120,3) 1\nbad line\n')
    assert sorted(check_lmdb(lmdb_path)) == sorted([
        "key '0001_s002': the stored value does not decode as an image",
        "key 'extra' (3,5,1) is not listed in meta_info.txt",
        "meta_info.txt line 10: key '0002_s006' is not in the LMDB",
        "meta_info.txt line 11: key '0001_s001' is listed again (first on line 1)",
        "meta_info.txt line 12: 'bad line' is not \"name.png (h,w,c) level\"",
    ])
    with pytest.raises(FileNotFoundError, match='missing.lmdb does not exist'):
        check_lmdb(str(tmp_path / 'missing.lmdb'))


@pytest.mark.shared_data
def test_check_lmdb_on_basicsr_lmdbs():
    assert check_lmdb(shared_path('basicsr_lmdb', 'gt.lmdb')) == []
    # The known defect of BasicSR's test LMDB (see ../shared/data/README.md), and nothing else.
    assert check_lmdb(shared_path('basicsr_lmdb', 'lq.lmdb')) == [
        'meta_info.txt line 2: comic.png is listed as (80,60,3) but the stored image is (90,60,3)'
    ]


def load_script():
    spec = importlib.util.spec_from_file_location('prepare_div2k_script', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(tmp_path, capsys):
    help_text = subprocess.run([sys.executable, SCRIPT, '--help'], capture_output=True, text=True, check=True).stdout
    assert all(command in help_text for command in ('extract', 'lmdb', 'all', 'check'))

    root = str(tmp_path / 'DIV2K')
    write_hr(root, {'0001': (480, 720)})
    result = subprocess.run(
        [sys.executable, SCRIPT, 'all', '--root', root, '--scales', '2', '--make-lr', '--n-thread', '1'],
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for scale in (None, 2):
        paths = div2k_paths(root, scale)
        assert sorted(os.listdir(paths['sub'])) == ['0001_s001.png', '0001_s002.png']
        assert osp.isfile(osp.join(paths['lmdb'], 'data.mdb'))

    # The rest in-process: the same main() without another interpreter start.
    script = load_script()
    with pytest.raises(SystemExit) as exit_info:
        script.main(['lmdb', '--root', root, '--scales', '2'])
    assert exit_info.value.code == 1
    assert re.search(r'error: output\(s\) already exist: .*HR_sub\.lmdb.*--overwrite', capsys.readouterr().err)
    script.main(['lmdb', '--root', root, '--scales', '2', '--overwrite'])
    script.main(['check', div2k_paths(root)['lmdb'], div2k_paths(root, 2)['lmdb']])
    assert capsys.readouterr().out.count(': OK') == 2
