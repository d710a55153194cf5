"""A pure-python reader of TensorFlow V2 checkpoints, and the conversion of the official MZSR weights.

A V2 checkpoint with prefix ``P`` is a ``P.index`` file and ``P.data-0000i-of-0000N`` shard files. The index is an
SSTable in LevelDB's table format whose keys are tensor names (sorted) and whose values are serialized
``BundleEntryProto`` messages saying where each tensor's raw bytes are; the empty key holds the
``BundleHeaderProto``. Only the few protobuf fields needed are decoded, by hand, so neither TensorFlow nor protobuf
is required.

Format notes (field numbers from ``tensor_bundle.proto``, ``tensor_shape.proto`` and ``types.proto``):

* ``BundleHeaderProto``: num_shards = 1 (int32), endianness = 2 (enum, LITTLE = 0, BIG = 1), version = 3.
* ``BundleEntryProto``: dtype = 1 (enum), shape = 2 (``TensorShapeProto``), shard_id = 3, offset = 4, size = 5,
  crc32c = 6 (fixed32, masked like LevelDB's block checksums), slices = 7 (partitioned variables, not supported).
* ``TensorShapeProto``: dim = 2 (repeated ``Dim`` with size = 1), unknown_rank = 3.
"""
import numpy as np
import os
import re
import struct
import torch
from collections import OrderedDict, namedtuple

__all__ = [
    'TFCheckpointReader', 'TensorEntry', 'convert_mzsr_checkpoint', 'crc32c', 'decode_varint', 'mask_crc32c',
    'parse_block', 'parse_protobuf', 'read_tf_checkpoint'
]

# The footer ends with this little-endian fixed64; it is what tells an SSTable apart from any other file.
TABLE_MAGIC = 0xdb4775248b80fb57
# Two varint64 block handles padded to 40 bytes, then the magic number.
FOOTER_SIZE = 48
# Every block is followed by a compression-type byte and a masked crc32c of (contents + type byte).
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1

# DataType enum value -> (name, numpy dtype). bfloat16 has no numpy dtype: it is widened to float32 on read.
DTYPES = {
    1: ('float32', np.float32),
    2: ('float64', np.float64),
    3: ('int32', np.int32),
    4: ('uint8', np.uint8),
    5: ('int16', np.int16),
    6: ('int8', np.int8),
    7: ('string', None),
    8: ('complex64', np.complex64),
    9: ('int64', np.int64),
    10: ('bool', np.bool_),
    14: ('bfloat16', np.uint16),
    17: ('uint16', np.uint16),
    18: ('complex128', np.complex128),
    19: ('float16', np.float16),
    22: ('uint32', np.uint32),
    23: ('uint64', np.uint64),
}
_NUMPY_DTYPES = {name: np_dtype for name, np_dtype in DTYPES.values()}


