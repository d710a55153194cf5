"""The model zoo's measured tables and README's model-zoo table, generated from benchmark outputs (never typed).

Repository tooling, not part of the installed package (``python scripts/train_weights.py report``).

``scripts/train_weights.py report --model <kind> --measure`` runs ``scripts/bench_table2.py`` once per table of
:data:`ZOO_TABLES` on the kind's shipped weights and writes ``campaign/<kind>/<table>.md`` and ``.json`` (with the
weights' SHA-256, so numbers of other weights are flagged stale). :func:`write_zoo` turns them into the model card's
``<!-- measured:<kind> -->`` section (tables and targets) and README's ``<!-- zoo -->`` table. The x2 direct model
keeps its own Figure 3 / Table 2 blocks (:mod:`.report`); its Table 2 output feeds the zoo table and the
multi-scale comparison.
"""
import json
import os
from dataclasses import dataclass
from os import path as osp

from mzsr_plugin.campaign.kinds import ROOT, WEIGHTS_DIR, campaign_dir
from mzsr_plugin.campaign.runner import load_history
from mzsr_plugin.campaign.selection import MIN_ADAPTATION_GAIN, adaptation_gain
from mzsr_plugin.evaluation import file_sha256
from mzsr_plugin.model_zoo import MODEL_ZOO
from mzsr_plugin.utils.figures import new_figure
from .report import (MEASURE_COMMAND, OFFICIAL_META, demo_block, load_periods, meta_training_volume, period_scores,
                     replace_block, write_page_block)


ZOO_FIGURE = 'zoo_training.png'


@dataclass(frozen=True)
class ZooTable:
    """One measured table of a zoo model.

    Attributes:
        name (str): File stem in the campaign folder (``<name>.md`` / ``.json``).
        title (str): What it is, for the model card.
        args (tuple[str]): ``bench_table2.py`` arguments (the weights and ``--out`` are added).
        column (str): The Set5 column the zoo table and the targets read.
        zssr (bool): Runs ZSSR on Set5 too (minutes per image on a CPU; cached per image in ``zssr_cache.json``).
    """
    name: str
    title: str
    args: tuple
    column: str
    zssr: bool = False


ZOO_TABLES = {
    'x2_direct': (ZooTable('table2_set5', 'Table 2 layout, x2 direct (Set5)', (), 'Set5 (5) g_d_2.0', True), ),
    'x4_direct': (ZooTable('table_x4_set5', 'x4 direct, Set5 g^d_2.0 (the 21x21 variance-2.0 kernel, every 4th pixel)',
                           ('--scale', '4', '--kernels', 'g_d_2.0', '--sets', 'Set5'), 'Set5 (5) g_d_2.0'), ),
    'x2_bicubic': (ZooTable('table1', 'Table 1 layout, bicubic degradation g^b_1.3 x2 (Set5, B100, Urban100 (5))',
                            ('--kernels', 'g_b_1.3', '--sets', 'Set5,B100:100,Urban100:5'), 'Set5 (5) g_b_1.3',
                            True), ),
    'multiscale': tuple(
        ZooTable(f'table3_x{s}', f'Table 3 layout, multi-scale model at x{s} (Set5 g^d_2.0)',
                 ('--scale', str(s), '--kernels', 'g_d_2.0', '--sets', 'Set5'), 'Set5 (5) g_d_2.0') for s in (2, 3, 4)),
}
# Paper values of the zoo table's Set5 column: (bicubic, MZSR(1), MZSR(10)).
PAPER = {('x2_direct', 2): (28.73, 35.20, 36.05), ('x2_bicubic', 2): (30.54, 35.18, 36.64),
         ('x4_direct', 4): (None, 30.20, 30.50)}


def table_scale(table):
    """The scale a table measures (``--scale``, default 2)."""
    args = list(table.args)
    return int(args[args.index('--scale') + 1]) if '--scale' in args else 2


def load_table(kind, table, sha=None):
    """(cells, stale) of a measured table; (None, False) when it was not measured."""
    file = osp.join(campaign_dir(kind), f'{table.name}.json')
    if not osp.isfile(file):
        return None, False
    with open(file) as f:
        data = json.load(f)
    return data['cells'], sha is not None and data.get('weights_sha256') != sha


