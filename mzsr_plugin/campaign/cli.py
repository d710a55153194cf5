"""The weights campaign's command line (``mzsr-campaign``, or ``python scripts/train_weights.py`` in a checkout).

Subcommands (``--model`` is one of x2_direct, x2_bicubic, x4_direct, multiscale):

- ``campaign``: continue the committed state of ``mzsr_plugin/weights/campaign/<model>/`` for ``--minutes``,
  checkpointing atomically, evaluating on the held-out selection set and replacing the shipped weights only when
  the selection score improves. A new campaign pretrains (stage 1) unless ``--init`` gives weights to start from.
- ``compare``: run several recipes for a few minutes each from the same weights, side by side, and record the
  held-out PSNR each reached per CPU-hour (``recipes.json``), without touching the shipped weights; with
  ``--precisions fp32,bf16`` each recipe once per meta-training precision (``precisions.json``).
- ``compare-init``: run the same recipe from several starting weights side by side (``--init NAME=WEIGHTS``, twice
  or more), evaluating every ``--eval-minutes``, and record each start's selection-score trajectory and the one
  ahead at the end (``init_comparison.json``, rendered in the model card), without touching the shipped weights.

A source checkout adds ``report`` (``python scripts/train_weights.py report``): the model card's, README's and
docs/' generated numbers, written by the repository's own tooling (``tools/campaign_report/``, not installed).

From a source checkout the campaign continues the state committed in the repository and ships into the package;
from an installed wheel (no checkout), ``--train-dir`` and ``--val-dir`` are required, the state lives in
``./mzsr_campaign/<model>/`` and the weights are shipped beside it (``MZSR_WEIGHTS_DIR=./mzsr_campaign`` makes the
zoo use them).

Examples::

    python scripts/train_weights.py campaign --model x2_direct --minutes 150 --device cpu
    python scripts/train_weights.py compare --model x2_direct --minutes 8 --parallel 2
    python scripts/train_weights.py compare-init --model x2_bicubic --minutes 30 \
        --init 'x2 direct meta-weights=mzsr_plugin/weights/mzsr_x2_direct.pth' --init 'bicubic-pretrained=theta_T.pth'
    mzsr-campaign campaign --model x4_direct --minutes 60 --train-dir DIV2K_HR --val-dir my_heldout --init w.pth
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import torch
import yaml
from os import path as osp

from mzsr_plugin.campaign.kinds import CAMPAIGN_KINDS, RECIPES, ROOT, campaign_dir
from mzsr_plugin.campaign.runner import Campaign, default_ship_path, load_history
from mzsr_plugin.campaign.selection import families, family_title
from mzsr_plugin.precision import PRECISIONS

# A source checkout holds the benchmark scripts, the committed campaign state and the shared data beside it.
CHECKOUT = osp.isfile(osp.join(ROOT, 'scripts', 'bench_table2.py'))
SHARED_TRAIN = osp.join(ROOT, '..', 'shared', 'data', 'train')
COUNTS = {2: 'two', 3: 'three', 4: 'four'}
NUMBER = re.compile(r'[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+')


def _default_dir(name):
    path = osp.join(SHARED_TRAIN, name)
    return path if CHECKOUT and osp.isdir(path) else None


def add_common(parser):
    parser.add_argument('--model', default='x2_direct', choices=sorted(CAMPAIGN_KINDS))
    train_dir, val_dir = _default_dir('BSDS400'), _default_dir('HQ70')
    parser.add_argument('--train-dir', default=train_dir, required=train_dir is None,
                        help='HR training images: a folder, or a BasicSR .lmdb with --lmdb (e.g. DIV2K)')
    parser.add_argument('--lmdb', action='store_true', help='--train-dir is a BasicSR LMDB')
    parser.add_argument('--val-dir', default=val_dir, required=val_dir is None,
                        help='held-out HR images of the selection set (never trained on; at least 12 PNGs)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--work-dir', default=osp.join(ROOT if CHECKOUT else os.getcwd(), 'experiments', 'campaign'),
                        help='scratch folder (not committed)')
    parser.add_argument('--workers', type=int, default=0,
                        help='data-loader processes (GPU runs want several; 0: in-process, bit-exact resume)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override an option (YAML value); prefix pretrain: or meta: for one stage, e.g. '
                        'meta:datasets.train.num_support=8')


def parse_overrides(items):
    """``--set KEY=VALUE`` pairs as a dict of dotted keys to YAML-parsed values (numbers such as ``5e-5`` too)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise SystemExit(f'--set {item!r}: expected KEY=VALUE, e.g. meta:datasets.train.num_support=8')
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str) and NUMBER.fullmatch(parsed):
            parsed = float(parsed)  # YAML 1.1 reads 5e-5 (no dot) as a string; on the command line it is a number
        overrides[key] = parsed
    return overrides


