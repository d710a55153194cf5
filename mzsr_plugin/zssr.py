"""ZSSR (Shocher, Cohen and Irani, CVPR 2018), the zero-shot baseline of the MZSR paper, in PyTorch.

A randomly initialised network is trained on one image only: random (augmented) crops of the LR input are the HR
fathers, each degraded with the given kernel into its LR son, and the net learns son -> father; then it
super-resolves the input itself. This follows the official code (github.com/assafshocher/ZSSR, ``configs.py``
and ``ZSSR.py``) in its given-kernel configuration ``X2_GIVEN_KERNEL_CONF``; every constant is in
:data:`ZSSR_DEFAULTS`. It shares its pieces with MZSR: the net is :class:`~mzsr_plugin.archs.mzsr_arch.MZSRNet`
(8 3x3 convs of 64 features on the bicubic-upsampled input plus a global residual, the official shape), sons come
from :func:`~mzsr_plugin.data.degradations.degrade_pt` and the back-projection is
:func:`~mzsr_plugin.models.adaptation.back_project`.

Recipe (official):

* Adam with learning rate 1e-3, L1 loss between the net's output and the father.
* Every ``run_test_every`` (50) iterations, the reconstruction MSE of the whole input from its own son.
* Learning-rate policy: every ``learning_rate_policy_check_every`` (60) iterations, once more than ``min_iters``
  (256) iterations passed since the last change, fit a line to the reconstruction errors of the last
  ``learning_rate_slope_range`` (256) iterations (256 // 50 = 5 points); when ``-1.5 * slope < std`` (std: the
  standard error of the fitted slope), divide the learning rate by 10. Stop once it is below 9e-6 (after three
  divisions) or after ``max_iters`` (3000) iterations.
* Augmentation of the father (``utils.random_augment``): with probability 0.05 a plain crop, 0.45 a crop without
  interpolation, 0.5 an affine warp (bicubic) with a random scale in [0.5, 1], an x/y scale difference
  ~ N(0, 0.25) and shears ~ N(0, 0.1); the given-kernel config allows no rotations or mirrors (the kernel may be
  non-symmetric), so the first two cases are the same. Crops of 128x128.
* Sons: ``clip(degrade(father) + N(0, noise_std), 0, 1)``, ``noise_std`` 0 in this config; a JPEG photo's sons are
  also encoded at its quality (``jpeg_quality``, not in the official code).
* Final test: the net's output (clipped to [0, 1]) for each geometric transform of the input (only the identity:
  ``output_flip`` is False in the given-kernel config; True gives the 8 flips/rotations), each back-projected
  ``back_projection_iters`` (2) times, then their median, back-projected ``back_projection_iters`` times again;
  each back-projection step clips to [0, 1].

Differences from the TensorFlow original:

* Initialisation: the official draws each filter from N(0, init_variance / fan_in) (``init_variance`` 0.1) and has
  no biases; here the weights are drawn the same way (``init='official'``, the default; ``init='pytorch'`` keeps
  PyTorch's default init) and MZSRNet's biases start at 0 and are trained.
* The kernel is used as given (MZSR's convention, the one the test inputs were made with); the official ZSSR shifts
  a loaded kernel's centre of mass to its own sub-sampling grid.
* Crops never leave the image: they are at most the (scaled) image size, and the affine warp samples with
  reflected borders, while the official warps a fixed 128x128 window that can fall partly outside the image and
  fills it with zeros (always so for inputs smaller than 128 pixels). Axis scales are kept >= 0.1 (the official
  does not bound the rare x/y difference beyond that).
* The slope's standard error uses the ``n - 4`` denominator of NumPy < 1.16's ``polyfit(cov=True)``, which the
  official code ran with, written out (NumPy >= 1.16 divides by ``n - 2``, a smaller std, so fewer decays).
* The median of an even number of outputs is the mean of the middle two, as ``np.median``.
* float32, integer scales only, one jump (no gradual scales or base changes), Adam with PyTorch's epsilon
  placement, no plotting. Images larger than ``tile`` LR pixels are run tiled (exact, see
  :func:`~mzsr_plugin.models.tiling.tiled_forward`) in the quick tests and the final test.
"""
import math
import numpy as np
import time
import torch
from torch.nn import functional as F

