"""One campaign run: continue the committed state for a wall-clock budget, evaluate, ship when better."""
import json
import numpy as np
import os
import platform
import random
import signal
import threading
import time
import torch
import yaml
from os import path as osp
from torch.utils.data import DataLoader, default_collate

from basicsr.data import build_dataset
from mzsr_plugin.compat import atomic_torch_save
from mzsr_plugin.model_zoo import RECORD_KEY
from mzsr_plugin.models.meta_sr_model import MetaSRModel
from .kinds import CAMPAIGN_KINDS, OPTIONS_DIR, RECIPES, campaign_dir
from .selection import SELECTION_CROP, adaptation_gain, better, passes_guard, score_network, selection_cases

STATE_FILE = 'state.pth'
HISTORY_FILE = 'history.jsonl'
STAGES = ('pretrain', 'meta')
# A kill or Ctrl-C finishes the current iteration, saves the state and stops: nothing trained is lost.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def machine_label(device):
    """What trained a segment, for the history: the GPU's name, or the CPU's and its thread count."""
    if torch.device(device).type == 'cuda':
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'CPU {name} ({torch.get_num_threads()} threads)'


def apply_overrides(opt, overrides):
    """Sets dotted keys (``'train.inner_lr'``) of a nested option dict, in place; returns ``opt``."""
    for dotted, value in overrides.items():
        node = opt
        *parents, key = dotted.split('.')
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    return opt


