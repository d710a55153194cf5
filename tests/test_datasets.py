"""MZSRMetaTaskDataset and MZSRKernelTestDataset: items, backends, multi-scale padding, kernels, errors."""
import cv2
import glob
import numpy as np
import os
import pytest
import random
import scipy.io
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.transforms import mod_crop
from basicsr.utils.lmdb_util import LmdbMaker
from conftest import shared_path
from helpers import smooth_image, write_images
from os import path as osp

from mzsr_plugin.data.degradations import degrade_np, degrade_pt
from mzsr_plugin.data.kernel_test_dataset import MZSRKernelTestDataset
from mzsr_plugin.data.kernels import isotropic_gaussian_kernel, load_kernel, random_gaussian_kernel, save_kernel
from mzsr_plugin.data.meta_task_dataset import MZSRMetaTaskDataset, crop_task_to_scale


def meta_opt(root, **kwargs):
    opt = {
        'name': 'tasks',
        'type': 'MZSRMetaTaskDataset',
        'phase': 'train',
        'dataroot_gt': str(root),
        'io_backend': {
            'type': 'disk'
        },
        'scale': 2,
        'gt_size': 32,
        'num_support': 3,
        'num_query': 2,
        'use_hflip': True,
        'use_rot': True,
        'batch_size_per_gpu': 2,
        'num_worker_per_gpu': 0
    }
    opt.update(kwargs)
    return opt


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)


@pytest.fixture
def hr_dir(tmp_path):
    write_images(str(tmp_path / 'hr'), 3, 40, 44)
    return tmp_path / 'hr'


def make_lmdb(folder, lmdb_path):
    maker = LmdbMaker(str(lmdb_path))
    for path in sorted(glob.glob(osp.join(str(folder), '*.png'))):
        img = cv2.imread(path)
        _, buffer = cv2.imencode('.png', img)
        maker.put(buffer.tobytes(), osp.splitext(osp.basename(path))[0], img.shape)
    maker.close()
    return str(lmdb_path)


def test_meta_task_item(hr_dir):
    dataset = build_dataset(meta_opt(hr_dir))
    assert isinstance(dataset, MZSRMetaTaskDataset) and len(dataset) == 3
    seed_all(0)
    item = dataset[1]
    assert item['support_lq'].shape == (3, 3, 16, 16) and item['support_gt'].shape == (3, 3, 32, 32)
    assert item['query_lq'].shape == (2, 3, 16, 16) and item['query_gt'].shape == (2, 3, 32, 32)
    for key in ('support_lq', 'support_gt', 'query_lq', 'query_gt', 'kernel'):
        assert item[key].dtype == torch.float32, key
    assert item['kernel'].shape == (15, 15) and abs(float(item['kernel'].sum()) - 1) < 1e-5
    assert item['scale'].dtype == torch.int64 and int(item['scale']) == 2
    assert item['gt_path'].endswith('img001.png') and item['downsample'] == 'direct'
    assert 0 <= float(item['support_gt'].min()) and float(item['support_gt'].max()) <= 1
    # LR is the task's kernel applied to its own HR patches (float, not rounded by default)
    expected = degrade_pt(item['query_gt'], item['kernel'], 2)
    torch.testing.assert_close(item['query_lq'], expected, atol=1e-6, rtol=0)
    assert not torch.equal(item['query_lq'] * 255, (item['query_lq'] * 255).round())


def test_meta_task_is_reproducible_and_varies(hr_dir):
    dataset = MZSRMetaTaskDataset(meta_opt(hr_dir))
    seed_all(3)
    first = dataset[0]
    seed_all(3)
    again = dataset[0]
    for key in ('support_lq', 'query_gt', 'kernel'):
        assert torch.equal(first[key], again[key]), key
    other = dataset[0]
    assert not torch.equal(first['kernel'], other['kernel'])


