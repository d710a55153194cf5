"""The model card's, README's and docs/' numbers, generated from the campaign's files (never typed by hand).

Repository tooling, not part of the installed package: ``python scripts/train_weights.py report`` runs it from a
checkout.

``write_report(kind)`` rewrites the part of ``mzsr_plugin/weights/MODEL_CARD.md`` between the markers
``<!-- campaign:<kind> -->`` and ``<!-- /campaign:<kind> -->`` (appended when absent) and draws
``campaign/<kind>/curve.png``: PSNR on the held-out selection set after 0, 1 and 10 steps against meta-iterations
and training hours, with bicubic as a dashed line.

``write_measured(kind)`` rewrites the blocks ``<!-- summary:<kind> -->`` and ``<!-- measured:<kind> -->`` of the
model card and ``<!-- results:<kind> -->`` and ``<!-- demo:<kind> -->`` (in the page :data:`PAGES` names) from the
benchmark outputs in
the campaign folder (``figure3.json`` of ``scripts/plot_adaptation.py``, ``table2_set5.json`` of
``scripts/bench_table2.py``, ``demo.json``: the demo's printout) and checks the issue's targets. Each output
records the SHA-256 of the weights it measured: numbers of other weights than the shipped ones are flagged as stale
in the text, never passed off as the shipped weights'.
"""
import copy
import json
import numpy as np
import torch
import yaml
from os import path as osp

from mzsr_plugin.campaign.kinds import CAMPAIGN_KINDS, OPTIONS_DIR, ROOT, WEIGHTS_DIR, campaign_dir
from mzsr_plugin.campaign.runner import STATE_FILE, apply_overrides, default_ship_path, load_history
from mzsr_plugin.campaign.selection import (MIN_ADAPTATION_GAIN, adaptation_gain, families, family_title,
                                            selection_plan)
from mzsr_plugin.evaluation import file_sha256
from mzsr_plugin.utils.figures import new_figure

MAX_ROWS = 16
# The released models' meta-training: 100k iterations of 5 tasks, each 8 support + 8 query HR patches of 64².
OFFICIAL_META = {'meta_iters': 100000, 'tasks': 5, 'patches': 16, 'gt_size': 64}


def _cell(entry, family):
    values = entry['families'].get(family)
    return ' / '.join(f'{values[s]:.2f}' for s in ('0', '1', '10')) if values else 'n/a'


