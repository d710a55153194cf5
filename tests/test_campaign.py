"""The weights campaign: resumable segments, selection-set scoring, shipping only when better, reports, packaging.

Runs on a tiny net and generated images (a few iterations each); the real campaign's numbers live in its committed
history, which the model card is generated from.
"""
import hashlib
import json
import os
import pytest
import signal
import subprocess
import sys
import torch
import yaml
from os import path as osp

from helpers import write_images
from mzsr_plugin import model_zoo
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.campaign import CAMPAIGN_KINDS, RECIPES, Campaign, load_history
from mzsr_plugin.campaign import cli as campaign_cli
from mzsr_plugin.campaign import runner as runner_module
from mzsr_plugin.campaign.selection import (MIN_ADAPTATION_GAIN, SELECTION_PLAN, adaptation_gain, better,
                                            passes_guard, selection_cases)
from mzsr_plugin.evaluation import file_sha256, load_mzsr_weights

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # the report generators are the checkout's tooling (tools/), not the package's
from tools.campaign_report import report as report_module  # noqa: E402
from tools.campaign_report import zoo_tables as zoo_module  # noqa: E402

TINY = {'network_g.num_feat': 8, 'network_g.num_conv': 3, 'datasets.train.gt_size': 16,
        'datasets.train.batch_size_per_gpu': 2, 'meta:datasets.train.num_support': 1,
        'meta:datasets.train.num_query': 1, 'meta:datasets.train.kernel_size': 7}

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('campaign')
    write_images(str(root / 'train'), 4, 40, 40, seed=1)
    write_images(str(root / 'val'), len(SELECTION_PLAN), 40, 40, seed=2)
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, root / 'init.pth')
    return root


def campaign(data, state_dir, **kwargs):
    kwargs = dict(dict(init=str(data / 'init.pth'), recipe='lslr_wide', overrides=TINY, selection_crop=24,
                       work_dir=str(state_dir / 'work'), log=lambda line: None), **kwargs)
    return Campaign('x2_direct', str(data / 'train'), str(data / 'val'), 'cpu', state_dir=str(state_dir), **kwargs)


def test_segments_resume_exactly_where_the_last_one_stopped(data, tmp_path):
    straight = campaign(data, tmp_path / 'straight')
    straight.run(10, max_iters=5)
    first = campaign(data, tmp_path / 'split')
    first.run(10, max_iters=3)
    second = campaign(data, tmp_path / 'split')  # a new process would do the same: everything comes from state.pth
    assert second.state['meta_iter'] == 3
    second.run(10, max_iters=2)
    assert second.state['meta_iter'] == straight.state['meta_iter'] == 5
    for key, value in straight.state['params'].items():
        torch.testing.assert_close(second.state['params'][key], value, rtol=0, atol=0)
    torch.testing.assert_close(second.state['inner_lrs']['log_lr'], straight.state['inner_lrs']['log_lr'],
                               rtol=0, atol=0)
    history = load_history(str(tmp_path / 'split'))
    assert [e['meta_iter'] for e in history] == [0, 3, 5]
    assert [len(s) for s in (history[-1]['cases'], history[-1]['families'])] == [len(SELECTION_PLAN), 3]
    assert second.state['segments'][-1]['meta_iters'] == 2
    assert all(e['recipe'] == 'lslr_wide' and e['machine'].startswith('CPU') for e in history)


def test_ships_only_when_the_selection_score_improves(data, tmp_path, monkeypatch):
    scores = iter([(False, 30.0), (True, 29.0), (True, 28.0), (True, 29.5), (False, 40.0)])

    def fake_score(net, cases, device='cpu'):
        guard, score = next(scores)
        return {'families': {'random': {'0': score, '1': score, '10': score, 'bicubic': 20.0}}, 'cases': {},
                'score': score, 'guard': guard, 'below_bicubic': [] if guard else ['x']}

    monkeypatch.setattr(runner_module, 'score_network', fake_score)
    ship = tmp_path / 'shipped.pth'
    run = campaign(data, tmp_path / 'state', ship_to=str(ship))
    run.run(10, max_iters=1)  # evaluations: start (30, guard fails) sets the bar; end (29, guard passes) ships
    for _ in range(3):  # 28 (worse), 29.5 (better), 40 without the guard (refused)
        run.run(10, max_iters=1)
    history = load_history(str(tmp_path / 'state'))
    assert [e['shipped'] for e in history] == [False, True, False, True, False]
    assert run.state['best'] == {'score': 29.5, 'guard': True, 'meta_iter': 3}
    shipped = torch.load(ship, weights_only=True)
    assert set(shipped) == {'params', 'inner_lrs', 'model_record'} and shipped['inner_lrs']['log_lr'].shape == (5, 6)
    # The file says what it is: the zoo model, and where in the campaign it was shipped.
    record = dict(shipped['model_record'])
    assert 0 <= record.pop('train_hours') <= run.state['train_seconds'] / 3600
    assert record == {'kind': 'x2_direct', 'scales': [2], 'downsample': 'direct', 'campaign_meta_iter': 3,
                      'recipe': 'lslr_wide'}
    assert load_mzsr_weights(str(ship)).inner_lrs is not None
    assert better({'guard': True, 'score': 1.0}, {'guard': False, 'score': 9.0})


