"""Training survives faults: a killed run resumes where its last checkpoint left it, a corrupt newest training
state is skipped, and checkpoints are written atomically."""
import glob
import logging
import os
import pytest
import re
import signal
import subprocess
import sys
import time
import torch
from os import path as osp

import mzsr_plugin  # noqa: F401  (applies the basicsr fixes that are under test)
from basicsr.models import build_model
from helpers import write_images, write_options
from mzsr_plugin import compat
from mzsr_plugin.archs.mzsr_arch import MZSRNet

# Enough iterations that the first run is always killed long before it could finish on its own.
LONG_RUN = 100000


pytestmark = pytest.mark.usefixtures('one_thread')


def meta_train_options(root, name, total_iter, save_freq=2, val=None, print_freq=1):
    """Options of a tiny meta-training (MZSRNet 8 features x 3 convs, 2 tasks of 2 + 2 patches of 16x16) on CPU.

    Writes the generated HR images and the pretrained weights under ``root`` on first use.

    Args:
        root (str): Folder for the data and the pretrained weights.
        name (str): Experiment name (without 'debug', which would turn TensorBoard off).
        total_iter (int): Iterations.
        save_freq (int): Checkpoint interval.
        val (dict | None): The ``val`` section; None: no validation.
        print_freq (int): Log interval.

    Returns:
        dict: BasicSR options, ready for :func:`helpers.write_options`.
    """
    hr = osp.join(root, 'hr')
    pretrained = osp.join(root, 'pretrained.pth')
    if not osp.isdir(hr):
        write_images(hr, 3, 40, 48, seed=3)
        torch.manual_seed(0)
        torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, pretrained)
    opt = {
        'name': name,
        'model_type': 'MetaSRModel',
        'scale': 2,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            'train': {
                'name': 'tasks', 'type': 'MZSRMetaTaskDataset', 'dataroot_gt': hr, 'io_backend': {'type': 'disk'},
                'scale_list': [2], 'gt_size': 16, 'num_support': 2, 'num_query': 2, 'kernel_size': 7,
                'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 100
            },
        },
        'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3, 'scale': 2},
        'path': {'pretrain_network_g': pretrained, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'mode': 'meta', 'inner_lr': 1e-2, 'inner_steps': 2,
            'optim_g': {'type': 'Adam', 'lr': 1e-4},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [100000], 'gamma': 0.5},
            'total_iter': total_iter, 'warmup_iter': -1,
        },
        'logger': {'print_freq': print_freq, 'save_checkpoint_freq': save_freq, 'use_tb_logger': val is not None},
    }
    if val is not None:
        opt['datasets']['val'] = val.pop('dataset')
        opt['val'] = val
    return opt


def run_train(cwd, opt_file, *extra, timeout=300):
    """``python -m mzsr_plugin.train -opt OPT [extra]`` in ``cwd`` on CPU, to completion."""
    return subprocess.run([sys.executable, '-m', 'mzsr_plugin.train', '-opt', str(opt_file), *extra],
                          cwd=str(cwd), env=_cpu_env(), capture_output=True, text=True, timeout=timeout)


def _cpu_env():
    return dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')


def _state_iters(state_dir):
    return sorted(int(osp.basename(p)[:-len('.state')]) for p in compat.find_resume_states(str(state_dir)))