def _cell(cells, method, column):
    value = (cells or {}).get(f'{method} | {column}')
    return None if value is None else value[0]


def _shipped_entry(kind):
    shipped = [e for e in load_history(campaign_dir(kind)) if e.get('shipped')]
    return shipped[-1] if shipped else None


def _shipped_gain(kind):
    entry = _shipped_entry(kind)
    return adaptation_gain(entry['families']) if entry else None


def targets(kind):
    """The model-zoo issue's targets of a kind: rows of (label, threshold text, measured value or None, met)."""
    rows = []

    def add(label, value, threshold, text=None):
        rows.append((label, text or f'≥ {threshold:g} dB', value, value is not None and value >= threshold))

    tables = {t.name: (t, load_table(kind, t)[0]) for t in ZOO_TABLES[kind]}
    if kind == 'x4_direct':
        t, cells = tables['table_x4_set5']
        add('Set5 g^d_2.0 x4: MZSR(1)', _cell(cells, 'MZSR(1)', t.column), 30.20)
        add('Set5 g^d_2.0 x4: MZSR(10)', _cell(cells, 'MZSR(10)', t.column), 30.50)
    elif kind == 'x2_bicubic':
        t, cells = tables['table1']
        add('Set5 g^b_1.3: MZSR(1)', _cell(cells, 'MZSR(1)', t.column), 35.18)
        add('Set5 g^b_1.3: MZSR(10)', _cell(cells, 'MZSR(10)', t.column), 36.64)
    elif kind == 'multiscale':
        for scale, single in ((2, 'x2_direct'), (4, 'x4_direct')):
            t, cells = tables[f'table3_x{scale}']
            reference_table = ZOO_TABLES[single][0]
            reference = _cell(load_table(single, reference_table)[0], 'MZSR(10)', reference_table.column)
            mine = _cell(cells, 'MZSR(10)', t.column)
            gap = None if mine is None or reference is None else mine - reference
            add(f'Set5 g^d_2.0 x{scale}: MZSR(10) − {single} MZSR(10)', gap, -0.3, '≥ −0.3 dB')
        t, cells = tables['table3_x3']
        mine, bicubic = _cell(cells, 'MZSR(10)', t.column), _cell(cells, 'Bicubic', t.column)
        add('Set5 g^d_2.0 x3: MZSR(10) − bicubic', None if mine is None else mine - bicubic, 2.0)
    add('held-out random kernels: MZSR(10) − MZSR(0)', _shipped_gain(kind), 0.5)
    return rows


def target_lines(kind):
    lines = ['| target | threshold | measured | |', '|---|---|---|---|']
    for label, threshold, value, met in targets(kind):
        shown = 'not measured' if value is None else f'{value:.2f}'
        verdict = '' if value is None else 'met' if met else 'not met'
        lines.append(f'| {label} | {threshold} | {shown} | {verdict} |')
    return lines


def measured_section(kind):
    """The model card's measured section of a zoo model other than x2 direct (tables and targets)."""
    model = MODEL_ZOO[kind]
    command = MEASURE_COMMAND.format(kind=kind)
    sha = file_sha256(model.path) if osp.isfile(model.path) else None
    entry = _shipped_entry(kind)
    trained = (f'campaign meta-iteration {entry["meta_iter"]}, {entry["train_hours"]:.2f} training hours'
               if entry else 'not shipped yet')
    lines = [f'## `{model.weights}` — {model.describe().split(" (")[0]} (measured)', '',
             f'Generated by `{command}` for the shipped weights ({trained}); official protocol (Y rounded to uint8, '
             'shave = scale). PSNR dB (seconds per image).', '']
    for table in ZOO_TABLES[kind]:
        cells, stale = load_table(kind, table, sha)
        lines.append(f'**{table.title}** — `scripts/bench_table2.py {" ".join(table.args)}`' +
                     (' --zssr-sets Set5' if table.zssr else '') + ':')
        lines.append('')
        if cells is None:
            lines += [f'Not measured yet: run `{command}`.', '']
            continue
        if stale:
            lines += [f'**Stale**: measured other weights than the shipped ones; rerun `{command}`.', '']
        with open(osp.join(campaign_dir(kind), f'{table.name}.md')) as f:
            lines += [f.read().strip(), '']
    return '\n'.join(lines + target_lines(kind))


