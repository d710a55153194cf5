"""Meta-test through BasicSR's test pipeline as users run it: stock basicsr/test.py, ``python -m mzsr_plugin.test``,
the shipped weights on the official inputs, ZSSR, and multi-scale meta-training through ``python -m mzsr_plugin.train``.

The option files of options/ are the starting point of every run here (roots, network size and step counts swapped
for tiny ones), so these tests also cover what users launch.
"""
import cv2
import glob
import json
import numpy as np
import os
import pytest
import re
import shutil
import subprocess
import sys
import torch
import yaml
from os import path as osp

import basicsr
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.transforms import mod_crop
from basicsr.models import build_model
from basicsr.utils import tensor2img
from basicsr.utils.options import ordered_yaml
from conftest import shared_path
from helpers import write_images, write_options
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.evaluation import evaluate_adaptation, images_from_dataset, load_mzsr_weights, mean_psnr
from mzsr_plugin.metrics.official_metric import calculate_mzsr_psnr

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
STOCK_TEST = osp.join(osp.dirname(basicsr.__file__), 'test.py')
TINY_NET = {'type': 'MZSRNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_conv': 3, 'scale': 2}
CURVE = re.compile(r'(\S+): mean PSNR after 0\.\.(\d+) adaptation steps: ([-0-9. ]+)')
# Measured by scripts/bench_adapt.py (H200) for the shipped weights on the official Set5 g^d_2.0 inputs.
BENCH_STEPS = (0, 10)


pytestmark = pytest.mark.usefixtures('one_thread')


def option_file(name):
    """An options/ file as plain dicts (BasicSR's loader gives OrderedDicts, which yaml.safe_dump refuses)."""
    with open(osp.join(ROOT, 'options', name)) as f:
        return json.loads(json.dumps(yaml.load(f, Loader=ordered_yaml()[0])))


def tiny_weights(path, seed=0):
    """A small MZSRNet whose output starts near bicubic, as meta-trained weights do (small residual)."""
    torch.manual_seed(seed)
    net = MZSRNet(**{k: v for k, v in TINY_NET.items() if k != 'type'})
    with torch.no_grad():
        net.convs[-1].weight.mul_(0.1)
        net.convs[-1].bias.zero_()
    torch.save({'params': net.state_dict()}, path)
    return net.eval()


def mzsr_test_options(hr, weights, steps, name='mzsr_tiny_test'):
    """options/mzsr_test_x2.yml with one dataset (Set5 g^d_2.0) on ``hr``, the tiny net and ``steps`` steps."""
    opt = option_file('mzsr_test_x2.yml')
    dataset = opt['datasets']['test_02']
    assert dataset['kernel'] == 'g_d_2.0'
    dataset['dataroot_gt'] = str(hr)
    opt.update(name=name, num_gpu=0, datasets={'test_02': dataset}, network_g=dict(TINY_NET))
    opt['path']['pretrain_network_g'] = str(weights)
    opt['val']['adapt']['steps'] = steps
    return opt


def run(args, cwd):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def read_test_log(results):
    logs = sorted(glob.glob(osp.join(results, 'test_*.log')))
    assert logs, f'no test log in {results}'
    return open(logs[-1]).read()


def metric(log, name):
    values = [float(v) for v in re.findall(rf'# {name}: ([-0-9.]+)', log)]
    assert len(values) == 1, log[-2000:]
    return values[0]


def curve(log):
    found = CURVE.findall(log)
    assert len(found) == 1, log[-2000:]
    _, last, values = found[0]
    values = [float(v) for v in values.split()]
    assert len(values) == int(last) + 1
    return values


def read_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def test_stock_basicsr_test_adapts_saves_images_and_logs_the_curve(tmp_path):
    # A BasicSR checkout as users have it: its basicsr/test.py, run as a script, no edit.
    checkout = tmp_path / 'BasicSR'
    (checkout / 'basicsr').mkdir(parents=True)
    shutil.copy(STOCK_TEST, checkout / 'basicsr' / 'test.py')
    hr = tmp_path / 'hr'
    paths = write_images(hr, 2, 40, 52, seed=5) + write_images(hr, 1, 37, 45, seed=6, prefix='odd')
    tiny_weights(tmp_path / 'tiny.pth')
    opt = mzsr_test_options(hr, tmp_path / 'tiny.pth', steps=3)
    opt_file = write_options(tmp_path / 'test.yml', opt)

    run([str(checkout / 'basicsr' / 'test.py'), '-opt', str(opt_file)], cwd=checkout)

    results = checkout / 'results' / opt['name']
    for path in paths:
        stem = osp.splitext(osp.basename(path))[0]
        sr = read_rgb(results / 'visualization' / 'Set5_gd20' / f'{stem}_{opt["name"]}.png')
        gt = mod_crop(read_rgb(path), 2)  # odd sizes: the dataset compares with the mod-cropped GT
        assert sr.shape == gt.shape
    log = read_test_log(results)
    values = curve(log)
    assert len(values) == 4 and all(10 < v < 60 for v in values)
    assert 10 < metric(log, 'psnr') < 60 and 0 < metric(log, 'ssim') <= 1
    assert 'Set5_gd20: mean PSNR after 0..3 adaptation steps' in log


