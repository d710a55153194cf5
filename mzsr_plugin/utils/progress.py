"""Progress a person can read: a tqdm bar on a terminal, plain lines in a log.

A tqdm bar redraws itself with carriage returns; written to a file or a pipe (``mzsr-sr ... 2> log.txt``, CI, a
campaign run under ``nohup``) those redraws pile up between the real lines. Every progress display of the plugin
(``mzsr-sr``, ``mzsr-campaign``, the benchmark scripts, ZSSR and KernelGAN) goes through this module, which draws a
bar only when standard error is a terminal and otherwise writes one plain line per finished item, or nothing where
the caller already prints its own line per item.

Example::

    for path in progress(paths, 'mzsr-sr', lines=False):
        ...
        write(f'{path}: done')  # above the bar on a terminal, a plain line in a log
"""
import sys
import time
from tqdm import tqdm


def is_terminal(stream=None):
    """Whether ``stream`` (default: ``sys.stderr``, where the bars go) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, 'isatty', None)
    return bool(isatty and isatty())


def progress(items, desc, unit='img', total=None, lines=True, name=str):
    """Yields ``items``, showing how far the loop is.

    On a terminal: a tqdm bar. Otherwise, with ``lines``: one line per finished item on stderr,
    ``<desc> <i>/<n> <name(item)>: <seconds> s`` (written when the loop asks for the next item, so the time is the
    item's own); without ``lines``: nothing (the caller prints its own line per item).

    Args:
        items (Iterable): What the loop runs over.
        desc (str): Label of the bar and of each line, e.g. ``'mzsr-sr'`` or ``'Set5 g_d_2.0'``.
        unit (str): Unit of the bar.
        total (int | None): Number of items (default: ``len(items)`` where it has one).
        lines (bool): Plain line per item when stderr is not a terminal.
        name (callable): Item -> its name in the plain line.

    Yields:
        The items of ``items``, in order.
    """
    if total is None and hasattr(items, '__len__'):
        total = len(items)
    if is_terminal():
        yield from tqdm(items, desc=desc, unit=unit, total=total, dynamic_ncols=True)
        return
    for index, item in enumerate(items, 1):
        start = time.perf_counter()
        yield item
        if lines:
            print(f'{desc} {index}/{total if total is not None else "?"} {name(item)}: '
                  f'{time.perf_counter() - start:.1f} s', file=sys.stderr, flush=True)


def bar(total, desc, unit='it', enabled=True, leave=True):
    """A tqdm bar to ``update()`` by hand (iterations inside one image: ZSSR, KernelGAN), drawn only on a terminal.

    Args:
        total (int): Number of updates expected.
        desc (str): Label.
        unit (str): Unit.
        enabled (bool): False: never drawn (the caller asked for no progress).
        leave (bool): Keep the finished bar on screen.

    Returns:
        tqdm: The bar; a disabled one (its methods do nothing) when not drawn.
    """
    return tqdm(total=total, desc=desc, unit=unit, disable=not (enabled and is_terminal()), leave=leave,
                dynamic_ncols=True)


def write(line, file=None):
    """Prints ``line`` above a running bar (a plain print when none is drawn).

    Args:
        line (str): The line, without its newline.
        file (file | None): Where to (default: stdout).
    """
    tqdm.write(line, file=file)
