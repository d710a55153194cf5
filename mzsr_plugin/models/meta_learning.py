"""Meta-gradients of MZSR's MAML objective, computed two ways that give the same numbers.

For each task, ``inner_steps`` SGD steps of size ``inner_lr`` on the support set (:func:`sgd_step`), the query
loss after every step, and their weighted sum (the MAML++ multi-step loss, :func:`multi_step_loss_weights`); the
meta-loss is the mean over tasks. Second order differentiates through the inner gradients; first order treats
them as constants.

- :func:`meta_gradients_loop`: one task after the other, each task's graph freed before the next. Fastest on CPU,
  where a task's convs already use the cores fully and batching tasks as grouped convs is slower.
- :func:`meta_gradients_batched`: all tasks at once with ``torch.func.vmap`` (grouped convs), so a GPU gets few,
  large launches instead of many small ones.
"""
import torch
from torch.func import functional_call, grad, grad_and_value, vmap

from .inner_loop import forward, l1_loss, sgd_step, sgd_update


def multi_step_loss_weights(num_steps, iteration, decay=6e-5):
    """Weights of the query losses after each inner step (MAML++'s multi-step loss annealing).

    Uniform ``1/n`` at iteration 0; the non-final weights then fall by ``decay`` per iteration down to
    ``0.03/n`` and the final one rises by ``(n-1)·decay`` up to ``1 - (n-1)·0.03/n``. With n = 5 these are the
    official MZSR numbers: ``max(0.2 - 6e-5·s, 0.006)`` and ``min(0.2 + 2.4e-4·s, 0.976)``. Unlike the official
    code, which never advances ``s``, the schedule moves with the training iteration.

    Args:
        num_steps (int): Inner steps n (>= 1).
        iteration (int): Meta-iteration s (0-based).
        decay (float): Per-iteration change of the non-final weights.

    Returns:
        list[float]: n weights summing to 1.
    """
    if num_steps == 1:
        return [1.0]
    start, floor = 1.0 / num_steps, 0.03 / num_steps
    non_final = max(start - decay * iteration, floor)
    final = min(start + (num_steps - 1) * decay * iteration, 1.0 - (num_steps - 1) * floor)
    return [non_final] * (num_steps - 1) + [final]


def _learned_lr(inner_lr):
    """``{'inner_lr': tensor}`` when the step sizes are a tensor that requires grad (learned), else ``{}``."""
    return {'inner_lr': inner_lr} if torch.is_tensor(inner_lr) and inner_lr.requires_grad else {}


def step_lr(inner_lr, step, params):
    """The step size(s) of inner step ``step`` (0-based): a number, or a dict of per-tensor 0-dim tensors.

    Args:
        inner_lr (float | Tensor): As :func:`meta_gradients_loop` takes it (a 0-dim tensor is one step size).
        step (int): Inner step.
        params (dict[str, Tensor]): Parameters, whose order gives the columns of a tensor ``inner_lr``.

    Returns:
        float | dict[str, Tensor]: What :func:`~mzsr_plugin.models.inner_loop.sgd_step` takes as ``lr``.
    """
    if not torch.is_tensor(inner_lr) or inner_lr.ndim == 0:
        return inner_lr
    return {name: inner_lr[step, i] for i, name in enumerate(params)}


def meta_gradients_loop(net, params, tasks, inner_lr, inner_steps, weights, second_order):
    """Meta-gradients task by task with ``torch.autograd``.

    Args:
        net (nn.Module): The network (its parameters are not used, ``params`` are).
        params (dict[str, Tensor]): Meta-parameters θ, requiring grad.
        tasks (tuple[Tensor, Tensor, Tensor, Tensor]): ``support_lq`` (T, S, C, h, w), ``support_gt``
            (T, S, C, H, W), ``query_lq`` (T, Q, C, h, w), ``query_gt`` (T, Q, C, H, W).
        inner_lr (float | Tensor): Inner SGD step size α (a number or 0-dim tensor), or per-step, per-tensor step
            sizes of shape (inner_steps, len(params)) (columns in ``params`` order; MAML++'s LSLR). When that
            tensor requires grad, its meta-gradient is returned too, under ``'inner_lr'``.
        inner_steps (int): Inner steps n.
        weights (Sequence[float]): n query-loss weights.
        second_order (bool): Differentiate through the inner gradients.

    Returns:
        tuple[dict[str, Tensor], Tensor, Tensor, Tensor]: Gradients of the mean weighted query loss w.r.t. θ (and
        learned step sizes), the
        meta-loss (scalar), support losses before each step (n,) and query losses before adaptation and after
        each step (n + 1,), all averaged over tasks.
    """
    support_lq, support_gt, query_lq, query_gt = tasks
    num_tasks = support_lq.shape[0]
    inputs = dict(params, **_learned_lr(inner_lr))
    grads = {name: torch.zeros_like(p) for name, p in inputs.items()}
    meta_loss_sum = support_sum = query_sum = 0
    for t in range(num_tasks):
        with torch.no_grad():
            query_losses = [l1_loss(forward(net, params, query_lq[t]), query_gt[t])]
        support_losses, meta_loss, fast = [], 0, params
        for step in range(inner_steps):
            fast, support_loss = sgd_step(net, fast, support_lq[t], support_gt[t], step_lr(inner_lr, step, params),
                                          second_order)
            query_loss = l1_loss(forward(net, fast, query_lq[t]), query_gt[t])
            meta_loss = meta_loss + weights[step] * query_loss
            support_losses.append(support_loss.detach())
            query_losses.append(query_loss.detach())
        task_grads = torch.autograd.grad(meta_loss / num_tasks, tuple(inputs.values()))
        for name, g in zip(inputs, task_grads):
            grads[name] += g
        meta_loss_sum += meta_loss.detach()
        support_sum = support_sum + torch.stack(support_losses)
        query_sum = query_sum + torch.stack(query_losses)
    return grads, meta_loss_sum / num_tasks, support_sum / num_tasks, query_sum / num_tasks