def test_killed_training_resumes_at_its_last_checkpoint(tmp_path):
    exp = tmp_path / 'experiments' / 'killed_meta'
    states = exp / 'training_states'
    opt_file = write_options(tmp_path / 'meta.yml', meta_train_options(str(tmp_path / 'data'), 'killed_meta',
                                                                       LONG_RUN))
    log_file = open(tmp_path / 'first_run.out', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'mzsr_plugin.train', '-opt', str(opt_file)], cwd=str(tmp_path),
                            env=_cpu_env(), stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        # Killed as soon as the 2nd checkpoint exists: mid-run, and possibly mid-write of the next one.
        while len(_state_iters(states)) < 2:
            assert proc.poll() is None, (tmp_path / 'first_run.out').read_text()[-3000:]
            assert time.monotonic() < deadline, 'no checkpoint within 120 s'
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log_file.close()
    assert proc.returncode == -signal.SIGKILL
    saved = _state_iters(states)
    last = saved[-1]
    assert last >= 4 and last % 2 == 0 and last < LONG_RUN
    # Atomic saves: whatever the moment of the kill, every .state that exists is complete.
    for it in saved:
        assert torch.load(states / f'{it}.state', weights_only=False)['iter'] == it
    saved_state = torch.load(states / f'{last}.state', weights_only=False)
    # What a kill in the middle of a save leaves: the temp file of atomic_torch_save (the target is untouched).
    stale = [states / f'.{last + 2}.state.k1ll3d.tmp', exp / 'models' / f'.net_g_{last + 2}.pth.k1ll3d.tmp']
    for path in stale:
        path.write_bytes(b'half a checkpoint')

    # Resume on CPU for two more checkpoints.
    opt_file = write_options(tmp_path / 'meta.yml', meta_train_options(str(tmp_path / 'data'), 'killed_meta',
                                                                       last + 4))
    resumed = run_train(tmp_path, opt_file, '--auto_resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not any(path.exists() for path in stale)
    assert f'Removed {stale[0]}, the partial checkpoint of an interrupted save' in resumed.stderr
    log = open(sorted(glob.glob(str(exp / 'train_*.log')))[-1]).read()
    assert re.search(rf'Resuming training from epoch: \d+, iter: {last}\.', log), log[-2000:]
    assert f'Start training from epoch: {saved_state["epoch"]}, iter: {last}' in log
    # The iterations after the resume are logged from last + 1 on, none repeated.
    logged = [int(v) for v in re.findall(r'iter:\s+(\d+), lr:', log)]
    assert logged == list(range(last + 1, last + 5)), logged
    final = torch.load(states / f'{last + 4}.state', weights_only=False)
    # Adam counts its steps: the resumed optimizer went on from the saved count, not from 0.
    assert final['iter'] == last + 4
    assert all(float(s['step']) == last + 4 for s in final['optimizers'][0]['state'].values())
    assert saved_state['optimizers'][0]['state'][0]['step'] == last


def _model_options(tmp_path, experiments_root, auto_resume):
    opt = meta_train_options(str(tmp_path / 'data'), 'resume_unit', 10)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=auto_resume)
    opt['path'].update(experiments_root=str(experiments_root), models=str(experiments_root / 'models'),
                       training_states=str(experiments_root / 'training_states'))
    return opt


def test_resume_training_restores_the_saved_optimizer_state(tmp_path):
    root = tmp_path / 'exp'
    (root / 'models').mkdir(parents=True)
    (root / 'training_states').mkdir()
    opt = _model_options(tmp_path, root, auto_resume=False)
    model = build_model(opt)
    batch = _task_batch()
    for it in (1, 2, 3):
        model.update_learning_rate(it)
        model.feed_data(batch)
        model.optimize_parameters(it)
    model.save(0, 3)
    state = torch.load(root / 'training_states' / '3.state', weights_only=False)

    fresh = build_model(_model_options(tmp_path, root, auto_resume=False))
    fresh.resume_training(state)
    loaded = fresh.optimizers[0].state_dict()
    expected = model.optimizers[0].state_dict()
    assert loaded['param_groups'] == expected['param_groups']
    for index, entry in expected['state'].items():
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(loaded['state'][index][key]), torch.as_tensor(value)), (index, key)
    assert fresh.schedulers[0].state_dict() == model.schedulers[0].state_dict()


def _task_batch(num_tasks=2, shots=2, lq=8, scale=2):
    g = torch.Generator().manual_seed(0)

    def rand(size):
        return torch.rand(num_tasks, shots, 3, size, size, generator=g)

    return {'support_lq': rand(lq), 'support_gt': rand(lq * scale), 'query_lq': rand(lq),
            'query_gt': rand(lq * scale), 'scale': torch.full((num_tasks, ), scale)}


