"""A KernelGAN-style baseline (Bell-Kligler, Shocher and Irani, NeurIPS 2019), written here from the paper.

A deep linear generator G (convolutions, no non-linearity, the last one with stride ``scale``) downscales the LR
image; a fully convolutional patch discriminator D tells crops of the LR from crops of G(LR). When D cannot, G's
effective kernel is the image's own downscaling kernel. Regularisers keep that kernel a kernel: it sums to 1, its
centre of mass is at the centre, its borders are empty and it is sparse. The effective kernel is read by passing
an impulse through G's (stride-free) convolutions. Seeded, CPU or GPU.
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mzsr_plugin.utils.progress import bar as progress_bar
from .spectral import LUMA, check_estimable


class LinearGenerator(nn.Module):
    """Deep linear net; effective receptive field ``sum(k) - len(k) + 1`` (13 with the defaults)."""

    def __init__(self, scale, sizes=(7, 5, 3, 1, 1, 1), width=32):
        super().__init__()
        channels = [1] + [width] * (len(sizes) - 1) + [1]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, k, bias=False) for a, b, k in zip(channels, channels[1:], sizes))
        self.scale = scale

    def forward(self, x):
        for conv in self.convs[:-1]:
            x = conv(x)
        return F.conv2d(x, self.convs[-1].weight, stride=self.scale)

    def kernel(self):
        """The effective kernel, shape (k, k): G's convolutions applied to an impulse, without the stride."""
        size = sum(c.kernel_size[0] for c in self.convs) - len(self.convs) + 1
        delta = torch.zeros(1, 1, 2 * size - 1, 2 * size - 1, device=self.convs[0].weight.device)
        delta[0, 0, size - 1, size - 1] = 1
        x = delta
        for conv in self.convs:
            x = F.conv2d(x, conv.weight)
        # conv2d correlates: the response to an impulse is the kernel flipped; flip back to a correlation kernel.
        return torch.flip(x[0, 0], dims=(0, 1))


class PatchDiscriminator(nn.Module):
    def __init__(self, width=64, depth=5):
        super().__init__()
        layers = [nn.Conv2d(1, width, 7), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), nn.ReLU()]
        layers += [nn.Conv2d(width, 1, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def kernel_regularisation(kernel):
    """KernelGAN's four constraints on the effective kernel (sum to 1, centred, empty borders, sparse)."""
    size = kernel.shape[0]
    coords = torch.arange(size, dtype=kernel.dtype, device=kernel.device)
    total = kernel.sum()
    centre = (size - 1) / 2
    mass_y = (kernel.sum(1) * coords).sum() / total
    mass_x = (kernel.sum(0) * coords).sum() / total
    yy, xx = torch.meshgrid(coords, coords, indexing='ij')
    border = (torch.hypot(yy - centre, xx - centre) / centre).clamp(0, 1)**2
    return ((total - 1).abs() + 0.5 * (torch.hypot(mass_y - centre, mass_x - centre)) + 0.5 *
            (kernel.abs() * border).sum() + 0.2 * kernel.abs().pow(0.2).mean())


def kernelgan_estimate(lr, scale, iterations=1000, crop=64, seed=0, device='cpu', size=15, progress=False):
    """Estimates the downscaling kernel of one LR image with a KernelGAN-style game.

    Args:
        lr (ndarray): LR image, (h, w, 3) RGB or (h, w), float in [0, 1].
        scale (int): SR scale.
        iterations (int): Training iterations (KernelGAN: 3000).
        crop (int): Side of G's input crops (D sees crops of ``crop // scale``).
        seed (int): Seed of crops and initialisation.
        device (str): Device.
        size (int): Side of the returned kernel (odd; the effective kernel is zero-padded or cut around its centre).
        progress (bool): Show a progress bar.

    Returns:
        ndarray: Kernel (size, size), non-negative, summing to 1.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lr = np.asarray(lr, dtype=np.float32)
    gray = lr @ LUMA.astype(np.float32) if lr.ndim == 3 else lr
    check_estimable(gray)
    h, w = gray.shape
    crop = min(crop, h, w) // scale * scale
    image = torch.from_numpy(np.ascontiguousarray(gray)).to(device)[None, None]
    gen, disc = LinearGenerator(scale).to(device), PatchDiscriminator().to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def crops(side, count=8):
        tops = rng.integers(0, h - side + 1, count)
        lefts = rng.integers(0, w - side + 1, count)
        return torch.cat([image[..., t:t + side, l:l + side] for t, l in zip(tops, lefts)])

    bar = progress_bar(iterations, 'KernelGAN', enabled=progress, leave=False)
    for _ in range(iterations):
        fake = gen(crops(crop))
        real = crops(fake.shape[-1])
        loss_g = ((disc(fake) - 1)**2).mean() + kernel_regularisation(gen.kernel())
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        loss_d = ((disc(real) - 1)**2).mean() + (disc(fake.detach())**2).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        bar.update()
    bar.close()
    with torch.no_grad():
        kernel = gen.kernel().clamp(min=0).cpu().numpy().astype(np.float64)
    pad = (size - kernel.shape[0]) // 2
    kernel = np.pad(kernel, pad) if pad > 0 else kernel[-pad:kernel.shape[0] + pad, -pad:kernel.shape[0] + pad]
    total = kernel.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError('KernelGAN produced an empty kernel')
    return (kernel / total).astype(np.float32)