from mzsr_plugin.archs.mzsr_arch import MZSRNet
from mzsr_plugin.data.degradations import degrade_pt, jpeg_compress_pt
from mzsr_plugin.models.adaptation import _dihedral, back_project
from mzsr_plugin.models.inner_loop import l1_loss
from mzsr_plugin.models.tiling import required_overlap, tiled_forward
from mzsr_plugin.precision import FP32_REFERENCE
from mzsr_plugin.utils.progress import bar as progress_bar

ZSSR_DEFAULTS = {
    # Network (Config: width, depth, learn_residual=True, init_variance)
    'width': 64,
    'depth': 8,
    'init': 'official',  # 'official': N(0, init_variance / fan_in) weights, zero biases; 'pytorch': torch's init
    'init_variance': 0.1,
    # Optimisation and stopping (Config)
    'learning_rate': 1e-3,
    'max_iters': 3000,
    'min_iters': 256,
    'min_learning_rate': 9e-6,
    # Learning-rate policy (Config)
    'learning_rate_change_ratio': 1.5,
    'learning_rate_policy_check_every': 60,
    'learning_rate_slope_range': 256,
    'run_test_every': 50,
    # Data (Config; X2_GIVEN_KERNEL_CONF sets augment_allow_rotation=False)
    'crop_size': 128,
    'noise_std': 0.0,
    # Not in the official config: the JPEG quality each son is encoded at (a JPEG photo's own; None: no JPEG).
    'jpeg_quality': None,
    'augment_leave_as_is_probability': 0.05,
    'augment_no_interpolate_probability': 0.45,
    'augment_min_scale': 0.5,
    'augment_scale_diff_sigma': 0.25,
    'augment_shear_sigma': 0.1,
    'augment_allow_rotation': False,
    # Final test (X2_GIVEN_KERNEL_CONF: output_flip=False, back_projection_iters=[2])
    'output_flip': False,
    'back_projection_iters': 2,
}
# Smallest |axis scale| of the affine augmentation: keeps the warp invertible.
MIN_AXIS_SCALE = 0.1


def slope_and_std(steps, errors):
    """Least-squares line through (steps, errors): its slope and the slope's standard error, as the official.

    The official ``np.polyfit(steps, errors, 1, cov=True)`` ran on NumPy < 1.16, which scales the covariance by
    ``RSS / (n - 4)``; that is written out here since newer NumPy divides by ``n - 2``.

    Args:
        steps (Sequence[float]): Iterations of the measurements (at least 5).
        errors (Sequence[float]): Reconstruction errors at those iterations.

    Returns:
        tuple[float, float]: (slope, std).
    """
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(errors, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 5:
        raise ValueError(f'slope_and_std needs two equally long 1-D sequences of at least 5 values, got shapes '
                         f'{x.shape} and {y.shape}')
    sxx = np.sum((x - x.mean())**2)
    slope = np.sum((x - x.mean()) * (y - y.mean())) / sxx
    rss = np.sum((y - y.mean() - slope * (x - x.mean()))**2)
    return float(slope), float(math.sqrt(rss / (x.size - 4) / sxx))


def should_reduce_lr(steps, errors, ratio=ZSSR_DEFAULTS['learning_rate_change_ratio']):
    """The official decision: reduce the learning rate when the errors do not fall clearly faster than their noise.

    Args:
        steps (Sequence[float]): Iterations of the last reconstruction errors.
        errors (Sequence[float]): The errors.
        ratio (float): ``learning_rate_change_ratio``. Default: 1.5.

    Returns:
        bool: True when ``-ratio * slope < std``.
    """
    slope, std = slope_and_std(steps, errors)
    return -ratio * slope < std


def _init_official(net, variance, generator):
    """Weights ~ N(0, variance / fan_in) as the official ``random_normal_initializer``; biases 0."""
    with torch.no_grad():
        for conv in net.convs:
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * math.sqrt(variance / fan_in))
            conv.bias.zero_()


