"""CUDA-graph capture of the meta-update and of test-time adaptation, for fixed shapes.

MZSR's net is tiny: on a large GPU a second-order meta-iteration is thousands of small kernel launches, so the
chip idles between them. A CUDA graph records the launches of one whole step once and replays them with one call.
What a graph needs, and what this module provides:

- static input buffers (tasks, or son and father), refilled before each replay;
- every number that changes between replays as a device tensor copied in before the replay: the MAML++ loss
  weights, the inner step size(s), the learning rate of each optimizer parameter group (a Python float would be
  baked into the graph);
- an optimizer whose step can be captured (``torch.optim.Adam(..., capturable=True)``);
- warm-up on a side stream before capture (allocator, cuDNN algorithm choice), with the parameters and optimizer
  state restored afterwards, so the warm-up does not count as training;
- a first-order and a second-order graph sharing one memory pool (the first-order warm-up then second order).

A non-finite meta-loss cannot branch inside a graph: the graph saves the parameters and optimizer state before its
Adam step and the host restores them after the replay when the step was not finite (one sync per iteration, as the
eager path has). ``capture=False`` runs the very same code eagerly on any device, which is how the CPU tests check it
against the eager engines; the capture itself needs CUDA.
"""
import torch

from .inner_loop import forward, l1_loss, sgd_step
from .meta_learning import assign_meta_gradients


def graphs_available(device):
    """Whether CUDA graphs can be used on ``device`` (a CUDA device of a build with graph support)."""
    return torch.device(device).type == 'cuda' and torch.cuda.is_available() and hasattr(torch.cuda, 'CUDAGraph')


class _Replayable:
    """Runs ``body`` eagerly, or records it once in a CUDA graph and replays it."""

    def __init__(self, body, capture, pool=None, warmup=2, save=None, restore=None):
        self.body, self.capture, self.pool, self.warmup = body, capture, pool, warmup
        self.save, self.restore = save, restore
        self.graph = None

    def __call__(self):
        if not self.capture:
            return self.body()
        if self.graph is None:
            snapshot = self.save() if self.save else None
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(self.warmup):
                    self.body()
            torch.cuda.current_stream().wait_stream(stream)
            if snapshot is not None:
                self.restore(snapshot)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=self.pool):
                self.outputs = self.body()
        self.graph.replay()
        return self.outputs


class GraphedMetaUpdate:
    """One whole meta-update (meta-gradient and optimizer step) for a fixed task-batch shape.

    Args:
        net (nn.Module): The network; its own parameters are updated by ``optimizer``.
        optimizer (torch.optim.Optimizer): The meta-optimizer (Adam with ``capturable=True`` when capturing).
        engine (callable): :func:`~mzsr_plugin.models.meta_learning.meta_gradients_batched` or ``..._loop``.
        inner_steps (int): Inner steps n.
        learned (LearnedInnerLR | None): Learned step sizes (a parameter of ``optimizer``), or None.
        grad_clip_norm (float | None): Clip the meta-gradient of the network to this norm.
        capture (bool): Record CUDA graphs (needs CUDA); False runs the same code eagerly.
    """

    def __init__(self, net, optimizer, engine, inner_steps, learned=None, grad_clip_norm=None, capture=True):
        self.net, self.optimizer, self.engine, self.inner_steps = net, optimizer, engine, inner_steps
        self.learned, self.grad_clip_norm, self.capture = learned, grad_clip_norm, capture
        self.params = dict(net.named_parameters())
        device = next(net.parameters()).device
        self.weights = torch.zeros(inner_steps, device=device)
        self.inner_lr = torch.zeros((), device=device)
        self.group_lrs = [torch.zeros((), device=device) for _ in optimizer.param_groups]
        self.tasks = None
        self.pool = torch.cuda.graph_pool_handle() if capture else None
        self.runs = {}

    # The tensors the optimizer owns: parameters, then every state tensor (exp_avg, exp_avg_sq, step).
    def _owned(self):
        tensors = []
        for group in self.optimizer.param_groups:
            for p in group['params']:
                tensors.append(p)
                tensors += [v for v in self.optimizer.state.get(p, {}).values() if torch.is_tensor(v)]
        return tensors

    def _save(self):
        return {id(t): t.detach().clone() for t in self._owned()}

    def _restore(self, snapshot):
        # State that did not exist at the snapshot (Adam creates it at its first step) goes back to Adam's start.
        with torch.no_grad():
            for t in self._owned():
                t.copy_(snapshot[id(t)]) if id(t) in snapshot else t.zero_()

    def _body(self, second_order):
        lr = self.learned().detach().requires_grad_(True) if self.learned is not None else self.inner_lr
        grads, meta_loss, support, query = self.engine(self.net, self.params, self.tasks, lr, self.inner_steps,
                                                       self.weights, second_order)
        grad_norm = assign_meta_gradients(self.params, grads, self.learned, lr)
        finite = torch.isfinite(meta_loss) & torch.isfinite(grad_norm)
        before = self._save()
        if self.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(self.params.values(), float(self.grad_clip_norm))
        # The groups' lrs are device tensors while the step is recorded, so a scheduler's new value is used.
        floats = [group['lr'] for group in self.optimizer.param_groups]
        for group, tensor in zip(self.optimizer.param_groups, self.group_lrs):
            group['lr'] = tensor
        try:
            self.optimizer.step()
        finally:
            for group, value in zip(self.optimizer.param_groups, floats):
                group['lr'] = value
        return meta_loss.detach(), support, query, grad_norm.detach(), finite, before

    def step(self, tasks, weights, inner_lr, second_order):
        """Runs one meta-update on ``tasks`` (copied into the static buffers).

        Args:
            tasks (tuple[Tensor, Tensor, Tensor, Tensor]): As the engines take them; one shape per instance.
            weights (Sequence[float]): Loss weights of this iteration.
            inner_lr (float): Fixed inner step size (ignored with learned step sizes).
            second_order (bool): Which of the two graphs to replay.

        Returns:
            tuple: meta-loss, support losses (n,), query losses (n + 1,), grad norm, and whether the step was finite
            (False: parameters and optimizer state were restored, the update skipped).
        """
        if self.tasks is None:
            self.tasks = tuple(t.clone() for t in tasks)
        elif any(a.shape != b.shape for a, b in zip(self.tasks, tasks)):
            raise ValueError(f'GraphedMetaUpdate: task shapes changed from {[tuple(t.shape) for t in self.tasks]} '
                             f'to {[tuple(t.shape) for t in tasks]}; a graph replays one shape')
        for static, new in zip(self.tasks, tasks):
            static.copy_(new, non_blocking=True)
        self.weights.copy_(torch.as_tensor(list(weights)[:self.inner_steps], dtype=self.weights.dtype),
                           non_blocking=True)
        self.inner_lr.fill_(float(inner_lr))
        for group, tensor in zip(self.optimizer.param_groups, self.group_lrs):
            tensor.fill_(float(group['lr']))
        if second_order not in self.runs:
            self.runs[second_order] = _Replayable(lambda: self._body(second_order), self.capture, self.pool,
                                                  save=self._save, restore=self._restore)
        meta_loss, support, query, grad_norm, finite, before = self.runs[second_order]()
        finite = bool(finite)
        if not finite:
            self._restore(before)
        return meta_loss, support, query, grad_norm, finite


