"""MATLAB ``imresize`` (bicubic) as dense linear operators, so that it runs batched, on GPU and under autograd.

The weights come from BasicSR's :func:`basicsr.utils.matlab_functions.calculate_weights_indices`, the same
ones its ``imresize`` uses; folding its symmetric border padding into an (out, in) matrix gives identical results
for whole batches at the cost of two small matrix products.
"""
import math
import torch
from functools import lru_cache

from basicsr.utils.matlab_functions import calculate_weights_indices


def _padded_to_source(index, length, pad_start):
    """Maps an index of BasicSR's symmetrically padded axis back to the source axis."""
    pos = index - pad_start
    if pos < 0:
        pos = -pos - 1
    elif pos >= length:
        pos = 2 * length - pos - 1
    return min(max(pos, 0), length - 1)


@lru_cache(maxsize=64)
def _bicubic_matrix_cpu(in_length, out_length, scale, antialiasing):
    weights, indices, pad_start, _ = calculate_weights_indices(in_length, out_length, scale, 'cubic', 4, antialiasing)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    width = weights.size(1)
    for i in range(out_length):
        first = int(indices[i][0])
        for k in range(width):
            matrix[i, _padded_to_source(first + k, in_length, pad_start)] += float(weights[i][k])
    return matrix


def bicubic_matrix(in_length, out_length, scale, antialiasing=True, device=None, dtype=torch.float32):
    """The (out_length, in_length) matrix of MATLAB bicubic resizing along one axis.

    Args:
        in_length (int): Input size along the axis.
        out_length (int): Output size, ``ceil(in_length * scale)`` as MATLAB.
        scale (float): Scale factor (> 1 upsamples).
        antialiasing (bool): Widen the kernel when downsampling, as MATLAB. Default: True.
        device (torch.device | None): Device of the result.
        dtype (torch.dtype): Dtype of the result.

    Returns:
        Tensor: Shape (out_length, in_length).
    """
    return _bicubic_matrix_cpu(int(in_length), int(out_length), float(scale), bool(antialiasing)).to(device, dtype)


def imresize_pt(img, scale, antialiasing=True):
    """MATLAB-exact bicubic resize of a batch, differentiable.

    Args:
        img (Tensor): Shape (..., H, W), any leading dims (e.g. (N, C, H, W)).
        scale (float): Scale factor; output is (ceil(H * scale), ceil(W * scale)).
        antialiasing (bool): As MATLAB when downsampling. Default: True.

    Returns:
        Tensor: Shape (..., ceil(H * scale), ceil(W * scale)), same dtype and device, not clipped or rounded.
    """
    in_h, in_w = img.shape[-2:]
    out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
    mat_h = bicubic_matrix(in_h, out_h, scale, antialiasing, img.device, img.dtype)
    mat_w = bicubic_matrix(in_w, out_w, scale, antialiasing, img.device, img.dtype)
    return torch.matmul(torch.matmul(mat_h, img), mat_w.transpose(0, 1))
