"""``mzsr-sr``: outputs, metrics, figures, kernels, weights, image formats and errors; also the image I/O it uses."""
import csv
import cv2
import json
import numpy as np
import os
import pytest
import scipy.io
import subprocess
import sys
import torch
from os import path as osp

from helpers import smooth_image
from mzsr_plugin import cli, model_zoo
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.data.degradations import degrade_np
from mzsr_plugin.data.kernels import isotropic_gaussian_kernel
from mzsr_plugin.utils.figures import plot_psnr_vs_steps
from mzsr_plugin.inference import list_inputs
from mzsr_plugin.utils.image_io import read_image, write_image

KERNEL = isotropic_gaussian_kernel(9, 1.0)
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def setup(tmp_path):
    """Two 12x12 LR images made from 24x24 GTs (one GT named <stem>.png, one <stem>_GT.png), a kernel and weights."""
    rng = np.random.default_rng(0)
    lr_dir, gt_dir = tmp_path / 'lr', tmp_path / 'gt'
    lr_dir.mkdir()
    gt_dir.mkdir()
    for i, gt_name in enumerate(['a.png', 'b_GT.png']):
        gt = smooth_image(rng, 24, 24)
        cv2.imwrite(str(gt_dir / gt_name), gt)
        lr = degrade_np(gt.astype(np.float64) / 255, KERNEL, 2)
        cv2.imwrite(str(lr_dir / f'{"ab"[i]}.png'), np.round(np.clip(lr, 0, 1) * 255).astype(np.uint8))
    np.save(tmp_path / 'k.npy', KERNEL)
    torch.manual_seed(0)
    net = MZSRNet(num_feat=8, num_conv=3)
    torch.save({'params': net.state_dict()}, tmp_path / 'w.pth')
    return tmp_path


def _run(setup, *extra, inputs=None):
    out = setup / 'out'
    argv = [*(inputs or [setup / 'lr']), '-o', out, '--weights', setup / 'w.pth', '--steps', '2', '--seed', '0', *extra]
    assert cli.main([str(a) for a in argv]) == 0
    return out