def zoo_rows():
    """README's model-zoo table: one row per model and scale it serves, from the measured tables."""
    lines = ['| model | file | scale | downsampling | Set5 kernel | bicubic | MZSR(1) | MZSR(10) | paper MZSR(1) / '
             '(10) | size | training |', '|---' * 11 + '|']
    for kind, model in MODEL_ZOO.items():
        shipped = osp.isfile(model.path)
        sha = file_sha256(model.path) if shipped else None
        entry = _shipped_entry(kind)
        size = f'{os.path.getsize(model.path) / 2**20:.1f} MB' if shipped else '—'
        training = (f'{entry["train_hours"]:.1f} CPU h, {entry["meta_iter"]:,} meta-it'
                    if entry and shipped else 'not shipped yet')
        for table in ZOO_TABLES[kind]:
            scale = table_scale(table)
            cells, stale = load_table(kind, table, sha) if shipped else (None, False)
            values = [_cell(cells, m, table.column) for m in ('Bicubic', 'MZSR(1)', 'MZSR(10)')]
            shown = ['—' if v is None else f'{v:.2f}' + ('*' if stale else '') for v in values]
            paper = PAPER.get((kind, scale))
            paper = f'{paper[1]:.2f} / {paper[2]:.2f}' if paper else '—'
            kernel = table.column.split(') ')[1].replace('g_d_', 'g^d_').replace('g_b_', 'g^b_')
            lines.append(f'| {kind} | `{model.weights}` | x{scale} | {model.downsample} | {kernel} | ' +
                         ' | '.join(shown) + f' | {paper} | {size} | {training} |')
    return lines


