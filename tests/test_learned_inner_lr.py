"""Learned per-layer, per-step inner step sizes (MAML++'s LSLR): meta-gradient, training, saving, test-time use."""
import numpy as np
import pytest
import torch

from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.evaluation import load_mzsr_weights
from mzsr_plugin.models.adaptation import resolve_adapt_lrs, super_resolve_image
from mzsr_plugin.models.inner_loop import LearnedInnerLR, detached_params, load_inner_lrs, sgd_step
from mzsr_plugin.models.meta_learning import meta_gradients_batched, meta_gradients_loop
from mzsr_plugin.models.meta_sr_model import MetaSRModel

pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_net():
    torch.manual_seed(0)
    return MZSRNet(num_feat=8, num_conv=3).double()


def tasks(num_tasks=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(num_tasks, 2, 3, *size, generator=g, dtype=torch.float64)
                 for size in ((8, 8), (16, 16), (8, 8), (16, 16)))


def test_sgd_step_with_per_tensor_step_sizes():
    net = tiny_net()
    params = detached_params(net)
    lq, gt = torch.rand(1, 3, 8, 8, dtype=torch.float64), torch.rand(1, 3, 16, 16, dtype=torch.float64)
    lrs = {name: 0.01 * (i + 1) for i, name in enumerate(params)}
    new, _ = sgd_step(net, params, lq, gt, lrs, create_graph=False)
    plain = {name: sgd_step(net, params, lq, gt, lrs[name], create_graph=False)[0][name] for name in params}
    for name in params:
        torch.testing.assert_close(new[name], plain[name])


def test_learned_step_size_meta_gradient_loop_equals_batched_and_finite_difference():
    net, batch = tiny_net(), tasks()
    params = detached_params(net)
    lrs = torch.full((3, len(params)), 0.05, dtype=torch.float64, requires_grad=True)
    weights = [0.2, 0.3, 0.5]
    loop = meta_gradients_loop(net, params, batch, lrs, 3, weights, True)
    batched = meta_gradients_batched(net, params, batch, lrs, 3, weights, True)
    assert set(loop[0]) == set(params) | {'inner_lr'}
    for name in loop[0]:
        torch.testing.assert_close(loop[0][name], batched[0][name], rtol=1e-9, atol=1e-12)
    eps = 1e-6
    for step, column in ((0, 0), (2, 5)):
        plus, minus = lrs.detach().clone(), lrs.detach().clone()
        plus[step, column] += eps
        minus[step, column] -= eps
        numeric = (float(meta_gradients_loop(net, params, batch, plus, 3, weights, True)[1]) -
                   float(meta_gradients_loop(net, params, batch, minus, 3, weights, True)[1])) / (2 * eps)
        assert loop[0]['inner_lr'][step, column].item() == pytest.approx(numeric, rel=1e-5)
    # The same step size everywhere, as a plain number, gives the same meta-gradient for the weights.
    plain = meta_gradients_loop(net, params, batch, 0.05, 3, weights, True)
    for name in params:
        torch.testing.assert_close(plain[0][name], loop[0][name])


