"""The demo and the benchmark scripts run end to end on tiny settings and report what they promise."""
import cv2
import json
import numpy as np
import re
import scipy.io
import subprocess
import sys
import torch
from os import path as osp

from mzsr_plugin import demo
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.data.degradations import degrade_np
from mzsr_plugin.data.kernels import div2krk_kernel
from mzsr_plugin.evaluation import file_sha256
from mzsr_plugin.model_zoo import MODEL_ZOO

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _tiny_weights(path):
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, path)
    return str(path)


def test_demo_prints_table_and_saves_figures(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / 'demo'
    demo.main(['--weights', _tiny_weights(tmp_path / 'w.pth'), '--out', str(out), '--image', 'chelsea',
               '--device', 'cpu'])
    printed = capsys.readouterr().out
    rows = re.findall(r'MZSR \((\d+) steps\)\s+([0-9.]+)\s+([0-9.]+)', printed)
    assert [int(r[0]) for r in rows] == list(demo.DEMO_STEPS)
    results = json.load(open(out / 'results.json'))
    assert set(results['mzsr']) == {str(s) for s in demo.DEMO_STEPS}
    assert 20 < results['bicubic']['psnr'] < 40
    assert results['weights_sha256'] == file_sha256(str(tmp_path / 'w.pth'))  # what the README block is checked by
    for name in ('chelsea_compare.png', 'chelsea_psnr_vs_steps.png'):
        with open(out / name, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_demo_default_weights_are_shipped():
    path = MODEL_ZOO['x2_direct'].path
    assert osp.isfile(path)
    params = torch.load(path, weights_only=True)['params']
    net = MZSRNet()
    net.load_state_dict(params)  # strict: the shipped file is the official 8x64 shape
    assert sum(p.numel() for p in net.parameters()) == 225091


def test_demo_case_is_degraded_with_the_demo_kernel():
    case = demo.skimage_case('chelsea')
    assert case.lr.shape[-2:] == (case.gt.shape[0] // 2, case.gt.shape[1] // 2)
    assert case.kernel.shape == (21, 21) and abs(float(case.kernel.sum()) - 1) < 1e-5
    assert case.downsample == 'direct'


def test_bench_meta_prints_all_variants():
    result = subprocess.run([sys.executable, osp.join(ROOT, 'scripts', 'bench_meta.py'), '--device', 'cpu',
                             '--tasks', '1', '--shots', '1', '--patch', '16', '--steps', '1', '--iters', '1'],
                            capture_output=True, text=True, timeout=300, env={'OMP_NUM_THREADS': '1',
                                                                              'PATH': '/usr/bin:/bin'})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r'^(reference|loop|batched) \((1st|2nd) order\)\s+([0-9.]+)\s+([0-9.]+)', result.stdout,
                      re.MULTILINE)
    assert len(rows) == 6 and all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)


def run_script(name, *argv):
    return subprocess.run([sys.executable, osp.join(ROOT, 'scripts', name), *map(str, argv)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT, env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})


def test_plot_adaptation_draws_figure_3(tmp_path, shared):
    official = shared('mzsr_official')
    weights = _tiny_weights(tmp_path / 'w.pth')
    result = run_script('plot_adaptation.py', '--weights', weights, '--pretrained', weights, '--zssr-psnr', 35.13,
                        '--official-dir', official,
                        '--out', tmp_path / 'figure3.png', '--device', 'cpu')
    assert result.returncode == 0, result.stderr[-2000:]
    numbers = json.loads((tmp_path / 'figure3.json').read_text())
    assert numbers['steps'] == list(range(11)) and numbers['zssr'] == 35.13
    assert abs(numbers['bicubic'] - 28.73) < 0.01  # paper Table 2, Set5 g^d_2.0 bicubic
    assert len(numbers['curves']['meta-trained']) == 11
    assert osp.getsize(tmp_path / 'figure3.png') > 10000


def test_bench_table2_layout(tmp_path, shared):
    benchmark = shared('benchmark')
    weights = _tiny_weights(tmp_path / 'w.pth')
    result = run_script('bench_table2.py', '--weights', weights, '--benchmark', benchmark, '--sets', 'Set5',
                        '--kernels', 'g_d_2.0,g_d_0.2',
                        '--out', tmp_path / 'table2.md', '--device', 'cpu')
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / 'table2.md').read_text()
    assert '| method | Set5 (5) g_d_2.0 | Set5 (5) g_d_0.2 |' in table
    assert '| ZSSR | not run | not run |' in table
    cells = json.loads((tmp_path / 'table2.json').read_text())['cells']
    assert abs(cells['Bicubic | Set5 (5) g_d_2.0'][0] - 28.73) < 0.01
    assert abs(cells['Bicubic | Set5 (5) g_d_0.2'][0] - 30.24) < 0.01
    assert all(f'MZSR({s}) | Set5 (5) g_d_2.0' in cells for s in (0, 1, 10))