def build_zssr_net(scale, config, generator):
    """The ZSSR network: MZSRNet of ``config['depth']`` convs and ``config['width']`` features, initialised.

    Args:
        scale (int): SR scale.
        config (dict): A full ZSSR config (see :data:`ZSSR_DEFAULTS`).
        generator (torch.Generator): CPU generator for the initial weights.

    Returns:
        MZSRNet: On the CPU.
    """
    if config['init'] == 'official':
        net = MZSRNet(num_feat=config['width'], num_conv=config['depth'], scale=scale)
        _init_official(net, config['init_variance'], generator)
        return net
    if config['init'] == 'pytorch':
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1, ), generator=generator)))
            return MZSRNet(num_feat=config['width'], num_conv=config['depth'], scale=scale)
    raise ValueError(f'ZSSR option init must be "official" or "pytorch", got {config["init"]!r}')


def _crop_window(length, size, rng):
    start = int(rng.integers(0, length - size + 1))
    return slice(start, start + size)


def random_father(img, config, rng):
    """One HR father: a random, possibly scaled and sheared, crop of the input, as the official ``random_augment``.

    Args:
        img (Tensor): The input (LR) image, shape (1, C, H, W), in [0, 1].
        config (dict): A full ZSSR config (the ``augment_*`` and ``crop_size`` entries are used).
        rng (np.random.Generator): Draws the augmentation.

    Returns:
        Tensor: Shape (1, C, h, w) with h, w <= ``crop_size``, in [0, 1].
    """
    h, w = img.shape[-2:]
    crop = config['crop_size']
    chooser = rng.random()
    leave_as_is = chooser < config['augment_leave_as_is_probability']
    affine = chooser >= config['augment_leave_as_is_probability'] + config['augment_no_interpolate_probability']
    rotate = config['augment_allow_rotation'] and not leave_as_is
    if not affine:
        father = img[..., _crop_window(h, min(crop, h), rng), _crop_window(w, min(crop, w), rng)]
        if rotate:
            father = torch.rot90(father, int(rng.integers(4)), dims=(-2, -1))
            if rng.standard_normal() < 0:
                father = torch.flip(father, dims=(-1, ))
        return father

    scale = rng.uniform(config['augment_min_scale'], 1.0)
    scale_diff = rng.standard_normal() * config['augment_scale_diff_sigma']
    reflect = -1.0 if rotate and rng.standard_normal() < 0 else 1.0
    theta = rng.uniform(0, 2 * math.pi) if rotate else 0.0
    shear_x, shear_y = rng.standard_normal(2) * config['augment_shear_sigma']
    scale_x = max(scale + scale_diff / 2, MIN_AXIS_SCALE)
    scale_y = max(scale - scale_diff / 2, MIN_AXIS_SCALE)
    # src -> dst linear map (x = column, y = row), composed as the official: shear . rotation . scale
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    linear = np.array([[1, shear_x], [shear_y, 1]]) @ rotation @ np.diag([reflect * scale_x, scale_y])
    inverse = np.linalg.inv(linear)
    out_w = max(min(crop, math.floor(w * scale_x)), 1)
    out_h = max(min(crop, math.floor(h * scale_y)), 1)
    # The crop's footprint in the source: its centre must stay this far from the borders to fit in the image.
    corners = inverse @ np.array([[out_w, out_w, -out_w, -out_w], [out_h, -out_h, out_h, -out_h]]) / 2
    half_x, half_y = np.abs(corners).max(axis=1)
    center_x = rng.uniform(half_x, w - half_x) if w > 2 * half_x else w / 2
    center_y = rng.uniform(half_y, h - half_y) if h > 2 * half_y else h / 2
    # Pixel centres of the output, relative to the crop centre, mapped back to the source.
    dst_x = torch.arange(out_w, dtype=torch.float64) + 0.5 - out_w / 2
    dst_y = torch.arange(out_h, dtype=torch.float64) + 0.5 - out_h / 2
    grid_y, grid_x = torch.meshgrid(dst_y, dst_x, indexing='ij')
    inv = torch.as_tensor(inverse)
    src_x = center_x + inv[0, 0] * grid_x + inv[0, 1] * grid_y
    src_y = center_y + inv[1, 0] * grid_x + inv[1, 1] * grid_y
    grid = torch.stack([2 * src_x / w - 1, 2 * src_y / h - 1], dim=-1).unsqueeze(0).to(img)
    father = F.grid_sample(img, grid, mode='bicubic', padding_mode='reflection', align_corners=False)
    return father.clamp(0, 1)