def _error(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main([str(a) for a in argv])
    message = info.value.code if isinstance(info.value.code, str) else capsys.readouterr().err
    assert info.value.code != 0
    return message


def test_outputs_metrics_and_comparison(setup):
    out = _run(setup, '--kernel', setup / 'k.npy', '--gt', setup / 'gt', '--compare')
    for stem in 'ab':
        sr = cv2.imread(str(out / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
        assert sr.shape == (24, 24, 3) and sr.dtype == np.uint8
        figure = out / f'{stem}_compare.png'
        assert figure.read_bytes()[:8] == PNG_SIGNATURE
        assert cv2.imread(str(figure)).shape[1] > 24 * 5
    with open(out / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['image'] for r in rows] == ['a.png', 'b.png']
    assert all(20 < float(r['psnr']) < 60 and 0 < float(r['ssim']) <= 1 for r in rows)
    assert all(float(r['psnr_bicubic']) > 0 and float(r['seconds']) > 0 and r['steps'] == '2' for r in rows)
    report = json.loads((out / 'metrics.json').read_text())
    assert report['mean']['psnr'] == pytest.approx(np.mean([float(r['psnr']) for r in rows]), abs=1e-3)
    assert report['config']['steps'] == 2 and report['images'][1]['output'] == 'b.png'


def test_kernel_is_required_and_missing_kernels_are_named(setup, capsys):
    base = [setup / 'lr', '-o', setup / 'out', '--weights', setup / 'w.pth']
    assert '--kernel' in _error(capsys, base)
    message = _error(capsys, base + ['--kernel-dir', setup])
    assert 'a.mat' in message and 'a_0.mat' in message and '--kernel' in message
    assert 'not a kernel spec' in _error(capsys, base + ['--kernel', setup / 'nothing.mat'])


def test_missing_weights_are_named(setup, capsys, monkeypatch):
    missing = setup / 'no_such_weights.pth'
    monkeypatch.setattr(model_zoo, 'WEIGHTS_DIR', str(setup / 'empty'))  # an install without the shipped weights
    message = _error(capsys, [setup / 'lr', '-o', setup / 'out', '--kernel', setup / 'k.npy'])
    assert 'no shipped MZSR model serves x2 with direct downsampling (shipped: none)' in message
    assert '--weights' in message and '--zssr' in message
    message = _error(capsys, [setup / 'lr', '-o', setup / 'out', '--kernel', setup / 'k.npy', '--weights', missing])
    assert str(missing) in message
    (setup / 'bad.pth').write_bytes(b'not a checkpoint')
    assert 'bad.pth' in _error(
        capsys, [setup / 'lr', '-o', setup / 'out', '--kernel', setup / 'k.npy', '--weights', setup / 'bad.pth'])


def test_grayscale_rgba_and_kernel_dir(setup):
    rng = np.random.default_rng(1)
    mixed = setup / 'mixed'
    mixed.mkdir()
    cv2.imwrite(str(mixed / 'gray.png'), smooth_image(rng, 12, 14)[..., 0])
    rgba = np.dstack([smooth_image(rng, 12, 12), np.full((12, 12), 40, np.uint8)])
    cv2.imwrite(str(mixed / 'rgba.png'), rgba)
    scipy.io.savemat(str(mixed / 'gray.mat'), {'kernel': KERNEL.astype(np.float64)})
    scipy.io.savemat(str(mixed / 'rgba_0.mat'), {'Kernel': KERNEL.astype(np.float64)})
    out = _run(setup, '--kernel-dir', mixed, inputs=[mixed])
    gray = cv2.imread(str(out / 'gray.png'), cv2.IMREAD_UNCHANGED)
    assert gray.shape == (24, 28)
    assert cv2.imread(str(out / 'rgba.png'), cv2.IMREAD_UNCHANGED).shape == (24, 24, 3)
    kernels = [r['kernel'] for r in csv.DictReader(open(out / 'metrics.csv'))]
    assert [osp.basename(k) for k in kernels] == ['gray.mat', 'rgba_0.mat']


def test_tiled_inference_matches_and_crop_budget_runs(setup):
    whole = _run(setup, '--kernel', 'g_d_2.0', '--steps', '0', '--tile', '0', inputs=[setup / 'lr' / 'a.png'])
    whole_img = cv2.imread(str(whole / 'a.png'))
    tiled = _run(setup, '--kernel', 'g_d_2.0', '--steps', '0', '--tile', '5', inputs=[setup / 'lr' / 'a.png'])
    assert np.array_equal(cv2.imread(str(tiled / 'a.png')), whole_img)
    cropped = _run(setup, '--kernel', 'g_d_2.0', '--crop-budget', '64', inputs=[setup / 'lr' / 'a.png'])
    assert cv2.imread(str(cropped / 'a.png')).shape == (24, 24, 3)


def test_zssr_output_name(setup):
    out = _run(
        setup,
        '--kernel',
        setup / 'k.npy',
        '--zssr',
        '--zssr-iters',
        '3',
        '--gt',
        setup / 'gt',
        inputs=[setup / 'lr' / 'b.png'])
    assert cv2.imread(str(out / 'b_zssr.png')).shape == (24, 24, 3)
    row = json.loads((out / 'metrics.json').read_text())['images'][0]
    assert row['method'] == 'ZSSR' and row['steps'] == 3 and row['psnr'] > 0


def test_bad_inputs_are_named(setup, capsys):
    base = ['-o', setup / 'out', '--weights', setup / 'w.pth', '--kernel', setup / 'k.npy']
    assert 'nope.png' in _error(capsys, [setup / 'nope.png'] + base)
    assert 'spec' in _error(capsys, [setup / 'lr', '--kernel', 'g_x_2'] + base[:4])
    assert '--lr' in _error(capsys, [setup / 'lr', '--lr', 'fast'] + base)
    twin = setup / 'twin'
    twin.mkdir()
    (twin / 'a.png').write_bytes((setup / 'lr' / 'a.png').read_bytes())
    assert "['a']" in _error(capsys, [setup / 'lr', twin] + base)
    wrong_gt = setup / 'wrong_gt'
    wrong_gt.mkdir()
    cv2.imwrite(str(wrong_gt / 'a.png'), np.zeros((48, 48, 3), np.uint8))
    message = _error(capsys, [setup / 'lr' / 'a.png', '--gt', wrong_gt] + base)
    assert 'a.png' in message and '48x48' in message and '24x24' in message


def test_help_runs_as_a_module():
    result = subprocess.run([sys.executable, '-m', 'mzsr_plugin.cli', '--help'],
                            capture_output=True,
                            text=True,
                            cwd=osp.dirname(osp.dirname(osp.abspath(__file__))))
    assert result.returncode == 0, result.stderr
    assert '--kernel-dir' in result.stdout and '--zssr' in result.stdout


def test_read_image_formats_and_errors(tmp_path):
    deep = (np.arange(6 * 5, dtype=np.uint16).reshape(6, 5) * 2000)
    cv2.imwrite(str(tmp_path / 'deep.png'), deep)
    img, gray = read_image(str(tmp_path / 'deep.png'))
    assert gray and img.shape == (6, 5, 3) and img.dtype == np.float32
    assert np.allclose(img[..., 1], deep / 65535.0)
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 2] = 255  # red
    cv2.imwrite(str(tmp_path / 'red.png'), bgr)
    img, gray = read_image(str(tmp_path / 'red.png'))
    assert not gray and img[0, 0].tolist() == [1.0, 0.0, 0.0]
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'corrupt.png').write_bytes(PNG_SIGNATURE + b'garbage')
    for name, error in [('missing.png', FileNotFoundError), ('empty.png', ValueError), ('corrupt.png', ValueError)]:
        with pytest.raises(error, match=name):
            read_image(str(tmp_path / name))


def test_write_image_rounds_as_the_official(tmp_path):
    img = np.full((2, 2, 3), 0.5 / 255 + 1e-6, np.float32)
    img[0, 0] = [-0.2, 1.3, 0.4]
    write_image(str(tmp_path / 'sub' / 'x.png'), img)
    back = cv2.imread(str(tmp_path / 'sub' / 'x.png'))[..., ::-1]
    assert back[0, 0].tolist() == [0, 255, 102] and back[1, 1].tolist() == [1, 1, 1]


def test_list_inputs(tmp_path):
    for name in ['b.PNG', 'a.jpg', 'notes.txt']:
        (tmp_path / name).write_bytes(b'x')
    assert [osp.basename(p) for p in list_inputs([str(tmp_path)])] == ['a.jpg', 'b.PNG']
    os.mkdir(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match='no images'):
        list_inputs([str(tmp_path / 'empty')])
    with pytest.raises(ValueError, match='notes.txt'):
        list_inputs([str(tmp_path / 'notes.txt')])


def test_psnr_vs_steps_plot(tmp_path):
    path = tmp_path / 'curve.png'
    plot_psnr_vs_steps({'MZSR': {0: 29.1, 1: 33.0, 10: 35.0}, 'ZSSR': 34.9, 'other': [(0, 28.0), (5, 30.0)]}, str(path))
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert cv2.imread(str(path)).shape == (400, 600, 3)
    with pytest.raises(ValueError, match='at least one'):
        plot_psnr_vs_steps({}, str(path))