def test_bench_table2_bicubic_table1_and_x4_layouts(tmp_path, shared):
    benchmark = shared('benchmark')
    weights = _tiny_weights(tmp_path / 'w.pth')
    result = run_script('bench_table2.py', '--weights', weights, '--benchmark', benchmark, '--sets', 'Set5,B100:2',
                        '--kernels', 'g_b_1.3', '--out', tmp_path / 't1.md', '--device', 'cpu')
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / 't1.md').read_text().startswith('x2 bicubic, weights')
    numbers = json.loads((tmp_path / 't1.json').read_text())
    assert (numbers['scale'], numbers['downsample']) == (2, 'bicubic')
    assert abs(numbers['cells']['Bicubic | Set5 (5) g_b_1.3'][0] - 30.54) < 0.01  # paper Table 2, g^b_1.3 bicubic
    assert 'MZSR(10) | B100 (2) g_b_1.3' in numbers['cells']
    result = run_script('bench_table2.py', '--weights', weights, '--benchmark', benchmark, '--sets', 'Set5',
                        '--kernels', 'g_d_2.0', '--scale', '4', '--out', tmp_path / 'x4.md', '--device', 'cpu')
    assert result.returncode == 0, result.stderr[-2000:]
    cells = json.loads((tmp_path / 'x4.json').read_text())['cells']
    # x4 loses more than x2 (28.73 dB) to the same blur.
    assert 20 < cells['Bicubic | Set5 (5) g_d_2.0'][0] < 27
    result = run_script('bench_table2.py', '--weights', weights, '--kernels', 'g_d_2.0,g_b_1.3')
    assert result.returncode != 0 and 'one table is one downsampling' in result.stderr


