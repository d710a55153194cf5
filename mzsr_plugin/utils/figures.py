"""Figures of results: side-by-side image comparisons and PSNR-vs-steps curves.

Figures are drawn on matplotlib's Agg canvas directly (no ``pyplot``), so they work without a display and do not
change the backend or state of a caller that uses ``pyplot`` itself.
"""
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def new_figure(width, height):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def kernel_image(kernel, shape=None):
    """A kernel as an RGB picture: normalised to its maximum, enlarged without smoothing.

    Args:
        kernel (ndarray): Shape (k, k).
        shape (tuple[int, int] | None): (height, width) to fill (centred, on black); None: about 8 px per tap.

    Returns:
        ndarray: float RGB image in [0, 1].
    """
    k = np.asarray(kernel, dtype=np.float64)
    k = k / k.max() if k.max() > 0 else k
    if shape is None:
        factor = 8
        canvas = np.repeat(np.repeat(k, factor, axis=0), factor, axis=1)
    else:
        factor = max(1, min(shape) // k.shape[0])
        big = np.repeat(np.repeat(k, factor, axis=0), factor, axis=1)[:shape[0], :shape[1]]
        canvas = np.zeros(shape)
        top, left = (shape[0] - big.shape[0]) // 2, (shape[1] - big.shape[1]) // 2
        canvas[top:top + big.shape[0], left:left + big.shape[1]] = big
    return np.repeat(canvas[..., None], 3, axis=2)


def zoom_region(baseline, reference=None, size=48):
    """The square window a comparison should zoom into: where ``baseline`` is worst, else where it is most detailed.

    Args:
        baseline (ndarray): Image (H, W, 3), e.g. bicubic; float in [0, 1] or uint8.
        reference (ndarray | None): Ground truth of the same shape; None picks the window of largest gradient
            energy of ``baseline`` instead of largest error.
        size (int): Window side in pixels (clipped to the image).

    Returns:
        tuple[int, int, int]: (top, left, side).
    """
    base = np.asarray(baseline, dtype=np.float64)
    base = base / 255.0 if np.asarray(baseline).dtype == np.uint8 else base
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64)
        ref = ref / 255.0 if np.asarray(reference).dtype == np.uint8 else ref
        energy = np.abs(base - ref).mean(axis=2)
    else:
        gray = base.mean(axis=2)
        energy = np.zeros_like(gray)
        energy[:, 1:] += np.abs(np.diff(gray, axis=1))
        energy[1:, :] += np.abs(np.diff(gray, axis=0))
    h, w = energy.shape
    side = max(1, min(size, h, w))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side] + integral[:-side, :-side]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left), side


def save_comparison(path, panels, dpi=100, min_panel_inches=2.5, zoom=3, region=None):
    """Saves images side by side, each under its title, pixels shown unsmoothed, and a row of zoomed crops.

    Each panel is at least as many inches as its image has pixels at ``dpi`` (so the image is not downscaled)
    and at least ``min_panel_inches`` wide. With ``zoom``, a second row shows one square region of every panel
    enlarged ``zoom`` times (nearest neighbour), and a box marks that region on the full images: differences
    between methods are seen there, not at full size.

    Args:
        path (str): Output file (PNG).
        panels (Sequence[tuple[str, ndarray]]): (title, image) pairs; images of shape (H, W, 3) RGB, float in
            [0, 1] (clipped) or uint8, all of one size when zooming.
        dpi (int): Resolution. Default: 100.
        min_panel_inches (float): Smallest panel width. Default: 2.5.
        zoom (int | None): Enlargement of the crops; None or 0: no crop row. Default: 3.
        region (tuple[int, int, int] | None): (top, left, side) of the crop; None: :func:`zoom_region` of the
            panel titled ``Bicubic``/``bicubic`` against the one titled ``GT`` when both exist, else of the last
            panel alone (most detailed window).
    """
    if not panels:
        raise ValueError('save_comparison needs at least one (title, image) panel')
    images = []
    for title, img in panels:
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'panel "{title}": expected an RGB image of shape (H, W, 3), got {img.shape}')
        images.append(img if img.dtype == np.uint8 else np.clip(img, 0, 1))
    height = max(img.shape[0] for img in images)
    width = max(img.shape[1] for img in images)
    zoom = zoom if zoom and all(img.shape == images[0].shape for img in images) else None
    if zoom and region is None:
        titles = [title.split('\n')[0].lower() for title, _ in panels]
        baseline = next((img for t, img in zip(titles, images) if t.startswith('bicubic')), None)
        reference = next((img for t, img in zip(titles, images) if t == 'gt'), None)
        if baseline is None or reference is None:
            baseline, reference = images[-1], None
        region = zoom_region(baseline, reference, size=max(8, min(height, width) // (2 * zoom) * 2))
    panel_w = max(width / dpi, min_panel_inches)
    panel_h = panel_w * height / width
    rows = 2 if zoom else 1
    fig = new_figure(panel_w * len(panels), (panel_h + 0.6) * rows)
    axes = np.atleast_2d(fig.subplots(rows, len(panels), squeeze=False))
    for column, ((title, _), img) in enumerate(zip(panels, images)):
        ax = axes[0, column]
        ax.imshow(img, interpolation='nearest')
        ax.set_title(title, fontsize=9)
        ax.axis('off')
        if zoom and title.lower().startswith('kernel'):
            axes[1, column].axis('off')  # a kernel picture has no detail to zoom into
        elif zoom:
            top, left, side = region
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor='yellow', lw=1.5))
            crop = img[top:top + side, left:left + side]
            crop = np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1)
            axes[1, column].imshow(crop, interpolation='nearest')
            axes[1, column].set_title(f'{" ".join(title.splitlines())} (x{zoom} crop)', fontsize=8)
            axes[1, column].axis('off')
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)


def plot_psnr_vs_steps(curves, path, title='PSNR vs adaptation steps'):
    """Plots PSNR against the number of adaptation steps, one line per method; numbers draw horizontal lines.

    Args:
        curves (dict): Label -> ``{steps: psnr}``, a sequence of ``(steps, psnr)`` pairs, or one number (a method
            without steps, e.g. bicubic or ZSSR, drawn as a dashed horizontal line).
        path (str): Output file (PNG).
        title (str): Figure title.
    """
    if not curves:
        raise ValueError('plot_psnr_vs_steps needs at least one curve')
    fig = new_figure(6, 4)
    ax = fig.subplots()
    for label, curve in curves.items():
        if np.isscalar(curve):
            ax.axhline(float(curve), linestyle='--', linewidth=1, label=label, color=f'C{len(ax.lines)}')
            continue
        points = sorted(curve.items() if isinstance(curve, dict) else curve)
        steps, psnr = zip(*points)
        ax.plot(steps, psnr, marker='o', label=label)
    ax.set_xlabel('adaptation steps')
    ax.set_ylabel('PSNR (dB)')
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