def test_meta_task_options(hr_dir):
    seed_all(0)
    item = MZSRMetaTaskDataset(meta_opt(hr_dir, round_lq=True, noise_level=0.02, kernel_size=11, isotropic_prob=1.0))[0]
    lq = item['support_lq']
    assert torch.equal(lq * 255, (lq * 255).round()) and 0 <= float(lq.min()) and float(lq.max()) <= 1
    assert item['kernel'].shape == (11, 11)
    torch.testing.assert_close(item['kernel'], item['kernel'].t())  # isotropic
    noise = lq - degrade_pt(item['support_gt'], item['kernel'], 2)
    assert 0.01 < float(noise.std()) < 0.03
    bicubic = MZSRMetaTaskDataset(meta_opt(hr_dir, downsample='bicubic', scale=4))[0]
    torch.testing.assert_close(
        bicubic['support_lq'], degrade_pt(bicubic['support_gt'], bicubic['kernel'], 4, 'bicubic'), atol=1e-6, rtol=0)


def test_meta_task_multi_scale_padding(hr_dir):
    dataset = MZSRMetaTaskDataset(meta_opt(hr_dir, scale=None, scale_list=[2, 3, 4], gt_size=30))
    seen = set()
    seed_all(0)
    for _ in range(30):
        item = dataset[0]
        scale = int(item['scale'])
        seen.add(scale)
        assert item['support_lq'].shape == (3, 3, 15, 15) and item['support_gt'].shape == (3, 3, 30, 30)
        lq, gt = crop_task_to_scale(item['support_lq'], item['support_gt'], scale, 30)
        assert lq.shape[-1] == 30 // scale and gt.shape[-1] == (30 // scale) * scale
        torch.testing.assert_close(lq, degrade_pt(gt, item['kernel'], scale), atol=1e-6, rtol=0)
        # the padding is zero
        assert float(item['support_lq'].abs().sum()) == pytest.approx(float(lq.abs().sum()), rel=1e-6)
        assert float(item['support_gt'].abs().sum()) == pytest.approx(float(gt.abs().sum()), rel=1e-6)
    assert seen == {2, 3, 4}
    # batched: (B, S, C, H, W) tensors cut the same way
    lq, gt = crop_task_to_scale(torch.zeros(2, 3, 3, 15, 15), torch.zeros(2, 3, 3, 30, 30), 4, 30)
    assert lq.shape == (2, 3, 3, 7, 7) and gt.shape == (2, 3, 3, 28, 28)


def test_meta_task_dataloader_batches_mixed_scales(hr_dir):
    opt = meta_opt(hr_dir, scale=None, scale_list=[2, 4], gt_size=32)
    loader = build_dataloader(build_dataset(opt), opt, num_gpu=0, dist=False, sampler=None, seed=0)
    seed_all(1)
    batch = next(iter(loader))
    assert batch['support_lq'].shape == (2, 3, 3, 16, 16) and batch['query_gt'].shape == (2, 2, 3, 32, 32)
    assert batch['kernel'].shape == (2, 15, 15) and batch['scale'].shape == (2, )
    assert len(batch['gt_path']) == 2 and batch['downsample'] == ['direct', 'direct']


def test_meta_task_lmdb_and_meta_info(hr_dir, tmp_path):
    lmdb_path = make_lmdb(hr_dir, tmp_path / 'hr.lmdb')
    dataset = MZSRMetaTaskDataset(meta_opt(lmdb_path, io_backend={'type': 'lmdb'}))
    assert dataset.paths == ['img000', 'img001', 'img002']
    seed_all(0)
    from_lmdb = dataset[2]
    seed_all(0)
    from_disk = MZSRMetaTaskDataset(meta_opt(hr_dir))[2]
    assert torch.equal(from_lmdb['support_gt'], from_disk['support_gt']) and from_lmdb['gt_path'] == 'img002'
    meta_info = tmp_path / 'meta_info.txt'
    meta_info.write_text('img002.png (40,44,3)\nimg000.png (40,44,3)\n')
    dataset = MZSRMetaTaskDataset(meta_opt(hr_dir, meta_info_file=str(meta_info)))
    assert [osp.basename(p) for p in dataset.paths] == ['img000.png', 'img002.png']