def test_bench_table2_zssr_cache_is_filled_then_reused(tmp_path, shared):
    benchmark = shared('benchmark')
    weights = _tiny_weights(tmp_path / 'w.pth')
    cache = tmp_path / 'zssr.json'
    args = ('bench_table2.py', '--weights', weights, '--benchmark', benchmark, '--sets', 'Set5', '--kernels', 'g_d_2.0',
            '--zssr-sets', 'Set5', '--zssr-iters', 2, '--zssr-cache', cache, '--out', tmp_path / 'table2.md',
            '--device', 'cpu')
    result = run_script(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    entries = json.loads(cache.read_text())
    assert sorted(entries) == [f'Set5/g_d_2.0/{n}/iters2/seed0' for n in ('baby', 'bird', 'butterfly', 'head', 'woman')]
    assert all(e['iterations'] == 2 and e['psnr'] > 20 and e['machine'].startswith('CPU') for e in entries.values())
    first = json.loads((tmp_path / 'table2.json').read_text())['cells']['ZSSR | Set5 (5) g_d_2.0'][0]
    assert abs(first - sum(e['psnr'] for e in entries.values()) / 5) < 1e-9
    # A rerun (new weights) takes ZSSR from the cache: no ZSSR runs, the cached numbers in the table.
    cache.write_text(json.dumps({k: dict(e, psnr=50.0, seconds=7.0) for k, e in entries.items()}))
    result = run_script(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'ZSSR Set5/' not in result.stdout
    assert '| ZSSR | 50.00 (7.00 s) |' in (tmp_path / 'table2.md').read_text()


def test_bench_table2_bad_zssr_cache(tmp_path, shared):
    cache = tmp_path / 'zssr.json'
    cache.write_text('[1, 2]')
    result = run_script('bench_table2.py', '--weights', _tiny_weights(tmp_path / 'w.pth'), '--benchmark',
                        shared('benchmark'), '--sets', 'Set5', '--zssr-sets', 'Set5', '--zssr-cache', cache)
    assert result.returncode != 0
    assert f'--zssr-cache {cache}: expected a JSON object keyed by case, got list' in result.stderr
    assert cache.read_text() == '[1, 2]'


def test_bench_kernel_div2krk_style_sets_noise_jpeg_and_a_real_div2krk_folder(tmp_path, shared):
    benchmark = shared('benchmark')
    # A DIV2KRK-layout folder made here: one HR image, its x2 LR and KernelGAN-named kernel file.
    folder = tmp_path / 'DIV2KRK'
    for sub in ('lr_x2', 'gt', 'gt_k_x2'):
        (folder / sub).mkdir(parents=True)
    hr = cv2.imread(osp.join(benchmark, 'Set5', 'baby.png'))[:128, :128]
    kernel = div2krk_kernel(2, np.random.default_rng(0))
    lr = degrade_np(hr[..., ::-1] / 255.0, kernel, 2)
    cv2.imwrite(str(folder / 'gt' / 'img_1_gt.png'), hr)
    cv2.imwrite(str(folder / 'lr_x2' / 'im_1.png'), np.round(lr[..., ::-1] * 255).astype(np.uint8))
    scipy.io.savemat(folder / 'gt_k_x2' / 'kernel_1.mat', {'Kernel': kernel})
    result = run_script('bench_kernel.py', '--weights', _tiny_weights(tmp_path / 'w.pth'), '--benchmark', benchmark,
                        '--sets', 'div2krk_x2,div2krk_x4', '--images', 1, '--noise', '0,5', '--jpeg', '0,85',
                        '--div2krk', folder, '--no-kernelgan', '--steps', 1, '--device', 'cpu', '--json',
                        tmp_path / 'k.json')
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / 'k.json').read_text())['summary']
    groups = {f'{base}{suffix}' for base in ('DIV2KRK-style x2', 'DIV2KRK-style x4', 'DIV2KRK x2')
              for suffix in ('', ' q85', ' n5', ' n5 q85')}
    assert set(summary) == groups | {'all'}
    for group in groups:
        s = summary[group]
        assert 15 < s['bicubic'] < 40 and 0 <= s['under_mzsr0'] <= 1 and s['worst_gap'] >= s['mzsr']['true'] - \
            s['mzsr']['blind'] - 1e-9
        # The default blind run reads the added noise (std 5) and only then differs from the clean-son run.
        if ' n5' in group and 'q85' not in group:
            assert 3.5 < s['noise_read'] < 6.5 and s['mzsr']['blind'] != s['mzsr']['learned']
        if ' n5' not in group:
            assert s['noise_read'] == 0 and s['mzsr']['blind'] == s['mzsr']['learned']
    # Noise costs bicubic PSNR; the table prints the per-set checks.
    assert summary['DIV2KRK-style x2 n5']['bicubic'] < summary['DIV2KRK-style x2']['bicubic']
    assert 'blind - true (mean)' in result.stdout and 'images under MZSR(0)' in result.stdout
    result = run_script('bench_kernel.py', '--div2krk', tmp_path / 'nowhere', '--sets', 'Set5_g_d_2.0')
    assert result.returncode != 0 and 'no lr_x2/im_<i>.png (the DIV2KRK layout' in result.stderr