def cpu_state(module):
    """A module's state dict as CPU copies (what the state file and the shipped weights hold)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_history(kind_dir):
    """Every evaluation of a campaign, oldest first (``history.jsonl``, one JSON object per line)."""
    path = osp.join(kind_dir, HISTORY_FILE)
    if not osp.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _rng_state():
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {'torch': torch.get_rng_state(), 'numpy': [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                      gauss], 'python': random.getstate()}


def _set_rng_state(state):
    torch.set_rng_state(state['torch'])
    kind, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state['python'])


class Campaign:
    """Trains one model kind in resumable segments.

    Args:
        kind (str): A key of :data:`~mzsr_plugin.campaign.kinds.CAMPAIGN_KINDS`.
        train_dir (str): HR training images (folder, or ``.lmdb`` with ``lmdb: true``), e.g. BSDS400 or DIV2K.
        val_dir (str): Held-out HR images of the selection set (HQ70).
        device (str): ``cpu`` or ``cuda``.
        state_dir (str | None): Where state and history live; None: the committed ``campaign_dir(kind)``.
        ship_to (str | None): Weights file replaced when the score improves; None: never ship (recipe trials).
        recipe (str | None): A key of :data:`~mzsr_plugin.campaign.kinds.RECIPES`; None keeps the state's.
        init (str | None): Weights to start a new campaign's meta stage from (skips pretraining).
        pretrain_iters (int): Stage-1 iterations of a new campaign without ``init``.
        lmdb (bool): ``train_dir`` is a BasicSR LMDB.
        overrides (dict | None): Dotted option keys set after the recipe (``--set``), e.g.
            ``{'meta:datasets.train.num_support': 8}`` for the official task size on a GPU; a ``pretrain:`` or
            ``meta:`` prefix limits a key to that stage, unprefixed keys apply to both.
        selection_crop (int): HR side of the selection-set crops.
        workers (int): Data-loader processes (a GPU needs them to be fed); 0 makes the tasks in this process, which
            resumes bit-exactly (workers draw from their own generators, seeded from the campaign's).
        work_dir (str): Scratch folder for the model's own files (not committed).
        log (callable): Prints progress lines.
    """

    def __init__(self, kind, train_dir, val_dir, device='cpu', state_dir=None, ship_to=None, recipe=None, init=None,
                 pretrain_iters=20000, lmdb=False, overrides=None, selection_crop=SELECTION_CROP, workers=0,
                 work_dir='experiments/campaign', log=print):
        if kind not in CAMPAIGN_KINDS:
            raise ValueError(f'--model {kind!r}: expected one of {sorted(CAMPAIGN_KINDS)}')
        if recipe is not None and recipe not in RECIPES:
            raise ValueError(f'--recipe {recipe!r}: expected one of {sorted(RECIPES)}')
        for key in overrides or {}:
            if ':' in key and key.split(':', 1)[0] not in STAGES:
                raise ValueError(f'--set {key}: a stage prefix must be one of {STAGES}, e.g. meta:train.inner_lr')
        for what, folder in (('training images', train_dir), ('held-out images', val_dir)):
            if not osp.exists(folder):
                raise FileNotFoundError(f'{what}: {folder} does not exist')
        self.kind = CAMPAIGN_KINDS[kind]
        self.train_dir, self.val_dir, self.device, self.lmdb = train_dir, val_dir, torch.device(device), lmdb
        self.state_dir = state_dir or campaign_dir(kind)
        self.ship_to = ship_to
        self.overrides = dict(overrides or {})
        self.selection_crop = selection_crop
        self.workers = int(workers)
        self.work_dir = osp.abspath(work_dir)
        self.log = log
        os.makedirs(self.state_dir, exist_ok=True)
        os.makedirs(self.work_dir, exist_ok=True)
        self.state = self._load_state()
        if self.state is None:
            self.state = self._new_state(init, pretrain_iters, recipe or 'official')
        elif recipe is not None and recipe != self.state['recipe']:
            self.log(f'recipe {self.state["recipe"]} -> {recipe} from meta iteration {self.state["meta_iter"]}')
            self.state['recipe'] = recipe  # Adam's state carries over when the parameter groups match
        _set_rng_state(self.state['rng'])
        self._rejudge_best()
        self._cases = None

    # ------------------------------------------------------------------------------------------------ state
    def _load_state(self):
        path = osp.join(self.state_dir, STATE_FILE)
        if not osp.isfile(path):
            return None
        # Our own file, with scheduler state (Counter) that weights_only refuses.
        state = torch.load(path, map_location='cpu', weights_only=False)
        if state['kind'] != self.kind.name:
            raise ValueError(f'{path} is the state of a {state["kind"]} campaign, not {self.kind.name}')
        return state

    def _new_state(self, init, pretrain_iters, recipe):
        params = inner_lrs = None
        if init is not None:
            loaded = torch.load(init, map_location='cpu', weights_only=True)
            params, inner_lrs = loaded['params'], loaded.get('inner_lrs')
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        return {
            'kind': self.kind.name, 'recipe': recipe, 'stage': 'meta' if init else 'pretrain', 'init': init,
            'pretrain_iters': pretrain_iters, 'pretrain_iter': 0, 'meta_iter': 0, 'params': params,
            'inner_lrs': inner_lrs, 'optimizer': None, 'scheduler': None, 'train_seconds': 0.0, 'best': None,
            'segments': [], 'rng': _rng_state()
        }

    def _rejudge_best(self):
        """Judges the shipped net's guard again by the current rule (:func:`~.selection.passes_guard`), from its
        history entry: a rule made stricter after it shipped lets a net that passes the new rule replace it."""
        best = self.state['best']
        if best is None:
            return
        entries = [e for e in load_history(self.state_dir)
                   if e['meta_iter'] == best['meta_iter'] and e['score'] == best['score'] and 'families' in e]
        if entries and passes_guard(entries[-1]) != best['guard']:
            best['guard'] = passes_guard(entries[-1])
            self.log(f'the bar (meta iteration {best["meta_iter"]}, score {best["score"]:.3f}) '
                     f'{"passes" if best["guard"] else "fails"} the current guard')

    def save_state(self):
        """Writes the state atomically: a kill at any moment leaves the previous or the new file, never half."""
        self._capture()
        self.state['rng'] = _rng_state()
        atomic_torch_save(self.state, osp.join(self.state_dir, STATE_FILE))

    def _capture(self):
        net = self.model.get_bare_model(self.model.net_g)
        self.state['params'] = cpu_state(net)
        learned = self.model.learned_inner_lr
        if learned is not None:
            self.state['inner_lrs'] = cpu_state(learned)
        self.state['optimizer'] = self.model.optimizer_g.state_dict()
        self.state['scheduler'] = [s.state_dict() for s in self.model.schedulers]

    # ------------------------------------------------------------------------------------------------ model
    def stage_options(self):
        """The option dict of the current stage: its option file, this campaign's data and recipe."""
        stage = self.state['stage']
        name = self.kind.pretrain_options if stage == 'pretrain' else self.kind.meta_options
        with open(osp.join(OPTIONS_DIR, name)) as f:
            opt = yaml.safe_load(f)
        if stage == 'meta':
            apply_overrides(opt, RECIPES[self.state['recipe']])
        apply_overrides(opt, {key.split(':', 1)[-1]: value for key, value in self.overrides.items()
                              if ':' not in key or key.split(':', 1)[0] == stage})
        train = opt['datasets']['train']
        train['dataroot_gt'] = osp.abspath(self.train_dir)
        train['io_backend'] = {'type': 'lmdb' if self.lmdb else 'disk'}
        train['phase'] = 'train'
        train['scale'] = opt['scale']
        cuda = self.device.type == 'cuda'
        opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=1 if cuda else 0)
        opt.pop('val', None)  # the campaign scores on its own selection set
        return opt

    def _build_model(self):
        opt = self.stage_options()
        params_file = None
        if self.state['params'] is not None:
            params_file = osp.join(self.work_dir, f'{self.kind.name}_start.pth')
            start = {'params': self.state['params']}
            if self.state['inner_lrs'] is not None:
                start['inner_lrs'] = self.state['inner_lrs']
            atomic_torch_save(start, params_file)
        opt['path'] = {'pretrain_network_g': params_file, 'strict_load_g': True, 'models': self.work_dir,
                       'training_states': self.work_dir, 'experiments_root': self.work_dir, 'log': self.work_dir,
                       'visualization': self.work_dir}
        model = MetaSRModel(opt)
        if self.state['optimizer'] is not None:
            # The options' learning rates, before the saved state overwrites them with the ones it was made with.
            wanted = [group.get('initial_lr', group['lr']) for group in model.optimizer_g.param_groups]
            try:
                model.optimizer_g.load_state_dict(self.state['optimizer'])
                for scheduler, saved in zip(model.schedulers, self.state['scheduler'] or []):
                    scheduler.load_state_dict(saved)
            except ValueError as error:  # another recipe's parameter groups
                self.log(f'optimizer state not reused ({error}); Adam starts afresh')
            else:
                self._apply_option_lrs(model, wanted)
        self.dataset = build_dataset(opt['datasets']['train'])
        self.batch_size = int(opt['datasets']['train']['batch_size_per_gpu'])
        self.opt = opt
        self.batches = self._loader() if self.workers else None
        return model

    def _apply_option_lrs(self, model, wanted):
        """Keeps Adam's moments but the options' learning rates: a ``--set`` or ``--recipe`` that changes a
        meta-lr takes effect on a resumed campaign, at the same point of its schedule."""
        for index, (group, lr) in enumerate(zip(model.optimizer_g.param_groups, wanted)):
            saved = group.get('initial_lr', group['lr'])
            if abs(lr - saved) <= 1e-12 * max(abs(lr), abs(saved)):
                continue
            group['lr'] *= lr / saved
            group['initial_lr'] = lr
            for scheduler in model.schedulers:
                scheduler.base_lrs[index] = lr
            self.log(f'learning rate of parameter group {index}: {saved:g} in the saved state, {lr:g} in the '
                     'options: the options win (Adam state kept)')

    def _loader(self):
        """Endless batches from worker processes, each seeded from the campaign's generator."""
        seed = int(np.random.randint(2**31))

        def init(worker):
            np.random.seed(seed + worker)
            random.seed(seed + worker)

        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, num_workers=self.workers,
                            drop_last=True, persistent_workers=True, worker_init_fn=init,
                            pin_memory=self.device.type == 'cuda')
        while True:
            yield from loader

    def _batch(self):
        if self.batches is not None:
            return next(self.batches)
        items = [self.dataset[int(np.random.randint(len(self.dataset)))] for _ in range(self.batch_size)]
        return default_collate(items)

    # --------------------------------------------------------------------------------------------- evaluation
    def evaluate(self):
        """Scores the current net on the selection set; appends the result to the history; ships if better."""
        if self._cases is None:
            self._cases = selection_cases(self.val_dir, self.kind.model.scales, self.kind.downsample,
                                          self.selection_crop)
        net = self.model.get_bare_model(self.model.net_g)
        learned = self.model.learned_inner_lr
        net.inner_lrs = learned.as_dicts() if learned is not None else None
        start = time.perf_counter()
        result = score_network(net, self._cases, self.device)
        # The first evaluation is the starting point: it sets the bar and ships nothing (the weights are already
        # there, or are someone else's start).
        shipped = self.ship_to is not None and self.state['best'] is not None and better(result, self.state['best'])
        entry = {
            'stage': self.state['stage'], 'recipe': self.state['recipe'], 'meta_iter': self.state['meta_iter'],
            'pretrain_iter': self.state['pretrain_iter'], 'train_hours': self.state['train_seconds'] / 3600,
            'machine': machine_label(self.device), 'time': time.strftime('%Y-%m-%dT%H:%M:%S'),
            'eval_seconds': time.perf_counter() - start, 'shipped': shipped, 'overrides': dict(self.overrides),
            'precision': self.model.train_precision.record(),
            'inner_lr_mean': float(np.mean([np.mean(list(d.values())) for d in net.inner_lrs]))
            if net.inner_lrs else None, **result
        }
        with open(osp.join(self.state_dir, HISTORY_FILE), 'a') as f:
            f.write(json.dumps(entry) + '\n')
        fam = result['families']
        self.log(f'[eval] {self.state["stage"]} it {self.state["meta_iter"] or self.state["pretrain_iter"]} '
                 f'({entry["train_hours"]:.2f} h): ' + '  '.join(
                     f'{name} {v["0"]:.2f}/{v["1"]:.2f}/{v["10"]:.2f}' for name, v in fam.items()) +
                 f'  score {result["score"]:.3f} gain {adaptation_gain(fam):+.2f} guard {result["guard"]}' +
                 ('  -> shipped' if shipped else ''))
        if shipped or self.state['best'] is None:
            self.state['best'] = {'score': result['score'], 'guard': result['guard'],
                                  'meta_iter': self.state['meta_iter']}
        if shipped:
            self._ship(net, learned)
        return entry

    def _ship(self, net, learned):
        weights = {'params': cpu_state(net)}
        if learned is not None:
            weights['inner_lrs'] = cpu_state(learned)
        weights[RECORD_KEY] = self.kind.model.record(
            campaign_meta_iter=self.state['meta_iter'], train_hours=round(self.state['train_seconds'] / 3600, 3),
            recipe=self.state['recipe'])
        os.makedirs(osp.dirname(osp.abspath(self.ship_to)), exist_ok=True)
        atomic_torch_save(weights, self.ship_to)

    # ---------------------------------------------------------------------------------------------- training
    def _step(self):
        stage = self.state['stage']
        key = 'pretrain_iter' if stage == 'pretrain' else 'meta_iter'
        current = self.state[key] + 1
        self.model.update_learning_rate(current, warmup_iter=int(self.opt['train'].get('warmup_iter', -1)))
        self.model.feed_data(self._batch())
        self.model.optimize_parameters(current)
        self.state[key] = current
        return current

    def _request_stop(self, signum, frame):
        self.stop_signal = signal.Signals(signum).name

    def run(self, minutes, checkpoint_minutes=3.0, eval_minutes=20.0, max_iters=None):
        """Trains for ``minutes`` of wall clock (evaluations included), then saves and evaluates.

        SIGTERM or SIGINT (Ctrl-C) ends the segment after the current iteration: the state is saved (without the
        final evaluation), so the next segment continues from there.

        Args:
            minutes (float): Budget of this segment.
            checkpoint_minutes (float): Interval of the atomic state saves (a kill loses at most this much).
            eval_minutes (float): Interval of the selection-set evaluations (of training time).
            max_iters (int | None): Stop after this many iterations of this segment (tests, smoke runs).

        Returns:
            list[dict]: The history entries this segment added.
        """
        deadline = time.time() + minutes * 60
        segment = {'machine': machine_label(self.device), 'started': time.strftime('%Y-%m-%dT%H:%M:%S'),
                   'start_meta_iter': self.state['meta_iter'], 'start_pretrain_iter': self.state['pretrain_iter'],
                   'overrides': dict(self.overrides)}
        self.state['segments'].append(segment)
        self.model = self._build_model()
        _set_rng_state(self.state['rng'])  # building the net draws from torch's generator
        entries = []
        if self.state['best'] is None:
            entries.append(self.evaluate())  # the starting point, so every gain is measured against it
        self.log(f'{self.kind.name}: {self.state["stage"]} stage, recipe {self.state["recipe"]}, meta iteration '
                 f'{self.state["meta_iter"]}, {minutes:.1f} min on {segment["machine"]}')
        self.stop_signal = None
        on_main_thread = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, self._request_stop) for s in STOP_SIGNALS} if on_main_thread else {}
        try:
            entries += self._train(deadline, checkpoint_minutes, eval_minutes, max_iters)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        segment['meta_iters'] = self.state['meta_iter'] - segment['start_meta_iter']
        segment['pretrain_iters'] = self.state['pretrain_iter'] - segment['start_pretrain_iter']
        if self.stop_signal:
            self.save_state()
            self.log(f'{self.stop_signal}: state saved at meta iteration {self.state["meta_iter"]} (pretraining '
                     f'{self.state["pretrain_iter"]}); the same command continues from there')
            return entries
        entries.append(self.evaluate())
        self.save_state()
        return entries

    def _train(self, deadline, checkpoint_minutes, eval_minutes, max_iters):
        entries, done = [], 0
        last_save = last_eval = time.time()
        while time.time() < deadline and (max_iters is None or done < max_iters) and not self.stop_signal:
            begin = time.time()
            current = self._step()
            self.state['train_seconds'] += time.time() - begin
            done += 1
            if self.state['stage'] == 'pretrain' and current >= self.state['pretrain_iters']:
                self.log(f'pretraining done after {current} iterations: meta-transfer starts')
                self.state['stage'] = 'meta'
                self._capture()
                self.state['optimizer'] = self.state['scheduler'] = None
                self.model = self._build_model()
            if done % 20 == 0:
                logs = self.model.get_current_log()
                steps = [int(k[8:]) for k in logs if k.startswith('l_query_') and k[8:].isdigit()]
                shown = ('l_pix', 'l_meta', 'l_query_pre', f'l_query_{max(steps, default=0)}', 'inner_lr_mean')
                self.log(f'  it {current}: ' + ' '.join(f'{k} {float(logs[k]):.4g}' for k in shown if k in logs) +
                         f' ({time.time() - begin:.2f} s/it)')
            if time.time() - last_save > checkpoint_minutes * 60:
                self.save_state()
                last_save = time.time()
            if time.time() - last_eval > eval_minutes * 60 and time.time() < deadline - 60 and not self.stop_signal:
                entries.append(self.evaluate())
                self.save_state()
                last_eval = last_save = time.time()
        return entries


def default_ship_path(kind):
    """The shipped weights file of a kind: ``mzsr_plugin/weights/<weights>``."""
    return CAMPAIGN_KINDS[kind].model.path
