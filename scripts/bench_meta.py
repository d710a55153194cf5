#!/usr/bin/env python
"""Seconds per meta-iteration of MZSR's MAML step, beside a plain reference loop, in one run.

Sizes default to the official ones: 5 tasks x 8 support + 8 query HR patches of 64x64 (x2), 5 inner steps, the
8-layer 64-feature MZSRNet. Measured side by side:

- ``reference``: a plain per-task Python loop written here (``F.conv2d`` on a list of weights, ``autograd.grad``),
  the way one would write MAML without the plugin;
- ``loop`` and ``batched``: the plugin's two engines (task by task, and all tasks through ``torch.func.vmap``),
- on CUDA, ``graphed``: the whole meta-update (batched engine and Adam step) replayed as one CUDA graph
  (:class:`~mzsr_plugin.models.cuda_graphs.GraphedMetaUpdate`), and ``batched TF32``, with the relative difference
  of its meta-gradient from float32 on the same tasks,

each second order and first order. Achieved GFLOP/s use the FLOPs that ``torch.utils.flop_counter`` counts for one
iteration (convolutions and their first and second derivatives), beside a large matmul's GFLOP/s on the same device.

``--precision`` adds the loop engine with float32 channels_last weights and with bf16 autocast
(:mod:`mzsr_plugin.precision`) and the relative error of their second-order meta-gradients against float32 NCHW.

    python scripts/bench_meta.py [--device cuda] [--iters 3] [--precision]
"""
import argparse
import time
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.models.cuda_graphs import GraphedMetaUpdate
from mzsr_plugin.models.meta_learning import meta_gradients_batched, meta_gradients_loop, multi_step_loss_weights
from mzsr_plugin.precision import Precision, hardware_line, resolve_precision
from mzsr_plugin.utils.matlab_resize import imresize_pt


def reference_meta_step(weights, tasks, inner_lr, inner_steps, loss_weights, second_order):
    """MAML on a plain list of conv weights/biases, one task after another (the baseline to beat)."""

    def net(x, w):
        base = imresize_pt(x, 2)
        out = base
        for i in range(0, len(w) - 2, 2):
            out = F.relu(F.conv2d(out, w[i], w[i + 1], padding=1))
        return base + F.conv2d(out, w[-2], w[-1], padding=1)

    grads = [torch.zeros_like(w) for w in weights]
    for s_lq, s_gt, q_lq, q_gt in zip(*tasks):
        fast, meta_loss = weights, 0
        for step in range(inner_steps):
            loss = F.l1_loss(net(s_lq, fast), s_gt)
            g = torch.autograd.grad(loss, fast, create_graph=second_order)
            fast = [w - inner_lr * gi for w, gi in zip(fast, g)]
            meta_loss = meta_loss + loss_weights[step] * F.l1_loss(net(q_lq, fast), q_gt)
        for acc, g in zip(grads, torch.autograd.grad(meta_loss / len(tasks[0]), weights)):
            acc += g
    return grads


def sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


def time_it(fn, device, iters):
    fn()  # warm-up (kernel selection, allocator)
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def count_flops(fn):
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_gflops(device, size, iters=10):
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = time_it(lambda: a @ b, device, iters)
    return 2 * size**3 / seconds / 1e9


def graphed_step(net, tasks, steps, loss_weights, second_order):
    """A replayable whole meta-update on a copy of ``net`` (Adam at lr 0, so every replay sees the same weights)."""
    copy = MZSRNet().to(next(net.parameters()).device)
    copy.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(copy.parameters(), lr=0.0, capturable=True)
    update = GraphedMetaUpdate(copy, optimizer, meta_gradients_batched, steps)
    return lambda: update.step(tasks, loss_weights, 1e-2, second_order)


def with_tf32(fn, enabled):
    """Runs ``fn`` with TF32 matmuls and convolutions on or off, restoring the previous flags."""

    def run():
        flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
        try:
            return fn()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags

    return run


def with_precision(net, params, tasks, steps, loss_weights, second_order, precision):
    """The loop engine's meta-gradients under a precision policy (its layout of the weights, its autocast)."""
    laid = precision.params(params)

    def run():
        with precision.steps():
            return meta_gradients_loop(net, laid, tasks, 1e-2, steps, loss_weights, second_order)

    return run