def plot_history(history, path, title):
    """Draws the training curve of a campaign: one panel per kernel family against meta-iterations, and the
    selection score against training hours.

    Args:
        history (list[dict]): Entries of ``history.jsonl``.
        path (str): Output PNG.
        title (str): Figure title.
    """
    names = families(history)
    fig = new_figure(4.0 * (len(names) + 1), 3.4)
    axes = fig.subplots(1, len(names) + 1)
    for ax, family in zip(axes, names):
        rows = [e for e in history if family in e['families']]
        if not rows:
            ax.set_visible(False)
            continue
        iters = [e['meta_iter'] for e in rows]
        for steps, style in (('0', 'o-'), ('1', 's-'), ('10', '^-')):
            ax.plot(iters, [e['families'][family][steps] for e in rows], style, ms=3, label=f'{steps} steps')
        ax.axhline(rows[-1]['families'][family]['bicubic'], color='gray', ls='--', label='bicubic')
        ax.set_xlabel('meta-iterations')
        ax.set_ylabel('PSNR (dB)')
        ax.set_title(family, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-1]
    ax.plot([e['train_hours'] for e in history], [e['score'] for e in history], 'o-', ms=3,
            label='score (mean PSNR, 10 steps)')
    shipped = [e for e in history if e.get('shipped')]
    if shipped:
        ax.plot([e['train_hours'] for e in shipped], [e['score'] for e in shipped], 'r*', ms=9, label='shipped')
    ax.set_xlabel('training hours')
    ax.set_ylabel('PSNR (dB)')
    ax.set_title('selection score', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _overrides(overrides):
    return ', '.join(f'{key.split(".")[-1]}={value}' for key, value in overrides.items())


def _trajectory_rows(history):
    picked = history if len(history) <= MAX_ROWS else [
        history[int(i)] for i in np.unique(np.linspace(0, len(history) - 1, MAX_ROWS).round())
    ]
    shipped = [e for e in history if e.get('shipped')]
    if shipped and shipped[-1] not in picked:
        picked = sorted(picked + [shipped[-1]], key=history.index)
    names = families(history)
    lines = ['| meta it | hours | machine | recipe | ' + ' | '.join(f'{family_title(f)} 0/1/10' for f in names) +
             ' | score | gain | guard | shipped |', '|---' * (len(names) + 8) + '|']
    for e in picked:
        recipe = e['recipe'] + (f' ({_overrides(e["overrides"])})' if e.get('overrides') else '')
        lines.append(f'| {e["meta_iter"]} | {e["train_hours"]:.2f} | {e["machine"]} | {recipe} | ' +
                     ' | '.join(_cell(e, f) for f in names) + f' | {e["score"]:.3f} | '
                     f'{adaptation_gain(e["families"]):+.2f} | {"pass" if e["guard"] else "fail"} | '
                     f'{"yes" if e.get("shipped") else ""} |')
    return lines


def work_periods(segments, history):
    """The campaign's work periods: one per resumed segment (``state.pth``'s ``segments``), each with the
    evaluations it added. A segment that added no evaluation (stopped early, then restarted) is merged into the next
    one with the same overrides; a segment killed before it recorded its length ends where the next one resumed.

    Args:
        segments (list[dict]): ``state['segments']``: ``started``, ``machine``, ``overrides``, ``start_meta_iter``,
            ``meta_iters``.
        history (list[dict]): The evaluations, oldest first.

    Returns:
        list[dict]: ``started``, ``machine``, ``overrides``, ``start_iter``, ``end_iter``, ``entries`` (the
        evaluations after ``start_iter`` up to ``end_iter``; the first period also holds the evaluation at its start).
    """
    periods = []
    for i, seg in enumerate(segments):
        start = seg['start_meta_iter']
        # A killed segment never recorded its length: it ended where the next one resumed.
        if i + 1 < len(segments):
            end = segments[i + 1]['start_meta_iter']
        elif 'meta_iters' in seg:
            end = start + seg['meta_iters']
        else:
            end = max([start] + [e['meta_iter'] for e in history])
        entries = [e for e in history if start < e['meta_iter'] <= end or (i == 0 and e['meta_iter'] == start)]
        if periods and not periods[-1]['entries'] and periods[-1]['overrides'] == seg.get('overrides', {}):
            periods[-1].update(end_iter=end, entries=entries)
            continue
        periods.append({'started': seg['started'], 'machine': seg['machine'], 'overrides': seg.get('overrides', {}),
                        'start_iter': start, 'end_iter': end, 'entries': entries})
    return periods


def period_scores(periods):
    """The selection scores of each work period: where it started (the previous period's last evaluation, or its
    own first), its last evaluation and its best one.

    Args:
        periods (list[dict]): :func:`work_periods`.

    Returns:
        list[dict | None]: Per period ``first``, ``last``, ``best`` (history entries) and ``gain_per_hour`` (best
        score minus the start's, per training hour of the period; None for a period of no length); None for a
        period without evaluations.
    """
    scores, previous = [], None
    for p in periods:
        entries = p['entries']
        if not entries:
            scores.append(None)
            continue
        first = previous or entries[0]
        best = max(entries, key=lambda e: e['score'])
        hours = entries[-1]['train_hours'] - first['train_hours']
        scores.append({'first': first, 'last': entries[-1], 'best': best,
                       'gain_per_hour': (best['score'] - first['score']) / hours if hours > 0 else None})
        previous = entries[-1]
    return scores


def load_periods(folder):
    """The work periods of a campaign folder (:func:`work_periods` of its ``state.pth`` and history); [] without a
    state."""
    state_file = osp.join(folder, STATE_FILE)
    if not osp.isfile(state_file):
        return []
    # Our own file, with scheduler state (Counter) that weights_only refuses.
    segments = torch.load(state_file, map_location='cpu', weights_only=False)['segments']
    return work_periods(segments, load_history(folder))


def _period_rows(periods):
    lines = ['Work periods (one per `campaign` run that resumed the state; generated from `state.pth` and the '
             'history): selection score where each period started and ended, the best it reached, and that gain '
             'per training hour of the period.', '',
             '| period | started | machine | overrides | meta it | training hours | score start → end '
             '| best (meta it) | dB/h | shipped |', '|---' * 10 + '|']
    for n, (p, s) in enumerate(zip(periods, period_scores(periods)), 1):
        cells = [str(n), p['started'].replace('T', ' ')[:16], p['machine'], _overrides(p['overrides']) or '—',
                 f'{p["start_iter"]} → {p["end_iter"]}']
        if s:
            rate = s['gain_per_hour']
            cells += [f'{s["first"]["train_hours"]:.2f} → {s["last"]["train_hours"]:.2f}',
                      f'{s["first"]["score"]:.3f} → {s["last"]["score"]:.3f}',
                      f'{s["best"]["score"]:.3f} ({s["best"]["meta_iter"]})', '—' if rate is None else f'{rate:.3f}',
                      ', '.join(str(e['meta_iter']) for e in p['entries'] if e.get('shipped')) or '—']
        else:
            cells += ['no evaluation'] * 4 + ['—']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def meta_training_volume(kind, periods):
    """How much meta-training the work periods did, counted as tasks and HR patch pixels (support + query), each
    period with the kind's meta option file and that period's ``--set`` overrides.

    Args:
        kind (str): A key of :data:`CAMPAIGN_KINDS`.
        periods (list[dict]): :func:`work_periods`.

    Returns:
        dict: ``meta_iters``, ``tasks``, ``pixels`` and the same for the official run (``official_*``).
    """
    with open(osp.join(OPTIONS_DIR, CAMPAIGN_KINDS[kind].meta_options)) as f:
        base = yaml.safe_load(f)
    volume = {'meta_iters': 0, 'tasks': 0, 'pixels': 0}
    for p in periods:
        opt = apply_overrides(copy.deepcopy(base), {key.split(':', 1)[-1]: value for key, value in
                                                    p['overrides'].items() if key.split(':', 1)[0] != 'pretrain'})
        train = opt['datasets']['train']
        iters = p['end_iter'] - p['start_iter']
        volume['meta_iters'] += iters
        volume['tasks'] += iters * train['batch_size_per_gpu']
        volume['pixels'] += (iters * train['batch_size_per_gpu'] * (train['num_support'] + train['num_query']) *
                             train['gt_size']**2)
    o = OFFICIAL_META
    volume.update(official_meta_iters=o['meta_iters'], official_tasks=o['meta_iters'] * o['tasks'],
                  official_pixels=o['meta_iters'] * o['tasks'] * o['patches'] * o['gt_size']**2)
    return volume


def _volume_line(volume):
    return (f'Meta-training so far: {volume["meta_iters"]:,} meta-iterations, {volume["tasks"]:,} tasks '
            f'({100 * volume["tasks"] / volume["official_tasks"]:.2f}% of the official {volume["official_tasks"]:,}), '
            f'{volume["pixels"]:.3g} HR patch pixels, support + query '
            f'({100 * volume["pixels"] / volume["official_pixels"]:.2f}% of the official '
            f'{volume["official_pixels"]:.3g}: {OFFICIAL_META["meta_iters"]:,} iterations × {OFFICIAL_META["tasks"]} '
            f'tasks × {OFFICIAL_META["patches"]} patches of {OFFICIAL_META["gt_size"]}²); counted with the option file '
            'as it is now and each period\'s overrides.')


def _recipe_rows(recipes):
    lines = [f'Recipe comparison (`scripts/train_weights.py compare`): {recipes["minutes_each"]:g} minutes each, '
             f'{recipes["parallel"]} at a time, all from `{recipes["init"]}`; PSNR on the selection set after '
             '0 / 1 / 10 steps.', '']
    names = list(next(iter(recipes['results'].values()))['end']) if recipes['results'] else []
    lines += ['| recipe | overrides | meta it | hours | ' + ' | '.join(map(family_title, names)) +
              ' | score (start → end) | dB/h |', '|---' * (len(names) + 6) + '|']
    for name, r in recipes['results'].items():
        overrides = _overrides(r['overrides'])
        cells = [' / '.join(f'{r["end"][f][s]:.2f}' for s in ('0', '1', '10')) for f in names]
        lines.append(f'| {name} | {overrides} | {r["meta_iters"]} | {r["train_hours"]:.3f} | ' + ' | '.join(cells) +
                     f' | {r["score_start"]:.3f} → {r["score_end"]:.3f} | {r["score_gain_per_hour"]:.2f} |')
    return lines


def campaign_section(kind):
    """The generated Markdown of a kind's campaign (no markers); draws its curve as a side effect."""
    folder = campaign_dir(kind)
    history = load_history(folder)
    lines = [f'## Campaign `{kind}` (generated by `python scripts/train_weights.py report --model {kind}`)', '']
    if not history:
        return '\n'.join(lines + ['No evaluation yet.'])
    last = history[-1]['families']
    bicubic = ' / '.join(f'{family_title(f)} {last[f]["bicubic"]:.2f}' for f in families(history))
    plan = selection_plan(CAMPAIGN_KINDS[kind].model.scales, CAMPAIGN_KINDS[kind].downsample)
    counts = {}
    for family, _, _ in plan:
        counts[family] = counts.get(family, 0) + 1
    segments = sorted({e['machine'] for e in history})
    lines += [f'Selection set: {len(history[-1]["cases"])} held-out HQ70 centre crops (' +
              ', '.join(f'{n} × {family_title(f)}' for f, n in counts.items()) + ', random = seeded '
              f'training-distribution kernels); bicubic {bicubic} dB. Score = mean PSNR after 10 steps; gain = '
              'MZSR(10) − MZSR(0) on the random kernels; guard = no case below its bicubic PSNR and gain ≥ '
              f'{MIN_ADAPTATION_GAIN:g} dB (the gain condition since 2026-12-03: earlier rows were judged without it, '
              'the bar they set is judged again by the current rule when a campaign resumes). Machines: ' +
              ', '.join(segments) + '.', '']
    shipped = [e for e in history if e.get('shipped')]
    if shipped:
        e = shipped[-1]
        lines += [f'**Shipped**: meta iteration {e["meta_iter"]} ({e["train_hours"]:.2f} training hours, recipe '
                  f'{e["recipe"]}), score {e["score"]:.3f} dB, guard {"pass" if e["guard"] else "fail"}' +
                  (f' (below bicubic: {", ".join(e["below_bicubic"])})' if e['below_bicubic'] else '') +
                  (f'; mean learned step size {e["inner_lr_mean"]:.4g}' if e.get('inner_lr_mean') else '') + '.',
                  '']
    plot_history(history, osp.join(folder, 'curve.png'), f'MZSR {kind} campaign: selection-set PSNR')
    lines += [f'![training curve](campaign/{kind}/curve.png)', ''] + _trajectory_rows(history)
    periods = load_periods(folder)
    if periods:
        lines += [''] + _period_rows(periods) + ['', _volume_line(meta_training_volume(kind, periods))]
    recipes_file = osp.join(folder, 'recipes.json')
    if osp.isfile(recipes_file):
        with open(recipes_file) as f:
            lines += [''] + _recipe_rows(json.load(f))
    init_file = osp.join(folder, 'init_comparison.json')
    if osp.isfile(init_file):
        with open(init_file) as f:
            lines += [''] + _init_rows(json.load(f))
    return '\n'.join(lines)


def _init_rows(comparison):
    """The starting-point comparison of a campaign (``init_comparison.json`` of ``compare-init``): selection score
    against hours, and the start ahead at the last evaluation."""
    first = next(iter(comparison['inits'].values()))
    lines = [f'Starting point, measured side by side: {comparison["question"]} {comparison["how"]} '
             f'({comparison["machine"]}). Selection score (mean PSNR after 10 steps) at each evaluation:', '',
             '| start | ' + ' | '.join(f'{e["train_hours"]:.2f} h' for e in first) + ' | gain |',
             '|---' * (len(first) + 2) + '|']
    for name, trajectory in comparison['inits'].items():
        ahead = ' (**ahead**)' if name == comparison['ahead'] else ''
        lines.append(f'| {name}{ahead} | ' + ' | '.join(f'{e["score"]:.3f}' for e in trajectory) +
                     f' | {trajectory[-1]["score"] - trajectory[0]["score"]:+.2f} dB |')
    lines += ['', 'Held-out adaptation gain, MZSR(10) − MZSR(0) on the random kernels (the guard asks ≥ '
              f'{MIN_ADAPTATION_GAIN:g} dB), at each evaluation: ' + '; '.join(
                  f'{name} ' + ', '.join(f'{adaptation_gain(e["families"]):+.2f}' for e in trajectory)
                  for name, trajectory in comparison['inits'].items()) + ' dB.']
    ahead = comparison['inits'][comparison['ahead']]
    for name, other in comparison['inits'].items():
        if name != comparison['ahead']:
            leads = ', '.join(f'{a["score"] - b["score"]:+.2f}' for a, b in zip(ahead[1:], other[1:]))
            steps = ', '.join(f'{b["score"] - a["score"]:+.2f}' for a, b in zip(other, other[1:]))
            lines += ['', f'Ahead at the last evaluation: {comparison["ahead"]}; its lead over {name} at each later '
                      f'evaluation: {leads} dB (that start\'s gain per evaluation: {steps} dB).']
    return lines


# The page (relative to the repository root) of each generated block outside the model card; a block absent here is
# not written. README keeps the demo, the results table and the zoo; the rest of the depth is in docs/.
PAGES = {
    'demo:x2_direct': 'README.md',
    'demo:x4_direct': 'docs/results.md',
    'results:x2_direct': 'README.md',
    'zoo': 'README.md',
}


def replace_block(text, name, block):
    """``text`` with the part between ``<!-- name -->`` and ``<!-- /name -->`` replaced (appended when absent)."""
    start, end = f'<!-- {name} -->', f'<!-- /{name} -->'
    block = f'{start}\n{block}\n{end}'
    if start in text and end in text:
        return text[:text.index(start)] + block + text[text.index(end) + len(end):]
    return text.rstrip('\n') + '\n\n' + block + '\n'


def write_report(kind, card=osp.join(WEIGHTS_DIR, 'MODEL_CARD.md')):
    """Rewrites the campaign section of the model card (appending it when the markers are absent).

    Args:
        kind (str): A key of :data:`~mzsr_plugin.campaign.kinds.CAMPAIGN_KINDS`.
        card (str): The model card.

    Returns:
        str: The section written.
    """
    if kind not in CAMPAIGN_KINDS:
        raise ValueError(f'unknown campaign kind {kind!r}; expected one of {sorted(CAMPAIGN_KINDS)}')
    section = campaign_section(kind)
    text = open(card).read() if osp.isfile(card) else ''
    with open(card, 'w') as f:
        f.write(replace_block(text, f'campaign:{kind}', section))
    return section


# The targets (official protocol, held-out data): name, measurement key, threshold.
TARGETS = (
    ('held-out random kernels: MZSR(10) − MZSR(0)', 'gain10', 0.5),
    ('held-out random kernels: MZSR(1) − MZSR(0)', 'gain1', 0.2),
    ('Set5 g^d_2.0: MZSR(10)', 'set5_g20_10', 35.5),
    ('Set5 g^d_0.2: MZSR(1)', 'set5_g02_1', 32.0),
)
PAPER_SET5 = {'g_d_0.2': 'bicubic 30.24, ZSSR 34.29, MZSR(1) 33.14, MZSR(10) 33.74',
              'g_d_2.0': 'bicubic 28.73, ZSSR 34.90, MZSR(1) 35.20, MZSR(10) 36.05'}
MEASURE_COMMAND = 'python scripts/train_weights.py report --model {kind} --measure'


def _measurement(folder, name, shipped_sha):
    """(numbers, stale) of one benchmark output in the campaign folder; (None, False) when it is absent."""
    file = osp.join(folder, name)
    if not osp.isfile(file):
        return None, False
    with open(file) as f:
        data = json.load(f)
    return data, data.get('weights_sha256') != shipped_sha


def measured_numbers(kind):
    """The numbers of the generated blocks: Figure 3, Table 2 (Set5), the demo and the targets, with staleness.

    Returns:
        dict: ``figure3``, ``table2`` and ``demo`` (the JSON outputs or None), ``stale`` (names of outputs measured
        on other weights), ``shipped`` (the history entry of the shipped weights or None), ``targets`` (key ->
        value; the random-kernel gains come from that history entry) and ``sha256`` (of the shipped weights).
    """
    folder = campaign_dir(kind)
    sha = file_sha256(default_ship_path(kind)) if osp.isfile(default_ship_path(kind)) else None
    figure3, figure3_stale = _measurement(folder, 'figure3.json', sha)
    table2, table2_stale = _measurement(folder, 'table2_set5.json', sha)
    shipped = [e for e in load_history(folder) if e.get('shipped')]
    shipped = shipped[-1] if shipped else None
    targets = {}
    if shipped and adaptation_gain(shipped['families']) is not None:
        targets.update(gain10=adaptation_gain(shipped['families']), gain1=adaptation_gain(shipped['families'], '1'))
    if table2:
        for key, cell in (('set5_g20_10', 'MZSR(10) | Set5 (5) g_d_2.0'), ('set5_g02_1', 'MZSR(1) | Set5 (5) g_d_0.2')):
            if cell in table2['cells']:
                targets[key] = table2['cells'][cell][0]
    demo, demo_stale = _measurement(folder, 'demo.json', sha)
    stale = [n for n, s in (('figure3.json', figure3_stale), ('table2_set5.json', table2_stale),
                            ('demo.json', demo_stale)) if s]
    return {'figure3': figure3, 'table2': table2, 'demo': demo, 'stale': stale, 'shipped': shipped,
            'targets': targets, 'sha256': sha}


def _zssr_g20(numbers):
    """(PSNR text, where it comes from) of ZSSR on Set5 g^d_2.0: Table 2's measurement, else Figure 3's input."""
    cell = (numbers['table2'] or {}).get('cells', {}).get('ZSSR | Set5 (5) g_d_2.0')
    if cell:
        machines = ', '.join(numbers['table2'].get('zssr_machines', [])) or 'machine not recorded'
        return f'{cell[0]:.2f}', f'`bench_table2.py`, {cell[1]:.0f} s per image on {machines}'
    zssr = (numbers['figure3'] or {}).get('zssr')
    return (f'{zssr:.2f}', 'given to `plot_adaptation.py`') if zssr is not None else ('not run', '')


def _stale_line(kind, numbers):
    if not numbers['stale']:
        return []
    return [f'**Stale**: {", ".join(numbers["stale"])} measured other weights than the shipped ones (sha256 '
            f'{numbers["sha256"][:12]}); rerun `{MEASURE_COMMAND.format(kind=kind)}`.', '']


def _shipped_label(numbers):
    e = numbers['shipped']
    return (f'campaign meta-iteration {e["meta_iter"]}, {e["train_hours"]:.2f} training hours' if e else
            'not from this campaign')


def _target_rows(numbers):
    lines = ['| target | threshold | measured | |', '|---|---|---|---|']
    for label, key, threshold in TARGETS:
        value = numbers['targets'].get(key)
        if value is None:
            lines.append(f'| {label} | ≥ {threshold:g} dB | not measured | |')
        else:
            met = 'met' if value >= threshold else f'not met ({value - threshold:+.2f} dB)'
            lines.append(f'| {label} | ≥ {threshold:g} dB | {value:.2f} | {met} |')
    return lines


def summary_block(kind, numbers):
    """The model card's one-paragraph summary of what the shipped weights do before and after adaptation."""
    figure3 = numbers['figure3']
    if not figure3:
        return f'**Adapt before use.** Not measured yet: run `{MEASURE_COMMAND.format(kind=kind)}`.'
    psnr = figure3['curves']['meta-trained']
    zssr, source = _zssr_g20(numbers)
    return '\n'.join(_stale_line(kind, numbers) + [
        f'**Adapt before use.** These are meta-transfer weights: before adaptation they score {psnr["0"]:.2f} dB on '
        f'Set5 g^d_2.0, after one step {psnr["1"]:.2f} and after ten {psnr["10"]:.2f} dB (our ZSSR: {zssr} dB, '
        f'{source}); the released official model is at ~15.7 dB before adaptation and 35.20 after one step. The '
        'learned step sizes shipped in the file are what makes the first steps count.'])


def measured_block(kind, numbers):
    """The model card's "Measured" section: Figure 3, Table 2 (Set5) and the targets, for the shipped weights."""
    command = MEASURE_COMMAND.format(kind=kind)
    lines = ['## Measured (official protocol: Y rounded to uint8, shave 2)', '',
             f'Generated by `{command}` (which reruns the two scripts below) for the shipped weights '
             f'({_shipped_label(numbers)}).', ''] + _stale_line(kind, numbers)
    figure3, table2 = numbers['figure3'], numbers['table2']
    if figure3:
        steps, zssr = figure3['steps'], _zssr_g20(numbers)
        lines += [f'Set5 g^d_2.0 (official inputs), PSNR after 0..10 adaptation steps — `scripts/plot_adaptation.py` '
                  f'({figure3.get("machine", "machine not recorded")}):', '',
                  '| steps | ' + ' | '.join(map(str, steps)) + ' |', '|---|' + '---|' * len(steps)]
        for label, name in (('pretrained (stage 1)', 'pretrained θ_T (official, converted)'),
                            ('meta-trained', '**these weights**')):
            lines.append(f'| {name} | ' + ' | '.join(f'{figure3["curves"][label][str(s)]:.2f}' for s in steps) + ' |')
        lines += ['', f'Bicubic {figure3["bicubic"]:.2f}, ZSSR {zssr[0]} ({zssr[1]}); paper MZSR(1) 35.20, MZSR(10) '
                  '36.05.', '', f'![Figure 3, measured](campaign/{kind}/figure3.png)', '']
    else:
        lines += [f'Figure 3 not measured yet: run `{command}`.', '']
    if table2:
        with open(osp.join(campaign_dir(kind), 'table2_set5.md')) as f:
            table = f.read().strip()
        lines += ['The paper\'s Table 2 layout — `scripts/bench_table2.py --sets Set5 --zssr-sets Set5` (g^d_ani = '
                  '`a_d_2.3562_4.0_1.0` of `options/mzsr_test_x2.yml`; ZSSR from the per-image cache '
                  '`zssr_cache.json` beside it). Paper, Set5: ' +
                  '; '.join(f'{k}: {v}' for k, v in PAPER_SET5.items()) +
                  '. B100 (20) and Urban100 (5) are left for a lent GPU.', '', table, '']
    lines += _target_rows(numbers)
    return '\n'.join(lines)


def results_block(kind, numbers):
    """README's Set5 g^d_2.0 results table of the shipped weights, with the paper's numbers beside them."""
    figure3 = numbers['figure3']
    if not figure3:
        return f'Not measured yet: run `{MEASURE_COMMAND.format(kind=kind)}`.'
    pre, meta = figure3['curves']['pretrained (stage 1)'], figure3['curves']['meta-trained']
    lines = _stale_line(kind, numbers) + [
        f'Generated by `{MEASURE_COMMAND.format(kind=kind)}`; shipped weights: {_shipped_label(numbers)}.', '',
        '| method | PSNR (dB) | paper |', '|---|---|---|',
        f'| Bicubic | {figure3["bicubic"]:.2f} | 28.73 |',
        f'| official bicubic-pretrained θ_T (converted), 0 / 1 / 10 steps | {pre["0"]:.2f} / {pre["1"]:.2f} / '
        f'{pre["10"]:.2f} | — |',
        f'| **shipped weights, MZSR(0)** | {meta["0"]:.2f} | ~15.7 (released meta-trained init) |',
        f'| **shipped weights, MZSR(1)** | {meta["1"]:.2f} | 35.20 |',
        f'| **shipped weights, MZSR(10)** | {meta["10"]:.2f} | 36.05 |',
        '| our ZSSR ({1}) | {0} | 34.90 |'.format(*_zssr_g20(numbers)), '',
        f'![PSNR vs adaptation steps, Set5 g^d_2.0](mzsr_plugin/weights/campaign/{kind}/figure3.png)', '']
    return '\n'.join(lines + _target_rows(numbers))


def demo_block(kind, numbers):
    """README's demo printout: what ``python -m mzsr_plugin.demo`` printed for the shipped weights."""
    demo = numbers['demo']
    if not demo:
        return f'Not run yet: `{MEASURE_COMMAND.format(kind=kind)}` runs the demo and puts its printout here.'
    stale = 'demo.json' in numbers['stale']
    lines = ['**Stale**: printed for other weights than the shipped ones.', ''] if stale else []
    source = f'(`{demo["command"]}` on {demo["machine"]}, from `{MEASURE_COMMAND.format(kind=kind)}`.)'
    return '\n'.join(lines + ['```', demo['stdout'].strip(), '```', '', source])


def write_page_block(root, name, block):
    """Rewrites the block ``name`` of its page (:data:`PAGES`, under ``root``); a name without a page is skipped.

    Args:
        root (str): The repository root (a copy of it in tests).
        name (str): Block name, e.g. ``demo:x4_direct``.
        block (str | callable): The block's text, or a function of the page's path that returns it (for relative
            links).
    """
    if name not in PAGES:
        return
    page = osp.join(root, PAGES[name])
    text = open(page).read() if osp.isfile(page) else ''
    with open(page, 'w') as f:
        f.write(replace_block(text, name, block(page) if callable(block) else block))


def write_measured(kind, card=osp.join(WEIGHTS_DIR, 'MODEL_CARD.md'), root=ROOT):
    """Rewrites the generated summary and "Measured" blocks of the model card and the results and demo blocks of
    their pages (:data:`PAGES`: README's results table and demo printout).

    Args:
        kind (str): A key of :data:`~mzsr_plugin.campaign.kinds.CAMPAIGN_KINDS`.
        card (str): The model card.
        root (str): The repository root the pages are under.

    Returns:
        list[str]: Names of the benchmark outputs that measured other weights than the shipped ones.
    """
    if kind not in CAMPAIGN_KINDS:
        raise ValueError(f'unknown campaign kind {kind!r}; expected one of {sorted(CAMPAIGN_KINDS)}')
    numbers = measured_numbers(kind)  # once: it hashes the weights and reads the history and every output
    text = open(card).read() if osp.isfile(card) else ''
    text = replace_block(text, f'summary:{kind}', summary_block(kind, numbers))
    text = replace_block(text, f'measured:{kind}', measured_block(kind, numbers))
    with open(card, 'w') as f:
        f.write(text)
    write_page_block(root, f'results:{kind}', results_block(kind, numbers))
    write_page_block(root, f'demo:{kind}', demo_block(kind, numbers))
    return numbers['stale']