def _make_crc32c_table():
    # Reflected CRC-32C (Castagnoli) polynomial; zlib's crc32 uses a different one, hence the own table.
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82f63b78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) of a byte string, as LevelDB and TensorFlow compute it.

    Args:
        data (bytes-like): The bytes.
        crc (int): A running CRC to extend. Default: 0.

    Returns:
        int: The unsigned 32-bit CRC.
    """
    table = _CRC32C_TABLE
    crc ^= 0xffffffff
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xff] ^ (crc >> 8)
    return crc ^ 0xffffffff


def mask_crc32c(crc):
    """The masked form in which LevelDB and TensorFlow store a CRC (rotated right by 15, plus a constant).

    Args:
        crc (int): An unsigned 32-bit CRC.

    Returns:
        int: The masked CRC.
    """
    return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


def decode_varint(buf, pos):
    """Decodes a base-128 varint (LevelDB and protobuf encoding).

    Args:
        buf (bytes): The buffer.
        pos (int): Where the varint starts.

    Returns:
        tuple[int, int]: The unsigned value and the position just after it.

    Raises:
        ValueError: If the varint is truncated or longer than 10 bytes.
    """
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError('truncated varint')
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7f) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError('varint longer than 10 bytes')


def _signed64(value):
    # Protobuf int32/int64 fields carry negative values as 64-bit two's complement varints.
    return value - (1 << 64) if value >= 1 << 63 else value


def parse_protobuf(buf):
    """Splits a serialized protobuf message into its fields, without a schema.

    Args:
        buf (bytes): The serialized message.

    Returns:
        dict[int, list]: Field number -> values in order of appearance: ints for varint, fixed32 and fixed64 fields,
            bytes for length-delimited ones (strings and nested messages).

    Raises:
        ValueError: If the message is malformed or uses the deprecated group wire types.
    """
    fields = {}
    pos = 0
    while pos < len(buf):
        tag, pos = decode_varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = decode_varint(buf, pos)
        elif wire_type == 1:
            if pos + 8 > len(buf):
                raise ValueError(f'truncated fixed64 field {number}')
            value = struct.unpack_from('<Q', buf, pos)[0]
            pos += 8
        elif wire_type == 2:
            length, pos = decode_varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError(f'truncated length-delimited field {number}')
            value = bytes(buf[pos:pos + length])
            pos += length
        elif wire_type == 5:
            if pos + 4 > len(buf):
                raise ValueError(f'truncated fixed32 field {number}')
            value = struct.unpack_from('<I', buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f'unsupported protobuf wire type {wire_type} (field {number})')
        if number == 0:
            raise ValueError('protobuf field number 0 is invalid')
        fields.setdefault(number, []).append(value)
    return fields


def parse_block(contents):
    """Decodes the entries of one uncompressed SSTable block (trailer already removed).

    Keys are prefix-compressed: each entry stores how many leading bytes it shares with the previous key, then the
    rest; the block ends with the uint32 restart-point offsets and their count.

    Args:
        contents (bytes): The block contents.

    Returns:
        list[tuple[bytes, bytes]]: The (key, value) pairs in order.

    Raises:
        ValueError: If the block is malformed.
    """
    if len(contents) < 4:
        raise ValueError(f'block of {len(contents)} bytes is too short for its restart count')
    num_restarts = struct.unpack_from('<I', contents, len(contents) - 4)[0]
    entries_end = len(contents) - 4 - 4 * num_restarts
    if entries_end < 0:
        raise ValueError(f'block of {len(contents)} bytes cannot hold {num_restarts} restart points')
    entries = []
    key = b''
    pos = 0
    while pos < entries_end:
        shared, pos = decode_varint(contents, pos)
        non_shared, pos = decode_varint(contents, pos)
        value_length, pos = decode_varint(contents, pos)
        if shared > len(key) or pos + non_shared + value_length > entries_end:
            raise ValueError(f'corrupt block entry at byte {pos}')
        key = key[:shared] + bytes(contents[pos:pos + non_shared])
        pos += non_shared
        entries.append((key, bytes(contents[pos:pos + value_length])))
        pos += value_length
    return entries


def _decode_handle(buf, pos=0):
    offset, pos = decode_varint(buf, pos)
    size, pos = decode_varint(buf, pos)
    return (offset, size), pos


TensorEntry = namedtuple('TensorEntry', ['name', 'dtype', 'shape', 'shard_id', 'offset', 'size', 'crc32c', 'sliced'])
TensorEntry.__doc__ = """Where one tensor of a checkpoint lives.

