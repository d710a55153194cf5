"""CUDA-graph paths: the same numbers as the eager engines.

On CPU the graphed classes run their very code eagerly (``capture=False``) and must match the eager meta-update
and adaptation exactly; with CUDA the captured graphs must match too (``scripts/device_check.sh`` runs these on a
lent GPU: tests marked ``cuda`` skip elsewhere).
"""
import numpy as np
import pytest
import torch

from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.models.adaptation import make_son, resolve_adapt_lrs, super_resolve_image
from mzsr_plugin.models.cuda_graphs import GraphedAdaptation, GraphedMetaUpdate, graphs_available
from mzsr_plugin.models.inner_loop import LearnedInnerLR
from mzsr_plugin.models.meta_sr_model import MetaSRModel

CUDA = pytest.mark.skipif(not graphs_available('cuda'), reason='needs a CUDA GPU (scripts/device_check.sh)')
pytestmark = pytest.mark.usefixtures('one_thread')


def meta_opt(tmp_path, device='cpu', **train):
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(num_feat=8, num_conv=3).state_dict()}, tmp_path / 'start.pth')
    return {
        'name': 'graphs', 'model_type': 'MetaSRModel', 'scale': 2, 'num_gpu': 1 if device == 'cuda' else 0,
        'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1,
        'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3},
        'path': {'pretrain_network_g': str(tmp_path / 'start.pth'), 'strict_load_g': True, 'models': str(tmp_path),
                 'training_states': str(tmp_path)},
        'train': dict({'mode': 'meta', 'inner_lr': 1e-2, 'inner_steps': 3, 'meta_engine': 'loop',
                       'optim_g': {'type': 'Adam', 'lr': 1e-3},
                       'scheduler': {'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5}}, **train),
        'logger': {},
    }


def batch(seed, num_tasks=2, nan=False):
    g = torch.Generator().manual_seed(seed)
    data = {key: torch.rand(num_tasks, 2, 3, size, size, generator=g)
            for key, size in (('support_lq', 8), ('support_gt', 16), ('query_lq', 8), ('query_gt', 16))}
    if nan:
        data['query_gt'][0, 0, 0, 0, 0] = float('nan')
    data.update(scale=torch.full((num_tasks, ), 2), kernel=torch.ones(num_tasks, 3, 3) / 9)
    return data


def train_both(tmp_path, iterations, device='cpu', capture=False, batches=None, **train):
    eager = MetaSRModel(meta_opt(tmp_path, device, **train))
    graphed = MetaSRModel(meta_opt(tmp_path, device, **train))
    if capture:
        graphed.optimizer_g = torch.optim.Adam(graphed.get_bare_model(graphed.net_g).parameters(), lr=1e-3,
                                               capturable=True)
        if graphed.learned_inner_lr is not None:
            graphed.optimizer_g.add_param_group({'params': [graphed.learned_inner_lr.log_lr],
                                                 'lr': graphed.optimizer_g.param_groups[0]['lr']})
        eager_lrs = [g['lr'] for g in eager.optimizer_g.param_groups]
        for group, lr in zip(graphed.optimizer_g.param_groups, eager_lrs):
            group['lr'] = lr
        graphed.schedulers = [torch.optim.lr_scheduler.MultiStepLR(graphed.optimizer_g, [2], 0.5)]
    graphed.graphed_update = GraphedMetaUpdate(graphed.get_bare_model(graphed.net_g), graphed.optimizer_g,
                                               graphed.meta_engine, graphed.inner_steps, graphed.learned_inner_lr,
                                               graphed.grad_clip_norm, capture=capture)
    for it in range(1, iterations + 1):
        data = (batches or {}).get(it, batch(it))
        for model in (eager, graphed):
            model.update_learning_rate(it)
            model.feed_data(data)
            model.optimize_parameters(it)
    return eager, graphed


def assert_same_weights(a, b, atol=0.0):
    for (name, p), (_, q) in zip(a.get_bare_model(a.net_g).named_parameters(),
                                 b.get_bare_model(b.net_g).named_parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize('train', [{}, {'learn_inner_lr': True, 'inner_lr_meta_lr': 0.05},
                                   {'first_order_iters': 2, 'grad_clip_norm': 0.01}])
def test_graphed_meta_update_equals_the_eager_one(tmp_path, train):
    eager, graphed = train_both(tmp_path, 4, **train)
    assert_same_weights(eager, graphed, atol=1e-7)
    if train.get('learn_inner_lr'):
        torch.testing.assert_close(graphed.learned_inner_lr.log_lr, eager.learned_inner_lr.log_lr, rtol=0, atol=1e-7)
    for key in ('l_meta', 'l_query_3', 'grad_norm'):
        assert graphed.get_current_log()[key] == pytest.approx(eager.get_current_log()[key], rel=1e-5)
    # The scheduler halved the lr at iteration 2; the graphed path saw it through its device-tensor copy.
    assert graphed.optimizer_g.param_groups[0]['lr'] == eager.optimizer_g.param_groups[0]['lr'] == 5e-4


def test_graphed_meta_update_skips_a_non_finite_step_and_restores_adam(tmp_path):
    eager, graphed = train_both(tmp_path, 3, batches={2: batch(2, nan=True)})
    assert eager.skipped_updates == graphed.skipped_updates == 1
    assert_same_weights(eager, graphed, atol=1e-7)
    for p in graphed.get_bare_model(graphed.net_g).parameters():
        assert int(graphed.optimizer_g.state[p]['step']) == 2  # the skipped step left Adam's count alone


def test_cuda_graph_true_without_cuda_falls_back_to_the_eager_engine(tmp_path, caplog):
    model = MetaSRModel(meta_opt(tmp_path, cuda_graph=True))
    assert model.graphed_update is None
    assert 'train.cuda_graph: true needs one CUDA process' in caplog.text
    assert MetaSRModel(meta_opt(tmp_path, cuda_graph='auto')).graphed_update is None


def adaptation_case(device='cpu'):
    torch.manual_seed(1)
    net = MZSRNet(num_feat=8, num_conv=3).to(device)
    lr = torch.rand(1, 3, 20, 24, device=device)
    kernel = torch.from_numpy(np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16).to(device)
    return net, lr, kernel


@pytest.mark.parametrize('learned', [False, True])
def test_graphed_adaptation_equals_super_resolve_image(learned, device='cpu', capture=False):
    net, lr, kernel = adaptation_case(device)
    if learned:
        names = [n for n, _ in net.named_parameters()]
        table = LearnedInnerLR(names, 2, 1e-2)
        with torch.no_grad():
            table.log_lr.add_(torch.linspace(-1, 1, table.log_lr.numel()).view_as(table.log_lr))
        lrs = resolve_adapt_lrs('learned', 5, 2, 'direct', learned=table.as_dicts())
    else:
        lrs = resolve_adapt_lrs('direct_x2', 5, 2, 'direct')
    expected = super_resolve_image(net, lr, kernel, 2, 5, lrs, crop_budget=0, tile=0)[0]
    graphed = GraphedAdaptation(net, 5, capture=capture)
    for _ in range(2):  # a replay gives the same result as the first run
        sr, loss = graphed(make_son(lr, kernel, 2, 'direct'), lr, lr, lrs)
        torch.testing.assert_close(sr, expected, rtol=1e-5, atol=1e-6)
    assert loss.ndim == 0 and float(loss) > 0
    with pytest.raises(ValueError, match='replays one image shape'):
        graphed(make_son(lr[..., :10], kernel, 2, 'direct'), lr[..., :10], lr[..., :10], lrs)


@CUDA
@pytest.mark.parametrize('train', [{}, {'learn_inner_lr': True}, {'first_order_iters': 2}])
def test_captured_meta_update_equals_the_eager_one_on_cuda(tmp_path, train):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    eager, graphed = train_both(tmp_path, 4, device='cuda', capture=True, **train)
    assert_same_weights(eager, graphed, atol=1e-5)


@CUDA
def test_captured_meta_update_skips_non_finite_on_cuda(tmp_path):
    eager, graphed = train_both(tmp_path, 3, device='cuda', capture=True, batches={3: batch(3, nan=True)})
    assert graphed.skipped_updates == 1
    assert_same_weights(eager, graphed, atol=1e-5)


@CUDA
@pytest.mark.parametrize('learned', [False, True])
def test_captured_adaptation_equals_super_resolve_image_on_cuda(learned):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    test_graphed_adaptation_equals_super_resolve_image(learned, device='cuda', capture=True)