def relative_error(grads, reference):
    """Relative L2 distance of two meta-gradients (dicts of tensors by parameter name)."""
    difference = torch.linalg.vector_norm(torch.cat([(grads[k].float() - reference[k]).flatten() for k in reference]))
    return float(difference / torch.linalg.vector_norm(torch.cat([v.flatten() for v in reference.values()])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--tasks', type=int, default=5)
    parser.add_argument('--shots', type=int, default=8, help='support = query patches per task')
    parser.add_argument('--patch', type=int, default=64, help='HR patch size')
    parser.add_argument('--steps', type=int, default=5, help='inner steps')
    parser.add_argument('--iters', type=int, default=2, help='timed iterations per variant (after one warm-up)')
    parser.add_argument('--matmul-size', type=int, default=None)
    parser.add_argument('--precision', action='store_true',
                        help='add the loop engine in float32 channels_last and in bf16 (mzsr_plugin.precision) and '
                        'the relative error of their meta-gradients against float32 NCHW')
    parser.add_argument('--only', nargs='+', metavar='TEXT',
                        help='run only the variants whose name contains all of these, e.g. loop 2nd (the first '
                        'one run of each order is the "vs reference" baseline)')
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = MZSRNet().to(device)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    weights = list(params.values())
    lq = args.patch // 2
    tasks = tuple(
        torch.rand(args.tasks, args.shots, 3, size, size, device=device)
        for size in (lq, args.patch, lq, args.patch))
    loss_weights = multi_step_loss_weights(args.steps, 0)
    variants, flops_of = {}, {}
    for order, second in (('2nd', True), ('1st', False)):

        def batched(second=second):
            return meta_gradients_batched(net, params, tasks, 1e-2, args.steps, loss_weights, second)

        variants[f'reference ({order} order)'] = (
            lambda second=second: reference_meta_step(weights, tasks, 1e-2, args.steps, loss_weights, second))
        variants[f'loop ({order} order)'] = (
            lambda second=second: meta_gradients_loop(net, params, tasks, 1e-2, args.steps, loss_weights, second))
        variants[f'batched ({order} order)'] = with_tf32(batched, False)
        if device.type == 'cuda':
            variants[f'batched TF32 ({order})'] = with_tf32(batched, True)
            variants[f'graphed ({order} order)'] = with_tf32(
                graphed_step(net, tasks, args.steps, loss_weights, second), False)
            # Kernels replayed from a graph are invisible to the FLOP counter: count its eager twin.
            flops_of[f'graphed ({order} order)'] = variants[f'batched ({order} order)']

    policies = {}
    if args.precision:
        policies = {
            'channels_last': Precision('fp32', True, 'fp32', 'bench', device.type),
            'bf16': resolve_precision('bf16', device)
        }
        for order, second in (('2nd', True), ('1st', False)):
            for label, policy in policies.items():
                variants[f'loop {label} ({order})'] = with_precision(net, params, tasks, args.steps, loss_weights,
                                                                     second, policy)
    if args.only:
        variants = {name: fn for name, fn in variants.items() if all(text in name for text in args.only)}
    matmul = matmul_gflops(device, args.matmul_size or (8192 if device.type == 'cuda' else 2048))
    print(f'device: {hardware_line(device)}, torch {torch.__version__}')
    print(f'sizes: {args.tasks} tasks x {args.shots}+{args.shots} patches {args.patch}x{args.patch}, '
          f'{args.steps} inner steps; matmul {matmul:.1f} GFLOP/s')
    # Rows print as they are measured, so a run cut short still reports what it finished.
    print(f'\n{"variant":<26} {"s/iter":>8} {"GFLOP/s":>8} {"% matmul":>9} {"vs reference":>13}', flush=True)
    reference = {}
    for name, fn in variants.items():
        try:
            flops = count_flops(flops_of.get(name, fn))
            seconds = time_it(fn, device, args.iters)
        except RuntimeError as error:  # e.g. out of memory: report the row instead of losing the table
            print(f'{name:<26} {"failed":>8}  {str(error).splitlines()[0][:60]}', flush=True)
            continue
        order = '2nd' if '2nd' in name else '1st'
        reference.setdefault(order, seconds)  # the reference row of each order comes first
        gflops = flops / seconds / 1e9
        print(f'{name:<26} {seconds:>8.3f} {gflops:>8.1f} {100 * gflops / matmul:>8.1f}% '
              f'{reference[order] / seconds:>12.2f}x', flush=True)
    if policies:
        fp32 = meta_gradients_loop(net, params, tasks, 1e-2, args.steps, loss_weights, True)[0]
        for label, policy in policies.items():
            grads = with_precision(net, params, tasks, args.steps, loss_weights, True, policy)()[0]
            print(f'precision: {label} second-order meta-gradient differs from float32 NCHW by '
                  f'{relative_error(grads, fp32):.2e} (relative L2, same tasks)')
    if device.type == 'cuda':
        fp32 = with_tf32(lambda: meta_gradients_batched(net, params, tasks, 1e-2, args.steps, loss_weights, True),
                         False)()[0]
        tf32 = with_tf32(lambda: meta_gradients_batched(net, params, tasks, 1e-2, args.steps, loss_weights, True),
                         True)()[0]
        difference = torch.linalg.vector_norm(torch.cat([(tf32[k] - fp32[k]).flatten() for k in fp32]))
        norm = torch.linalg.vector_norm(torch.cat([fp32[k].flatten() for k in fp32]))
        print(f'\nprecision: TF32 second-order meta-gradient differs from float32 by {float(difference / norm):.2e} '
              '(relative L2, same tasks)')


if __name__ == '__main__':
    main()
