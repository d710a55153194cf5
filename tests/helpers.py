"""Small builders shared by the tests: synthetic images and option files."""
import cv2
import numpy as np
import os
import yaml
from os import path as osp


def smooth_image(rng, height, width):
    """A random but natural-looking (smooth, textured) uint8 BGR image of shape (height, width, 3)."""
    low = rng.random((max(height // 8, 2), max(width // 8, 2), 3)).astype(np.float32)
    img = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    img += 0.05 * rng.standard_normal((height, width, 3)).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_images(folder, count, height, width, seed=0, prefix='img'):
    """Writes ``count`` PNGs into ``folder`` and returns their paths."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = osp.join(folder, f'{prefix}{i:03d}.png')
        cv2.imwrite(path, smooth_image(rng, height, width))
        paths.append(path)
    return paths


def write_options(path, opt):
    """Dumps an option dict as YAML (what users write by hand)."""
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path