def build_parser():
    """The parser of ``mzsr-campaign`` and its subcommand group (``scripts/train_weights.py`` adds ``report``).

    Returns:
        tuple[argparse.ArgumentParser, argparse._SubParsersAction]: The parser and its subparsers.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser('campaign', help='continue the campaign for a wall-clock budget')
    add_common(run)
    run.add_argument('--minutes', type=float, required=True, help='wall-clock budget of this segment')
    run.add_argument('--recipe', choices=sorted(RECIPES), help='switch the campaign to this recipe')
    run.add_argument('--init', help='a new campaign starts its meta stage from these weights (skips pretraining)')
    run.add_argument('--pretrain-iters', type=int, default=20000, help='stage-1 length of a new campaign')
    run.add_argument('--state-dir', help='state and history folder (default: the committed campaign folder)')
    run.add_argument('--no-ship', action='store_true', help='never replace the shipped weights (trials)')
    run.add_argument('--checkpoint-minutes', type=float, default=3.0)
    run.add_argument('--eval-minutes', type=float, default=20.0)
    run.add_argument('--max-iters', type=int, help='stop after this many iterations (smoke tests)')
    compare = sub.add_parser('compare', help='short side-by-side runs of several recipes')
    add_common(compare)
    compare.add_argument('--recipes', default='official,lslr,lslr_wide,lslr_wide_first_order')
    compare.add_argument('--minutes', type=float, default=8.0, help='budget per recipe')
    compare.add_argument('--parallel', type=int, default=2, help='recipes run at once (one CPU thread each on CPU)')
    compare.add_argument('--init', help='weights every recipe starts from (default: the shipped weights)')
    compare.add_argument('--precisions', help='comma-separated train.precision values (auto, fp32, bf16): each '
                         'recipe runs once per value, recorded in precisions.json instead of recipes.json')
    compare.add_argument('--out', help='the record (default: recipes.json or precisions.json of the committed '
                         'campaign folder)')
    compare.add_argument('--max-iters', type=int, help='stop each recipe after this many iterations (smoke tests)')
    inits = sub.add_parser('compare-init', help='short side-by-side campaigns of one recipe from several starts')
    add_common(inits)
    inits.add_argument('--init', action='append', default=[], metavar='NAME=WEIGHTS', dest='inits',
                       help='a starting point (a .pth of MZSRNet weights) and its name in the card; twice or more')
    inits.add_argument('--recipe', default='lslr_wide', choices=sorted(RECIPES), help='the recipe every start runs')
    inits.add_argument('--minutes', type=float, default=35.0, help='budget per start')
    inits.add_argument('--eval-minutes', type=float, default=12.0, help='selection-set evaluations every so often')
    inits.add_argument('--parallel', type=int, default=2, help='starts run at once (one CPU thread each on CPU)')
    inits.add_argument('--out', help='the record (default: init_comparison.json of the committed campaign folder)')
    inits.add_argument('--max-iters', type=int, help='stop each start after this many iterations (smoke tests)')
    return parser, sub


def run_campaign(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    state_dir, ship_to = args.state_dir, default_ship_path(args.model)
    if not CHECKOUT:  # an installed package: the state and the weights stay out of site-packages
        state_dir = state_dir or osp.join(os.getcwd(), 'mzsr_campaign', args.model)
        ship_to = osp.join(osp.dirname(state_dir), CAMPAIGN_KINDS[args.model].weights)
    campaign = Campaign(args.model, args.train_dir, args.val_dir, args.device, state_dir=state_dir,
                        ship_to=None if args.no_ship else ship_to, recipe=args.recipe,
                        init=args.init, pretrain_iters=args.pretrain_iters, lmdb=args.lmdb,
                        overrides=parse_overrides(args.set), workers=args.workers, work_dir=args.work_dir,
                        log=lambda line: print(line, flush=True))
    campaign.run(args.minutes, args.checkpoint_minutes, args.eval_minutes, args.max_iters)


def run_side_by_side(args, trials, eval_minutes, max_iters=None):
    """Runs one trial campaign per entry of ``trials``, ``args.parallel`` at a time, ``args.minutes`` each, never
    shipping (each in its own state folder under ``args.work_dir``).

    Args:
        args (argparse.Namespace): ``compare`` or ``compare-init`` arguments.
        trials (dict[str, list[str]]): Trial name -> its extra ``campaign`` arguments (``--recipe``, ``--init``).
        eval_minutes (float): Selection-set evaluation interval of each trial.
        max_iters (int | None): Iteration cap of each trial (smoke tests).

    Returns:
        tuple[dict[str, list[dict]], int | None]: The histories of the trials that finished with at least two
        evaluations, in the order of ``trials``, and the CPU threads each had (None on a GPU).
    """
    threads = max(1, (os.cpu_count() or 2) // args.parallel) if args.device == 'cpu' else None
    pending, running, histories = list(trials), [], {}
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            state_dir = osp.join(args.work_dir, f'{args.command}_{args.model}', re.sub(r'[^\w.-]+', '_', name))
            shutil.rmtree(state_dir, ignore_errors=True)
            cmd = [sys.executable, '-m', 'mzsr_plugin.campaign.cli', 'campaign', '--model', args.model, '--minutes',
                   str(args.minutes), *trials[name], '--state-dir', state_dir, '--no-ship', '--train-dir',
                   args.train_dir, '--val-dir', args.val_dir, '--device', args.device, '--eval-minutes',
                   str(eval_minutes), '--work-dir', osp.join(state_dir, 'work')]
            if threads:
                cmd += ['--threads', str(threads)]
            if args.lmdb:
                cmd.append('--lmdb')
            if max_iters:
                cmd += ['--max-iters', str(max_iters)]
            for item in args.set:
                cmd += ['--set', item]
            os.makedirs(state_dir, exist_ok=True)
            log = open(osp.join(state_dir, 'log.txt'), 'w')
            print(f'[{name}] started', flush=True)
            running.append((name, state_dir, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(1 if max_iters else 5)
        for item in list(running):
            name, state_dir, proc, log = item
            if proc.poll() is None:
                continue
            log.close()
            running.remove(item)
            history = load_history(state_dir)
            if proc.returncode or len(history) < 2:
                print(f'[{name}] failed (exit {proc.returncode}); see {osp.join(state_dir, "log.txt")}')
                continue
            histories[name] = history
            print(f'[{name}] {history[-1]["meta_iter"]} iterations, score {history[0]["score"]:.3f} -> '
                  f'{history[-1]["score"]:.3f}', flush=True)
    return {name: histories[name] for name in trials if name in histories}, threads  # trial order, not finishing


def run_compare(args):
    recipes = args.recipes.split(',')
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise SystemExit(f'--recipes: unknown {unknown}; known: {sorted(RECIPES)}')
    precisions = args.precisions.split(',') if args.precisions else [None]
    unknown = sorted(set(precisions) - set(PRECISIONS) - {None})
    if unknown:
        raise SystemExit(f'--precisions: unknown {unknown}; known: {", ".join(PRECISIONS)}')
    init = args.init or default_ship_path(args.model)
    trials, overrides = {}, {}
    for recipe in recipes:
        for precision in precisions:
            name = recipe if precision is None else f'{recipe} @{precision}'
            trials[name] = ['--recipe', recipe, '--init', init]
            overrides[name] = dict(RECIPES[recipe])
            if precision is not None:
                trials[name] += ['--set', f'meta:train.precision={precision}']
                overrides[name]['train.precision'] = precision
    # Evaluations only at the start and the end: the budget goes to training.
    histories, threads = run_side_by_side(args, trials, args.minutes * 2, args.max_iters)
    results = {}
    for name, history in histories.items():
        start, end = history[0], history[-1]
        results[name] = {
            'overrides': overrides[name], 'precision': end.get('precision'),
            'meta_iters': end['meta_iter'], 'train_hours': end['train_hours'],
            'machine': end['machine'], 'threads': threads, 'start': start['families'], 'end': end['families'],
            'score_start': start['score'], 'score_end': end['score'],
            'score_gain_per_hour': (end['score'] - start['score']) / max(end['train_hours'], 1e-9)
        }
    print_comparison(results)
    out = args.out or osp.join(campaign_dir(args.model), 'precisions.json' if args.precisions else 'recipes.json')
    os.makedirs(osp.dirname(out), exist_ok=True)
    with open(out, 'w') as f:
        json.dump({'minutes_each': args.minutes, 'parallel': args.parallel, 'init': osp.relpath(init, ROOT),
                   'results': results}, f, indent=1)
    print(f'wrote {out}')


def parse_inits(items):
    """``--init NAME=WEIGHTS`` pairs as {name: path}; at least two, each an existing file."""
    inits = {}
    for item in items:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            raise SystemExit(f'--init {item!r}: expected NAME=WEIGHTS, e.g. "x2 direct meta-weights='
                             'mzsr_plugin/weights/mzsr_x2_direct.pth"')
        if not osp.isfile(path):
            raise SystemExit(f'--init {item!r}: no weights file {path}')
        if name in inits:
            raise SystemExit(f'--init {item!r}: the name {name!r} is given twice')
        inits[name] = path
    if len(inits) < 2:
        raise SystemExit(f'compare-init needs two --init NAME=WEIGHTS or more to compare; got {len(inits)}')
    return inits


def init_comparison(kind, histories, recipe, minutes, threads):
    """The record of a starting-point comparison, as the model card renders it (``tools/campaign_report/report.py``).

    Args:
        kind (str): The campaign kind.
        histories (dict[str, list[dict]]): Start name -> its trial's evaluations, oldest first.
        recipe (str): The recipe every start ran.
        minutes (float): Budget per start.
        threads (int | None): CPU threads per start (None on a GPU).

    Returns:
        dict: ``question``, ``how``, ``machine``, ``inits`` (name -> trajectory of ``meta_iter``, ``train_hours``,
        ``score``, ``families``, cut to the evaluations every start reached) and ``ahead`` (the start with the
        best score at the last common evaluation).
    """
    common = min(len(history) for history in histories.values())
    inits = {name: [{key: e[key] for key in ('meta_iter', 'train_hours', 'score', 'families')}
                    for e in history[:common]] for name, history in histories.items()}
    names = list(inits)
    machine = histories[names[0]][common - 1]['machine']
    on = 'one CPU thread each' if threads == 1 else f'{threads} CPU threads each' if threads else 'one GPU each'
    return {'question': f'{kind.replace("_", " ")}: start meta-transfer from ' + ' or from '.join(names) + '?',
            'how': f'{COUNTS.get(len(names), len(names))} campaigns side by side, {minutes:g} minutes each, {on}, '
                   f'same recipe ({recipe}), same selection set',
            'machine': machine, 'inits': inits, 'ahead': max(names, key=lambda n: inits[n][-1]['score'])}


def run_compare_init(args):
    inits = parse_inits(args.inits)
    histories, threads = run_side_by_side(
        args, {name: ['--recipe', args.recipe, '--init', path] for name, path in inits.items()}, args.eval_minutes,
        args.max_iters)
    failed = sorted(set(inits) - set(histories))
    if failed:
        raise SystemExit(f'compare-init: {failed} did not finish with two evaluations (logs under {args.work_dir}); '
                         'nothing written')
    record = init_comparison(args.model, histories, args.recipe, args.minutes, threads)
    out = args.out or osp.join(campaign_dir(args.model), 'init_comparison.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(record, f, indent=1)
    for name, trajectory in record['inits'].items():
        print(f'{name:<50} ' + '  '.join(f'{e["train_hours"]:.2f} h {e["score"]:.3f}' for e in trajectory))
    print(f'ahead at the last evaluation: {record["ahead"]}; wrote {out}')


def print_comparison(results):
    if not results:
        return
    names = families([{'families': r['end']} for r in results.values()])
    header = '  '.join(f'{family_title(f) + " 0/1/10":>20}' for f in names)
    print(f'\n{"recipe":<24} {"iters":>6} {"hours":>6} {"iters/h":>7}  {header}  {"score":>7}  {"dB/h":>6}')
    for recipe, r in results.items():
        cells = ['/'.join(f'{r["end"][fam][s]:.2f}' for s in ('0', '1', '10')) for fam in names]
        rate = r['meta_iters'] / max(r['train_hours'], 1e-9)
        print(f'{recipe:<24} {r["meta_iters"]:>6} {r["train_hours"]:>6.3f} {rate:>7.0f}  ' +
              '  '.join(f'{c:>20}' for c in cells) + f'  {r["score_end"]:>7.3f}  {r["score_gain_per_hour"]:>6.2f}')


# Subcommand -> what runs it (``scripts/train_weights.py`` adds ``report`` in a checkout).
COMMANDS = {'campaign': run_campaign, 'compare': run_compare, 'compare-init': run_compare_init}


def main(argv=None):
    """Entry point of ``mzsr-campaign``; ``argv`` defaults to ``sys.argv[1:]``."""
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    COMMANDS[args.command](args)


if __name__ == '__main__':
    main()