def standing_rows():
    """Where each campaign stands, from its work periods (:func:`~.report.load_periods`): training so far, its
    pace (training seconds per meta-iteration, and what the official 100,000 of its own tasks would take), its
    meta-training volume against the official run, the selection score from the first evaluation to the best, and
    the score gained per training hour in its first and its last work period (what more CPU hours still buy)."""
    lines = ['| model | work periods | training | s per meta-it | 100k meta-it of these tasks at that pace | share of '
             'the official tasks / HR pixels | selection score: start → best | dB/h: first period → last |',
             '|---' * 8 + '|']
    for kind in MODEL_ZOO:
        periods = load_periods(campaign_dir(kind))
        scores = [s for s in period_scores(periods) if s]
        if not scores:
            continue
        volume = meta_training_volume(kind, periods)
        best = max((s['best'] for s in scores), key=lambda e: e['score'])
        rates = [s['gain_per_hour'] for s in scores if s['gain_per_hour'] is not None]
        hours = scores[-1]['last']['train_hours']
        pace = 3600 * hours / volume['meta_iters'] if volume['meta_iters'] else None
        cells = [kind, str(len(scores)), f'{hours:.2f} h, {volume["meta_iters"]:,} meta-it',
                 '—' if pace is None else f'{pace:.1f}',
                 '—' if pace is None else f'{volume["official_meta_iters"] * pace / 3600:,.0f} h',
                 f'{100 * volume["tasks"] / volume["official_tasks"]:.2f}% / '
                 f'{100 * volume["pixels"] / volume["official_pixels"]:.2f}%',
                 f'{scores[0]["first"]["score"]:.3f} → {best["score"]:.3f} ({best["meta_iter"]})',
                 f'{rates[0]:.3f} → {rates[-1]:.3f}' if rates else '—']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def plot_zoo_training(path):
    """Every campaign's meta-transfer trajectory on one figure, against training hours: the selection score gained
    since its first evaluation (the selection sets differ per model, so the slopes compare, not the levels) and the
    held-out random-kernel gain MZSR(10) − MZSR(0) beside the guard's bar; shipped evaluations starred.

    Args:
        path (str): Output PNG.

    Returns:
        dict: ``{kind: {'hours': [...], 'score_gained': [...], 'adaptation_gain': [...]}}`` as plotted.
    """
    fig = new_figure(11, 3.8)
    ax_score, ax_gain = fig.subplots(1, 2)
    plotted = {}
    for kind in MODEL_ZOO:
        history = [e for e in load_history(campaign_dir(kind)) if e.get('stage', 'meta') == 'meta']
        if not history:
            continue
        series = plotted[kind] = {'hours': [e['train_hours'] for e in history],
                                  'score_gained': [e['score'] - history[0]['score'] for e in history],
                                  'adaptation_gain': [adaptation_gain(e['families']) for e in history]}
        line, = ax_score.plot(series['hours'], series['score_gained'], 'o-', ms=3, label=kind)
        ax_gain.plot(series['hours'], series['adaptation_gain'], 'o-', ms=3, color=line.get_color(), label=kind)
        shipped = [i for i, e in enumerate(history) if e.get('shipped')]
        for ax, key in ((ax_score, 'score_gained'), (ax_gain, 'adaptation_gain')):
            ax.plot([series['hours'][i] for i in shipped], [series[key][i] for i in shipped], '*',
                    color=line.get_color(), ms=9)
    ax_gain.axhline(MIN_ADAPTATION_GAIN, color='gray', ls='--', label=f'guard ({MIN_ADAPTATION_GAIN:g} dB)')
    ax_gain.set_yscale('symlog', linthresh=1.0)  # early inits gain 20 dB; the guard's 0.5 dB must stay readable
    for ax, title in ((ax_score, 'selection score gained since the first evaluation (dB)'),
                      (ax_gain, 'held-out random kernels: MZSR(10) − MZSR(0) (dB, symlog)')):
        ax.set_xlabel('training hours')
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle('Model zoo campaigns (stars: shipped)', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return plotted


def write_zoo(kind, card=osp.join(WEIGHTS_DIR, 'MODEL_CARD.md'), root=ROOT,
              figure=osp.join(WEIGHTS_DIR, 'campaign', ZOO_FIGURE)):
    """Rewrites the kind's measured section of the model card (not for x2 direct: :mod:`.report` writes its own),
    its where-the-campaigns-stand table (:func:`standing_rows`), the model-zoo table of its page (README) with the
    campaigns' figure (:func:`plot_zoo_training`, drawn to ``figure``) and the same standing table, and the kind's
    demo printout where a page has one (:data:`~.report.PAGES`).

    Args:
        kind (str): The campaign kind just reported.
        card (str): The model card.
        root (str): The repository root the pages are under.
        figure (str): Where the campaigns' figure is drawn.
    """
    standing = standing_rows()  # reads every campaign's state.pth: once, for the card and README
    text = open(card).read() if osp.isfile(card) else ''
    if kind != 'x2_direct':
        text = replace_block(text, f'measured:{kind}', measured_section(kind))
    with open(card, 'w') as f:
        f.write(replace_block(text, 'standing', '\n'.join(standing)))
    plot_zoo_training(figure)

    def zoo_block(page):
        here = osp.dirname(osp.abspath(page))
        note = ('Generated by `python scripts/train_weights.py report --model <kind> [--measure]` from the measured '
                'tables of each model (official protocol, Set5; * = measured on other weights than the shipped ones, '
                'stale).')
        caption = ('The campaigns side by side (`plot_zoo_training`): selection score gained since the start and the '
                   'held-out adaptation gain (the guard asks ≥ 0.5 dB) against training hours; the trajectories '
                   f'and shipped checkpoints of each are in the [model card]({osp.relpath(card, here)}).')
        o = OFFICIAL_META
        intro = ('Where the campaigns stand (from each campaign\'s work periods in the model card; the selection sets '
                 f'differ per model, so compare the rates, not the scores; official: {o["meta_iters"]:,} '
                 f'meta-iterations × {o["tasks"]} tasks × ({o["patches"] // 2} + {o["patches"] // 2}) patches of '
                 f'{o["gt_size"]}²):')
        return '\n'.join([note, ''] + zoo_rows() + ['', f'![campaigns]({osp.relpath(figure, here)})', '', caption, '',
                                                    intro, ''] + standing)

    write_page_block(root, 'zoo', zoo_block)
    demo_file = osp.join(campaign_dir(kind), 'demo.json')
    if kind != 'x2_direct' and osp.isfile(demo_file):
        with open(demo_file) as f:
            demo = json.load(f)
        sha = file_sha256(MODEL_ZOO[kind].path) if osp.isfile(MODEL_ZOO[kind].path) else None
        stale = ['demo.json'] if demo.get('weights_sha256') != sha else []
        write_page_block(root, f'demo:{kind}', demo_block(kind, {'demo': demo, 'stale': stale}))
