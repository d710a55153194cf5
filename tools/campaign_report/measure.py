"""``scripts/train_weights.py report``: regenerate the generated blocks of a model, optionally measuring first.

``report --model <kind>`` rewrites the model card's campaign section and training curve from the history, the
model card's measured numbers and the blocks of README and docs/ (:data:`~.report.PAGES`) from the benchmark
outputs in the campaign folder; ``--measure`` first reruns those benchmarks for the shipped weights
(``bench_table2.py`` on Set5 with ZSSR from its per-image cache, then ``plot_adaptation.py`` with that ZSSR PSNR, then
the demo, whose printout README shows; the other models: their tables of :data:`~.zoo_tables.ZOO_TABLES`).
"""
import json
import shutil
import subprocess
import sys
import torch
from os import path as osp

from mzsr_plugin.campaign.kinds import CAMPAIGN_KINDS, ROOT, campaign_dir
from mzsr_plugin.campaign.runner import default_ship_path, machine_label
from .report import MEASURE_COMMAND, write_measured, write_report
from .zoo_tables import ZOO_TABLES, write_zoo

# The models whose demo printout a page shows (``python -m mzsr_plugin.demo --scale s``), by kind.
DEMO_SCALES = {'x2_direct': 2, 'x4_direct': 4}
# The demo's comparison figure a page shows, by kind (README's picture: LR, bicubic, MZSR(0), MZSR(n), GT).
DEMO_FIGURES = {'x2_direct': 'docs/demo_compare.png'}


def add_report_parser(sub):
    """Adds the ``report`` subcommand to ``mzsr-campaign``'s subparsers (``scripts/train_weights.py``)."""
    report = sub.add_parser('report', help='model card section, training curve and the README / docs blocks')
    report.add_argument('--model', default='x2_direct', choices=sorted(CAMPAIGN_KINDS))
    report.add_argument('--measure', action='store_true',
                        help='rerun Figure 3 and Table 2 (Set5) for the shipped weights first (minutes on a CPU; '
                        'ZSSR images missing from the cache take minutes each)')
    report.add_argument('--no-zssr', action='store_true', help='--measure without the ZSSR rows of the tables that '
                        'have them (ZSSR takes minutes per image on a CPU)')
    report.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')


def run_script(name, *argv):
    cmd = [sys.executable, osp.join(ROOT, 'scripts', name), *map(str, argv)]
    print('$ ' + ' '.join(cmd[1:]), flush=True)
    if subprocess.run(cmd).returncode:
        raise SystemExit(f'{name} failed (see its output above); the model card, README and docs were left as they '
                         'were')


def measure_tables(kind_name, device, zssr=True):
    """The zoo tables of a model other than x2 direct (:data:`~.zoo_tables.ZOO_TABLES`)."""
    folder, weights = campaign_dir(kind_name), default_ship_path(kind_name)
    for table in ZOO_TABLES[kind_name]:
        extra = ['--zssr-sets', 'Set5', '--zssr-cache', osp.join(folder, 'zssr_cache.json')] if table.zssr and zssr \
            else []
        run_script('bench_table2.py', '--weights', weights, *table.args, *extra, '--out',
                   osp.join(folder, f'{table.name}.md'), '--device', device)


def run_demo(kind_name, device):
    """Runs the demo on the kind's shipped weights and keeps its printout (``demo.json``) for its page."""
    scale = DEMO_SCALES[kind_name]
    command = 'python -m mzsr_plugin.demo' + (f' --scale {scale}' if scale != 2 else '')
    demo = [sys.executable, '-m', 'mzsr_plugin.demo', '--scale', str(scale), '--weights', default_ship_path(kind_name),
            '--device', device]
    print(f'$ {command}', flush=True)
    run = subprocess.run(demo, cwd=ROOT, capture_output=True, text=True)
    print(run.stdout, end='', flush=True)
    if run.returncode:
        raise SystemExit(f'the demo failed:\n{run.stderr[-3000:]}')
    with open(osp.join(ROOT, 'mzsr_demo', 'results.json')) as f:
        sha = json.load(f)['weights_sha256']
    if kind_name in DEMO_FIGURES:
        shutil.copyfile(osp.join(ROOT, 'mzsr_demo', 'astronaut_compare.png'), osp.join(ROOT, DEMO_FIGURES[kind_name]))
    with open(osp.join(campaign_dir(kind_name), 'demo.json'), 'w') as f:
        json.dump({'command': command, 'stdout': run.stdout, 'weights_sha256': sha, 'machine': machine_label(device)},
                  f, indent=1)


def measure(kind_name, device, zssr=True):
    """Reruns the benchmarks behind the generated numbers for the shipped weights of ``kind_name``."""
    if not osp.isfile(default_ship_path(kind_name)):
        raise SystemExit(f'--measure: {default_ship_path(kind_name)} is not shipped yet; run the {kind_name} campaign '
                         'first')
    if kind_name != 'x2_direct':
        measure_tables(kind_name, device, zssr)
    else:
        folder, weights = campaign_dir(kind_name), default_ship_path(kind_name)
        run_script('bench_table2.py', '--weights', weights, '--sets', 'Set5', '--zssr-sets', 'Set5', '--zssr-cache',
                   osp.join(folder, 'zssr_cache.json'), '--out', osp.join(folder, 'table2_set5.md'), '--device',
                   device)
        with open(osp.join(folder, 'table2_set5.json')) as f:
            zssr_psnr = json.load(f)['cells']['ZSSR | Set5 (5) g_d_2.0'][0]
        run_script('plot_adaptation.py', '--weights', weights, '--zssr-psnr', zssr_psnr, '--out',
                   osp.join(folder, 'figure3.png'), '--device', device)
    if kind_name in DEMO_SCALES:
        run_demo(kind_name, device)


def report(kind):
    """Rewrites every generated block of ``kind`` from what is on disk; returns its model-card section."""
    section = write_report(kind)
    if kind == 'x2_direct':
        for name in write_measured(kind):
            print(f'warning: {name} measured other weights than the shipped ones; rerun '
                  f'`{MEASURE_COMMAND.format(kind=kind)}`', flush=True)
    write_zoo(kind)
    return section


def run_report(args):
    """The ``report`` subcommand."""
    if args.measure:
        measure(args.model, args.device, zssr=not args.no_zssr)
    print(report(args.model))
