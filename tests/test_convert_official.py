"""The TensorFlow checkpoint reader and the conversion of the official MZSR weights.

The synthetic tests write small TF V2 bundles with the minimal writer below, so they need no shared data and no
TensorFlow. The official-checkpoint tests reproduce the README's numbers with this protocol, which is what matches:
LR and SR both rounded to uint8, PSNR on the Y channel of MATLAB's ``rgb2ycbcr`` for uint8 images (so Y itself is
rounded to integers), 2 px shaved. BasicSR's ``calculate_psnr(test_y_channel=True)`` keeps Y unrounded and gives
about 0.07 dB more on Set5 bicubic (37.56 dB), outside the README's 37.49.
"""
import cv2
import glob
import importlib.util
import numpy as np
import os
import pytest
import struct
import subprocess
import sys
import torch
from conftest import REPO_ROOT, shared_path
from os import path as osp

from basicsr.utils.matlab_functions import imresize
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.utils.tf_checkpoint import (TFCheckpointReader, convert_mzsr_checkpoint, crc32c, decode_varint,
                                             mask_crc32c, parse_block, parse_protobuf, read_tf_checkpoint)

SCRIPT = osp.join(REPO_ROOT, 'scripts', 'convert_official_mzsr.py')
DTYPE_ENUMS = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3, np.dtype(np.int64): 9}


# ---------------------------------------------------------------- a minimal TF V2 bundle writer
def _varint(value):
    value &= (1 << 64) - 1  # negative ints as 64-bit two's complement, like protobuf
    out = bytearray()
    while value > 0x7f:
        out.append(value & 0x7f | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number, value, fixed32=False):
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    if fixed32:
        return _varint(number << 3 | 5) + struct.pack('<I', value)
    return _varint(number << 3) + _varint(value)


def _block(items, restart_interval=3):
    out, restarts, previous = bytearray(), [], b''
    for i, (key, value) in enumerate(items):
        shared = 0 if i % restart_interval == 0 else len(osp.commonprefix([previous, key]))
        if shared == 0:
            restarts.append(len(out))
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        previous = key
    return bytes(out) + struct.pack(f'<{len(restarts) + 1}I', *restarts, len(restarts))


def write_bundle(prefix, tensors, compression=0):
    """Writes ``tensors`` (name -> ndarray) as PREFIX.index + PREFIX.data-00000-of-00001, in two data blocks."""
    data = bytearray()
    items = [(b'', _field(1, 1))]  # BundleHeaderProto: num_shards = 1, little endian
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder('<')).tobytes()
        shape = b''.join(_field(2, _field(1, dim)) for dim in tensors[name].shape)
        entry = (_field(1, DTYPE_ENUMS[tensors[name].dtype]) + _field(2, shape) + _field(4, len(data))
                 + _field(5, len(raw)) + _field(6, mask_crc32c(crc32c(raw)), fixed32=True))
        items.append((name.encode(), entry))
        data += raw
    index = bytearray()

    def put(contents):
        handle = _varint(len(index)) + _varint(len(contents))
        trailer = bytes([compression])
        index.extend(contents + trailer + struct.pack('<I', mask_crc32c(crc32c(contents + trailer))))
        return handle

    half = len(items) // 2
    index_items = [(chunk[-1][0], put(_block(chunk))) for chunk in (items[:half], items[half:])]
    meta_handle = put(_block([]))
    index_handle = put(_block(index_items, restart_interval=1))
    index += (meta_handle + index_handle).ljust(40, b'\0') + struct.pack('<Q', 0xdb4775248b80fb57)
    with open(prefix + '.index', 'wb') as f:
        f.write(index)
    with open(prefix + '.data-00000-of-00001', 'wb') as f:
        f.write(data)
    return prefix