def _task_meta_loss(net, inner_lr, weights, second_order, params, support_lq, support_gt, query_lq, query_gt):
    """Weighted query loss of one task, written for ``torch.func`` (see :func:`meta_gradients_batched`)."""

    def support_loss(p):
        return l1_loss(functional_call(net, p, (support_lq, )), support_gt)

    query_losses = [l1_loss(functional_call(net, params, (query_lq, )), query_gt)]
    support_losses, meta_loss, fast = [], 0, params
    for step in range(len(weights)):
        inner_grads, loss = grad_and_value(support_loss)(fast)
        if not second_order:
            inner_grads = {name: g.detach() for name, g in inner_grads.items()}
        fast = sgd_update(fast, inner_grads, step_lr(inner_lr, step, params))
        query_loss = l1_loss(functional_call(net, fast, (query_lq, )), query_gt)
        meta_loss = meta_loss + weights[step] * query_loss
        support_losses.append(loss)
        query_losses.append(query_loss)
    return meta_loss, (torch.stack(support_losses), torch.stack(query_losses))


def meta_gradients_batched(net, params, tasks, inner_lr, inner_steps, weights, second_order):
    """Same result as :func:`meta_gradients_loop`, with all tasks vectorised by ``torch.func.vmap``.

    Args and Returns: as :func:`meta_gradients_loop`.
    """
    weights = list(weights)[:inner_steps]
    learned = _learned_lr(inner_lr)

    def task_loss(inputs, *task):
        lr = inputs['inner_lr'] if learned else inner_lr
        return _task_meta_loss(net, lr, weights, second_order, {k: v for k, v in inputs.items() if k in params}, *task)

    def mean_meta_loss(inputs):
        losses, (support_losses, query_losses) = vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(inputs, *tasks)
        mean = losses.mean()
        return mean, (mean.detach(), support_losses.detach().mean(0), query_losses.detach().mean(0))

    grads, (meta_loss, support_losses, query_losses) = grad(mean_meta_loss, has_aux=True)(dict(params, **learned))
    return grads, meta_loss, support_losses, query_losses


def assign_meta_gradients(params, grads, learned=None, inner_lr=None):
    """Sets ``.grad`` of the meta-parameters from an engine's meta-gradients, without a host sync.

    Args:
        params (dict[str, Tensor]): Meta-parameters θ.
        grads (dict[str, Tensor]): The engine's gradients; ``'inner_lr'`` (w.r.t. the step sizes) is popped.
        learned (LearnedInnerLR | None): Learned log step sizes: their gradient is chained through ``exp``.
        inner_lr (Tensor | None): The step sizes the engine ran with (``learned()``, detached).

    Returns:
        Tensor: L2 norm of the network's meta-gradient; NaN when the step sizes' gradient is not finite, so one
        finiteness check of the norm covers both.
    """
    if learned is not None:
        learned.log_lr.grad = grads.pop('inner_lr') * inner_lr.detach()
    for name, p in params.items():
        p.grad = grads[name]
    grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
    if learned is not None:
        grad_norm = torch.where(torch.isfinite(learned.log_lr.grad).all(), grad_norm, torch.nan)
    return grad_norm


META_ENGINES = {'loop': meta_gradients_loop, 'batched': meta_gradients_batched}


def select_meta_engine(name, device):
    """Picks the meta-gradient implementation.

    Args:
        name (str): ``'auto'`` (batched on CUDA, loop elsewhere), ``'loop'`` or ``'batched'``.
        device (torch.device): Training device.

    Returns:
        callable: :func:`meta_gradients_loop` or :func:`meta_gradients_batched`.
    """
    if name == 'auto':
        name = 'batched' if torch.device(device).type == 'cuda' else 'loop'
    if name not in META_ENGINES:
        raise ValueError(f"train.meta_engine must be one of 'auto', {', '.join(map(repr, META_ENGINES))}; "
                         f'got {name!r}')
    return META_ENGINES[name]
