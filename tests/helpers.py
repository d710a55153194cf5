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


def icc_profile(description, colorants, gamma=2.2, space=b'RGB '):
    """A minimal ICC v2 display profile (matrix + gamma curves), built by hand so tests need no third-party file.

    Args:
        description (str): Its name (the ``desc`` tag).
        colorants (Sequence[Sequence[float]]): XYZ (D50) of red, green and blue, three triples.
        gamma (float): Tone curve of every channel.
        space (bytes): Data colour space of the header (``b'RGB '``; another value makes a profile an RGB image
            cannot carry).

    Returns:
        bytes: The profile.
    """
    import struct

    def s15(v):
        return struct.pack('>i', round(v * 65536))

    def xyz(values):
        return b'XYZ \0\0\0\0' + b''.join(s15(v) for v in values)

    text = description.encode('ascii') + b'\0'
    desc = b'desc\0\0\0\0' + struct.pack('>I', len(text)) + text + b'\0' * 8 + b'\0\0\0' + b'\0' * 67
    curve = b'curv\0\0\0\0' + struct.pack('>IH', 1, round(gamma * 256)) + b'\0\0'
    tags = [(b'desc', desc), (b'wtpt', xyz((0.9642, 1.0, 0.8249)))]
    tags += [(name, xyz(c)) for name, c in zip((b'rXYZ', b'gXYZ', b'bXYZ'), colorants)]
    tags += [(name, curve) for name in (b'rTRC', b'gTRC', b'bTRC')]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack('>I', len(tags)), b''
    for name, body in tags:
        body += b'\0' * (-len(body) % 4)
        table += name + struct.pack('>II', offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = struct.pack('>I', size) + b'lcms' + bytes([2, 0x10, 0, 0]) + b'mntr' + space + b'XYZ '
    header += b'\0' * 12 + b'acsp' + b'\0' * 28 + s15(0.9642) + s15(1.0) + s15(0.8249)
    return header + b'\0' * (128 - len(header)) + table + data


# Display P3's primaries adapted to D50, as Apple's profile gives them.
DISPLAY_P3 = ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))
