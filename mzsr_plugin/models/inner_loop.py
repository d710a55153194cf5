"""The few SGD steps that MAML's inner loop and test-time adaptation share.

Parameters are a dict of tensors and the network runs through :func:`torch.func.functional_call`, so nothing is
updated in place: meta-training differentiates through the steps (second order, or first order), while the
meta-test runs the same :func:`sgd_step` without a graph. Any BasicSR arch works, since only its forward is used.
"""
import math
import torch
from torch.func import functional_call
from torch.nn import functional as F


def l1_loss(pred, target, mask=None):
    """Mean absolute error, the loss of every MZSR stage.

    Args:
        pred (Tensor): Shape (N, C, H', W') with H' >= H, W' >= W (extra rows/cols are cropped).
        target (Tensor): Shape (N, C, H, W).
        mask (Tensor | None): Shape (N, 1, H, W), 1 where a pixel counts and 0 where it is held out (the
            self-check's crops); None: every pixel.

    Returns:
        Tensor: Scalar, the mean over the pixels that count.
    """
    pred = pred[..., :target.shape[-2], :target.shape[-1]]
    if mask is None:
        return F.l1_loss(pred, target)
    return ((pred - target).abs() * mask).sum() / (mask.sum() * target.shape[1])


def forward(net, params, lq):
    """Runs ``net`` with ``params`` in place of its own parameters (buffers are the module's).

    Args:
        net (nn.Module): Any SR network taking LR images.
        params (dict[str, Tensor]): Parameters by name.
        lq (Tensor): Shape (N, C, h, w).

    Returns:
        Tensor: The network's output, shape (N, C, h * s, w * s).
    """
    return functional_call(net, params, (lq, ))


def sgd_step(net, params, lq, gt, lr, create_graph, mask=None):
    """One plain SGD step on ``l1(net(lq), gt)``, returning new tensors (no in-place update).

    Args:
        net (nn.Module): The network.
        params (dict[str, Tensor]): Current parameters; they must require grad.
        lq (Tensor): Inputs, shape (N, C, h, w).
        gt (Tensor): Targets, shape (N, C, H, W).
        lr (float | dict[str, float | Tensor]): Step size, or one per parameter tensor (learned per-layer step
            sizes, MAML++'s LSLR); a tensor step size may require grad, so meta-training learns it.
        create_graph (bool): Keep the graph of the gradient, for second-order meta-gradients.
        mask (Tensor | None): Pixels of ``gt`` the loss counts, shape (N, 1, H, W) (see :func:`l1_loss`).

    Returns:
        tuple[dict[str, Tensor], Tensor]: Updated parameters (still connected to ``params``) and the loss
        before the step (scalar).
    """
    loss = l1_loss(forward(net, params, lq), gt, mask)
    grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=create_graph)
    return sgd_update(params, dict(zip(params, grads)), lr), loss


def sgd_update(params, grads, lr):
    """``p - lr * g`` for every parameter, with one step size or one per parameter tensor (new tensors).

    Args:
        params (dict[str, Tensor]): Parameters.
        grads (dict[str, Tensor]): Their gradients, by the same names.
        lr (float | Tensor | dict[str, float | Tensor]): Step size, or step sizes by parameter name.

    Returns:
        dict[str, Tensor]: Updated parameters.
    """
    if isinstance(lr, dict):
        return {name: p - lr[name] * grads[name] for name, p in params.items()}
    return {name: p - lr * grads[name] for name, p in params.items()}


def detached_params(net):
    """A fresh, grad-requiring copy of a network's parameters, for adaptation that leaves ``net`` untouched.

    Args:
        net (nn.Module): The network.

    Returns:
        dict[str, Tensor]: Leaf tensors by parameter name.
    """
    return {name: p.detach().clone().requires_grad_(True) for name, p in net.named_parameters()}