def test_corrupt_newest_state_is_skipped_with_a_warning(tmp_path, caplog):
    root = tmp_path / 'exp'
    states = root / 'training_states'
    states.mkdir(parents=True)
    compat.atomic_torch_save({'iter': 4, 'epoch': 1, 'optimizers': [], 'schedulers': []}, str(states / '4.state'))
    compat.atomic_torch_save({'iter': 8, 'epoch': 2, 'optimizers': [], 'schedulers': []}, str(states / '8.state'))
    # A crash of an older version mid-save: the newest state is cut short.
    full = (states / '8.state').read_bytes()
    (states / '8.state').write_bytes(full[:len(full) // 2])
    (states / 'notes.state').write_bytes(b'not an iteration')  # ignored: not named <iter>.state
    opt = {'auto_resume': True, 'num_gpu': 0, 'path': {'experiments_root': str(root), 'models': str(root)},
           'network_g': {'type': 'MZSRNet'}}
    with caplog.at_level(logging.WARNING, logger='basicsr'):
        state = compat.load_resume_state(opt)
    assert state['iter'] == 4
    assert opt['path']['resume_state'] == str(states / '4.state')
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(re.match(r'Skipping unreadable training state .*8\.state: ', w) for w in warnings), warnings

    # Every state unreadable: a fresh start, not a crash.
    (states / '4.state').write_bytes(b'')
    opt['path'].pop('resume_state')
    assert compat.load_resume_state(opt) is None

    # An explicitly named state that is unreadable is an error that names it.
    opt = {'auto_resume': False, 'num_gpu': 0, 'path': {'resume_state': str(states / '8.state')}}
    with pytest.raises(RuntimeError, match=r'path.resume_state: cannot read training state .*8\.state'):
        compat.load_resume_state(opt)
    opt = {'auto_resume': False, 'num_gpu': 0, 'path': {'resume_state': str(states / '12.state')}}
    with pytest.raises(FileNotFoundError, match=r'path.resume_state: no training state at .*12\.state'):
        compat.load_resume_state(opt)


class _Exploding:
    """Pickles part of itself, then fails: a save interrupted half-way (disk full, KeyboardInterrupt...)."""

    def __init__(self, error):
        self.error = error

    def __reduce__(self):
        raise self.error


@pytest.mark.parametrize('error', [OSError('No space left on device'), KeyboardInterrupt()])
def test_atomic_save_keeps_the_old_file_on_failure(tmp_path, error):
    target = tmp_path / 'net_g_latest.pth'
    compat.atomic_torch_save({'params': {'w': torch.arange(1000.)}}, str(target))
    before = target.read_bytes()
    with pytest.raises(type(error)):
        compat.atomic_torch_save({'params': {'w': torch.zeros(1000)}, 'bad': _Exploding(error)}, str(target))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['net_g_latest.pth']  # no temp file left
    assert torch.equal(torch.load(target, weights_only=True)['params']['w'], torch.arange(1000.))


def test_a_failed_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import basicsr.models.base_model as base_model
    root = tmp_path / 'exp'
    (root / 'models').mkdir(parents=True)
    (root / 'training_states').mkdir()
    model = build_model(_model_options(tmp_path, root, auto_resume=False))
    model.save(0, 2)
    state_file, net_file = root / 'training_states' / '2.state', root / 'models' / 'net_g_2.pth'
    before = state_file.read_bytes(), net_file.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b'half a checkpoint')
        raise OSError('No space left on device')

    # BasicSR retries a failed save 3 times, 1 s apart, then only logs it: the sleep is not what is under test.
    monkeypatch.setattr(base_model.time, 'sleep', lambda seconds: None)
    monkeypatch.setattr(torch, 'save', failing_save)
    model.save(0, 2)
    assert (state_file.read_bytes(), net_file.read_bytes()) == before
    assert sorted(p.name for p in (root / 'training_states').iterdir()) == ['2.state']
    assert sorted(p.name for p in (root / 'models').iterdir()) == ['net_g_2.pth']


def test_grad_clip_norm_bounds_the_applied_meta_gradient(tmp_path):
    opt = _model_options(tmp_path, tmp_path / 'exp', auto_resume=False)
    opt['train']['grad_clip_norm'] = 1e-3
    model = build_model(opt)
    applied = []
    step = model.optimizer_g.step

    def spy(*args, **kwargs):
        grads = [p.grad.flatten() for group in model.optimizer_g.param_groups for p in group['params']]
        applied.append(float(torch.linalg.vector_norm(torch.cat(grads))))
        return step(*args, **kwargs)

    model.optimizer_g.step = spy
    model.feed_data(_task_batch())
    model.optimize_parameters(1)
    raw = float(model.get_current_log()['grad_norm'])
    assert raw > 1e-2  # the logged norm is the raw one...
    assert applied == [pytest.approx(1e-3, rel=1e-4)]  # ...the optimizer sees the clipped gradient
