"""Converts an official MZSR TensorFlow checkpoint into BasicSR weights for ``MZSRNet``.

Usage::

    python scripts/convert_official_mzsr.py CHECKPOINT_PREFIX OUT.pth
    python scripts/convert_official_mzsr.py CHECKPOINT_PREFIX --list

CHECKPOINT_PREFIX is the path without ``.index`` (e.g. ``Pretrained/Pretrained`` for ``Pretrained.index`` and
``Pretrained.data-00000-of-00001``). The output holds ``{'params': state_dict}``, ready for ``path.pretrain_network_g``
(it loads with ``torch.load(..., weights_only=True)``). No TensorFlow is needed.
"""
import argparse
import os
import sys
from os import path as osp

from mzsr_plugin.compat import atomic_torch_save
from mzsr_plugin.utils.tf_checkpoint import TFCheckpointReader, convert_mzsr_checkpoint


def list_tensors(prefix):
    """Prints every tensor of the checkpoint: name, dtype and shape."""
    reader = TFCheckpointReader(prefix)
    print(f'{reader.index_path}: {len(reader)} tensors in {reader.header["num_shards"]} shard(s)')
    for entry in reader.entries().values():
        shape = '?' if entry.shape is None else list(entry.shape)
        print(f'  {entry.name:<40s} {entry.dtype:<8s} {shape}')


def convert(prefix, out_path):
    """Converts the checkpoint, saves it atomically and prints a summary."""
    state_dict, info = convert_mzsr_checkpoint(prefix)
    os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
    atomic_torch_save({'params': state_dict}, out_path)
    step = 'absent' if info['global_step'] is None else info['global_step']
    print(f'{prefix}: {info["num_tensors"]} tensors, converted {len(info["used"])}, '
          f'ignored {len(info["ignored"])} (optimizer slots and bookkeeping); global_step {step}')
    print(f'MZSRNet(num_in_ch={info["num_in_ch"]}, num_out_ch={info["num_out_ch"]}, num_feat={info["num_feat"]}, '
          f'num_conv={info["num_conv"]}): {info["num_params"]:,} parameters -> {out_path}')


def main(argv=None):
    parser = argparse.ArgumentParser(description='Convert an official MZSR TensorFlow checkpoint to BasicSR weights.')
    parser.add_argument('prefix', help='checkpoint prefix (the .index path without ".index")')
    parser.add_argument('out', nargs='?', help='output .pth file (not needed with --list)')
    parser.add_argument('--list', action='store_true', help='only list the tensors (name, dtype, shape)')
    args = parser.parse_args(argv)
    if not args.list and args.out is None:
        parser.error('OUT.pth is required unless --list is given')
    try:
        if args.list:
            list_tensors(args.prefix)
        else:
            convert(args.prefix, args.out)
    except (OSError, ValueError) as err:
        # A bad checkpoint is a user error: a one-line message, not a traceback.
        parser.exit(1, f'{parser.prog}: error: {err}\n')


if __name__ == '__main__':
    sys.exit(main())