class GraphedAdaptation:
    """Test-time adaptation and SR of one image shape: ``steps`` SGD steps on (son -> father), then SR of ``lr``.

    Args:
        net (nn.Module): The network (not changed), at the scale of the images.
        steps (int): Adaptation steps.
        capture (bool): Record a CUDA graph (needs CUDA); False runs the same code eagerly.
    """

    def __init__(self, net, steps, capture=True):
        self.net, self.steps, self.capture = net, steps, capture
        self.names = [name for name, _ in net.named_parameters()]
        device = next(net.parameters()).device
        self.lrs = torch.zeros(max(steps, 1), len(self.names), device=device)
        self.buffers = None
        self.run = None

    def _body(self):
        son, father, lr = self.buffers
        params = {name: p.detach().clone().requires_grad_(True) for name, p in self.net.named_parameters()}
        with torch.enable_grad():
            for step in range(self.steps):
                step_lrs = {name: self.lrs[step, i] for i, name in enumerate(self.names)}
                params, _ = sgd_step(self.net, params, son, father, step_lrs, create_graph=False)
                params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
        with torch.no_grad():
            return forward(self.net, params, lr), l1_loss(forward(self.net, params, son), father)

    def __call__(self, son, father, lr, lrs):
        """Adapts and super-resolves.

        Args:
            son (Tensor): Shape (N, C, h', w'). father (Tensor): Shape (N, C, h, w). lr (Tensor): Shape (1, C, h, w).
            lrs (Sequence[float | dict[str, float]]): One step size (or per-tensor step sizes) per step.

        Returns:
            tuple[Tensor, Tensor]: SR of ``lr`` (1, C, H, W) (a static buffer: clone it to keep it) and the
            adaptation loss after the last step.
        """
        if self.buffers is None:
            self.buffers = (son.clone(), father.clone(), lr.clone())
            self.run = _Replayable(self._body, self.capture)
        elif any(a.shape != b.shape for a, b in zip(self.buffers, (son, father, lr))):
            raise ValueError('GraphedAdaptation replays one image shape; build one per shape')
        for static, new in zip(self.buffers, (son, father, lr)):
            static.copy_(new, non_blocking=True)
        table = [[step[name] for name in self.names] if isinstance(step, dict) else [step] * len(self.names)
                 for step in lrs]
        if table:
            self.lrs.copy_(torch.as_tensor(table, dtype=self.lrs.dtype), non_blocking=True)
        return self.run()