def test_meta_task_errors(hr_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match='dataroot_gt: .*nowhere does not exist'):
        MZSRMetaTaskDataset(meta_opt(tmp_path / 'nowhere'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no images found'):
        MZSRMetaTaskDataset(meta_opt(tmp_path / 'empty'))
    with pytest.raises(ValueError, match='gt_size 30 must be a multiple of scale 4'):
        MZSRMetaTaskDataset(meta_opt(hr_dir, scale=4, gt_size=30))
    with pytest.raises(ValueError, match="downsample must be one of 'direct', 'bicubic'; got 'nearest'"):
        MZSRMetaTaskDataset(meta_opt(hr_dir, downsample='nearest'))
    with pytest.raises(ValueError, match='positive integers'):
        MZSRMetaTaskDataset(meta_opt(hr_dir, scale=None))
    cv2.imwrite(str(hr_dir / 'small.png'), smooth_image(np.random.default_rng(0), 20, 50))
    dataset = MZSRMetaTaskDataset(meta_opt(hr_dir, num_support=1, num_query=1))
    with pytest.raises(ValueError, match=r'small\.png: image 50x20 is smaller than the patch size 32'):
        dataset[dataset.paths.index(str(hr_dir / 'small.png'))]


def kernel_test_opt(root, **kwargs):
    """Options of MZSRKernelTestDataset; a None value removes the option."""
    opt = {'name': 'test', 'type': 'MZSRKernelTestDataset', 'phase': 'val', 'io_backend': {'type': 'disk'}, 'scale': 2}
    opt.update(dataroot_gt=None if root is None else str(root), kernel='g_d_2.0')
    opt.update(kwargs)
    return {k: v for k, v in opt.items() if v is not None}


def test_kernel_test_from_hr(tmp_path):
    write_images(str(tmp_path / 'hr'), 2, 35, 41)
    dataset = build_dataset(kernel_test_opt(tmp_path / 'hr'))
    assert isinstance(dataset, MZSRKernelTestDataset)
    item = dataset[1]
    assert item['gt'].shape == (3, 34, 40) and item['lq'].shape == (3, 17, 20)
    assert item['kernel'].shape == (21, 21) and item['downsample'] == 'direct' and item['scale'] == 2
    assert item['lq_path'] == item['gt_path'] and item['lq_path'].endswith('img001.png')
    hr = mod_crop(cv2.imread(item['gt_path']) / 255., 2)
    expected = np.clip(np.round(degrade_np(hr, isotropic_gaussian_kernel(21, 2.0), 2) * 255), 0, 255) / 255
    np.testing.assert_allclose(item['lq'].numpy().transpose(1, 2, 0)[..., ::-1], expected, atol=1e-7)
    bicubic = MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', kernel='g_b_1.3', scale=3, round_lq=False))[0]
    assert bicubic['downsample'] == 'bicubic' and bicubic['lq'].shape == (3, 11, 13)
    assert bicubic['gt'].shape == (3, 33, 39)
    assert not torch.equal(bicubic['lq'] * 255, (bicubic['lq'] * 255).round())


def test_kernel_test_random_and_file_kernels(tmp_path):
    write_images(str(tmp_path / 'hr'), 2, 32, 32)
    opt = kernel_test_opt(tmp_path / 'hr', kernel='random', kernel_seed=7)
    first, second = MZSRKernelTestDataset(opt), MZSRKernelTestDataset(opt)
    assert torch.equal(first[0]['kernel'], second[0]['kernel']) and torch.equal(first[1]['lq'], second[1]['lq'])
    assert not torch.equal(first[0]['kernel'], first[1]['kernel'])
    expected = random_gaussian_kernel(2, 15, rng=np.random.default_rng((7, 1)))
    np.testing.assert_array_equal(first[1]['kernel'].numpy(), expected)
    save_kernel(str(tmp_path / 'k.npy'), expected)
    item = MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', kernel=None, kernel_file=str(tmp_path / 'k.npy')))[1]
    assert torch.equal(item['lq'], first[1]['lq'])
    noisy = MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', noise_level=0.05))
    assert torch.equal(noisy[0]['lq'], noisy[0]['lq'])  # seeded noise
    assert float((noisy[0]['lq'] - MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr'))[0]['lq']).std()) > 0.03


def test_kernel_test_from_hr_lmdb(tmp_path):
    write_images(str(tmp_path / 'hr'), 2, 30, 30)
    lmdb_path = make_lmdb(tmp_path / 'hr', tmp_path / 'hr.lmdb')
    from_lmdb = MZSRKernelTestDataset(kernel_test_opt(lmdb_path, io_backend={'type': 'lmdb'}))[1]
    from_disk = MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr'))[1]
    assert from_lmdb['gt_path'] == 'img001' and torch.equal(from_lmdb['lq'], from_disk['lq'])


def write_lq_folder(tmp_path):
    lq_dir = tmp_path / 'lq'
    write_images(str(lq_dir), 4, 12, 14)
    kernels = [isotropic_gaussian_kernel(15, v) for v in (1.0, 2.0, 3.0, 4.0)]
    kdir = tmp_path / 'kernels'
    kdir.mkdir()
    save_kernel(str(kdir / 'img000.mat'), kernels[0])
    scipy.io.savemat(str(kdir / 'img001_0.mat'), {'Kernel': kernels[1]})
    save_kernel(str(kdir / 'img002.npy'), kernels[2])
    save_kernel(str(kdir / 'img003.png'), kernels[3])
    return lq_dir, kdir, kernels


def test_kernel_test_from_lq_with_kernel_dir(tmp_path):
    lq_dir, kdir, kernels = write_lq_folder(tmp_path)
    opt = kernel_test_opt(None, dataroot_lq=str(lq_dir), kernel=None, kernel_dir=str(kdir), downsample='bicubic')
    dataset = MZSRKernelTestDataset(opt)
    for index, kernel in enumerate(kernels):
        item = dataset[index]
        assert item['lq'].shape == (3, 12, 14) and 'gt' not in item and 'gt_path' not in item
        assert item['downsample'] == 'bicubic'
        np.testing.assert_allclose(item['kernel'].numpy(), kernel, atol=2e-5)
    np.testing.assert_allclose(
        dataset[0]['lq'].numpy().transpose(1, 2, 0)[..., ::-1],
        cv2.imread(str(lq_dir / 'img000.png')) / 255.,
        atol=1e-7)
    (kdir / 'img002.npy').unlink()
    # The same lookup as mzsr-sr --kernel-dir (mzsr_plugin.inference.KERNEL_PATTERNS).
    tried = (r'looked for img002\.mat, img002_0\.mat, img002_kernel\.mat, img002\.npy, img002_0\.npy, img002\.png, '
             r'img002_0\.png')
    with pytest.raises(FileNotFoundError, match=r'no kernel for .*img002\.png in kernel_dir .*' + tried):
        dataset[2]


def test_kernel_test_from_lq_with_gt_and_loader(tmp_path):
    lq_dir, _, kernels = write_lq_folder(tmp_path)
    write_images(str(tmp_path / 'gt'), 4, 24, 28, prefix='img')
    for path in glob.glob(str(tmp_path / 'gt' / '*.png')):
        stem = osp.splitext(path)[0]
        os.rename(path, f'{stem}_GT.png')
    save_kernel(str(tmp_path / 'k.mat'), kernels[1])
    opt = kernel_test_opt(
        tmp_path / 'gt',
        dataroot_lq=str(lq_dir),
        kernel=None,
        kernel_file=str(tmp_path / 'k.mat'),
        gt_filename_tmpl='{}_GT')
    loader = build_dataloader(build_dataset(opt), opt)
    batch = next(iter(loader))
    assert batch['lq'].shape == (1, 3, 12, 14) and batch['gt'].shape == (1, 3, 24, 28)
    assert batch['gt_path'][0].endswith('img000_GT.png') and batch['kernel'].shape == (1, 15, 15)
    assert batch['downsample'] == ['direct'] and int(batch['scale'][0]) == 2
    with pytest.raises(FileNotFoundError, match=r'no GT for .*img000\.png: .*img000\.png does not exist'):
        MZSRKernelTestDataset(dict(opt, gt_filename_tmpl='{}'))[0]


def test_kernel_test_reads_gray_rgba_and_16_bit(tmp_path):
    lq_dir = tmp_path / 'lq'
    lq_dir.mkdir()
    gray = np.arange(120, dtype=np.uint8).reshape(10, 12)
    cv2.imwrite(str(lq_dir / 'a_gray.png'), gray)
    rgba = np.dstack([np.full((10, 12, 3), 200, np.uint8), np.zeros((10, 12), np.uint8)])
    cv2.imwrite(str(lq_dir / 'b_rgba.png'), rgba)
    cv2.imwrite(str(lq_dir / 'c_16bit.png'), np.full((10, 12, 3), 65535, np.uint16))
    opt = kernel_test_opt(None, dataroot_lq=str(lq_dir), kernel='g_d_1.0')
    dataset = MZSRKernelTestDataset(opt)
    items = [dataset[i] for i in range(3)]
    assert all(item['lq'].shape == (3, 10, 12) for item in items)
    np.testing.assert_allclose(items[0]['lq'][1].numpy(), gray / 255., atol=1e-7)
    assert torch.equal(items[0]['lq'][0], items[0]['lq'][2])
    np.testing.assert_allclose(items[1]['lq'].numpy(), 200 / 255., atol=1e-7)
    assert torch.equal(items[2]['lq'], torch.ones(3, 10, 12))


def test_kernel_test_option_errors(tmp_path):
    write_images(str(tmp_path / 'hr'), 1, 20, 20)
    with pytest.raises(ValueError, match='set exactly one of kernel'):
        MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', kernel_file='k.mat'))
    with pytest.raises(ValueError, match='set exactly one of kernel'):
        MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', kernel=None))
    with pytest.raises(ValueError, match='unknown kernel spec "gauss"'):
        MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', kernel='gauss'))
    with pytest.raises(ValueError, match='kernel: random needs dataroot_gt without dataroot_lq'):
        MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', dataroot_lq=str(tmp_path / 'hr'), kernel='random'))
    with pytest.raises(ValueError, match='kernel_dir needs dataroot_lq'):
        MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', kernel=None, kernel_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match='kernel file .*missing.mat does not exist'):
        MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', kernel=None, kernel_file=str(tmp_path / 'missing.mat')))
    with pytest.raises(ValueError, match='kernel spec "g_d_2.0" implies downsample direct'):
        MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', downsample='bicubic'))
    with pytest.raises(ValueError, match='given LR .* is used as it is'):
        MZSRKernelTestDataset(kernel_test_opt(None, dataroot_lq=str(tmp_path / 'hr'), noise_level=0.1))
    with pytest.raises(ValueError, match='option scale is missing'):
        MZSRKernelTestDataset(kernel_test_opt(tmp_path / 'hr', scale=None))


def test_kernel_test_reproduces_official_g20_inputs():
    gt_dir = shared_path('mzsr_official', 'GT', 'Set5')
    lr_dir = shared_path('mzsr_official', 'Input', 'g20', 'Set5')
    kernel_file = shared_path('mzsr_official', 'Input', 'g20', 'kernel.mat')
    made = MZSRKernelTestDataset(kernel_test_opt(gt_dir))
    given = MZSRKernelTestDataset(
        kernel_test_opt(gt_dir, dataroot_lq=lr_dir, kernel=None, kernel_file=kernel_file, gt_filename_tmpl='{}_GT'))
    assert len(made) == len(given) == 5
    np.testing.assert_allclose(made[0]['kernel'].numpy(), load_kernel(kernel_file), atol=1e-8)
    for index in range(5):
        ours, official = made[index], given[index]
        assert osp.basename(ours['gt_path']) == osp.basename(official['gt_path'])
        assert torch.equal(ours['gt'], official['gt'])
        assert torch.equal((ours['lq'] * 255).round(), (official['lq'] * 255).round()), official['lq_path']