def test_plugin_test_entrypoint_steps_0_is_plain_inference_and_weights_reset_per_image(tmp_path):
    hr = tmp_path / 'hr'
    write_images(hr, 1, 40, 52, seed=7, prefix='a')
    shutil.copy(hr / 'a000.png', hr / 'b000.png')  # the same image twice: identical results iff weights reset
    write_images(hr, 1, 44, 36, seed=8, prefix='c')
    net = tiny_weights(tmp_path / 'tiny.pth')
    opt = mzsr_test_options(hr, tmp_path / 'tiny.pth', steps=3, name='steps3')
    opt_file = write_options(tmp_path / 'test.yml', opt)
    work = tmp_path / 'work'
    work.mkdir()

    # The documented override: the same file, no adaptation.
    run(['-m', 'mzsr_plugin.test', '-opt', str(opt_file), '--force_yml', 'val:adapt:steps=0', 'name=steps0'], work)
    run(['-m', 'mzsr_plugin.test', '-opt', str(opt_file)], work)

    # Plain inference, computed here from the same dataset: what steps 0 must give.
    dataset_opt = dict(opt['datasets']['test_02'], phase='test', scale=2)
    dataset = build_dataset(dataset_opt)
    plain, plain_psnr = {}, []
    with torch.no_grad():
        for item in dataset:
            stem = osp.splitext(osp.basename(item['lq_path']))[0]
            plain[stem] = tensor2img(net(item['lq'][None]))
            plain_psnr.append(calculate_mzsr_psnr(plain[stem], tensor2img(item['gt']), crop_border=2))

    def outputs(name):
        folder = work / 'results' / name / 'visualization' / 'Set5_gd20'
        return {stem: read_rgb(folder / f'{stem}_{name}.png') for stem in ('a000', 'b000', 'c000')}

    log0, log3 = read_test_log(work / 'results' / 'steps0'), read_test_log(work / 'results' / 'steps3')
    assert abs(metric(log0, 'psnr') - np.mean(plain_psnr)) < 2e-3
    assert not CURVE.search(log0)  # nothing adapted, nothing to log
    for stem, img in outputs('steps0').items():
        assert np.abs(img.astype(int) - plain[stem].astype(int)).max() <= 1  # float noise across processes only

    values = curve(log3)
    assert abs(values[0] - np.mean(plain_psnr)) < 2e-3  # adaptation starts from the loaded weights
    assert abs(metric(log3, 'psnr') - values[-1]) < 2e-3  # the saved SR is the one after the last step
    assert values[-1] > values[0] + 1e-3  # son -> LR steps with the true kernel help a near-bicubic net
    adapted, unadapted = outputs('steps3'), outputs('steps0')
    assert np.array_equal(adapted['a000'], adapted['b000'])  # image b starts from the loaded weights again
    assert not np.array_equal(adapted['a000'], unadapted['a000'])


