"""The wheel holds what users run: the package, its weights, model card and option files; not the repository's own
tooling (the README / model-card generators under tools/) nor the campaigns' histories; and every console script
starts from it.

What this covers: the wheel is built from a copy of the working tree without build outputs (``conftest.wheel``),
installed with ``pip install --target`` into a folder (no new venv: the dependencies come from the test's
environment), and each console script named in the wheel's ``entry_points.txt`` is run as its entry point with
``--help`` from a folder outside the checkout, with the installed copy first on ``PYTHONPATH``. It does not check a
fresh venv's dependency resolution.
"""
import configparser
import os
import subprocess
import sys
import zipfile
from os import path as osp

from mzsr_plugin.campaign import CAMPAIGN_KINDS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Each console script and a word its --help must print (its own usage, not another's).
CONSOLE_SCRIPTS = {'mzsr-train': '-opt', 'mzsr-test': '-opt', 'mzsr-sr': '--kernel-dir', 'mzsr-demo': '--scale',
                   'mzsr-app': '--max-pixels', 'mzsr-campaign': 'compare-init'}


def _entry_points(wheel):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith('.dist-info/entry_points.txt'))
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(name).decode())
    return dict(parser['console_scripts'])


def test_the_wheel_holds_the_package_not_the_repository_tooling(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {f'mzsr_plugin/weights/{m}' for m in ('mzsr_x2_direct.pth', 'mzsr_x4_direct.pth', 'mzsr_x2_bicubic.pth',
                                                 'mzsr_multiscale.pth', 'kernel_estimator.pth', 'MODEL_CARD.md')} \
        <= set(names)
    assert {'mzsr_plugin/campaign/runner.py', 'mzsr_plugin/campaign/cli.py', 'mzsr_plugin/utils/progress.py',
            'mzsr_plugin_hook.pth'} <= set(names)
    # The campaign's option files travel in the package (mzsr-campaign trains from a wheel).
    assert {f'mzsr_plugin/options/{kind.meta_options}' for kind in CAMPAIGN_KINDS.values()} <= set(names)
    # No report generator, no campaign history (state.pth, history.jsonl, curves, recipes, measured tables).
    assert [n for n in names if n.startswith(('tools/', 'scripts/', 'tests/'))] == []
    assert [n for n in names if osp.basename(n) in ('report.py', 'zoo_tables.py', 'measure.py')] == []
    assert [n for n in names if '/campaign/' in n and not n.startswith('mzsr_plugin/campaign/')] == []
    records = ('state.pth', 'history.jsonl', 'recipes.json', 'precisions.json', 'init_comparison.json')
    assert [n for n in names if n.endswith(records)] == []


def test_every_console_script_starts_from_the_installed_wheel(wheel, installed_wheel, tmp_path):
    scripts = _entry_points(wheel)
    assert set(scripts) == set(CONSOLE_SCRIPTS)
    env = dict(os.environ, PYTHONPATH=str(installed_wheel))
    runs = {}
    for name, target in scripts.items():
        module, function = target.split(':')
        code = (f'import sys, {module} as m; sys.argv = [{name!r}, "--help"]; '
                f'assert m.__file__.startswith({str(installed_wheel)!r}), m.__file__; sys.exit(m.{function}())')
        # Run side by side: each imports torch (and the app gradio), seconds apiece.
        runs[name] = subprocess.Popen([sys.executable, '-c', code], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
    for name, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, f'{name} --help: exit {run.returncode}\n{err[-2000:]}'
        assert 'usage:' in out and CONSOLE_SCRIPTS[name] in out, f'{name} --help printed:\n{out[-2000:]}'


def test_the_installed_campaign_has_no_report(installed_wheel, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(installed_wheel))
    run = subprocess.run([sys.executable, '-m', 'mzsr_plugin.campaign.cli', 'report', '--model', 'x2_direct'],
                         cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "invalid choice: 'report'" in run.stderr
    # The checkout's script has it.
    run = subprocess.run([sys.executable, osp.join(ROOT, 'scripts', 'train_weights.py'), 'report', '--help'],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and '--measure' in run.stdout