class _ZSSRRun:
    """State of one ZSSR run: the net, its optimiser, the sons and the learning-rate policy."""

    def __init__(self, lr, kernel, scale, downsample, config, rng, tile, precision):
        self.lr, self.kernel, self.scale, self.downsample = lr, kernel, scale, downsample
        self.config, self.rng, self.tile, self.precision = config, rng, tile, precision
        device = lr.device
        init_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        self.noise_gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
        self.net = precision.prepare_module(build_zssr_net(scale, config, init_gen).to(device))
        self.learning_rate = config['learning_rate']
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        self.losses, self.test_steps, self.test_errors, self.lr_changes = [], [], [], [0]

    def son(self, father):
        son = degrade_pt(father, self.kernel, self.scale, self.downsample)
        if self.config['noise_std'] > 0:
            noise = torch.randn(son.shape, generator=self.noise_gen, device=son.device, dtype=son.dtype)
            son = son + noise * self.config['noise_std']
        son = son.clamp(0, 1)
        return jpeg_compress_pt(son, self.config['jpeg_quality']) if self.config['jpeg_quality'] else son

    @torch.no_grad()
    def forward(self, x):
        """The net on a whole image (tiled when larger than ``tile``), clipped to [0, 1] as the official."""
        if self.tile is None:
            out = self.net(x)
        else:
            out = tiled_forward(self.net, x, self.scale, self.tile, required_overlap(self.config['depth'], self.scale))
        return out.clamp(0, 1)

    def train_step(self):
        father = random_father(self.lr, self.config, self.rng)
        with self.precision.steps():
            loss = l1_loss(self.net(self.precision.layout(self.son(father))), father)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())

    def quick_test(self, iteration):
        rec = self.forward(self.son(self.lr))[..., :self.lr.shape[-2], :self.lr.shape[-1]]
        self.test_steps.append(iteration)
        self.test_errors.append(float(torch.mean((rec - self.lr)**2)))

    def learning_rate_policy(self, iteration):
        config = self.config
        if (iteration + 1) % config['learning_rate_policy_check_every'] or \
                iteration - self.lr_changes[-1] <= config['min_iters']:
            return
        points = config['learning_rate_slope_range'] // config['run_test_every']
        if should_reduce_lr(self.test_steps[-points:], self.test_errors[-points:],
                            config['learning_rate_change_ratio']):
            self.learning_rate /= 10
            for group in self.optimizer.param_groups:
                group['lr'] = self.learning_rate
            self.lr_changes.append(iteration)

    def back_projected(self, sr):
        for _ in range(self.config['back_projection_iters']):
            sr = back_project(sr, self.lr, self.kernel, self.scale, self.downsample, 1).clamp(0, 1)
        return sr

    @torch.no_grad()
    def final_test(self):
        outputs = []
        for k in range(8 if self.config['output_flip'] else 1):
            x, inverse = _dihedral(self.lr, k)
            outputs.append(self.back_projected(inverse(self.forward(x))))
        ordered = torch.stack(outputs).sort(dim=0).values
        n = len(outputs)
        median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        return self.back_projected(median)