@pytest.mark.slow
@pytest.mark.shared_data
def test_shipped_weights_on_official_set5_g20_match_the_benchmark(tmp_path):
    official = shared_path('mzsr_official')
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # the one heavy test: ~95 s on 2 busy cores
    opt = option_file('mzsr_test_x2.yml')
    dataset_opt = {
        'name': 'Set5_g20_official', 'type': 'MZSRKernelTestDataset', 'phase': 'test', 'scale': 2,
        'io_backend': {'type': 'disk'}, 'dataroot_lq': osp.join(official, 'Input', 'g20', 'Set5'),
        'dataroot_gt': osp.join(official, 'GT', 'Set5'), 'gt_filename_tmpl': '{}_GT',
        'kernel_file': osp.join(official, 'Input', 'g20', 'kernel.mat')
    }
    num_gpu = torch.cuda.device_count()
    opt.update(datasets={'test_01': dataset_opt}, is_train=False, dist=False, rank=0, world_size=1, num_gpu=num_gpu)
    opt['path'].update(pretrain_network_g=osp.join(ROOT, opt['path']['pretrain_network_g']),
                       visualization=str(tmp_path / 'visualization'))
    opt['val']['adapt']['log_psnr'] = False  # one SR per step would double the time; 0 steps is run on its own
    model = build_model(opt)
    loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=num_gpu, dist=False, sampler=None)
    psnr = {}
    for steps in BENCH_STEPS:
        model.opt['val']['adapt']['steps'] = steps
        model.validation(loader, current_iter='bench', tb_logger=None, save_img=False)
        psnr[steps] = model.metric_results['psnr']
    # The benchmarks' own pipeline (evaluation.evaluate_adaptation, as bench_adapt.py and the campaign measure) on
    # the same inputs: the stock test path must report the same numbers for whatever weights are shipped.
    images = images_from_dataset(build_dataset(dataset_opt))
    net = load_mzsr_weights(opt['path']['pretrain_network_g'], 2)
    expected = mean_psnr(evaluate_adaptation(net, images, BENCH_STEPS))
    for steps in BENCH_STEPS:
        assert abs(psnr[steps] - expected[steps]) <= 0.01, (psnr, expected)
    assert psnr[10] > psnr[0]


def test_zssr_option_file_runs_the_baseline_through_the_test_pipeline(tmp_path):
    hr = tmp_path / 'hr'
    write_images(hr, 1, 40, 52, seed=9, prefix='a')
    shutil.copy(hr / 'a000.png', hr / 'b000.png')  # seeded per image: the same image gives the same SR
    opt = option_file('zssr_test_x2.yml')
    assert opt['val']['adapt']['mode'] == 'zssr' and opt['path']['pretrain_network_g'] is None
    dataset = opt['datasets']['test_02']
    assert dataset['kernel'] == 'g_d_2.0'
    dataset['dataroot_gt'] = str(hr)
    opt.update(name='zssr_tiny', num_gpu=0, datasets={'test_02': dataset})
    opt['val']['adapt']['zssr_iters'] = 20
    opt_file = write_options(tmp_path / 'zssr.yml', opt)
    work = tmp_path / 'work'
    work.mkdir()

    run(['-m', 'mzsr_plugin.test', '-opt', str(opt_file)], work)

    log = read_test_log(work / 'results' / 'zssr_tiny')
    assert 15 < metric(log, 'psnr') < 60
    folder = work / 'results' / 'zssr_tiny' / 'visualization' / 'Set5_gd20'
    a, b = read_rgb(folder / 'a000_zssr_tiny.png'), read_rgb(folder / 'b000_zssr_tiny.png')
    assert a.shape == (40, 52, 3) and np.array_equal(a, b)


def test_multiscale_meta_training_runs_through_the_plugin_entrypoint(tmp_path):
    opt = option_file('mzsr_meta_multiscale.yml')
    train = opt['datasets']['train']
    assert train['scale_list'] == [2, 3, 4]
    hr = tmp_path / 'hr'
    write_images(hr, 4, 48, 56, seed=10)
    train.update(dataroot_gt=str(hr), io_backend={'type': 'disk'}, gt_size=24, num_support=2, num_query=2,
                 batch_size_per_gpu=4, num_worker_per_gpu=0, dataset_enlarge_ratio=1)
    tiny_weights(tmp_path / 'pretrained.pth')
    opt.update(name='multiscale_smoke', num_gpu=0, datasets={'train': train}, network_g=dict(TINY_NET))
    opt.pop('val')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'pretrained.pth')
    opt['train']['total_iter'] = 2
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    opt_file = write_options(tmp_path / 'meta.yml', opt)
    work = tmp_path / 'work'
    work.mkdir()

    run(['-m', 'mzsr_plugin.train', '-opt', str(opt_file)], work)

    models = work / 'experiments' / 'multiscale_smoke' / 'models'
    assert sorted(p.name for p in models.iterdir()) == ['net_g_2.pth', 'net_g_latest.pth']
    trained = torch.load(models / 'net_g_latest.pth', weights_only=True)['params']
    start = torch.load(tmp_path / 'pretrained.pth', weights_only=True)['params']
    assert trained['convs.0.weight'].shape == (8, 3, 3, 3)
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # the meta-updates were applied
    log = open(glob.glob(str(work / 'experiments' / 'multiscale_smoke' / 'train_*.log'))[0]).read()
    assert 'l_meta' in log and 'End of training' in log
