"""Numeric precision and memory layout of the convolutions: ``--precision auto|fp32|bf16`` (``val.adapt.precision``,
``train.precision``).

- ``fp32``: float32, contiguous NCHW tensors: the reference, bit for bit the outputs of earlier releases (the
  official-parity checks run in it).
- ``bf16``: the SGD steps (test-time adaptation, ZSSR's training, meta-training and pretraining) run their hidden
  convolutions in bfloat16 under autocast, with float32 master weights, loss and update;
  :class:`~mzsr_plugin.archs.mzsr_arch.MZSRNet` keeps its bicubic base, first and last convs and residual sum in
  float32, and the final SR forward stays float32 (``python scripts/bench_adapt.py --precision`` measures each
  choice against the reference; docs/speed.md). Tensors are channels_last, the layout oneDNN's bf16 kernels run.
- ``auto``: ``bf16`` where the hardware has bfloat16 units (a CPU with AMX or AVX512-BF16, a CUDA GPU with bf16),
  else float32 channels_last on CPU (oneDNN's blocked fp32 kernels: faster than NCHW on the CPUs measured) and the
  ``fp32`` reference on other devices. Without those units bf16 is emulated and several times slower.

Only parameter dicts and inputs are laid out (:meth:`Precision.params`, :meth:`Precision.layout`); a module's own
parameters change layout only for training (:meth:`Precision.prepare_module`), where the optimizer owns them.
"""
import contextlib
import torch
from dataclasses import dataclass

PRECISIONS = ('auto', 'fp32', 'bf16')


def bf16_hardware(device):
    """Whether ``device`` computes bfloat16 natively, and what says so.

    Args:
        device (str | torch.device): A device.

    Returns:
        tuple[bool, str]: The answer and the reason, e.g. ``(False, 'CPU without AMX / AVX512-BF16')``.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return True, f'{torch.cuda.get_device_name(device)} computes bf16'
        return False, 'CUDA device without bf16'
    if device.type != 'cpu':
        return False, f'{device.type}: not measured'
    capabilities = torch.cpu.get_capabilities()
    native = [name for name in ('amx_bf16', 'avx512_bf16') if capabilities.get(name)]
    if native:
        return True, f'CPU with {" and ".join(n.upper().replace("_", "-", 1) for n in native)}'
    return False, 'CPU without AMX / AVX512-BF16'


@dataclass(frozen=True)
class Precision:
    """A resolved precision policy.

    Attributes:
        name (str): ``'fp32'`` or ``'bf16'``: the dtype of the SGD steps' convolutions.
        channels_last (bool): Tensors and parameters laid out channels_last.
        requested (str): What was asked (``'auto'``, ``'fp32'`` or ``'bf16'``).
        reason (str): Why ``auto`` chose it (the hardware), or ``'asked for'``.
        device_type (str): ``'cpu'`` or ``'cuda'``: autocast's device.
    """
    name: str
    channels_last: bool
    requested: str
    reason: str
    device_type: str = 'cpu'

    @property
    def memory_format(self):
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def layout(self, x):
        """``x`` in this policy's layout (4-D tensors only; others as they are).

        Args:
            x (Tensor): E.g. an image batch, shape (N, C, H, W).

        Returns:
            Tensor: Same values and shape.
        """
        return x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x

    def params(self, params):
        """A parameter dict laid out for this policy (new leaf tensors that require grad when laid out anew).

        Args:
            params (dict[str, Tensor]): E.g. from :func:`~mzsr_plugin.models.inner_loop.detached_params`.

        Returns:
            dict[str, Tensor]: The same values.
        """
        # Laid out whatever the source's layout: a module trained channels_last still adapts NCHW under fp32.
        return {name: self.layout(p.detach()).requires_grad_(p.requires_grad) for name, p in params.items()}

    def prepare_module(self, net):
        """Lays out a module's own parameters (training: the optimizer steps them in this layout).

        Args:
            net (nn.Module): The network, changed in place.

        Returns:
            nn.Module: ``net``.
        """
        return net.to(memory_format=self.memory_format) if self.channels_last else net

    def steps(self):
        """The context the SGD steps run in: bf16 autocast, or nothing."""
        if self.name == 'bf16':
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def record(self):
        """What ran, for ``metrics.json`` and logs."""
        return {
            'precision': self.name,
            'memory_format': 'channels_last' if self.channels_last else 'contiguous',
            'requested': self.requested,
            'reason': self.reason
        }

    def __str__(self):
        steps = 'bf16 steps, fp32 SR' if self.name == 'bf16' else 'fp32'
        layout = 'channels_last' if self.channels_last else 'contiguous'
        return f'{steps}, {layout} ({self.requested}: {self.reason})'


FP32_REFERENCE = Precision('fp32', False, 'fp32', 'asked for')


def resolve_precision(requested, device, option='--precision'):
    """The policy ``requested`` means on ``device``.

    Args:
        requested (str | None): ``'auto'``, ``'fp32'`` or ``'bf16'``; None: ``'auto'``.
        device (str | torch.device): Where the network runs.
        option (str): How the caller names the setting, for messages.

    Returns:
        Precision
    """
    requested = 'auto' if requested is None else requested
    if requested not in PRECISIONS:
        raise ValueError(f'{option} {requested!r}: expected one of {", ".join(PRECISIONS)}')
    device_type = torch.device(device).type
    if requested == 'fp32':
        return FP32_REFERENCE
    if requested == 'bf16':
        if device_type not in ('cpu', 'cuda'):
            raise ValueError(f'{option} bf16: runs on cpu or cuda, not {device_type}')
        return Precision('bf16', True, 'bf16', 'asked for', device_type)
    native, reason = bf16_hardware(device)
    if native:
        return Precision('bf16', True, 'auto', reason, device_type)
    if device_type == 'cpu':
        return Precision('fp32', True, 'auto', reason, device_type)
    return Precision('fp32', False, 'auto', reason, device_type)


def hardware_line(device):
    """One line for benchmark printouts: the device, its bf16-relevant instructions and what ``auto`` picks."""
    device = torch.device(device)
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        caps = torch.cpu.get_capabilities()
        flags = ', '.join(f'{label} {"yes" if caps.get(key) else "no"}' for key, label in (
            ('avx512_f', 'AVX512'), ('avx512_bf16', 'AVX512-BF16'), ('amx_bf16', 'AMX-BF16')))
        name = f'CPU {caps.get("cpu_name", "?")} ({flags}), {torch.get_num_threads()} threads'
    return f'{name}; --precision auto -> {resolve_precision("auto", device)}'