def adapt(net, params, lq, gt, lrs, on_step=None, mask=None):
    """Test-time adaptation: ``len(lrs)`` SGD steps on (lq -> gt) without a graph through the steps.

    Args:
        net (nn.Module): The network (its own parameters are not changed).
        params (dict[str, Tensor]): Starting parameters (e.g. from :func:`detached_params`).
        lq (Tensor): Inputs, e.g. the son, shape (N, C, h, w).
        gt (Tensor): Targets, e.g. the LR father, shape (N, C, H, W).
        lrs (Sequence[float | dict[str, float]]): One step size per step, or per step one per parameter tensor.
        on_step (callable | None): Called as ``on_step(step, params, loss)`` after each step (1-based), with the
            updated parameters and the loss before that step.
        mask (Tensor | None): Pixels of ``gt`` to learn from, shape (N, 1, H, W); the rest is held out.

    Returns:
        dict[str, Tensor]: Adapted parameters (leaf tensors that require grad).
    """
    with torch.enable_grad():
        for step, lr in enumerate(lrs, start=1):
            params, loss = sgd_step(net, params, lq, gt, lr, create_graph=False, mask=mask)
            params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
            if on_step is not None:
                on_step(step, params, loss.detach())
    return params


def lr_schedule(spec, steps):
    """Expands a per-step learning-rate list (its last value repeats) to ``steps`` values.

    Args:
        spec (float | Sequence[float | dict[str, float]]): One lr, or lrs for the first steps (each a number, or
            a dict of per-tensor step sizes as :func:`load_inner_lrs` gives them).
        steps (int): Number of steps.

    Returns:
        list[float | dict[str, float]]: ``steps`` learning rates.
    """
    if isinstance(spec, (int, float)):
        values = [float(spec)]
    else:
        values = [dict(v) if isinstance(v, dict) else float(v) for v in spec]
    if not values:
        raise ValueError('learning-rate schedule is empty')
    return [values[min(i, len(values) - 1)] for i in range(steps)]


class LearnedInnerLR(torch.nn.Module):
    """Meta-learned step sizes, one per inner step and parameter tensor (MAML++'s LSLR), kept as logarithms.

    Learning log step sizes keeps them positive (a negative step would climb the loss) and lets Adam change them
    by a similar factor whatever their size. Saved beside the network in a weights file as ``inner_lrs``
    (``{'log_lr': (steps, P)}``, columns in the network's ``named_parameters()`` order) and used at test time.

    Args:
        names (Sequence[str]): Parameter names of the network, in ``named_parameters()`` order.
        steps (int): Inner steps.
        init (float): Initial step size of every entry.
    """

    def __init__(self, names, steps, init):
        super().__init__()
        self.names = list(names)
        self.log_lr = torch.nn.Parameter(torch.full((steps, len(self.names)), math.log(init)))

    def forward(self):
        """Returns the step sizes, shape (steps, P)."""
        return self.log_lr.exp()

    def as_dicts(self):
        """One ``{name: step size}`` dict of floats per step, as :func:`adapt` takes them."""
        values = self.log_lr.detach().exp().cpu().tolist()
        return [dict(zip(self.names, row)) for row in values]


def load_inner_lrs(state, names):
    """The learned step sizes a weights file carries (key ``inner_lrs``, see :class:`LearnedInnerLR`).

    Args:
        state (dict): A loaded ``.pth``.
        names (Sequence[str]): The network's parameter names, in ``named_parameters()`` order.

    Returns:
        list[dict[str, float]] | None: One dict per step, or None when the weights carry no learned step sizes.
    """
    table = state.get('inner_lrs') if isinstance(state, dict) else None
    if not table:
        return None
    log_lr = table['log_lr']
    if log_lr.ndim != 2 or log_lr.shape[1] != len(names):
        raise ValueError(f'inner_lrs.log_lr has shape {tuple(log_lr.shape)}, expected (steps, {len(names)}) for a '
                         f'network with {len(names)} parameter tensors')
    learned = LearnedInnerLR(names, log_lr.shape[0], 1.0)
    learned.load_state_dict(table)
    return learned.as_dicts()