name (str), dtype (str, e.g. 'float32'), shape (tuple[int], None if the rank is unknown), shard_id (int), offset and
size (int, bytes in the shard), crc32c (int or None, masked), sliced (bool: a partitioned variable stored as slices,
not readable here).
"""


def _decode_shape(buf):
    fields = parse_protobuf(buf)
    if fields.get(3, [0])[-1]:
        return None
    return tuple(_signed64(parse_protobuf(dim).get(1, [0])[-1]) for dim in fields.get(2, []))


class TFCheckpointReader:
    """Reads a TensorFlow V2 checkpoint (``PREFIX.index`` + ``PREFIX.data-*-of-*``) into numpy arrays.

    The index is read and checked (magic number, block checksums) on construction; tensor bytes are read on demand.

    Args:
        prefix (str): The checkpoint prefix, e.g. ``'Pretrained/Pretrained'``; a path ending in ``.index`` is
            accepted as well.

    Raises:
        FileNotFoundError: If the ``.index`` file is missing.
        ValueError: If it is not a valid TensorFlow checkpoint index.
    """

    def __init__(self, prefix):
        prefix = os.fspath(prefix)
        if prefix.endswith('.index'):
            prefix = prefix[:-len('.index')]
        self.prefix = prefix
        self.index_path = prefix + '.index'
        if not os.path.isfile(self.index_path):
            raise FileNotFoundError(f'TensorFlow checkpoint index not found: {self.index_path} '
                                    '(expected a checkpoint prefix P with files P.index and P.data-*-of-*)')
        with open(self.index_path, 'rb') as f:
            self._index = f.read()
        self.header = {'num_shards': 1, 'endianness': 0}
        self._entries = {}
        self._has_header = False
        self._read_index()

    def _error(self, what):
        return ValueError(f'{self.index_path}: not a TensorFlow checkpoint index ({what})')

    def _read_block(self, handle, what):
        offset, size = handle
        end = offset + size + BLOCK_TRAILER_SIZE
        if end > len(self._index) - FOOTER_SIZE:
            raise self._error(f'{what} block at byte {offset} of size {size} runs past the end of the file')
        contents = self._index[offset:offset + size]
        compression, stored_crc = struct.unpack_from('<BI', self._index, offset + size)
        if mask_crc32c(crc32c(self._index[offset:offset + size + 1])) != stored_crc:
            raise self._error(f'checksum mismatch in the {what} block at byte {offset}')
        if compression == SNAPPY_COMPRESSION:
            raise ValueError(f'{self.index_path}: the {what} block at byte {offset} is snappy-compressed, which this '
                             'reader does not support (TensorFlow writes checkpoint indices uncompressed)')
        if compression != NO_COMPRESSION:
            raise self._error(f'unknown compression type {compression} of the {what} block at byte {offset}')
        try:
            return parse_block(contents)
        except ValueError as err:
            raise self._error(f'{what} block at byte {offset}: {err}') from None

    def _read_index(self):
        data = self._index
        if len(data) < FOOTER_SIZE:
            raise self._error(f'{len(data)} bytes, shorter than the {FOOTER_SIZE}-byte SSTable footer')
        footer = data[-FOOTER_SIZE:]
        if struct.unpack_from('<Q', footer, FOOTER_SIZE - 8)[0] != TABLE_MAGIC:
            raise self._error('bad SSTable magic number')
        try:
            _, pos = _decode_handle(footer)  # the metaindex (filters) is of no use for a full scan
            index_handle, _ = _decode_handle(footer, pos)
        except ValueError as err:
            raise self._error(f'footer: {err}') from None
        for _, handle_bytes in self._read_block(index_handle, 'index'):
            try:
                handle, _ = _decode_handle(handle_bytes)
            except ValueError as err:
                raise self._error(f'index block entry: {err}') from None
            for key, value in self._read_block(handle, 'data'):
                try:
                    self._add_entry(key, value)
                except (ValueError, UnicodeDecodeError) as err:
                    raise self._error(f'entry {key!r}: {err}') from None
        if not self._has_header:
            raise self._error('no bundle header under the empty key')

    def _add_entry(self, key, value):
        fields = parse_protobuf(value)
        if key == b'':
            self._has_header = True
            self.header = {
                'num_shards': fields.get(1, [1])[-1],
                'endianness': fields.get(2, [0])[-1],
            }
            if self.header['endianness'] not in (0, 1):
                raise ValueError(f'unknown endianness {self.header["endianness"]}')
            return
        dtype_enum = fields.get(1, [0])[-1]
        dtype = DTYPES[dtype_enum][0] if dtype_enum in DTYPES else f'DataType({dtype_enum})'
        shape = _decode_shape(fields[2][-1]) if 2 in fields else ()
        name = key.decode('utf-8')
        self._entries[name] = TensorEntry(
            name=name,
            dtype=dtype,
            shape=shape,
            shard_id=_signed64(fields.get(3, [0])[-1]),
            offset=_signed64(fields.get(4, [0])[-1]),
            size=_signed64(fields.get(5, [0])[-1]),
            crc32c=fields[6][-1] if 6 in fields else None,
            sliced=7 in fields)

    def names(self):
        """Returns the tensor names, sorted (as stored).

        Returns:
            list[str]: The names.
        """
        return list(self._entries)

    def entries(self):
        """Returns every tensor's metadata.

        Returns:
            dict[str, TensorEntry]: Name -> entry, sorted by name.
        """
        return dict(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def __len__(self):
        return len(self._entries)

    def shard_path(self, shard_id):
        """The file of one data shard.

        Args:
            shard_id (int): The shard number.

        Returns:
            str: ``PREFIX.data-{shard_id:05d}-of-{num_shards:05d}``.
        """
        return f'{self.prefix}.data-{shard_id:05d}-of-{self.header["num_shards"]:05d}'

    def get_tensor(self, name, verify=True):
        """Reads one tensor.

        Args:
            name (str): The tensor name, e.g. ``'MODEL/conv1/kernel'``.
            verify (bool): Check the stored crc32c of the tensor bytes. Default: True.

        Returns:
            ndarray: The tensor with its stored shape and dtype (native byte order; bfloat16 widened to float32).

        Raises:
            KeyError: If there is no such tensor.
            FileNotFoundError: If its shard file is missing.
            ValueError: If the dtype is unsupported or the bytes are truncated or corrupt.
        """
        if name not in self._entries:
            raise KeyError(f'{self.index_path}: no tensor named {name!r}')
        entry = self._entries[name]
        if entry.sliced:
            raise ValueError(f'{self.index_path}: tensor {name!r} is a partitioned variable stored as slices, '
                             'which this reader does not support')
        if _NUMPY_DTYPES.get(entry.dtype) is None:
            raise ValueError(f'{self.index_path}: tensor {name!r} has dtype {entry.dtype}, which this reader does not '
                             'support (expected a numeric dtype such as float32, float64, int32 or int64)')
        if entry.shape is None:
            raise ValueError(f'{self.index_path}: tensor {name!r} has an unknown rank')
        np_dtype = np.dtype(_NUMPY_DTYPES[entry.dtype]).newbyteorder('>' if self.header['endianness'] == 1 else '<')
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * np_dtype.itemsize != entry.size:
            raise ValueError(f'{self.index_path}: tensor {name!r} of dtype {entry.dtype} and shape {entry.shape} '
                             f'needs {count * np_dtype.itemsize} bytes but the index says {entry.size}')
        path = self.shard_path(entry.shard_id)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'TensorFlow checkpoint data shard not found: {path} (needed for {name!r})')
        with open(path, 'rb') as f:
            f.seek(entry.offset)
            raw = f.read(entry.size)
        if len(raw) != entry.size:
            raise ValueError(f'{path}: truncated; tensor {name!r} needs bytes {entry.offset}..'
                             f'{entry.offset + entry.size} but the file ends at {entry.offset + len(raw)}')
        if verify and entry.crc32c is not None and mask_crc32c(crc32c(raw)) != entry.crc32c:
            raise ValueError(f'{path}: checksum mismatch for tensor {name!r}')
        array = np.frombuffer(raw, dtype=np_dtype).reshape(entry.shape)
        array = array.astype(np_dtype.newbyteorder('='))
        if entry.dtype == 'bfloat16':
            # bfloat16 is the upper half of a float32.
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def read_tf_checkpoint(prefix, names=None, verify=True):
    """Reads tensors of a TensorFlow V2 checkpoint.

    Args:
        prefix (str): The checkpoint prefix (see :class:`TFCheckpointReader`).
        names (list[str] | None): The tensors to read; None reads all. Default: None.
        verify (bool): Check the tensors' crc32c. Default: True.

    Returns:
        dict[str, ndarray]: Name -> tensor.
    """
    reader = TFCheckpointReader(prefix)
    return {name: reader.get_tensor(name, verify) for name in (reader.names() if names is None else names)}


def convert_mzsr_checkpoint(prefix, scope='MODEL', verify=True):
    """Converts an official MZSR TensorFlow checkpoint into a :class:`MZSRNet` state dict.

    Exactly the ``{scope}/conv{i}/kernel`` and ``{scope}/conv{i}/bias`` tensors are taken; optimizer slots
    (``/Adam``, ``/Adam_1``), ``beta1_power``, ``global_step`` and other bookkeeping tensors are ignored, so pretrained
    and meta-trained checkpoints both work. Kernels are HWIO ``[3, 3, in, out]`` and become OIHW.

    Args:
        prefix (str): The checkpoint prefix (see :class:`TFCheckpointReader`).
        scope (str): The variable scope of the network. Default: 'MODEL'.
        verify (bool): Check the tensors' crc32c. Default: True.

    Returns:
        tuple[OrderedDict, dict]: The state dict (``convs.{i}.weight`` (out, in, 3, 3) and ``convs.{i}.bias`` (out,),
            float32 torch tensors) and info: ``num_conv``, ``num_feat``, ``num_in_ch``, ``num_out_ch``,
            ``num_params``, ``global_step`` (None when absent), ``num_tensors`` (all tensors in the checkpoint),
            ``used`` (the converted tensor names) and ``ignored`` (the others).

    Raises:
        ValueError: If conv layers are missing or their shapes do not chain into an MZSRNet.
    """
    reader = TFCheckpointReader(prefix)
    pattern = re.compile(rf'{re.escape(scope)}/conv(\d+)/(kernel|bias)')
    layers = {}
    for name in reader.names():
        match = pattern.fullmatch(name)
        if match:
            layers.setdefault(int(match.group(1)), {})[match.group(2)] = name
    where = reader.index_path
    if not layers:
        raise ValueError(f'{where}: no {scope}/conv<i>/kernel or {scope}/conv<i>/bias tensors, so not an MZSR '
                         f'checkpoint (it has {len(reader)} tensors, e.g. {reader.names()[:5]})')
    num_conv = max(layers)
    missing = [f'{scope}/conv{i}/{part}' for i in range(1, num_conv + 1) for part in ('kernel', 'bias')
               if part not in layers.get(i, {})]
    if missing:
        raise ValueError(f'{where}: MZSR conv layers 1..{num_conv} expected, missing {missing}')
    if num_conv < 2:
        raise ValueError(f'{where}: MZSRNet needs at least 2 conv layers, the checkpoint has {num_conv}')

    state_dict = OrderedDict()
    channels = []
    for i in range(1, num_conv + 1):
        kernel_name, bias_name = layers[i]['kernel'], layers[i]['bias']
        kernel = reader.get_tensor(kernel_name, verify)
        bias = reader.get_tensor(bias_name, verify)
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
            raise ValueError(f'{where}: {kernel_name} has shape {kernel.shape}, expected HWIO [3, 3, in, out]')
        c_in, c_out = kernel.shape[2:]
        if bias.shape != (c_out, ):
            raise ValueError(f'{where}: {bias_name} has shape {bias.shape}, expected [{c_out}] to match {kernel_name}')
        if channels and c_in != channels[-1]:
            raise ValueError(f'{where}: {kernel_name} takes {c_in} channels but conv{i - 1} gives {channels[-1]}')
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise ValueError(f'{where}: conv{i} has non-finite weights')
        if not channels:
            channels.append(c_in)
        channels.append(c_out)
        state_dict[f'convs.{i - 1}.weight'] = torch.from_numpy(
            np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32))
        state_dict[f'convs.{i - 1}.bias'] = torch.from_numpy(np.asarray(bias, dtype=np.float32))
    hidden = set(channels[1:-1])
    if len(hidden) != 1:
        raise ValueError(f'{where}: MZSRNet needs equal hidden widths, the convs give {channels[1:-1]}')
    if channels[0] != channels[-1]:
        raise ValueError(f'{where}: the global residual needs as many output as input channels, '
                         f'got {channels[0]} -> {channels[-1]}')

    used = [layers[i][part] for i in range(1, num_conv + 1) for part in ('kernel', 'bias')]
    global_step = None
    if 'global_step' in reader:
        global_step = int(reader.get_tensor('global_step', verify).reshape(-1)[0])
    info = {
        'num_conv': num_conv,
        'num_feat': hidden.pop(),
        'num_in_ch': channels[0],
        'num_out_ch': channels[-1],
        'num_params': sum(v.numel() for v in state_dict.values()),
        'global_step': global_step,
        'num_tensors': len(reader),
        'used': used,
        'ignored': [name for name in reader.names() if name not in set(used)],
    }
    return state_dict, info
