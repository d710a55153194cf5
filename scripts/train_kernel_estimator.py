#!/usr/bin/env python
"""Trains the learned kernel estimator (:mod:`mzsr_plugin.kernel_estimation.learned`): one small regressor per scale,
from the LR's power spectrum to the kernel's covariance.

Samples: a random crop of a training image (BSDS400 and HQ70 from ../shared/data/train; never a benchmark image),
blurred with a kernel drawn half DIV2KRK-style (:func:`~mzsr_plugin.data.kernels.div2krk_kernel`), half from
meta-training's Gaussian family with log-uniform variances down to 0.05 (nearly no blur), sub-sampled directly,
rounded to 8 bit; a share gets noise (std U[1, 10]/255) and/or JPEG (quality U[60, 95]), and the features see the
noise level ``--noise auto`` reads, as at inference. The last ``--val-share`` of the image files are held out: the table
compares the closed-form spectral fit and the regressor on them (relative covariance error against the truth projected
onto the estimator's range, lower is better).

``--probe-downsampling`` trains, on the same kind of samples, a classifier that tells a directly sub-sampled LR (the
kernels above) from a resized one (MATLAB bicubic, PIL bicubic/Lanczos/bilinear with antialiasing, OpenCV's area
average: the LR of most benchmarks and of every resize call), from the same spectrum features plus a radial log-power
profile; it prints the held-out accuracy per kind and how many direct images it would send to the bicubic model at
each confidence. Nothing is saved: blind mode ships no such classifier while it errs on a few percent of images
(each error costs 2-5 dB; see docs/photos.md).

    python scripts/train_kernel_estimator.py [--scales 2] [--samples 8000] [--out PATH]
    python scripts/train_kernel_estimator.py --probe-downsampling [--samples 3000] [--clean]
"""
import argparse
import cv2
import glob
import math
import numpy as np
import os
import time
import torch
from os import path as osp
from PIL import Image

import mzsr_plugin  # noqa: F401  (first: makes basicsr importable on any torchvision)
from mzsr_plugin.data.degradations import add_noise, degrade_np, jpeg_compress
from mzsr_plugin.data.kernels import anisotropic_gaussian_kernel, div2krk_kernel, kernel_covariance
from mzsr_plugin.kernel_estimation.learned import WEIGHTS, build_regressor, spectrum_features
from mzsr_plugin.kernel_estimation.spectral import estimate_gaussian_kernel, lr_power_spectrum, project_covariance
from mzsr_plugin.noise_estimation import auto_noise_std

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN = osp.join(ROOT, '..', 'shared', 'data', 'train')
# LR crops of about 128 pixels a side at x2 and 80 at x4: the sizes of B100 images, the smallest inputs it serves.
CROP = {2: 256, 3: 288, 4: 320}


# Smallest variance drawn. The estimate is projected onto [0.2, 2.5 scale] as meta-training's kernels; drawn from
# 0.2 up, nearly unblurred images sat at the edge of the training range and the regressor over-blurred them (Set5
# g^d_0.2: 2.1 dB under the true kernel); from 0.05 they are inside it (0.2 dB), the rest unchanged.
MIN_VARIANCE = 0.05


def sample_kernel(rng, scale):
    """Half DIV2KRK-style, half Gaussian with log-uniform variances in [:data:`MIN_VARIANCE`, 2.5 scale]: nearly
    unblurred images are as common as blurred ones (uniform variances made them rare, and the regressor over-blurred
    them)."""
    if rng.random() < 0.5:
        return div2krk_kernel(scale, rng)
    lambda_1 = math.exp(rng.uniform(math.log(MIN_VARIANCE), math.log(2.5 * scale)))
    lambda_2 = math.exp(rng.uniform(math.log(MIN_VARIANCE), math.log(lambda_1)))
    return anisotropic_gaussian_kernel(15, rng.uniform(0, np.pi), lambda_1, lambda_2)


def random_crop(paths, images, rng, scale):
    """A random HR crop (float RGB) of a random training image, its side a multiple of ``scale``."""
    path = paths[rng.integers(len(paths))]
    if path not in images:
        images[path] = cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1] / 255.0
    image = images[path]
    crop = min(CROP.get(scale, 64 * scale), *image.shape[:2]) // scale * scale
    top, left = rng.integers(0, image.shape[0] - crop + 1), rng.integers(0, image.shape[1] - crop + 1)
    return image[top:top + crop, left:left + crop]


def photo_like(lr, rng, clean=False):
    """8-bit, and for a share of samples noisy and/or JPEG-compressed, as photos are."""
    lr = np.round(np.clip(lr, 0, 1) * 255) / 255
    if not clean and rng.random() < 0.3:
        lr = np.round(add_noise(lr, rng.uniform(1, 10) / 255, rng=rng) * 255) / 255
    if not clean and rng.random() < 0.2:
        lr = jpeg_compress(lr, int(rng.integers(60, 96)))
    return lr


