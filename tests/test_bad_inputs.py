"""Every bad input we know of, one row each: the error names the file or option and says what was expected.

Inputs that look odd but are fine (grayscale, RGBA and 16-bit images, images smaller than the kernel, MZSRNet
weights used at another scale, kernels that do not quite sum to 1) are handled, and their results are checked.

Each row prints its message (``pytest -rP tests/test_bad_inputs.py`` lists them all).
"""
import contextlib
import cv2
import io
import numpy as np
import pytest
import scipy.io
import torch

import mzsr_plugin  # noqa: F401  (registers the plugin)
from basicsr.archs.srresnet_arch import MSRResNet
from helpers import smooth_image
from mzsr_plugin import cli
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.data.bicubic_pair_dataset import MZSRBicubicPairDataset
from mzsr_plugin.data.kernel_test_dataset import MZSRKernelTestDataset
from mzsr_plugin.data.kernels import isotropic_gaussian_kernel, load_kernel
from mzsr_plugin.data.meta_task_dataset import MZSRMetaTaskDataset
from mzsr_plugin.models.meta_sr_model import MetaSRModel
from mzsr_plugin.utils.image_io import read_image

KERNEL = isotropic_gaussian_kernel(7, 1.5)
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class CliError(Exception):
    """``mzsr-sr`` stopped with an error; the message is what the user sees."""


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Every bad (and every odd but good) file, once for the module: ``files / name``."""
    root = tmp_path_factory.mktemp('bad_inputs')
    rng = np.random.default_rng(0)

    def folder(name, images):
        path = root / name
        path.mkdir()
        for file_name, content in images.items():
            if isinstance(content, bytes):
                (path / file_name).write_bytes(content)
            else:
                cv2.imwrite(str(path / file_name), content)
        return path

    cv2.imwrite(str(root / 'ok.png'), smooth_image(rng, 8, 10))
    (root / 'empty.png').write_bytes(b'')
    (root / 'corrupt.png').write_bytes(PNG_SIGNATURE + b'garbage')
    folder('hr_ok', {'a.png': smooth_image(rng, 24, 24)})
    folder('hr_empty', {'empty.png': b''})
    folder('hr_corrupt', {'corrupt.png': PNG_SIGNATURE + b'garbage'})
    folder('hr_tiny', {'tiny.png': smooth_image(rng, 1, 1)})
    folder('hr_small', {'small.png': smooth_image(rng, 10, 12)})
    (root / 'meta_info.txt').write_text('a.png (24,24,3)\ngone.png (24,24,3)\n')
    np.save(root / 'k3d.npy', np.ones((3, 3, 3)) / 27)
    np.save(root / 'knan.npy', np.array([[np.nan, 0.5], [0.25, 0.25]]))
    np.save(root / 'kneg.npy', np.array([[-0.1, 0.6], [0.25, 0.25]]))
    np.save(root / 'ksum2.npy', KERNEL * 2)
    scipy.io.savemat(str(root / 'kkey.mat'), {'k': KERNEL.astype(np.float64), 'blur': KERNEL.astype(np.float64)})
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, root / 'w.pth')
    torch.save({'params': MSRResNet(num_feat=8, num_block=1, upscale=2).state_dict()}, root / 'msr_x2.pth')
    return root


def run_cli(files, *argv):
    """Runs ``mzsr-sr`` on files of the fixture; argparse errors and ``SystemExit`` messages become CliError."""
    argv = [str(a) for a in argv]
    if '-o' not in argv:
        argv += ['-o', str(files / 'out')]
    if '--weights' not in argv:
        argv += ['--weights', str(files / 'w.pth')]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return cli.main(argv + ['--steps', '1'] if '--steps' not in argv else argv)
    except SystemExit as stop:
        if stop.code in (0, None):
            return 0
        raise CliError(stop.code if isinstance(stop.code, str) else stderr.getvalue().strip().splitlines()[-1])


def kernel_test_dataset(root, **opt):
    base = {'name': 'val', 'scale': 2, 'io_backend': {'type': 'disk'}, 'dataroot_gt': str(root), 'kernel': 'g_d_1.0'}
    return MZSRKernelTestDataset({**base, **opt})


def meta_task_dataset(root, **opt):
    base = {'name': 'tasks', 'dataroot_gt': str(root), 'io_backend': {'type': 'disk'}, 'scale': 2, 'gt_size': 16,
            'num_support': 1, 'num_query': 1, 'kernel_size': 7}
    return MZSRMetaTaskDataset({**base, **opt})


def bicubic_pair_dataset(root, **opt):
    base = {'name': 'pairs', 'dataroot_gt': str(root), 'io_backend': {'type': 'disk'}, 'scale': 2, 'gt_size': 16}
    return MZSRBicubicPairDataset({**base, **opt})


def model(files, network=None, weights='w.pth', scale=2, is_train=False, val_adapt=None, **train):
    """MetaSRModel for the test (``is_train`` False) or a meta-training stage; ``train`` updates the train section."""
    opt = {
        'name': 'bad_inputs', 'model_type': 'MetaSRModel', 'scale': scale, 'num_gpu': 0, 'is_train': is_train,
        'dist': False, 'rank': 0, 'world_size': 1,
        'network_g': network or {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3, 'scale': 2},
        'path': {'pretrain_network_g': str(files / weights), 'strict_load_g': True,
                 'models': str(files / 'models'), 'training_states': str(files / 'states')},
        'val': {'adapt': val_adapt or {}},
    }
    if is_train:
        opt['train'] = {'mode': 'meta', 'inner_lr': 1e-2, 'inner_steps': 1, 'optim_g': {'type': 'Adam', 'lr': 1e-4},
                        'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}, **train}
    return MetaSRModel(opt)


def model_test(files, lq_size=8, scale=2, **model_opt):
    """Builds the model and runs ``test()`` on one random LR with a kernel, as validation does."""
    net_model = model(files, scale=scale, **model_opt)
    net_model.feed_data({'lq': torch.rand(1, 3, lq_size, lq_size), 'kernel': torch.from_numpy(KERNEL)[None],
                         'scale': torch.tensor([scale]), 'downsample': ['direct']})
    net_model.test()
    return net_model.output


def missing_pretrained(files):
    net_model = model(files, is_train=True)
    net_model.opt['path']['pretrain_network_g'] = None
    MetaSRModel(net_model.opt)


# (id, exception, message pattern, call). Patterns pin the file or option and what was expected.
ROWS = [
    # ------------------------------------------------------------------------------------------- image files
    ('read_image: missing file', FileNotFoundError, r'image file .*missing\.png does not exist',
     lambda f: read_image(str(f / 'missing.png'))),
    ('read_image: empty file', ValueError, r'image file .*empty\.png is empty',
     lambda f: read_image(str(f / 'empty.png'))),
    ('read_image: corrupt file', ValueError,
     r'image file .*corrupt\.png cannot be decoded \(corrupt, or not a PNG, JPEG, BMP, TIFF, WebP, PPM, HEIC/HEIF '
     r'or AVIF image\)',
     lambda f: read_image(str(f / 'corrupt.png'))),
    ('mzsr-sr: missing image', CliError, r'^mzsr-sr: error: input .*missing\.png does not exist$',
     lambda f: run_cli(f, f / 'missing.png', '--kernel', 'g_d_2.0')),
    ('mzsr-sr: empty image', CliError, r'^mzsr-sr: error: image file .*empty\.png is empty$',
     lambda f: run_cli(f, f / 'empty.png', '--kernel', 'g_d_2.0')),
    ('mzsr-sr: corrupt image', CliError, r'^mzsr-sr: error: image file .*corrupt\.png cannot be decoded',
     lambda f: run_cli(f, f / 'corrupt.png', '--kernel', 'g_d_2.0')),
    ('mzsr-sr: not an image', CliError, r'w\.pth is not an image file; expected one of \.png, \.jpg',
     lambda f: run_cli(f, f / 'w.pth', '--kernel', 'g_d_2.0')),
    ('MZSRKernelTestDataset: empty image', ValueError, r'image file .*empty\.png is empty',
     lambda f: kernel_test_dataset(f / 'hr_empty')[0]),
    ('MZSRKernelTestDataset: corrupt image', ValueError, r'image file .*corrupt\.png cannot be decoded \(corrupt',
     lambda f: kernel_test_dataset(f / 'hr_corrupt')[0]),
    ('MZSRKernelTestDataset: missing folder', FileNotFoundError, r'dataroot_gt: .*nowhere does not exist',
     lambda f: kernel_test_dataset(f / 'nowhere')),
    ('MZSRMetaTaskDataset: empty image', ValueError, r'image file .*empty\.png is empty',
     lambda f: meta_task_dataset(f / 'hr_empty')[0]),
    ('MZSRMetaTaskDataset: corrupt image', ValueError, r'image file .*corrupt\.png cannot be decoded',
     lambda f: meta_task_dataset(f / 'hr_corrupt')[0]),
    ('MZSRMetaTaskDataset: meta_info_file lists a missing image', FileNotFoundError,
     r'meta_info_file .*meta_info\.txt lists 1 image\(s\) that are not in dataroot_gt .*hr_ok, e\.g\. gone\.png',
     lambda f: meta_task_dataset(f / 'hr_ok', meta_info_file=str(f / 'meta_info.txt'))),
    ('MZSRBicubicPairDataset: empty image', ValueError, r'image file .*empty\.png is empty',
     lambda f: bicubic_pair_dataset(f / 'hr_empty')[0]),
    ('MZSRBicubicPairDataset: corrupt image', ValueError, r'image file .*corrupt\.png cannot be decoded',
     lambda f: bicubic_pair_dataset(f / 'hr_corrupt')[0]),
    # ------------------------------------------------------------------------------------------------- sizes
    ('MZSRKernelTestDataset: HR smaller than the scale', ValueError,
     r'tiny\.png: HR image 1x1 is smaller than the scale 2; it has no x2 LR image',
     lambda f: kernel_test_dataset(f / 'hr_tiny')[0]),
    ('MZSRMetaTaskDataset: image smaller than gt_size', ValueError,
     r'small\.png: image 12x10 is smaller than the patch size 16 \(gt_size 16\); remove it or lower gt_size',
     lambda f: meta_task_dataset(f / 'hr_small')[0]),
    ('MZSRMetaTaskDataset: gt_size smaller than the largest scale', ValueError,
     r'tasks: gt_size 3 is smaller than the largest scale 4',
     lambda f: meta_task_dataset(f / 'hr_ok', scale=None, scale_list=[2, 4], gt_size=3)),
    ('MZSRMetaTaskDataset: gt_size not a multiple of the scale', ValueError,
     r'tasks: gt_size 15 must be a multiple of scale 2', lambda f: meta_task_dataset(f / 'hr_ok', gt_size=15)),
    ('MZSRBicubicPairDataset: image smaller than gt_size', ValueError,
     r'small\.png: image 12x10 is smaller than gt_size 16', lambda f: bicubic_pair_dataset(f / 'hr_small')[0]),
    ('MZSRBicubicPairDataset: gt_size not a multiple of the scale', ValueError,
     r'pairs: gt_size 15 must be a multiple of scale 2', lambda f: bicubic_pair_dataset(f / 'hr_ok', gt_size=15)),
    # ------------------------------------------------------------------------------------------------- scale
    ('mzsr-sr: --scale 0', CliError, r'--scale must be >= 1 and --steps >= 0, got 0 and 1',
     lambda f: run_cli(f, f / 'ok.png', '--kernel', 'g_d_2.0', '--scale', '0')),
    ('MZSRKernelTestDataset: scale not an integer', ValueError,
     r"dataset 'val' \(MZSRKernelTestDataset\): scale must be a whole number >= 1 or ~; got 2\.5",
     lambda f: kernel_test_dataset(f / 'hr_ok', scale=2.5)),
    # ----------------------------------------------------------------------------------------------- kernels
    ('mzsr-sr: kernel not 2-D', CliError, r'k3d\.npy: a kernel must be a 2-D array, got shape \(3, 3, 3\)',
     lambda f: run_cli(f, f / 'ok.png', '--kernel', f / 'k3d.npy')),
    ('mzsr-sr: kernel with NaN', CliError, r'knan\.npy: the kernel has non-finite values \(NaN or inf\)',
     lambda f: run_cli(f, f / 'ok.png', '--kernel', f / 'knan.npy')),
    ('mzsr-sr: kernel with negative values', CliError,
     r'kneg\.npy: the kernel has negative values \(min -0\.1\); a blur kernel must be >= 0',
     lambda f: run_cli(f, f / 'ok.png', '--kernel', f / 'kneg.npy')),
    ('mzsr-sr: .mat kernel with a wrong key', CliError,
     r'kkey\.mat: expected a variable named "kernel" \(MZSR\) or "Kernel" \(ZSSR/KernelGAN\), found \[\'blur\', '
     r'\'k\'\]', lambda f: run_cli(f, f / 'ok.png', '--kernel', f / 'kkey.mat')),
    ('mzsr-sr: missing kernel file', CliError,
     r'--kernel .*nothing\.mat: no such kernel file \(and not a kernel spec either\)$',
     lambda f: run_cli(f, f / 'ok.png', '--kernel', f / 'nothing.mat')),
    ('mzsr-sr: unknown kernel spec', CliError,
     r'--kernel g_q_2\.0: no such file, and not a kernel spec either \(unknown kernel spec "g_q_2\.0"; accepted '
     r'forms: g_d_<variance>', lambda f: run_cli(f, f / 'ok.png', '--kernel', 'g_q_2.0')),
    ('mzsr-sr: --kernel-dir without the kernel', CliError,
     r'no kernel for .*ok\.png in --kernel-dir .*: looked for ok\.mat, ok_0\.mat, ok_kernel\.mat, ok\.npy',
     lambda f: run_cli(f, f / 'ok.png', '--kernel-dir', f / 'hr_ok')),
    ('mzsr-sr: missing --kernel', CliError,
     r'a blur kernel is required \(MZSR adapts to it; there is no bicubic fallback\): pass --kernel FILE',
     lambda f: run_cli(f, f / 'ok.png')),
    ('mzsr-sr: spec and --downsample disagree', CliError,
     r'--kernel g_d_2\.0 means direct downsampling but --downsample bicubic was given; drop one of them',
     lambda f: run_cli(f, f / 'ok.png', '--kernel', 'g_d_2.0', '--downsample', 'bicubic')),
    ('MZSRKernelTestDataset: kernel_file with NaN', ValueError,
     r'knan\.npy: the kernel has non-finite values', lambda f: kernel_test_dataset(
         f / 'hr_ok', kernel=None, kernel_file=str(f / 'knan.npy'))),
    ('MZSRKernelTestDataset: missing kernel_file', FileNotFoundError, r'kernel file .*absent\.mat does not exist',
     lambda f: kernel_test_dataset(f / 'hr_ok', kernel=None, kernel_file=str(f / 'absent.mat'))),
    # ----------------------------------------------------------------------------------------------- options
    ('train.mode unknown', ValueError, r"train: mode must be one of 'pretrain', 'meta'; got 'maml'",
     lambda f: model(f, is_train=True, mode='maml')),
    ('train.mode meta without path.pretrain_network_g', ValueError,
     r'train\.mode: meta starts from pretrained weights: set path\.pretrain_network_g', missing_pretrained),
    ('train.inner_steps 0', ValueError, r'train: inner_steps must be a whole number >= 1; got 0',
     lambda f: model(f, is_train=True, inner_steps=0)),
    ('train.meta_engine unknown', ValueError,
     r"train: meta_engine must be one of 'auto', 'loop', 'batched'; got 'fast'",
     lambda f: model(f, is_train=True, meta_engine='fast')),
    ('val.adapt.steps < 0 (at test time)', ValueError, r'val\.adapt: steps must be a whole number >= 0; got -1',
     lambda f: model_test(f, val_adapt={'steps': -1})),
    ('val.adapt.steps not a number', ValueError, r"val\.adapt: steps must be a whole number >= 0; got '10'",
     lambda f: model_test(f, val_adapt={'steps': '10'})),
    ('val.adapt.mode unknown', ValueError, r"val\.adapt: mode must be one of 'mzsr', 'zssr'; got 'maml'",
     lambda f: model_test(f, val_adapt={'mode': 'maml'})),
    ('val.adapt.lr unknown preset', ValueError,
     r"val\.adapt: lr must be a preset \(bicubic, direct_x2, direct_x4, multiscale, learned\), a number > 0, a "
     r"list of numbers > 0, or ~; got 'fast'",
     lambda f: model_test(f, val_adapt={'steps': 1, 'lr': 'fast'})),
    ('dataset kernel spec unknown', ValueError, r'unknown kernel spec "gauss"; accepted forms',
     lambda f: kernel_test_dataset(f / 'hr_ok', kernel='gauss')),
    ('dataset kernel: random with given LR', ValueError, r'val: kernel: random needs dataroot_gt without dataroot_lq',
     lambda f: kernel_test_dataset(f / 'hr_ok', kernel='random', dataroot_lq=str(f / 'hr_ok'))),
    ('MZSRMetaTaskDataset: io_backend.type unknown', ValueError,
     r"io_backend\.type must be one of \['disk', 'lmdb', 'memcached'\], got 'Disk'",
     lambda f: meta_task_dataset(f / 'hr_ok', io_backend={'type': 'Disk'})),
    ('MZSRKernelTestDataset: io_backend.type unknown', ValueError,
     r"io_backend\.type must be one of \['disk', 'lmdb', 'memcached'\], got 'hdf5'",
     lambda f: kernel_test_dataset(f / 'hr_ok', io_backend={'type': 'hdf5'})),
    ('MZSRBicubicPairDataset: io_backend.type missing', ValueError,
     r"io_backend\.type must be one of \['disk', 'lmdb', 'memcached'\], got None",
     lambda f: bicubic_pair_dataset(f / 'hr_ok', io_backend={})),
    ('MZSRMetaTaskDataset: downsample unknown', ValueError,
     r"dataset 'tasks' \(MZSRMetaTaskDataset\): downsample must be one of 'direct', 'bicubic'; got 'area'",
     lambda f: meta_task_dataset(f / 'hr_ok', downsample='area')),
    ('MZSRKernelTestDataset: downsample unknown', ValueError,
     r"dataset 'val' \(MZSRKernelTestDataset\): downsample must be one of 'direct', 'bicubic'; got 'area'",
     lambda f: kernel_test_dataset(f / 'hr_ok', downsample='area')),
    ('mzsr-sr: --downsample unknown', CliError,
     r"argument --downsample: invalid choice: 'area' \(choose from '?direct'?, '?bicubic'?\)",
     lambda f: run_cli(f, f / 'ok.png', '--kernel', 'g_d_2.0', '--downsample', 'area')),
    ('mzsr-sr: --steps -1', CliError, r'--scale must be >= 1 and --steps >= 0, got 2 and -1',
     lambda f: run_cli(f, f / 'ok.png', '--kernel', 'g_d_2.0', '--steps', '-1')),
    ('mzsr-sr: --lr unknown', CliError, r"--lr 'fast': expected a preset \(bicubic, direct_x2",
     lambda f: run_cli(f, f / 'ok.png', '--kernel', 'g_d_2.0', '--lr', 'fast')),
    ('mzsr-sr: --weights of another arch', CliError,
     r'--weights .*msr_x2\.pth: cannot load MZSRNet weights from it \(no MZSRNet weights \(expected keys '
     r'convs\.<i>\.weight under "params"\)\)',
     lambda f: run_cli(f, f / 'ok.png', '--kernel', 'g_d_2.0', '--weights', f / 'msr_x2.pth')),
    ('mzsr-sr: --weights missing', CliError, r'--weights .*absent\.pth: file not found',
     lambda f: run_cli(f, f / 'ok.png', '--kernel', 'g_d_2.0', '--weights', f / 'absent.pth')),
]


@pytest.mark.parametrize('name, error, pattern, call', ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_named(files, name, error, pattern, call):
    with pytest.raises(error, match=pattern) as info:
        call(files)
    print(f'{name}: {info.value}')


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
def test_cuda_device_without_cuda(files):
    with pytest.raises(CliError, match=r'--device cuda: CUDA is not available in this PyTorch build or machine; '
                       r'use --device cpu') as info:
        run_cli(files, files / 'ok.png', '--kernel', 'g_d_2.0', '--device', 'cuda')
    print(f'mzsr-sr: --device cuda without CUDA: {info.value}')


def test_bad_val_adapt_option_is_refused_when_the_model_is_built(files):
    with pytest.raises(ValueError, match=r'val\.adapt: steps must be a whole number >= 0; got -1'):
        model(files, val_adapt={'steps': -1})


@pytest.mark.parametrize('steps', [0, 2])
def test_fixed_scale_arch_at_another_scale_is_refused(files, steps):
    network = {'type': 'MSRResNet', 'num_feat': 8, 'num_block': 1, 'upscale': 2}
    with pytest.raises(ValueError, match=r'MSRResNet gives x2 output but scale is 4'):
        model_test(files, scale=4, network=network, weights='msr_x2.pth', val_adapt={'steps': steps})


# ------------------------------------------------------------------------------------------ handled, not errors
def test_kernel_not_summing_to_one_is_normalised_with_a_warning(files):
    with pytest.warns(UserWarning, match=r'ksum2\.npy: the kernel sums to 2, not 1; it is normalised to sum 1') as w:
        kernel = load_kernel(str(files / 'ksum2.npy'))
    np.testing.assert_allclose(kernel, KERNEL, rtol=1e-6)
    print(f'kernel summing to 2 (warning): {w[0].message}')
    with pytest.warns(UserWarning, match=r'ksum2\.npy: the kernel sums to 2'):
        item = kernel_test_dataset(files / 'hr_ok', kernel=None, kernel_file=str(files / 'ksum2.npy'))[0]
    assert float(item['kernel'].sum()) == pytest.approx(1.0, abs=1e-6)
    with pytest.warns(UserWarning, match=r'ksum2\.npy: the kernel sums to 2'):
        assert run_cli(files, files / 'ok.png', '--kernel', files / 'ksum2.npy', '-o', files / 'out_sum2') == 0


def _write(path, img):
    assert cv2.imwrite(str(path), img)
    return path


def test_gray_rgba_and_16_bit_images_are_read(files, tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    bgra = np.dstack([np.full((6, 8), 10, np.uint8), np.full((6, 8), 20, np.uint8), np.full((6, 8), 30, np.uint8),
                      np.zeros((6, 8), np.uint8)])
    deep = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300)
    img, is_gray = read_image(str(_write(tmp_path / 'gray.png', gray)))
    assert is_gray and img.shape == (6, 8, 3) and np.array_equal(img[..., 0], gray / np.float32(255))
    img, is_gray = read_image(str(_write(tmp_path / 'rgba.png', bgra)))
    assert not is_gray and img.shape == (6, 8, 3)
    assert img[0, 0].tolist() == pytest.approx([30 / 255, 20 / 255, 10 / 255])  # BGRA stored: RGB, alpha dropped
    img, is_gray = read_image(str(_write(tmp_path / 'deep.png', deep)))
    assert is_gray and np.allclose(img[..., 2], deep / 65535.0)
    # Datasets: 16-bit keeps its precision (not cut to 8 bit), alpha is dropped, gray becomes 3 equal channels.
    hr = tmp_path / 'hr'
    hr.mkdir()
    _write(hr / 'a_gray.png', np.kron(gray, np.ones((3, 2), np.uint8)))  # 18x16
    _write(hr / 'b_rgba.png', np.kron(bgra, np.ones((3, 2, 1), np.uint8)))
    _write(hr / 'c_deep.png', np.dstack([np.full((18, 16), 257 * 3 + 1, np.uint16)] * 3))
    items = [bicubic_pair_dataset(hr, use_hflip=False, use_rot=False)[i] for i in range(3)]
    assert all(item['gt'].shape == (3, 16, 16) and item['lq'].shape == (3, 8, 8) for item in items)
    assert torch.equal(items[0]['gt'][0], items[0]['gt'][2])
    assert items[1]['gt'][:, 0, 0].tolist() == pytest.approx([30 / 255, 20 / 255, 10 / 255])
    assert float(items[2]['gt'][0, 0, 0]) == pytest.approx(772 / 65535, abs=1e-7)  # 8 bit would give 3 / 255
    tasks = meta_task_dataset(hr)[2]
    assert tasks['support_gt'].shape == (1, 3, 16, 16)
    assert float(tasks['support_gt'].max()) == pytest.approx(772 / 65535, abs=1e-7)


def test_images_smaller_than_the_kernel_or_the_scale_are_super_resolved(files, tmp_path):
    # 3x3 and 1x1 LR with a 21x21 kernel: the border rule mirrors as often as needed, as scipy's correlate; the
    # 1x1 LR is smaller than the scale too (its son is 1x1 as well): adaptation runs, degenerate but harmless.
    out = tmp_path / 'out'
    for size in (3, 1):
        lr = _write(tmp_path / f'lr{size}.png', smooth_image(np.random.default_rng(size), size, size))
        assert run_cli(files, lr, '--kernel', 'g_d_2.0', '--steps', '2', '-o', out) == 0
        sr = read_image(str(out / f'lr{size}.png'))[0]
        assert sr.shape == (2 * size, 2 * size, 3)
    assert model_test(files, lq_size=1, val_adapt={'steps': 2}).shape == (1, 3, 2, 2)


def test_mzsrnet_weights_of_one_scale_run_at_another(files, tmp_path):
    # MZSRNet's scale only sets its bicubic upsampling: x2 weights at x3 is legitimate (the paper's multi-scale
    # model is one set of weights), so the CLI and the model accept it.
    assert run_cli(files, files / 'ok.png', '--kernel', 'g_d_2.0', '--scale', '3', '-o', tmp_path) == 0
    assert cv2.imread(str(tmp_path / 'ok.png')).shape == (24, 30, 3)
    assert model_test(files, lq_size=5, scale=3, val_adapt={'steps': 1}).shape == (1, 3, 15, 15)
