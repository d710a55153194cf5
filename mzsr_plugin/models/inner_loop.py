"""The few SGD steps that MAML's inner loop and test-time adaptation share.

Parameters are a dict of tensors and the network runs through :func:`torch.func.functional_call`, so nothing is
updated in place: meta-training differentiates through the steps (second order, or first order), while the
meta-test runs the same :func:`sgd_step` without a graph. Any BasicSR arch works, since only its forward is used.
"""
import torch
from torch.func import functional_call
from torch.nn import functional as F


def l1_loss(pred, target):
    """Mean absolute error, the loss of every MZSR stage.

    Args:
        pred (Tensor): Shape (N, C, H', W') with H' >= H, W' >= W (extra rows/cols are cropped).
        target (Tensor): Shape (N, C, H, W).

    Returns:
        Tensor: Scalar.
    """
    return F.l1_loss(pred[..., :target.shape[-2], :target.shape[-1]], target)


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


def sgd_step(net, params, lq, gt, lr, create_graph):
    """One plain SGD step on ``l1(net(lq), gt)``, returning new tensors (no in-place update).

    Args:
        net (nn.Module): The network.
        params (dict[str, Tensor]): Current parameters; they must require grad.
        lq (Tensor): Inputs, shape (N, C, h, w).
        gt (Tensor): Targets, shape (N, C, H, W).
        lr (float): Step size.
        create_graph (bool): Keep the graph of the gradient, for second-order meta-gradients.

    Returns:
        tuple[dict[str, Tensor], Tensor]: Updated parameters (still connected to ``params``) and the loss
        before the step (scalar).
    """
    loss = l1_loss(forward(net, params, lq), gt)
    grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=create_graph)
    return {name: p - lr * g for (name, p), g in zip(params.items(), grads)}, loss


def detached_params(net):
    """A fresh, grad-requiring copy of a network's parameters, for adaptation that leaves ``net`` untouched.

    Args:
        net (nn.Module): The network.

    Returns:
        dict[str, Tensor]: Leaf tensors by parameter name.
    """
    return {name: p.detach().clone().requires_grad_(True) for name, p in net.named_parameters()}


def adapt(net, params, lq, gt, lrs, on_step=None):
    """Test-time adaptation: ``len(lrs)`` SGD steps on (lq -> gt) without a graph through the steps.

    Args:
        net (nn.Module): The network (its own parameters are not changed).
        params (dict[str, Tensor]): Starting parameters (e.g. from :func:`detached_params`).
        lq (Tensor): Inputs, e.g. the son, shape (N, C, h, w).
        gt (Tensor): Targets, e.g. the LR father, shape (N, C, H, W).
        lrs (Sequence[float]): One step size per step.
        on_step (callable | None): Called as ``on_step(step, params, loss)`` after each step (1-based), with the
            updated parameters and the loss before that step.

    Returns:
        dict[str, Tensor]: Adapted parameters (leaf tensors that require grad).
    """
    with torch.enable_grad():
        for step, lr in enumerate(lrs, start=1):
            params, loss = sgd_step(net, params, lq, gt, lr, create_graph=False)
            params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
            if on_step is not None:
                on_step(step, params, loss.detach())
    return params


def lr_schedule(spec, steps):
    """Expands a per-step learning-rate list (its last value repeats) to ``steps`` values.

    Args:
        spec (float | Sequence[float]): One lr, or lrs for the first steps.
        steps (int): Number of steps.

    Returns:
        list[float]: ``steps`` learning rates.
    """
    values = [float(spec)] if isinstance(spec, (int, float)) else [float(v) for v in spec]
    if not values:
        raise ValueError('learning-rate schedule is empty')
    return [values[min(i, len(values) - 1)] for i in range(steps)]