def zssr_config(**overrides):
    """:data:`ZSSR_DEFAULTS` with ``overrides`` applied and checked.

    Args:
        **overrides: Entries of :data:`ZSSR_DEFAULTS` to change.

    Returns:
        dict: The full config.
    """
    unknown = sorted(set(overrides) - set(ZSSR_DEFAULTS))
    if unknown:
        raise ValueError(f'unknown ZSSR options {unknown}; valid options are {sorted(ZSSR_DEFAULTS)}')
    config = {**ZSSR_DEFAULTS, **overrides}
    points = config['learning_rate_slope_range'] // config['run_test_every']
    if points < 5:
        raise ValueError(f'ZSSR options learning_rate_slope_range ({config["learning_rate_slope_range"]}) // '
                         f'run_test_every ({config["run_test_every"]}) = {points}: the slope fit needs at least 5 '
                         'reconstruction errors')
    if config['max_iters'] < 1 or config['crop_size'] < 1:
        raise ValueError(f'ZSSR options max_iters and crop_size must be >= 1, got {config["max_iters"]} and '
                         f'{config["crop_size"]}')
    return config


def zssr_super_resolve(lr,
                       kernel,
                       scale,
                       downsample='direct',
                       device='cpu',
                       max_iters=ZSSR_DEFAULTS['max_iters'],
                       seed=None,
                       progress=False,
                       tile=None,
                       precision=FP32_REFERENCE,
                       **config_overrides):
    """Trains a ZSSR network on one LR image with its known kernel, then super-resolves the image.

    Args:
        lr (Tensor): LR image, shape (1, C, h, w), RGB in [0, 1] (moved to ``device``).
        kernel (Tensor | ndarray): Its blur kernel, shape (k, k).
        scale (int): SR scale.
        downsample (str): ``'direct'`` or ``'bicubic'``, how the LR was sub-sampled. Default: ``'direct'``.
        device (str | torch.device): Device to train on. Default: ``'cpu'``.
        max_iters (int): Iteration cap. Default: 3000 (official).
        seed (int | None): Seed of the initialisation, the crops and the noise; None draws one.
        progress (bool): Show a tqdm bar over iterations.
        tile (int | None): Run the whole-image passes on LR tiles of this size (for huge images); None: in one go.
        precision (Precision): Dtype of the training steps and layout of the net
            (:func:`~mzsr_plugin.precision.resolve_precision`); whole-image passes are float32. Default: the
            float32 NCHW reference.
        **config_overrides: Other entries of :data:`ZSSR_DEFAULTS` to change.

    Returns:
        tuple[Tensor, dict]: SR of shape (1, C, h * scale, w * scale) in [0, 1], and an info dict: ``iterations``
        (run), ``final_lr`` (learning rate when it stopped), ``seconds``, ``loss`` (training L1 per iteration),
        ``test_steps`` / ``test_errors`` (reconstruction MSE of the input from its son, every ``run_test_every``
        iterations), ``lr_changes`` (iterations where the learning rate was divided by 10) and ``config``.
    """
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f'zssr_super_resolve takes one LR image of shape (1, C, h, w), got {tuple(lr.shape)}')
    config = zssr_config(max_iters=max_iters, **config_overrides)
    start = time.perf_counter()
    device = torch.device(device)
    lr = lr.to(device=device, dtype=torch.float32)
    kernel = torch.as_tensor(kernel, dtype=torch.float32, device=device)
    run = _ZSSRRun(lr, kernel, int(scale), downsample, config, np.random.default_rng(seed), tile, precision)
    iteration = 0
    bar = progress_bar(config['max_iters'], 'ZSSR', enabled=progress)
    for iteration in range(config['max_iters']):
        run.train_step()
        if iteration % config['run_test_every'] == 0:
            run.quick_test(iteration)
        run.learning_rate_policy(iteration)
        bar.update()
        bar.set_postfix(loss=f'{run.losses[-1]:.4f}', lr=f'{run.learning_rate:.0e}', refresh=False)
        if run.learning_rate < config['min_learning_rate']:
            break
    bar.close()
    sr = run.final_test()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    info = {
        'iterations': iteration + 1,
        'final_lr': run.learning_rate,
        'seconds': time.perf_counter() - start,
        'loss': run.losses,
        'test_steps': run.test_steps,
        'test_errors': run.test_errors,
        'lr_changes': run.lr_changes[1:],
        'config': config,
    }
    return sr, info