def make_samples(paths, count, scale, seed):
    """(features, covariance / scale², LR images, noise read) of ``count`` random samples."""
    rng = np.random.default_rng(seed)
    images = {}
    features, targets, cases = [], [], []
    for _ in range(count):
        hr = random_crop(paths, images, rng, scale)
        kernel = sample_kernel(rng, scale)
        lr = photo_like(degrade_np(hr, kernel, scale), rng)
        noise = auto_noise_std(lr)
        features.append(spectrum_features(lr, scale, noise)[0])
        targets.append(kernel_covariance(kernel)[[0, 0, 1], [0, 1, 1]] / scale**2)
        cases.append((lr, noise))
    return np.array(features), np.array(targets), cases


RESIZERS = ('matlab', 'pil_bicubic', 'pil_lanczos', 'pil_bilinear', 'cv2_area')


def resize(hr, scale, how):
    """An LR made by resizing, as benchmarks and image software do (antialiased, pixel centres aligned)."""
    h, w = hr.shape[:2]
    if how == 'matlab':
        return degrade_np(hr, np.ones((1, 1)), scale, 'bicubic')
    if how == 'cv2_area':
        return cv2.resize(hr, (w // scale, h // scale), interpolation=cv2.INTER_AREA)
    method = {'pil_bicubic': Image.BICUBIC, 'pil_lanczos': Image.LANCZOS, 'pil_bilinear': Image.BILINEAR}[how]
    image = Image.fromarray(np.round(hr * 255).astype(np.uint8))
    return np.asarray(image.resize((w // scale, h // scale), method)) / 255.0


def radial_profile(lr, bins=24):
    """The LR's log power against spatial frequency, averaged over angles (mean removed): the shape of its MTF."""
    _, power = lr_power_spectrum(lr)
    n = power.shape[0]
    freq = np.fft.fftfreq(n)
    radius = np.hypot(*np.meshgrid(freq, freq, indexing='ij'))
    index = np.minimum((radius / radius.max() * bins).astype(int), bins - 1)
    log_power = np.log(np.maximum(power, power[power > 0].min()))
    counts = np.maximum(np.bincount(index.ravel(), None, bins), 1)
    profile = np.bincount(index.ravel(), log_power.ravel(), bins) / counts
    return profile - profile.mean()


def make_downsampling_samples(paths, count, scale, seed, clean=False):
    """(features, label 1 = resized, how each was made) of ``count`` samples, half direct and half resized."""
    rng = np.random.default_rng(seed)
    images = {}
    features, labels, kinds = [], [], []
    for _ in range(count):
        hr = random_crop(paths, images, rng, scale)
        resized = rng.random() < 0.5
        how = RESIZERS[rng.integers(len(RESIZERS))] if resized else 'direct'
        lr = photo_like(resize(hr, scale, how) if resized else degrade_np(hr, sample_kernel(rng, scale), scale), rng,
                        clean)
        features.append(np.concatenate([spectrum_features(lr, scale, auto_noise_std(lr))[0], radial_profile(lr)]))
        labels.append(float(resized))
        kinds.append(how)
    return np.array(features), np.array(labels), kinds


def probe_downsampling(train_paths, val_paths, args):
    """Trains the direct-vs-resized classifier and prints its held-out accuracy (nothing is saved)."""
    for scale in (int(s) for s in args.scales.split(',')):
        features, labels, _ = make_downsampling_samples(train_paths, args.samples, scale, (args.seed, scale),
                                                        args.clean)
        val_features, val_labels, kinds = make_downsampling_samples(val_paths, args.val_samples, scale,
                                                                    (args.seed, scale, 1), args.clean)
        torch.manual_seed(args.seed)
        mean, std = features.mean(0), features.std(0) + 1e-9
        x, y = torch.tensor((features - mean) / std, dtype=torch.float32), torch.tensor(labels, dtype=torch.float32)
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                  torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=5e-2)
        for _ in range(args.epochs):
            for batch in torch.randperm(len(x)).split(128):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[batch])[:, 0], y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            prob = torch.sigmoid(net.eval()(torch.tensor((val_features - mean) / std, dtype=torch.float32))[:, 0])
        prob = prob.numpy()
        print(f'x{scale}: {args.samples} training / {args.val_samples} held-out samples'
              f'{" (clean: no noise, no JPEG)" if args.clean else ""}')
        print(f'{"made by":<14} {"n":>4} {"accuracy":>9}')
        for kind in ('direct', ) + RESIZERS:
            chosen = np.array([k == kind for k in kinds])
            if chosen.any():
                right = (prob[chosen] > 0.5) == (val_labels[chosen] > 0.5)
                print(f'{kind:<14} {chosen.sum():>4} {right.mean():>9.3f}')
        direct = np.array([k == 'direct' for k in kinds])
        for threshold in (0.5, 0.9, 0.99):
            print(f'P(resized) > {threshold}: {np.mean(prob[direct] > threshold):.3f} of direct images would take '
                  f'the bicubic model, {np.mean(prob[~direct] > threshold):.3f} of resized ones would')


def covariance_error(predicted, truth):
    """Mean relative Frobenius error of (yy, xy, xx) triples."""
    def matrix(c):
        return np.array([[c[0], c[1]], [c[1], c[2]]])

    return float(np.mean([np.linalg.norm(matrix(p) - matrix(t)) / np.linalg.norm(matrix(t))
                          for p, t in zip(predicted, truth)]))


def train(features, targets, epochs, seed, hidden=64, weight_decay=1e-2):
    """The regressor fitted with AdamW and a relative L1 loss; returns it and the feature normalisation."""
    torch.manual_seed(seed)
    mean, std = features.mean(0), features.std(0) + 1e-9
    x = torch.tensor((features - mean) / std, dtype=torch.float32)
    y = torch.tensor(targets, dtype=torch.float32)
    net = build_regressor(x.shape[1], hidden)
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 128):
            batch = order[start:start + 128]
            # Relative L1 (by the kernel's size, yy + xx): a sharp kernel's error matters as much as a wide one's.
            loss = ((net(x[batch]) - y[batch]).abs().sum(1) / (y[batch, 0] + y[batch, 2])).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval(), mean, std


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--train-dirs', default=f'{TRAIN}/BSDS400,{TRAIN}/HQ70',
                        help='comma-separated folders of HR images (default: ../shared/data/train/{BSDS400,HQ70})')
    parser.add_argument('--scales', default='2')
    parser.add_argument('--samples', type=int, default=8000, help='training samples per scale')
    parser.add_argument('--val-samples', type=int, default=400, help='held-out samples per scale')
    parser.add_argument('--val-share', type=float, default=0.1, help='share of the image files held out')
    parser.add_argument('--epochs', type=int, default=300)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=WEIGHTS)
    parser.add_argument('--probe-downsampling', action='store_true',
                        help='train and measure the direct-vs-resized classifier instead (nothing saved)')
    parser.add_argument('--clean', action='store_true', help='with --probe-downsampling: no noise, no JPEG')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    paths = sorted(p for d in args.train_dirs.split(',') for p in glob.glob(osp.join(d, '*'))
                   if p.lower().endswith(('.png', '.jpg', '.jpeg', '.bmp')))
    if len(paths) < 10:
        parser.error(f'--train-dirs {args.train_dirs}: {len(paths)} images found; at least 10 are needed')
    held = max(1, int(len(paths) * args.val_share))
    train_paths, val_paths = paths[:-held], paths[-held:]
    if args.probe_downsampling:
        probe_downsampling(train_paths, val_paths, args)
        return
    state = {'scales': {}, 'record': {'train_images': len(train_paths), 'val_images': held, 'samples': args.samples,
                                      'epochs': args.epochs, 'seed': args.seed, 'train_dirs': [
                                          osp.basename(d.rstrip('/')) for d in args.train_dirs.split(',')]}}
    print(f'{"scale":>5} {"samples":>8} {"seconds":>8} {"spectral cov err":>17} {"learned cov err":>16} {"ratio":>6}')
    for scale in (int(s) for s in args.scales.split(',')):
        start = time.perf_counter()
        features, targets, _ = make_samples(train_paths, args.samples, scale, (args.seed, scale))
        val_features, val_targets, val_cases = make_samples(val_paths, args.val_samples, scale,
                                                            (args.seed, scale, 1))
        net, mean, std = train(features, targets, args.epochs, args.seed)
        with torch.no_grad():
            predicted = net(torch.tensor((val_features - mean) / std, dtype=torch.float32)).double().numpy()
        learned = [project_covariance(np.array([[p[0], p[1]], [p[1], p[2]]]) * scale**2, 0.2, 2.5 * scale)
                   for p in predicted]
        spectral = [estimate_gaussian_kernel(lr, scale, noise_std=noise)[1]['covariance'] for lr, noise in val_cases]
        # Against the truth as the estimator can represent it (projected onto its range, as its estimates are).
        truth = [project_covariance(np.array([[t[0], t[1]], [t[1], t[2]]]), 0.2, 2.5 * scale)[[0, 0, 1], [0, 1, 1]]
                 for t in val_targets * scale**2]
        errors = [covariance_error([c[[0, 0, 1], [0, 1, 1]] for c in covs], truth) for covs in (spectral, learned)]
        state['scales'][scale] = {
            'params': net.state_dict(), 'mean': torch.from_numpy(mean), 'std': torch.from_numpy(std), 'hidden': 64,
            'val_cov_error': {'spectral': errors[0], 'learned': errors[1]}
        }
        print(f'{scale:>5} {args.samples:>8} {time.perf_counter() - start:>8.0f} {errors[0]:>17.3f} {errors[1]:>16.3f} '
              f'{errors[1] / errors[0]:>6.2f}', flush=True)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    partial = f'{args.out}.part'
    torch.save(state, partial)
    os.replace(partial, args.out)
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