def test_guard_asks_adaptation_to_add_half_a_db_on_the_random_kernels():
    families = {'random_x2': {'0': 26.0, '1': 26.5, '10': 27.0}, 'random_x4': {'0': 23.0, '1': 23.1, '10': 23.2},
                'g_d_2.0_x2': {'0': 20.0, '1': 30.0, '10': 36.0}}
    assert adaptation_gain(families) == pytest.approx(0.6) and adaptation_gain(families, '1') == pytest.approx(0.3)
    assert passes_guard({'families': families, 'below_bicubic': []})
    assert not passes_guard({'families': families, 'below_bicubic': ['a[random_x2]']})
    families['random_x2']['0'] = 27.0 - 2 * MIN_ADAPTATION_GAIN + 0.3  # the x4 run-2 drift: good init, little gain
    assert adaptation_gain(families) < MIN_ADAPTATION_GAIN and not passes_guard({'families': families,
                                                                                 'below_bicubic': []})


def test_a_resumed_campaign_judges_its_bar_by_the_current_guard(data, tmp_path, monkeypatch):
    # Shipped under the old rule (guard = nothing below bicubic) with a gain of 0.1 dB, then another net at a lower
    # score but with adaptation: the resumed campaign sees the bar fail the guard, so the second net replaces it.
    scores = iter([(20.0, 1.0), (30.0, 0.1), (29.0, 2.0)])

    def fake_score(net, cases, device='cpu'):
        score, gain = next(scores)
        result = {'families': {'random': {'0': score - gain, '1': score, '10': score}}, 'cases': {}, 'score': score,
                  'below_bicubic': []}
        return dict(result, gain=gain, guard=True if gain == 0.1 else passes_guard(result))

    monkeypatch.setattr(runner_module, 'score_network', fake_score)
    ship = tmp_path / 'shipped.pth'
    first = campaign(data, tmp_path / 'state', ship_to=str(ship))
    first.run(10, max_iters=1)
    assert first.state['best'] == {'score': 30.0, 'guard': True, 'meta_iter': 1}
    lines = []
    resumed = campaign(data, tmp_path / 'state', ship_to=str(ship), log=lines.append)
    assert resumed.state['best']['guard'] is False and 'fails the current guard' in lines[0]
    resumed.run(10, max_iters=1)
    assert [e['shipped'] for e in load_history(str(tmp_path / 'state'))] == [False, True, True]
    assert resumed.state['best'] == {'score': 29.0, 'guard': True, 'meta_iter': 2}


def test_pretraining_then_meta_transfer_in_one_campaign(data, tmp_path):
    run = campaign(data, tmp_path / 'state', init=None, pretrain_iters=2)
    assert run.state['stage'] == 'pretrain'
    run.run(10, max_iters=4)
    assert (run.state['stage'], run.state['pretrain_iter'], run.state['meta_iter']) == ('meta', 2, 2)
    history = load_history(str(tmp_path / 'state'))
    assert history[0]['stage'] == 'pretrain' and history[-1]['stage'] == 'meta'


def test_selection_set_is_fixed_and_covers_the_three_kernel_families(data):
    first, again = selection_cases(str(data / 'val'), crop=24), selection_cases(str(data / 'val'), crop=24)
    assert [f for f, _ in first] == ['random'] * 8 + ['g_d_0.2'] * 2 + ['g_d_2.0'] * 2
    assert all(torch.equal(a.lr, b.lr) and torch.equal(a.kernel, b.kernel) for (_, a), (_, b) in zip(first, again))
    assert first[0][1].lr.shape == (1, 3, 12, 12)
    assert len({float(c.kernel.max()) for f, c in first if f == 'random'}) == 8  # a different kernel per image
    with pytest.raises(FileNotFoundError, match='the selection set needs 12'):
        selection_cases(str(data / 'train'))


def test_each_model_of_the_zoo_is_selected_on_its_own_degradation_and_scales(data):
    bicubic = selection_cases(str(data / 'val'), (2, ), 'bicubic', crop=24)
    assert [f for f, _ in bicubic] == ['random'] * 8 + ['g_b_0.2'] * 2 + ['g_b_1.3'] * 2
    assert {c.downsample for _, c in bicubic} == {'bicubic'}
    x4 = selection_cases(str(data / 'val'), (4, ), crop=24)
    assert {c.scale for _, c in x4} == {4} and x4[0][1].lr.shape == (1, 3, 6, 6)
    multi = selection_cases(str(data / 'val'), (2, 3, 4), crop=24)
    assert [(f, c.scale) for f, c in multi] == ([('random_x2', 2)] * 3 + [('random_x3', 3)] * 3 +
                                                [('random_x4', 4)] * 2 + [('g_d_2.0_x2', 2)] * 2 +
                                                [('g_d_2.0_x4', 4)] * 2)
    assert multi[3][1].lr.shape == (1, 3, 8, 8)  # x3 of a 24x24 crop