def test_gallery_of_real_photos_shows_bicubic_mzsr_zssr_and_niqe(tmp_path):
    out = tmp_path / 'gallery'
    result = run_script('gallery_real.py', '--out', out, '--photos', 'astronaut,rocket,phone', '--crop', 96, '--view',
                        32, '--steps', 1, '--zssr-iters', 2, '--device', 'cpu')
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((out / 'gallery.json').read_text())['rows']
    assert [r['photo'] for r in rows] == ['astronaut', 'rocket', 'phone']
    assert rows[0]['jpeg_quality'] is None and rows[1]['jpeg_quality'] == 96  # rocket.jpg's own tables
    assert rows[2]['jpeg_quality'] == 85 and cv2.imread(str(out / 'lr' / 'phone.jpg')).shape == (300, 451, 3)
    for row in rows:
        assert row['lr_size'] == '96x96' and row['zssr_iterations'] == 2 and row['self_check'] in (
            'bicubic', 'MZSR(0)', 'MZSR(1)')
        assert all(0 < row[f'niqe_{m}'] < 100 for m in ('bicubic', 'mzsr', 'zssr'))
        # Five panels (LR, bicubic, MZSR, ZSSR, kernel) of 64 SR pixels (the 32-pixel LR view), each at least
        # 2.5 inches at 100 dpi, and the row of zoomed crops.
        figure = cv2.imread(str(out / f'{row["photo"]}.png'))
        assert figure.shape[1] >= 5 * 250 and figure.shape[0] > 2 * 250
    assert '| astronaut | 96x96 |' in result.stdout and 'NIQE blind ZSSR (2 it.)' in result.stdout
    assert cv2.imread(str(out / 'lr' / 'astronaut_crop.png')).shape == (96, 96, 3)  # the LR crop, pixels as they are
    bad = run_script('gallery_real.py', '--out', out, '--photos', 'lena')
    known = 'known: astronaut, chelsea, coffee, rocket, phone'
    assert bad.returncode != 0 and f"--photos: unknown photo 'lena'; {known}" in bad.stderr
    small = run_script('gallery_real.py', '--out', out, '--crop', 64)
    assert small.returncode != 0 and '--crop 64: the SR would be under 192 pixels a side' in small.stderr


def test_bench_photos_runs_blind_and_the_oracle_per_cell(tmp_path):
    import skimage.data
    hr = tmp_path / 'hr'
    hr.mkdir()
    for name in ('astronaut', 'coffee'):
        cv2.imwrite(str(hr / f'{name}.png'), getattr(skimage.data, name)()[100:196, 100:196, ::-1])
    result = run_script('bench_photos.py', '--hr', hr, '--images', 2, '--kernels', 'div2krk,bicubic', '--noise', '0,5',
                        '--jpeg', '0,85', '--scales', 2, '--steps', 1, '--unchecked', '--json', tmp_path / 'p.json')
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / 'p.json').read_text())['summary']
    assert list(summary) == [f'x2 {k} n{n} {q}' for k in ('div2krk', 'bicubic') for n in (0, 5) for q in ('png', 'q85')]
    for cell, s in summary.items():
        assert s['images'] == 2 and s['oracle'] is not None and 0 <= s['fallbacks'] <= 2
        assert abs(s['gain'] - (s['blind'] - s['bicubic'])) < 1e-9 and s['worst'] <= s['gain']
        assert s['check_time'] > 0
    # Noise under a JPEG is read (matched to the son), and a clean PNG reads clean.
    assert summary['x2 div2krk n5 q85']['noise_read'] > 2 and summary['x2 div2krk n0 png']['noise_read'] == 0
    assert 'blind-oracle' in result.stdout and 'x2 bicubic n5 q85' in result.stdout
    bad = run_script('bench_photos.py', '--hr', tmp_path / 'nowhere')
    assert bad.returncode != 0 and 'no HR images (*.png) in' in bad.stderr
