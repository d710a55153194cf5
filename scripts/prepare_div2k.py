"""Prepares DIV2K for BasicSR training: sub-images and LMDBs as BasicSR's data-preparation scripts make them.

Usage::

    python scripts/prepare_div2k.py all --root datasets/DIV2K --scales 2 4
    python scripts/prepare_div2k.py all --root datasets/DIV2K --scales 2 --make-lr   # only DIV2K_train_HR at hand
    python scripts/prepare_div2k.py extract --root datasets/DIV2K --scales 2 3 4 --n-thread 8
    python scripts/prepare_div2k.py lmdb --root datasets/DIV2K --scales 2 3 4
    python scripts/prepare_div2k.py check datasets/DIV2K/DIV2K_train_HR_sub.lmdb

Layout under ``--root`` (BasicSR's): ``DIV2K_train_HR`` and ``DIV2K_train_LR_bicubic/X{s}`` in,
``DIV2K_train_HR_sub``, ``DIV2K_train_LR_bicubic/X{s}_sub`` and ``DIV2K_train_HR_sub.lmdb``,
``DIV2K_train_LR_bicubic_X{s}_sub.lmdb`` out. Existing outputs are an error unless ``--overwrite`` is given.
"""
import argparse
import os

STEPS = {'extract': ('extract', ), 'lmdb': ('lmdb', ), 'all': ('extract', 'lmdb')}
COMMAND_HELP = {
    'extract': 'crop HR and LR images into sub-images',
    'lmdb': 'pack the sub-image folders into LMDBs',
    'all': 'extract, then lmdb',
}
# Options passed on to prepare_div2k when given; left out, its defaults (BasicSR's DIV2K settings) apply.
PREPARE_OPTIONS = ('scales', 'make_lr', 'crop_size', 'step', 'thresh_size', 'n_thread', 'overwrite')
# PNG encoding is CPU-bound, but beyond a few processes they mostly wait for the disk.
N_THREAD = min(8, os.cpu_count() or 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Prepare DIV2K sub-images and LMDBs in BasicSR\'s layout.')
    commands = parser.add_subparsers(dest='command', required=True)
    for name, help_text in COMMAND_HELP.items():
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument('--root', default='datasets/DIV2K', help='DIV2K root (default: %(default)s)')
        sub.add_argument('--scales', type=int, nargs='*', help='LR scales; none for HR only (default: 2 3 4)')
        sub.add_argument('--overwrite', action='store_true', help='replace existing outputs')
        if name != 'lmdb':
            sub.add_argument(
                '--make-lr', action='store_true', help='make DIV2K_train_LR_bicubic/X{s} from HR (MATLAB bicubic)')
            sub.add_argument('--crop-size', type=int, help='HR sub-image size, LR: /s (default: 480)')
            sub.add_argument('--step', type=int, help='HR sliding step, LR: /s (default: 240)')
            sub.add_argument('--thresh-size', type=int, help='HR border threshold, LR: //s (default: 0)')
            sub.add_argument('--n-thread', type=int, default=N_THREAD, help='worker processes (default: %(default)s)')
    sub = commands.add_parser('check', help='verify LMDBs against their meta_info.txt')
    sub.add_argument('lmdb', nargs='+', help='LMDB folder(s)')
    args = parser.parse_args(argv)
    # Imported only now so that --help and usage errors do not wait for torch (pulled in by basicsr).
    from mzsr_plugin.data.prepare import check_lmdb, prepare_div2k

    try:
        if args.command != 'check':
            options = {k: v for k, v in vars(args).items() if k in PREPARE_OPTIONS and v is not None}
            written = prepare_div2k(args.root, steps=STEPS[args.command], **options)
            print('Written:\n' + '\n'.join(f'  {path}' for path in written))
            return
        clean = True
        for path in args.lmdb:
            problems = check_lmdb(path, show_progress=True)
            print(f'\n{path}: ' + (f'{len(problems)} problem(s)' if problems else 'OK'))
            for problem in problems:
                print(f'  {problem}')
            clean = clean and not problems
    except (OSError, ValueError) as err:
        # Bad input or an existing output is a user error: a one-line message, not a traceback.
        parser.exit(1, f'{parser.prog}: error: {err}\n')
    if not clean:
        parser.exit(1)


if __name__ == '__main__':
    main()
