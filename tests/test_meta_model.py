"""MAML in MetaSRModel: exact meta-gradients, the loss-weight schedule, any arch, faults, distributed."""
import copy
import math
import os
import pytest
import torch
import torch.multiprocessing as mp

from basicsr.archs.srresnet_arch import MSRResNet
from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.models.meta_learning import (meta_gradients_batched, meta_gradients_loop, multi_step_loss_weights,
                                              select_meta_engine)
from mzsr_plugin.models.meta_sr_model import MetaSRModel


def _tasks(num_tasks=2, shots=2, lq=6, scale=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    hq = lq * scale
    return (torch.rand(num_tasks, shots, 3, lq, lq, generator=g, dtype=dtype),
            torch.rand(num_tasks, shots, 3, hq, hq, generator=g, dtype=dtype),
            torch.rand(num_tasks, shots, 3, lq, lq, generator=g, dtype=dtype),
            torch.rand(num_tasks, shots, 3, hq, hq, generator=g, dtype=dtype))


def _params(net):
    return {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}


def test_loss_weights_follow_the_official_schedule_and_advance():
    assert multi_step_loss_weights(5, 0) == pytest.approx([0.2] * 5)
    w = multi_step_loss_weights(5, 1000)
    assert w == pytest.approx([0.2 - 0.06] * 4 + [0.2 + 0.24])
    assert sum(w) == pytest.approx(1.0)
    late = multi_step_loss_weights(5, 10**6)
    assert late == pytest.approx([0.006] * 4 + [0.976])
    assert multi_step_loss_weights(1, 500) == [1.0]
    # strictly moving between start and the floor: the official code's bug (a frozen schedule) would fail this
    assert multi_step_loss_weights(5, 100)[-1] > multi_step_loss_weights(5, 99)[-1]


@pytest.mark.parametrize('engine', [meta_gradients_loop, meta_gradients_batched])
def test_meta_gradient_matches_finite_differences(engine):
    torch.manual_seed(0)
    net = MZSRNet(num_feat=6, num_conv=3).double()
    params = _params(net)
    tasks = _tasks()
    weights = multi_step_loss_weights(3, 200)
    grads, loss, support, query = engine(net, params, tasks, 0.1, 3, weights, True)
    assert support.shape == (3, ) and query.shape == (4, )
    eps = 1e-6
    for name, index in [('convs.0.weight', (1, 2, 0, 1)), ('convs.1.bias', (3, )), ('convs.2.weight', (0, 4, 2, 2))]:
        plus, minus = _params(net), _params(net)
        plus[name].data[index] += eps
        minus[name].data[index] -= eps
        f_plus = meta_gradients_loop(net, plus, tasks, 0.1, 3, weights, True)[1]
        f_minus = meta_gradients_loop(net, minus, tasks, 0.1, 3, weights, True)[1]
        numeric = float(f_plus - f_minus) / (2 * eps)
        assert grads[name][index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_second_order_differs_from_first_order_and_engines_agree():
    torch.manual_seed(1)
    net = MZSRNet(num_feat=6, num_conv=3).double()
    params = _params(net)
    tasks = _tasks(num_tasks=3)
    weights = multi_step_loss_weights(2, 0)
    results = {}
    for order in (True, False):
        loop = meta_gradients_loop(net, params, tasks, 0.1, 2, weights, order)
        batched = meta_gradients_batched(net, params, tasks, 0.1, 2, weights, order)
        for name in loop[0]:
            torch.testing.assert_close(loop[0][name], batched[0][name], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(loop[3], batched[3])
        results[order] = loop[0]
    diff = max((results[True][k] - results[False][k]).abs().max().item() for k in params)
    scale = max(results[True][k].abs().max().item() for k in params)
    assert diff > 1e-3 * scale


def test_engine_selection():
    assert select_meta_engine('auto', 'cpu') is meta_gradients_loop
    assert select_meta_engine('auto', 'cuda') is meta_gradients_batched
    with pytest.raises(ValueError, match='train.meta_engine'):
        select_meta_engine('fast', 'cpu')


def meta_opt(tmp_path, network, inner_steps=2, **train):
    net = MZSRNet(**{k: v for k, v in network.items() if k != 'type'}) if network['type'] == 'MZSRNet' \
        else MSRResNet(**{k: v for k, v in network.items() if k != 'type'})
    torch.manual_seed(0)
    pretrained = tmp_path / 'pretrained.pth'
    torch.save({'params': net.state_dict()}, pretrained)
    opt = {
        'name': 'meta_unit', 'model_type': 'MetaSRModel', 'scale': 2, 'num_gpu': 0, 'is_train': True,
        'dist': False, 'rank': 0, 'world_size': 1, 'network_g': network,
        'path': {'pretrain_network_g': str(pretrained), 'strict_load_g': True, 'models': str(tmp_path),
                 'training_states': str(tmp_path)},
        'train': dict({'mode': 'meta', 'inner_lr': 1e-2, 'inner_steps': inner_steps,
                       'optim_g': {'type': 'Adam', 'lr': 1e-3},
                       'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}}, **train),
        'logger': {},
    }
    return opt


def task_batch(num_tasks, shots=2, gt=16, scale=2, seed=0):
    support_lq, support_gt, query_lq, query_gt = _tasks(num_tasks, shots, gt // scale, scale, torch.float32, seed)
    return {'support_lq': support_lq, 'support_gt': support_gt, 'query_lq': query_lq, 'query_gt': query_gt,
            'scale': torch.full((num_tasks, ), scale), 'kernel': torch.ones(num_tasks, 3, 3) / 9}


@pytest.mark.parametrize('network', [
    {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3},
    {'type': 'MSRResNet', 'num_feat': 8, 'num_block': 1, 'upscale': 2},  # a stock BasicSR arch
])
def test_meta_update_changes_weights_functionally_with_any_arch(tmp_path, network):
    model = MetaSRModel(meta_opt(tmp_path, network))
    before = {k: v.detach().clone() for k, v in model.net_g.named_parameters()}
    ids = {k: id(v) for k, v in model.net_g.named_parameters()}
    model.feed_data(task_batch(2))
    model.optimize_parameters(1)
    log = model.get_current_log()
    assert {'l_meta', 'l_query_pre', 'l_support_0', 'l_query_1', 'l_query_2', 'grad_norm', 'w_final'} <= set(log)
    assert all(math.isfinite(v) for v in log.values())
    changed = [k for k, v in model.net_g.named_parameters() if not torch.equal(v, before[k])]
    assert changed == list(before)  # every parameter moved, through the optimizer...
    assert ids == {k: id(v) for k, v in model.net_g.named_parameters()}  # ...the same tensors, no rebinding


def test_non_finite_meta_loss_skips_the_update(tmp_path):
    model = MetaSRModel(meta_opt(tmp_path, {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3}))
    before = {k: v.detach().clone() for k, v in model.net_g.named_parameters()}
    batch = task_batch(2)
    batch['query_gt'][0, 0, 0, 0, 0] = float('nan')
    model.feed_data(batch)
    model.optimize_parameters(1)
    assert model.skipped_updates == 1
    assert model.get_current_log()['skipped_updates'] == 1
    assert all(torch.equal(v, before[k]) for k, v in model.net_g.named_parameters())


def test_first_order_warm_up_then_second_order(tmp_path, monkeypatch):
    model = MetaSRModel(meta_opt(tmp_path, {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3}, first_order_iters=2))
    orders = []
    engine = model.meta_engine

    def spy(*args):
        orders.append(args[-1])
        return engine(*args)

    model.meta_engine = spy
    for it in (1, 2, 3):
        model.feed_data(task_batch(1, seed=it))
        model.optimize_parameters(it)
    assert orders == [False, False, True]


def test_meta_mode_requires_pretrained_weights(tmp_path):
    opt = meta_opt(tmp_path, {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3})
    opt['path']['pretrain_network_g'] = None
    with pytest.raises(ValueError, match='path.pretrain_network_g'):
        MetaSRModel(opt)
    opt = meta_opt(tmp_path, {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3})
    opt['train']['mode'] = 'maml'
    with pytest.raises(ValueError, match="train: mode must be one of 'pretrain', 'meta'; got 'maml'"):
        MetaSRModel(opt)


def _distributed_worker(rank, world_size, init_file, opt, batch, result_file):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                                         world_size=world_size)
    opt = dict(opt, dist=True, rank=rank, world_size=world_size)
    model = MetaSRModel(opt)
    per_rank = batch['support_lq'].shape[0] // world_size
    model.feed_data({k: v[rank * per_rank:(rank + 1) * per_rank] for k, v in batch.items()})
    model.optimize_parameters(1)
    if rank == 0:
        torch.save(model.net_g.state_dict(), result_file)
    torch.distributed.destroy_process_group()


def test_two_processes_give_the_update_of_one_process_over_all_tasks(tmp_path):
    opt = meta_opt(tmp_path, {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3})
    batch = task_batch(4, seed=5)
    single = MetaSRModel(copy.deepcopy(opt))
    single.feed_data(batch)
    single.optimize_parameters(1)
    result = tmp_path / 'rank0.pth'
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / 'init'), opt, batch, str(result)), nprocs=2, join=True)
    distributed = torch.load(result, weights_only=True)
    for name, value in single.net_g.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-5, atol=1e-6)
    pretrained = torch.load(opt['path']['pretrain_network_g'], weights_only=True)['params']
    assert not torch.equal(pretrained['convs.0.weight'], distributed['convs.0.weight'])