def meta_opt(tmp_path, **train):
    net = MZSRNet(num_feat=8, num_conv=3)
    torch.save({'params': net.state_dict()}, tmp_path / 'start.pth')
    return {
        'name': 'lslr', 'model_type': 'MetaSRModel', 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
        'rank': 0, 'world_size': 1, 'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_conv': 3},
        'path': {'pretrain_network_g': str(tmp_path / 'start.pth'), 'strict_load_g': True,
                 'models': str(tmp_path), 'training_states': str(tmp_path)},
        'train': dict({'mode': 'meta', 'inner_lr': 1e-2, 'inner_steps': 2, 'learn_inner_lr': True,
                       'inner_lr_meta_lr': 0.05, 'optim_g': {'type': 'Adam', 'lr': 1e-4},
                       'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}}, **train),
        'logger': {},
    }


def batch(num_tasks=2):
    support_lq, support_gt, query_lq, query_gt = (t.float() for t in tasks(num_tasks))
    return {'support_lq': support_lq, 'support_gt': support_gt, 'query_lq': query_lq, 'query_gt': query_gt,
            'scale': torch.full((num_tasks, ), 2), 'kernel': torch.ones(num_tasks, 3, 3) / 9}


def test_meta_training_learns_step_sizes_saves_and_resumes_them(tmp_path):
    model = MetaSRModel(meta_opt(tmp_path))
    start = model.learned_inner_lr.log_lr.detach().clone()
    assert torch.allclose(start.exp(), torch.full_like(start, 1e-2))
    for it in (1, 2, 3):
        model.feed_data(batch())
        model.optimize_parameters(it)
    learned = model.learned_inner_lr.log_lr.detach()
    assert learned.shape == (2, 6)
    # Adam moved every log step size by about its lr per iteration, in one direction or the other.
    assert (learned - start).abs().min() > 0.05
    assert 'inner_lr_mean' in model.get_current_log()
    model.save(0, 3)
    saved = torch.load(tmp_path / 'net_g_3.pth', weights_only=True)
    torch.testing.assert_close(saved['inner_lrs']['log_lr'], learned)
    net = load_mzsr_weights(str(tmp_path / 'net_g_3.pth'))
    assert len(net.inner_lrs) == 2 and set(net.inner_lrs[0]) == {n for n, _ in net.named_parameters()}
    assert net.inner_lrs[1]['convs.2.bias'] == pytest.approx(float(learned[1, 5].exp()))
    # BasicSR's resume points pretrain_network_g at the newest net_g_<iter>.pth: the step sizes come back.
    opt = meta_opt(tmp_path)
    opt['path']['pretrain_network_g'] = str(tmp_path / 'net_g_3.pth')
    resumed = MetaSRModel(opt)
    torch.testing.assert_close(resumed.learned_inner_lr.log_lr.detach(), learned)
    assert resumed.optimizer_g.param_groups[1]['lr'] == 0.05


def test_resolve_adapt_lrs_prefers_learned_step_sizes():
    learned = [{'a': 0.1}, {'a': 0.2}]
    assert resolve_adapt_lrs(None, 3, 2, 'direct', learned=learned) == [{'a': 0.1}, {'a': 0.2}, {'a': 0.2}]
    assert resolve_adapt_lrs('learned', 1, 2, 'direct', learned=learned) == [{'a': 0.1}]
    assert resolve_adapt_lrs('direct_x2', 2, 2, 'direct', learned=learned) == [2e-2, 1e-2]
    assert resolve_adapt_lrs(None, 2, 2, 'direct') == [2e-2, 1e-2]
    with pytest.raises(ValueError, match="lr 'learned': these weights carry no learned step sizes"):
        resolve_adapt_lrs('learned', 2, 2, 'direct')


def test_weights_with_zero_step_sizes_do_not_move_at_test_time(tmp_path):
    """The shipped step sizes are what test-time adaptation uses by default: with all of them ~0, ten steps
    change nothing; with the official preset they do."""
    net = MZSRNet(num_feat=8, num_conv=3)
    names = [n for n, _ in net.named_parameters()]
    learned = LearnedInnerLR(names, 2, 1e-30)
    torch.save({'params': net.state_dict(), 'inner_lrs': learned.state_dict()}, tmp_path / 'w.pth')
    net = load_mzsr_weights(str(tmp_path / 'w.pth'))
    assert load_inner_lrs(torch.load(tmp_path / 'w.pth', weights_only=True), names)[0]['convs.0.weight'] < 1e-29
    lr = torch.rand(1, 3, 16, 16)
    kernel = torch.from_numpy(np.ones((3, 3), np.float32) / 9)
    still = super_resolve_image(net, lr, kernel, 2, 10, crop_budget=0)[0]
    unadapted = super_resolve_image(net, lr, kernel, 2, 0, crop_budget=0)[0]
    preset = super_resolve_image(net, lr, kernel, 2, 10, lrs=resolve_adapt_lrs('direct_x2', 10, 2, 'direct'),
                                 crop_budget=0)[0]
    torch.testing.assert_close(still, unadapted)
    assert (preset - unadapted).abs().max() > 1e-4


def test_inner_lrs_of_the_wrong_shape_are_refused(tmp_path):
    net = MZSRNet(num_feat=8, num_conv=3)
    state = {'params': net.state_dict(), 'inner_lrs': {'log_lr': torch.zeros(2, 4)}}
    with pytest.raises(ValueError, match=r'inner_lrs.log_lr has shape \(2, 4\), expected \(steps, 6\)'):
        load_inner_lrs(state, [n for n, _ in net.named_parameters()])
