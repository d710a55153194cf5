"""Progress a person can read: tqdm bars on a terminal, plain lines (no carriage returns) in a log or a pipe."""
import io
import pytest
import re
import subprocess
import sys
import torch

from helpers import write_images
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.utils import progress as progress_module
from mzsr_plugin.utils.progress import bar, progress, write


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self):
        return True


def test_a_log_gets_one_plain_line_per_finished_item(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, 'stderr', log)
    seen = [item for item in progress(['a.png', 'b.png', 'c.png'], 'Set5', name=str.upper)]
    assert seen == ['a.png', 'b.png', 'c.png']
    lines = log.getvalue().splitlines()
    assert [re.sub(r'[\d.]+ s$', 'T s', line) for line in lines] == ['Set5 1/3 A.PNG: T s', 'Set5 2/3 B.PNG: T s',
                                                                     'Set5 3/3 C.PNG: T s']
    assert '\r' not in log.getvalue()


def test_a_log_gets_nothing_where_the_caller_prints_its_own_line(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, 'stderr', log)
    for item in progress(iter([1, 2]), 'mzsr-sr', lines=False):
        write(f'item {item}', file=log)
    with bar(10, 'ZSSR') as inner:
        inner.update(10)
    assert log.getvalue() == 'item 1\nitem 2\n'


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    assert progress_module.is_terminal()
    assert list(progress([1, 2, 3], 'Set5')) == [1, 2, 3]
    drawn = terminal.getvalue()
    assert '\r' in drawn and '3/3' in drawn and 'Set5' in drawn
    terminal.truncate(0)
    with bar(4, 'ZSSR') as inner:
        inner.update(4)
    assert '4/4' in terminal.getvalue()
    terminal.truncate(0)
    with bar(4, 'ZSSR', enabled=False) as inner:
        inner.update(4)
    assert terminal.getvalue().strip('\x00') == ''


@pytest.mark.usefixtures('one_thread')
@pytest.mark.parametrize('method,suffix', [(['--steps', '1'], ''), (['--zssr', '--zssr-iters', '5'], '_zssr')])
def test_mzsr_sr_into_a_log_file_writes_whole_lines(tmp_path, method, suffix):
    write_images(str(tmp_path / 'lr'), 3, 12, 12, seed=3)
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, tmp_path / 'w.pth')
    with open(tmp_path / 'log.txt', 'w') as log:
        command = [sys.executable, '-m', 'mzsr_plugin.cli', str(tmp_path / 'lr'), '-o', str(tmp_path / 'out'),
                   '--weights', str(tmp_path / 'w.pth'), '--kernel', 'g_d_2.0', '--no-self-check', *method]
        run = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=300)
    text = (tmp_path / 'log.txt').read_text()
    assert run.returncode == 0, text
    assert '\r' not in text
    per_image = [line for line in text.splitlines() if re.match(r'img\d+\.png: [\d.]+ s -> ', line)]
    assert len(per_image) == 3, text
    assert text.splitlines()[-1].startswith('mzsr-sr: 3 done, 0 failed')
    outputs = sorted(p.name for p in (tmp_path / 'out').glob('img*.png'))
    assert outputs == [f'img{i:03d}{suffix}.png' for i in range(3)]