def mzsr_tensors(rng, num_feat=4, num_conv=3, extra=True):
    """The tensors of an MZSR-like checkpoint (HWIO kernels), with Adam slots and bookkeeping when ``extra``."""
    channels = [3] + [num_feat] * (num_conv - 1) + [3]
    tensors = {}
    for i, (c_in, c_out) in enumerate(zip(channels, channels[1:]), 1):
        tensors[f'MODEL/conv{i}/kernel'] = rng.standard_normal((3, 3, c_in, c_out)).astype(np.float32)
        tensors[f'MODEL/conv{i}/bias'] = rng.standard_normal(c_out).astype(np.float32)
    if extra:
        for name in list(tensors):
            tensors[name + '/Adam'] = np.zeros_like(tensors[name])
            tensors[name + '/Adam_1'] = np.ones_like(tensors[name])
        tensors['beta1_power'] = np.array(0.9, np.float32)
        tensors['global_step'] = np.array(1234, np.int64)
        tensors['stop_grad'] = np.array(1.0, np.float32)
    return tensors


def load_script():
    spec = importlib.util.spec_from_file_location('convert_official_mzsr', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- format primitives
def test_crc32c_and_mask():
    assert crc32c(b'') == 0
    assert crc32c(b'123456789') == 0xe3069283  # the standard CRC-32C check value
    assert crc32c(b'6789', crc32c(b'12345')) == 0xe3069283
    assert mask_crc32c(0) == 0xa282ead8


def test_decode_varint():
    assert decode_varint(b'\x00', 0) == (0, 1)
    assert decode_varint(b'\xff\xac\x02', 1) == (300, 3)
    assert decode_varint(_varint(-1), 0) == ((1 << 64) - 1, 10)
    with pytest.raises(ValueError, match='truncated'):
        decode_varint(b'\x80\x80', 0)
    with pytest.raises(ValueError, match='longer than 10'):
        decode_varint(b'\xff' * 11, 0)


def test_parse_protobuf_hand_built():
    # field 1 varint 150, field 2 string 'hi', field 5 fixed32, field 4 fixed64, field 2 again (repeated)
    message = b'\x08\x96\x01' + b'\x12\x02hi' + b'\x2d\x01\x00\x00\x00' + b'\x21' + struct.pack('<Q', 7) + b'\x12\x00'
    assert parse_protobuf(message) == {1: [150], 2: [b'hi', b''], 5: [1], 4: [7]}
    with pytest.raises(ValueError, match='truncated length-delimited'):
        parse_protobuf(b'\x12\x05hi')
    with pytest.raises(ValueError, match='wire type 3'):
        parse_protobuf(b'\x0b')


def test_parse_block_hand_built():
    # 'abc' -> '1' (restart), 'abd' -> '2' sharing 2 bytes of its key, 'x' -> '' (restart); then restarts [0, 11], 2
    entries = b'\x00\x03\x01abc1' + b'\x02\x01\x01d2' + b'\x00\x01\x00x'
    block = entries + struct.pack('<3I', 0, 11, 2)
    assert parse_block(block) == [(b'abc', b'1'), (b'abd', b'2'), (b'x', b'')]
    assert parse_block(struct.pack('<2I', 0, 1)) == []
    with pytest.raises(ValueError, match='corrupt block entry'):
        parse_block(b'\x05\x01\x01xy' + struct.pack('<2I', 0, 1))  # shares 5 bytes with no previous key


# ---------------------------------------------------------------- reading synthetic bundles
def test_roundtrip_synthetic_bundle(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        'a/float32': rng.standard_normal((3, 3, 2, 5)).astype(np.float32),
        'a/float64': rng.standard_normal((4, )),
        'b/int32': np.arange(-3, 3, dtype=np.int32).reshape(2, 3),
        'b/int64': np.array([-(1 << 40), 0, 1 << 50], np.int64),
        'c/scalar': np.array(500000, np.int32),
        'c/empty': np.zeros((0, 2), np.float32),
    }
    prefix = write_bundle(str(tmp_path / 'model.ckpt-7'), tensors)
    reader = TFCheckpointReader(prefix + '.index')  # the .index path is accepted too
    assert reader.names() == sorted(tensors)
    assert reader.header == {'num_shards': 1, 'endianness': 0}
    entries = reader.entries()
    assert entries['a/float32'].dtype == 'float32' and entries['a/float32'].shape == (3, 3, 2, 5)
    assert entries['c/scalar'].shape == () and entries['b/int64'].dtype == 'int64'
    for name, value in read_tf_checkpoint(prefix).items():
        assert value.dtype == tensors[name].dtype and value.shape == tensors[name].shape, name
        np.testing.assert_array_equal(value, tensors[name])


def test_convert_synthetic_mzsr_checkpoint(tmp_path):
    tensors = mzsr_tensors(np.random.default_rng(1))
    prefix = write_bundle(str(tmp_path / 'mzsr'), tensors)
    state_dict, info = convert_mzsr_checkpoint(prefix)
    assert list(state_dict) == [f'convs.{i}.{part}' for i in range(3) for part in ('weight', 'bias')]
    assert (info['num_conv'], info['num_feat'], info['num_in_ch'], info['num_out_ch']) == (3, 4, 3, 3)
    assert info['global_step'] == 1234 and info['num_tensors'] == len(tensors)
    assert 'stop_grad' in info['ignored'] and 'MODEL/conv1/kernel/Adam' in info['ignored']
    net = MZSRNet(num_feat=4, num_conv=3)
    net.load_state_dict(state_dict, strict=True)
    assert info['num_params'] == sum(p.numel() for p in net.parameters())

    # TF's conv2d is a cross-correlation with kernel[dy, dx, in, out]: check one output pixel against torch
    x = np.random.default_rng(2).standard_normal((3, 5, 5)).astype(np.float32)
    kernel, bias = tensors['MODEL/conv1/kernel'], tensors['MODEL/conv1/bias']
    expected = np.einsum('cyx,yxco->o', x[:, 1:4, 2:5], kernel) + bias
    out = torch.nn.functional.conv2d(torch.from_numpy(x)[None], state_dict['convs.0.weight'],
                                     state_dict['convs.0.bias'], padding=1)
    np.testing.assert_allclose(out[0, :, 2, 3].numpy(), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- bad input
def test_missing_index_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.index'):
        TFCheckpointReader(str(tmp_path / 'nothing'))


@pytest.mark.parametrize('content', [b'', b'garbage' * 20, 'truncate', 'flip'])
def test_bad_index_is_not_a_checkpoint(tmp_path, content):
    if isinstance(content, str):
        write_bundle(str(tmp_path / 'ckpt'), {'x': np.zeros(2, np.float32)})
        valid = (tmp_path / 'ckpt.index').read_bytes()
        if content == 'truncate':
            content = valid[:30]
        else:  # one flipped bit in the first data block: the block checksum catches it
            content = valid[:3] + bytes([valid[3] ^ 1]) + valid[4:]
    (tmp_path / 'ckpt.index').write_bytes(content)
    with pytest.raises(ValueError, match=r'ckpt\.index: not a TensorFlow checkpoint index'):
        TFCheckpointReader(str(tmp_path / 'ckpt'))


def test_snappy_blocks_are_refused(tmp_path):
    prefix = write_bundle(str(tmp_path / 'ckpt'), {'x': np.zeros(2, np.float32)}, compression=1)
    with pytest.raises(ValueError, match='snappy-compressed'):
        TFCheckpointReader(prefix)


def test_bad_data_shard(tmp_path):
    prefix = write_bundle(str(tmp_path / 'ckpt'), {'x': np.arange(4, dtype=np.float32)})
    reader = TFCheckpointReader(prefix)
    with pytest.raises(KeyError, match='no tensor named'):
        reader.get_tensor('y')
    shard = tmp_path / 'ckpt.data-00000-of-00001'
    shard.write_bytes(b'\0' * 16)
    with pytest.raises(ValueError, match='checksum mismatch'):
        reader.get_tensor('x')
    np.testing.assert_array_equal(reader.get_tensor('x', verify=False), np.zeros(4))
    shard.write_bytes(b'\0' * 8)
    with pytest.raises(ValueError, match='truncated'):
        reader.get_tensor('x')
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=r'ckpt\.data-00000-of-00001'):
        reader.get_tensor('x')


@pytest.mark.parametrize('remove, update, message', [
    ('MODEL/', {}, 'not an MZSR checkpoint'),
    ('MODEL/conv2/bias', {}, r"missing \['MODEL/conv2/bias'\]"),
    (None, {'MODEL/conv2/kernel': np.zeros((3, 3, 5, 4), np.float32)}, 'takes 5 channels but conv1 gives 4'),
    (None, {'MODEL/conv3/kernel': np.zeros((1, 1, 4, 3), np.float32)}, 'expected HWIO'),
    (None, {'MODEL/conv3/bias': np.zeros(4, np.float32)}, r'expected \[3\]'),
    (None, {'MODEL/conv1/bias': np.full(4, np.nan, np.float32)}, 'non-finite'),
])
def test_convert_rejects_non_mzsr_checkpoints(tmp_path, remove, update, message):
    tensors = mzsr_tensors(np.random.default_rng(3))
    tensors = {name: value for name, value in tensors.items() if not (remove and name.startswith(remove))}
    prefix = write_bundle(str(tmp_path / 'ckpt'), {**tensors, **update})
    with pytest.raises(ValueError, match=message):
        convert_mzsr_checkpoint(prefix)


# ---------------------------------------------------------------- the CLI
def test_cli_writes_basicsr_weights(tmp_path, capsys):
    prefix = write_bundle(str(tmp_path / 'ckpt'), mzsr_tensors(np.random.default_rng(4)))
    script = load_script()
    out = tmp_path / 'out' / 'mzsr.pth'  # the folder is created
    script.main([prefix, str(out)])
    summary = capsys.readouterr().out
    assert 'global_step 1234' in summary and 'num_feat=4, num_conv=3' in summary
    assert os.listdir(out.parent) == ['mzsr.pth']  # no temp file left behind
    params = torch.load(out, weights_only=True)['params']
    MZSRNet(num_feat=4, num_conv=3).load_state_dict(params, strict=True)

    script.main([prefix, '--list'])
    listing = capsys.readouterr().out
    assert 'MODEL/conv1/kernel/Adam_1' in listing and '[3, 3, 3, 4]' in listing

    with pytest.raises(SystemExit) as err:
        script.main([str(tmp_path / 'nothing'), str(out)])
    assert err.value.code == 1 and 'nothing.index' in capsys.readouterr().err


def test_cli_runs_as_a_script(tmp_path):
    prefix = write_bundle(str(tmp_path / 'ckpt'), mzsr_tensors(np.random.default_rng(5), extra=False))
    out = tmp_path / 'mzsr.pth'
    result = subprocess.run([sys.executable, SCRIPT, prefix, str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert 'global_step absent' in result.stdout
    assert set(torch.load(out, weights_only=True)) == {'params'}
    with pytest.raises(SystemExit) as err:
        load_script().main([prefix])
    assert err.value.code == 2


# ---------------------------------------------------------------- the official checkpoint
needs_shared_data = pytest.mark.shared_data


@pytest.fixture(scope='module')
def official_prefix():
    # a prefix names no file itself: check for its index
    return shared_path('mzsr_official', 'Pretrained', 'Pretrained.index')[:-len('.index')]


@pytest.fixture(scope='module')
def official_net(official_prefix):
    state_dict, _ = convert_mzsr_checkpoint(official_prefix)
    net = MZSRNet()
    net.load_state_dict(state_dict, strict=True)
    return net.eval()


def read_rgb(path):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    assert img is not None, f'cannot read {path}'
    return np.ascontiguousarray(img[:, :, ::-1])


def super_resolve(net, lr):
    """uint8 RGB (h, w, 3) -> uint8 RGB (2h, 2w, 3)."""
    with torch.no_grad():
        out = net(torch.from_numpy(lr.transpose(2, 0, 1).astype(np.float32) / 255.)[None])[0]
    return (out.clamp(0, 1) * 255).round().byte().numpy().transpose(1, 2, 0)


def psnr_y_matlab(img, ref, shave):
    """PSNR on the uint8 Y of MATLAB's rgb2ycbcr (BT.601, rounded half away from zero), ``shave`` px cropped."""
    coeffs = np.array([65.481, 128.553, 24.966]) / 255.
    y_img, y_ref = (np.floor(16 + x.astype(np.float64) @ coeffs + 0.5) for x in (img, ref))
    mse = np.mean((y_img[shave:-shave, shave:-shave] - y_ref[shave:-shave, shave:-shave])**2)
    return 10 * np.log10(255.**2 / mse)


@needs_shared_data
def test_official_checkpoint_tensors(official_prefix):
    reader = TFCheckpointReader(official_prefix)
    entries = reader.entries()
    assert len(entries) == 51  # 16 model tensors, 32 Adam slots, beta1/2_power, global_step
    for i in range(1, 9):
        c_in, c_out = 3 if i == 1 else 64, 3 if i == 8 else 64
        assert entries[f'MODEL/conv{i}/kernel'].shape == (3, 3, c_in, c_out)
        assert entries[f'MODEL/conv{i}/bias'].shape == (c_out, )
        assert entries[f'MODEL/conv{i}/kernel'].dtype == 'float32'
    assert reader.get_tensor('global_step') == 500000
    _, info = convert_mzsr_checkpoint(official_prefix)
    assert info['global_step'] == 500000 and info['num_params'] == 225091
    assert (info['num_conv'], info['num_feat']) == (8, 64)


@needs_shared_data
def test_official_cli_output_loads(official_prefix, tmp_path):
    out = tmp_path / 'mzsr_pretrained_x2.pth'
    load_script().main([official_prefix, str(out)])
    MZSRNet().load_state_dict(torch.load(out, weights_only=True)['params'], strict=True)


@needs_shared_data
@pytest.mark.slow
def test_official_set5_bicubic_psnr(official_net):
    psnrs = []
    for path in sorted(glob.glob(osp.join(shared_path('benchmark', 'Set5'), '*.png'))):
        hr = read_rgb(path)
        hr = hr[:hr.shape[0] // 2 * 2, :hr.shape[1] // 2 * 2]
        # the LR as a saved image: MATLAB bicubic with antialiasing, rounded to uint8
        lr = (np.clip(imresize(hr.astype(np.float64) / 255., 0.5), 0, 1) * 255).round().astype(np.uint8)
        psnrs.append(psnr_y_matlab(super_resolve(official_net, lr), hr, shave=2))
    assert len(psnrs) == 5
    # measured 37.485 dB; BasicSR's unrounded-Y calculate_psnr gives 37.560
    assert np.mean(psnrs) == pytest.approx(37.49, abs=0.02)


@needs_shared_data
@pytest.mark.slow
def test_official_g20_psnr_without_adaptation(official_net):
    folder = shared_path('mzsr_official', 'Input', 'g20', 'Set5')
    psnrs = []
    for path in sorted(glob.glob(osp.join(folder, '*.png'))):
        name = osp.splitext(osp.basename(path))[0]
        gt = read_rgb(shared_path('mzsr_official', 'GT', 'Set5', f'{name}_GT.png'))
        sr = super_resolve(official_net, read_rgb(path))
        height, width = min(sr.shape[0], gt.shape[0]), min(sr.shape[1], gt.shape[1])
        psnrs.append(psnr_y_matlab(sr[:height, :width], gt[:height, :width], shave=2))
    assert len(psnrs) == 5
    # measured 29.136 dB; BasicSR's unrounded-Y calculate_psnr gives 29.151
    assert np.mean(psnrs) == pytest.approx(29.14, abs=0.02)