def test_sigterm_saves_the_state_and_stops(data, tmp_path):
    run = campaign(data, tmp_path / 'killed')
    step, calls = run._step, []

    def step_then_kill():
        calls.append(step())
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill` or a scheduler sends; the iteration still finishes
        return calls[-1]

    run._step = step_then_kill
    handler = signal.getsignal(signal.SIGTERM)
    entries = run.run(10, checkpoint_minutes=100, max_iters=50)
    assert len(calls) == 2 and len(entries) == 1  # the starting evaluation only: no final one after a kill
    assert signal.getsignal(signal.SIGTERM) is handler  # the handler is put back
    resumed = campaign(data, tmp_path / 'killed')  # saved although no checkpoint interval passed
    assert resumed.state['meta_iter'] == 2 and resumed.state['segments'][-1]['meta_iters'] == 2


def test_a_changed_meta_lr_takes_effect_on_resume_with_adams_state(data, tmp_path):
    first = campaign(data, tmp_path / 'lr')
    first.run(10, max_iters=2)
    moments = first.model.optimizer_g.state_dict()['state'][0]['exp_avg'].clone()
    lines = []
    resumed = campaign(data, tmp_path / 'lr', overrides=dict(TINY, **{'meta:train.optim_g.lr': 2.5e-5}),
                       log=lines.append)
    resumed.model = resumed._build_model()
    optimizer = resumed.model.optimizer_g
    assert optimizer.param_groups[0]['lr'] == pytest.approx(2.5e-5)
    assert resumed.model.schedulers[0].base_lrs[0] == pytest.approx(2.5e-5)
    assert optimizer.param_groups[1]['lr'] == pytest.approx(first.model.optimizer_g.param_groups[1]['lr'])
    torch.testing.assert_close(optimizer.state_dict()['state'][0]['exp_avg'], moments, rtol=0, atol=0)
    assert any('parameter group 0: 0.0001 in the saved state, 2.5e-05 in the options' in line for line in lines)
    resumed.run(10, max_iters=1)  # the schedule steps on from there
    assert resumed.model.optimizer_g.param_groups[0]['lr'] == pytest.approx(2.5e-5)


def test_set_values_are_parsed_as_on_a_command_line():
    parsed = campaign_cli.parse_overrides(['meta:train.optim_g.lr=5e-5', 'train.x=1e3', 'a=0.5', 'b=true', 'c=[1, 2]',
                                           'd=inf', 'e=direct'])
    assert parsed == {'meta:train.optim_g.lr': 5e-5, 'train.x': 1000.0, 'a': 0.5, 'b': True, 'c': [1, 2], 'd': 'inf',
                      'e': 'direct'}
    assert isinstance(parsed['meta:train.optim_g.lr'], float)  # YAML alone would give the string '5e-5'
    with pytest.raises(SystemExit, match="--set 'lr': expected KEY=VALUE"):
        campaign_cli.parse_overrides(['lr'])


def test_bad_campaign_arguments_are_named(data, tmp_path):
    with pytest.raises(ValueError, match=r"--model 'x3': expected one of \['multiscale', 'x2_bicubic'"):
        Campaign('x3', str(data / 'train'), str(data / 'val'))
    with pytest.raises(ValueError, match="--recipe 'fast': expected one of"):
        campaign(data, tmp_path, recipe='fast')
    with pytest.raises(FileNotFoundError, match='training images: .*nowhere does not exist'):
        Campaign('x2_direct', str(tmp_path / 'nowhere'), str(data / 'val'))
    with pytest.raises(ValueError, match=r"--set final:train.inner_lr: a stage prefix must be one of \('pretrain', "):
        campaign(data, tmp_path / 'prefix', overrides={'final:train.inner_lr': 1})
    bad = campaign(data, tmp_path / 'typo', overrides=dict(TINY, **{'meta:train.inner_step': 3}))
    with pytest.raises(ValueError, match="train: unknown key 'inner_step' \\(did you mean 'inner_steps'\\?\\)"):
        bad.run(10, max_iters=1)


def test_report_is_generated_from_the_history(data, tmp_path, monkeypatch):
    state = tmp_path / 'x2_direct'
    campaign(data, state, ship_to=str(tmp_path / 'w.pth')).run(10, max_iters=2)
    monkeypatch.setattr(report_module, 'campaign_dir', lambda kind: str(state))
    with open(state / 'recipes.json', 'w') as f:
        history = load_history(str(state))
        json.dump({'minutes_each': 1, 'parallel': 2, 'init': 'init.pth', 'results': {'lslr_wide': {
            'overrides': RECIPES['lslr_wide'], 'meta_iters': 2, 'train_hours': 0.001, 'start': history[0]['families'],
            'end': history[-1]['families'], 'score_start': history[0]['score'], 'score_end': history[-1]['score'],
            'score_gain_per_hour': 1.0}}}, f)
    card = tmp_path / 'CARD.md'
    card.write_text('# card\n\nhand-written part\n')
    report_module.write_report('x2_direct', card=str(card))
    report_module.write_report('x2_direct', card=str(card))  # idempotent: the section is replaced, not appended
    text = card.read_text()
    assert text.count('<!-- campaign:x2_direct -->') == 1 and 'hand-written part' in text
    last = history[-1]
    assert f'| {last["meta_iter"]} | {last["train_hours"]:.2f} |' in text
    assert f'{last["families"]["random"]["10"]:.2f}' in text and '| lslr_wide |' in text
    assert last['overrides'] == TINY and '| lslr_wide (num_feat=8, num_conv=3, gt_size=16,' in text  # --set recorded
    assert osp.getsize(state / 'curve.png') > 10000


def test_card_lists_one_work_period_per_resumed_run(data, tmp_path, monkeypatch):
    state = tmp_path / 'x2_direct'
    campaign(data, state, ship_to=str(tmp_path / 'w.pth')).run(10, max_iters=2)
    second = dict(TINY, **{'meta:train.optim_g.lr': 5e-5})
    campaign(data, state, ship_to=str(tmp_path / 'w.pth'), overrides=second).run(10, max_iters=3)
    history = load_history(str(state))
    assert [e['meta_iter'] for e in history] == [0, 2, 5]
    monkeypatch.setattr(report_module, 'campaign_dir', lambda kind: str(state))
    text = report_module.campaign_section('x2_direct')
    table = text.split('Work periods', 1)[1].splitlines()
    rows = [line for line in table if line.startswith('| 1 |') or line.startswith('| 2 |')]
    assert len(rows) == 2 and '| 0 → 2 |' in rows[0] and '| 2 → 5 |' in rows[1] and 'lr=5e-05' in rows[1]
    assert f'| {history[0]["score"]:.3f} → {history[1]["score"]:.3f} |' in rows[0]
    assert f'| {history[1]["score"]:.3f} → {history[2]["score"]:.3f} |' in rows[1]  # starts where period 1 ended
    best = max(history[1:], key=lambda e: e['score'])
    assert f'{best["score"]:.3f} ({best["meta_iter"]})' in rows[0] + rows[1]
    # TINY: 2 tasks of 1 + 1 patches of 16² per meta-iteration
    assert 'Meta-training so far: 5 meta-iterations, 10 tasks (0.00% of the official 500,000), 5.12e+03 HR' in text


def test_meta_training_volume_counts_each_period_with_its_overrides():
    later = {'meta:datasets.train.batch_size_per_gpu': 4, 'pretrain:datasets.train.gt_size': 8}
    periods = [{'start_iter': 0, 'end_iter': 10, 'overrides': {}},
               {'start_iter': 10, 'end_iter': 30, 'overrides': later}]
    volume = report_module.meta_training_volume('x2_direct', periods)
    with open(osp.join(ROOT, 'options', CAMPAIGN_KINDS['x2_direct'].meta_options)) as f:
        train = yaml.safe_load(f)['datasets']['train']
    tasks = 10 * train['batch_size_per_gpu'] + 20 * 4
    assert volume['meta_iters'] == 30 and volume['tasks'] == tasks
    assert volume['pixels'] == tasks * (train['num_support'] + train['num_query']) * train['gt_size']**2
    assert volume['official_tasks'] == 500000 and volume['official_pixels'] == 500000 * 16 * 64 * 64


def test_work_periods_merge_runs_without_evaluation_and_close_killed_ones():
    segments = [{'started': 'a', 'machine': 'm', 'start_meta_iter': 0, 'meta_iters': 10},
                {'started': 'b', 'machine': 'm', 'start_meta_iter': 10, 'meta_iters': 0},  # old: no 'overrides'
                {'started': 'c', 'machine': 'm', 'overrides': {}, 'start_meta_iter': 10},  # killed: no length
                {'started': 'd', 'machine': 'm', 'overrides': {'x': 1}, 'start_meta_iter': 30}]
    history = [{'meta_iter': i, 'score': float(i)} for i in (0, 10, 20, 30, 40)]
    periods = report_module.work_periods(segments, history)
    assert [(p['started'], p['start_iter'], p['end_iter']) for p in periods] == [('a', 0, 10), ('b', 10, 30),
                                                                                 ('d', 30, 40)]
    assert [[e['meta_iter'] for e in p['entries']] for p in periods] == [[0, 10], [20, 30], [40]]
    assert periods[2]['overrides'] == {'x': 1}


def _measured_folder(folder, weights_sha):
    """A campaign folder with one shipped history entry and Figure 3 / Table 2 outputs of the given weights."""
    folder.mkdir()
    entry = {'meta_iter': 40, 'train_hours': 0.5, 'shipped': True, 'families': {
        'random': {'0': 27.0, '1': 27.1, '10': 28.0, 'bicubic': 26.0}}}
    (folder / 'history.jsonl').write_text(json.dumps(entry) + '\n')
    curve = {str(s): 30.0 + s * 0.5 for s in range(11)}
    (folder / 'figure3.json').write_text(json.dumps({
        'steps': list(range(11)), 'curves': {'pretrained (stage 1)': {str(s): 29.0 for s in range(11)},
                                             'meta-trained': curve}, 'bicubic': 28.73, 'zssr': 35.0,
        'weights_sha256': weights_sha, 'machine': 'CPU test'}))
    cells = {'MZSR(10) | Set5 (5) g_d_2.0': [35.61, 2.0], 'MZSR(1) | Set5 (5) g_d_0.2': [31.9, 0.5],
             'ZSSR | Set5 (5) g_d_2.0': [35.2, 300.0]}
    (folder / 'table2_set5.json').write_text(json.dumps({'cells': cells, 'zssr_machines': ['CPU test'],
                                                         'weights_sha256': weights_sha}))
    (folder / 'table2_set5.md').write_text('| method | Set5 (5) g_d_2.0 |\n|---|---|\n| MZSR(10) | 35.61 (2.00 s) |\n')
    demo = {'command': 'python -m mzsr_plugin.demo', 'machine': 'CPU test', 'stdout': 'MZSR (10 steps)  32.70  5.0\n',
            'weights_sha256': weights_sha}
    (folder / 'demo.json').write_text(json.dumps(demo))


def test_measured_numbers_are_generated_and_stale_ones_flagged(tmp_path, monkeypatch):
    weights = tmp_path / 'w.pth'
    weights.write_bytes(b'weights')
    sha = file_sha256(str(weights))
    assert sha == hashlib.sha256(b'weights').hexdigest()
    _measured_folder(tmp_path / 'x2_direct', sha)
    monkeypatch.setattr(report_module, 'campaign_dir', lambda kind: str(tmp_path / kind))
    monkeypatch.setattr(report_module, 'default_ship_path', lambda kind: str(weights))
    card, readme = tmp_path / 'CARD.md', tmp_path / 'README.md'
    card.write_text('# card\n\n<!-- summary:x2_direct -->\nprevious summary\n<!-- /summary:x2_direct -->\n\n'
                    'hand-written part\n')
    readme.write_text('# readme\n\n<!-- demo:x2_direct -->\n<!-- /demo:x2_direct -->\n\n'
                      '<!-- results:x2_direct -->\n<!-- /results:x2_direct -->\n\nkept\n')
    for _ in range(2):  # idempotent
        assert report_module.write_measured('x2_direct', card=str(card), root=str(tmp_path)) == []
    text, results = card.read_text(), readme.read_text()
    assert text.count('<!-- measured:x2_direct -->') == 1 and 'hand-written part' in text
    assert 'previous summary' not in text
    assert 'before adaptation they score 30.00 dB on Set5 g^d_2.0, after one step 30.50 and after ten 35.00' in text
    assert '| **these weights** | 30.00 | 30.50 | 31.00 |' in text and '| MZSR(10) | 35.61 (2.00 s) |' in text
    assert 'Stale' not in text + results and 'kept' in results
    assert '| **shipped weights, MZSR(10)** | 35.00 | 36.05 |' in results
    assert '```\nMZSR (10 steps)  32.70  5.0\n```\n\n(`python -m mzsr_plugin.demo` on CPU test' in results
    assert '| our ZSSR (`bench_table2.py`, 300 s per image on CPU test) | 35.20 | 34.90 |' in results
    # Targets: random-kernel gains from the shipped history entry, Set5 from Table 2; each judged on its threshold.
    assert '| held-out random kernels: MZSR(10) − MZSR(0) | ≥ 0.5 dB | 1.00 | met |' in results
    assert '| held-out random kernels: MZSR(1) − MZSR(0) | ≥ 0.2 dB | 0.10 | not met (-0.10 dB) |' in results
    assert '| Set5 g^d_2.0: MZSR(10) | ≥ 35.5 dB | 35.61 | met |' in results
    assert '| Set5 g^d_0.2: MZSR(1) | ≥ 32 dB | 31.90 | not met (-0.10 dB) |' in results
    # New shipped weights: the old numbers are flagged, not passed off as theirs.
    weights.write_bytes(b'new weights')
    assert report_module.write_measured('x2_direct', card=str(card), root=str(tmp_path)) == [
        'figure3.json', 'table2_set5.json', 'demo.json']
    results = readme.read_text()
    assert results.count('**Stale**: figure3.json, table2_set5.json, demo.json measured other weights') == 1
    assert '**Stale**: printed for other weights than the shipped ones.' in results
    assert '**Stale**' in card.read_text()


def _zoo_install(tmp_path, monkeypatch, kinds):
    """Shipped weights (tiny files) and campaign folders for ``kinds`` under ``tmp_path``."""
    weights = tmp_path / 'weights'
    weights.mkdir(exist_ok=True)
    monkeypatch.setattr(model_zoo, 'WEIGHTS_DIR', str(weights))
    monkeypatch.setattr(zoo_module, 'campaign_dir', lambda kind: str(tmp_path / kind))
    for kind in kinds:
        (weights / model_zoo.MODEL_ZOO[kind].weights).write_bytes(kind.encode())
        (tmp_path / kind).mkdir()
        start = {'stage': 'meta', 'meta_iter': 0, 'train_hours': 0.0, 'score': 25.0, 'shipped': False, 'families': {
            'random_x2': {'0': 26.0, '10': 27.5}, 'random_x4': {'0': 23.0, '10': 24.0}}}
        entry = {'stage': 'meta', 'meta_iter': 12, 'train_hours': 1.5, 'score': 25.4, 'shipped': True, 'families': {
            'random_x2': {'0': 27.0, '10': 28.0}, 'random_x4': {'0': 24.0, '10': 24.2}}}
        (tmp_path / kind / 'history.jsonl').write_text(json.dumps(start) + '\n' + json.dumps(entry) + '\n')
    return weights


def _zoo_table(tmp_path, kind, name, cells, sha):
    (tmp_path / kind / f'{name}.json').write_text(json.dumps({'cells': cells, 'weights_sha256': sha}))
    (tmp_path / kind / f'{name}.md').write_text(f'| method | {name} |\n')


def test_zoo_tables_targets_and_readme_table_are_generated(tmp_path, monkeypatch):
    weights = _zoo_install(tmp_path, monkeypatch, ['x2_direct', 'x4_direct', 'multiscale'])
    sha = {kind: file_sha256(str(weights / model_zoo.MODEL_ZOO[kind].weights)) for kind in model_zoo.MODEL_ZOO
           if (weights / model_zoo.MODEL_ZOO[kind].weights).exists()}
    g20 = 'Set5 (5) g_d_2.0'
    _zoo_table(tmp_path, 'x2_direct', 'table2_set5', {f'MZSR(10) | {g20}': [35.7, 1.0]}, sha['x2_direct'])
    x4_cells = {f'Bicubic | {g20}': [24.0, 0.0], f'MZSR(1) | {g20}': [30.1, 1.0], f'MZSR(10) | {g20}': [30.6, 2.0]}
    _zoo_table(tmp_path, 'x4_direct', 'table_x4_set5', x4_cells, sha['x4_direct'])
    for scale, value in ((2, 35.5), (3, 27.0), (4, 30.0)):
        _zoo_table(tmp_path, 'multiscale', f'table3_x{scale}', {f'Bicubic | {g20}': [24.5, 0.0],
                                                                f'MZSR(10) | {g20}': [value, 1.0]},
                   sha['multiscale'] if scale != 4 else 'other weights')
    rows = {label: (value, met) for label, _, value, met in zoo_module.targets('x4_direct')}
    assert rows['Set5 g^d_2.0 x4: MZSR(1)'] == (30.1, False) and rows['Set5 g^d_2.0 x4: MZSR(10)'] == (30.6, True)
    multi = {label: (round(value, 2), met) for label, _, value, met in zoo_module.targets('multiscale')}
    assert multi['Set5 g^d_2.0 x2: MZSR(10) − x2_direct MZSR(10)'] == (-0.2, True)  # within 0.3 dB
    assert multi['Set5 g^d_2.0 x4: MZSR(10) − x4_direct MZSR(10)'] == (-0.6, False)
    assert multi['Set5 g^d_2.0 x3: MZSR(10) − bicubic'] == (2.5, True)
    assert multi['held-out random kernels: MZSR(10) − MZSR(0)'] == (0.6, True)  # mean over x2 (+1.0), x4 (+0.2)
    card, readme = tmp_path / 'CARD.md', tmp_path / 'README.md'
    card.write_text('# card\n')
    readme.write_text('# readme\n\n<!-- zoo -->\nold\n<!-- /zoo -->\n\nkept\n')
    figure = tmp_path / 'figures' / 'zoo_training.png'
    figure.parent.mkdir()
    for _ in range(2):  # idempotent
        zoo_module.write_zoo('multiscale', card=str(card), root=str(tmp_path), figure=str(figure))
    text, zoo = card.read_text(), readme.read_text()
    assert zoo.count('![campaigns](figures/zoo_training.png)') == 1 and figure.stat().st_size > 10000
    plotted = zoo_module.plot_zoo_training(str(figure))
    assert sorted(plotted) == ['multiscale', 'x2_direct', 'x4_direct']  # x2_bicubic has no history here
    assert plotted['x4_direct']['hours'] == [0.0, 1.5]
    assert plotted['x4_direct']['score_gained'] == pytest.approx([0.0, 0.4])
    assert plotted['x4_direct']['adaptation_gain'] == pytest.approx([1.25, 0.6])
    assert text.count('<!-- measured:multiscale -->') == 1 and text.count('**Stale**') == 1  # the x4 table
    assert '| Set5 g^d_2.0 x3: MZSR(10) − bicubic | ≥ 2 dB | 2.50 | met |' in text
    assert 'old' not in zoo and 'kept' in zoo
    assert '| x4_direct | `mzsr_x4_direct.pth` | x4 | direct | g^d_2.0 | 24.00 | 30.10 | 30.60 | 30.20 / 30.50 |' \
        in zoo
    assert '| multiscale | `mzsr_multiscale.pth` | x4 | direct | g^d_2.0 | 24.50* | — | 30.00* | — |' in zoo
    assert '| x2_bicubic | `mzsr_x2_bicubic.pth` | x2 | bicubic | g^b_1.3 | — | — | — | 35.18 / 36.64 | — | not ' \
           'shipped yet |' in zoo
    assert '1.5 CPU h, 12 meta-it' in zoo


def test_period_scores_start_where_the_previous_period_ended():
    history = [{'meta_iter': i, 'score': score, 'train_hours': hours}
               for i, score, hours in ((0, 25.0, 0.0), (6, 25.3, 1.0), (9, 25.2, 1.2), (12, 25.4, 1.5))]
    periods = [{'entries': history[:2]}, {'entries': []}, {'entries': history[2:]}]
    first, empty, last = report_module.period_scores(periods)
    assert empty is None and first['first'] is history[0] and last['first'] is history[1]
    assert first['gain_per_hour'] == pytest.approx(0.3 / 1.0) and last['gain_per_hour'] == pytest.approx(0.1 / 0.5)
    assert last['best'] is history[3] and last['last'] is history[3]
    assert report_module.period_scores([{'entries': history[:1]}])[0]['gain_per_hour'] is None  # no length


def test_zoo_block_says_where_each_campaign_stands(tmp_path, monkeypatch):
    _zoo_install(tmp_path, monkeypatch, ['x4_direct'])
    history = [{'stage': 'meta', 'meta_iter': i, 'train_hours': hours, 'score': score, 'families': {}}
               for i, score, hours in ((0, 25.0, 0.0), (6, 25.3, 1.0), (12, 25.4, 1.5))]
    (tmp_path / 'x4_direct' / 'history.jsonl').write_text(''.join(json.dumps(e) + '\n' for e in history))
    later = {'meta:datasets.train.batch_size_per_gpu': 4}
    segments = [{'started': '2026-12-01T10:00', 'machine': 'm', 'overrides': {}, 'start_meta_iter': 0, 'meta_iters': 6},
                {'started': '2026-12-02T10:00', 'machine': 'm', 'overrides': later, 'start_meta_iter': 6,
                 'meta_iters': 6}]
    torch.save({'segments': segments}, str(tmp_path / 'x4_direct' / runner_module.STATE_FILE))
    with open(osp.join(ROOT, 'options', CAMPAIGN_KINDS['x4_direct'].meta_options)) as f:
        train = yaml.safe_load(f)['datasets']['train']
    tasks = 6 * train['batch_size_per_gpu'] + 6 * 4
    pixels = tasks * (train['num_support'] + train['num_query']) * train['gt_size']**2
    rows = zoo_module.standing_rows()
    assert len(rows) == 3  # header, rule, x4_direct: the other campaigns have no state here
    # 1.5 h for 12 meta-iterations: 450 s each, 100k of them 12,500 h
    assert rows[2] == (f'| x4_direct | 2 | 1.50 h, 12 meta-it | 450.0 | 12,500 h | {100 * tasks / 500000:.2f}% / '
                       f'{100 * pixels / (500000 * 16 * 64**2):.2f}% | 25.000 → 25.400 (12) | 0.300 → 0.200 |')
    readme = tmp_path / 'README.md'
    readme.write_text('<!-- zoo -->\n<!-- /zoo -->\n')
    zoo_module.write_zoo('x4_direct', card=str(tmp_path / 'CARD.md'), root=str(tmp_path),
                         figure=str(tmp_path / 'zoo.png'))
    assert rows[2] in readme.read_text() and 'Where the campaigns stand' in readme.read_text()


def test_compare_init_records_each_start_and_the_one_ahead(data, tmp_path):
    val = tmp_path / 'val'
    write_images(str(val), len(SELECTION_PLAN), 256, 256, seed=3)
    torch.manual_seed(1)
    other = tmp_path / 'other.pth'
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, other)
    out = tmp_path / 'init_comparison.json'
    cli = [sys.executable, '-m', 'mzsr_plugin.campaign.cli', 'compare-init', '--model', 'x2_direct', '--train-dir',
           str(data / 'train'), '--val-dir', str(val), '--device', 'cpu', '--work-dir', str(tmp_path / 'work')]
    sets = [arg for key, value in TINY.items() for arg in ('--set', f'{key}={value}')]
    run = subprocess.run(cli + sets + ['--init', f'seed 0={data / "init.pth"}', '--init', f'seed 1={other}',
                                       '--minutes', '5', '--max-iters', '2', '--out', str(out)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    record = json.loads(out.read_text())
    assert list(record['inits']) == ['seed 0', 'seed 1']
    for trajectory in record['inits'].values():
        assert [e['meta_iter'] for e in trajectory] == [0, 2]  # the start, then the end of the 2 iterations
        assert trajectory[0]['score'] != trajectory[1]['score']
    assert record['ahead'] == max(record['inits'], key=lambda name: record['inits'][name][-1]['score'])
    assert record['question'] == 'x2 direct: start meta-transfer from seed 0 or from seed 1?'
    assert record['how'].startswith('two campaigns side by side, 5 minutes each, one CPU thread each, same recipe '
                                    '(lslr_wide)')
    rows = report_module._init_rows(record)
    loser = next(name for name in record['inits'] if name != record['ahead'])
    lead = record['inits'][record['ahead']][1]['score'] - record['inits'][loser][1]['score']
    assert f'| {record["ahead"]} (**ahead**) |' in '\n'.join(rows)
    gains = [', '.join(f'{adaptation_gain(e["families"]):+.2f}' for e in trajectory)
             for trajectory in record['inits'].values()]
    assert f'at each evaluation: seed 0 {gains[0]}; seed 1 {gains[1]} dB.' in '\n'.join(rows)
    assert rows[-1].startswith(f'Ahead at the last evaluation: {record["ahead"]}; its lead over {loser} at each '
                               f'later evaluation: {lead:+.2f} dB')
    for bad, message in (([f'--init={data / "init.pth"}'], 'expected NAME=WEIGHTS'),
                         (['--init', f'a={data / "init.pth"}'], 'needs two --init NAME=WEIGHTS or more to compare'),
                         (['--init', f'a={data / "init.pth"}', '--init', 'b=missing.pth'],
                          'no weights file missing.pth')):
        run = subprocess.run(cli + bad + ['--out', str(tmp_path / 'never.json')], capture_output=True, text=True,
                             timeout=120, cwd=ROOT)
        assert run.returncode != 0 and message in run.stderr and not (tmp_path / 'never.json').exists()


def test_measure_refuses_a_model_that_is_not_shipped(tmp_path):
    env = dict(os.environ, MZSR_WEIGHTS_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, osp.join(ROOT, 'scripts', 'train_weights.py'), 'report', '--model',
                          'x2_bicubic', '--measure', '--device', 'cpu'], capture_output=True, text=True,
                         timeout=120, env=env)
    assert run.returncode != 0
    assert f'--measure: {tmp_path / "mzsr_x2_bicubic.pth"} is not shipped yet; run the x2_bicubic campaign' in \
        run.stderr


def test_the_campaign_runs_from_an_installed_wheel(installed_wheel, data, tmp_path):
    site = installed_wheel
    work = tmp_path / 'work'
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run([sys.executable, '-c', 'import mzsr_plugin; print(mzsr_plugin.__file__)'], cwd=work,
                           env=env, capture_output=True, text=True, timeout=300)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr  # the wheel, not this checkout
    overrides = [item for key, value in TINY.items() for item in ('--set', f'{key}={value}')]
    command = [sys.executable, '-m', 'mzsr_plugin.campaign.cli', 'campaign', '--model', 'x2_direct', '--minutes', '5',
               '--train-dir', str(data / 'train'), '--val-dir', str(data / 'val'), '--init', str(data / 'init.pth'),
               '--max-iters', '1', '--threads', '1', '--device', 'cpu', *overrides]
    run = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    # The installed package, not this checkout, ran; state and history in the working folder, none in site-packages.
    assert osp.isfile(work / 'mzsr_campaign' / 'x2_direct' / 'state.pth')
    assert len(load_history(str(work / 'mzsr_campaign' / 'x2_direct'))) == 2
    assert not (site / 'mzsr_plugin' / 'weights' / 'campaign').exists()
    run = subprocess.run([sys.executable, '-m', 'mzsr_plugin.campaign.cli', 'report', '--model', 'x2_direct'], cwd=work,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "invalid choice: 'report'" in run.stderr  # the checkout's train_weights.py has it
    run = subprocess.run([sys.executable, '-m', 'mzsr_plugin.campaign.cli', 'campaign', '--model', 'x2_direct',
                          '--minutes', '1'], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and '--train-dir' in run.stderr  # no checkout: no default data


def test_every_kind_names_existing_option_files():
    for kind in CAMPAIGN_KINDS.values():
        for name in (kind.pretrain_options, kind.meta_options):
            assert osp.isfile(osp.join(ROOT, 'options', name)), name


def test_data_loader_workers_feed_the_same_campaign(data, tmp_path):
    run = campaign(data, tmp_path / 'workers', workers=2)
    run.run(10, max_iters=3)
    assert run.state['meta_iter'] == 3
    assert [e['meta_iter'] for e in load_history(str(tmp_path / 'workers'))] == [0, 3]


def test_compare_runs_each_recipe_once_per_precision(data, tmp_path):
    val = tmp_path / 'val'
    write_images(str(val), len(SELECTION_PLAN), 256, 256, seed=3)
    out = tmp_path / 'precisions.json'
    cli = [sys.executable, '-m', 'mzsr_plugin.campaign.cli', 'compare', '--model', 'x2_direct', '--train-dir',
           str(data / 'train'), '--val-dir', str(val), '--device', 'cpu', '--work-dir', str(tmp_path / 'work'),
           '--init', str(data / 'init.pth'), '--recipes', 'official', '--minutes', '5', '--max-iters', '2']
    sets = [arg for key, value in TINY.items() for arg in ('--set', f'{key}={value}')]
    bad = subprocess.run(cli + sets + ['--precisions', 'fp32,fp16', '--out', str(out)], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert bad.returncode != 0 and "--precisions: unknown ['fp16']; known: auto, fp32, bf16" in bad.stderr
    assert not out.exists()
    run = subprocess.run(cli + sets + ['--precisions', 'fp32,bf16', '--out', str(out)], capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    results = json.loads(out.read_text())['results']
    assert list(results) == ['official @fp32', 'official @bf16']
    for precision, layout in (('fp32', 'contiguous'), ('bf16', 'channels_last')):
        result = results[f'official @{precision}']
        assert result['overrides'] == dict(RECIPES['official'], **{'train.precision': precision})
        # What the trial's model ran, from its own history: the override reached MetaSRModel.
        assert (result['precision']['precision'], result['precision']['memory_format']) == (precision, layout)
        assert result['meta_iters'] == 2
    assert 'iters/h' in run.stdout and 'official @bf16' in run.stdout
