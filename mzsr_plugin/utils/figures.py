"""Figures of results: side-by-side image comparisons and PSNR-vs-steps curves.

Figures are drawn on matplotlib's Agg canvas directly (no ``pyplot``), so they work without a display and do not
change the backend or state of a caller that uses ``pyplot`` itself.
"""
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _new_figure(width, height):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_comparison(path, panels, dpi=100, min_panel_inches=2.5):
    """Saves images side by side, each under its title, pixels shown unsmoothed.

    Each panel is at least as many inches as its image has pixels at ``dpi`` (so the image is not downscaled)
    and at least ``min_panel_inches`` wide.

    Args:
        path (str): Output file (PNG).
        panels (Sequence[tuple[str, ndarray]]): (title, image) pairs; images of shape (H, W, 3) RGB, float in
            [0, 1] (clipped) or uint8.
        dpi (int): Resolution. Default: 100.
        min_panel_inches (float): Smallest panel width. Default: 2.5.
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
    panel_w = max(width / dpi, min_panel_inches)
    panel_h = panel_w * height / width
    fig = _new_figure(panel_w * len(panels), panel_h + 0.6)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, _), img in zip(axes, panels, images):
        ax.imshow(img, interpolation='nearest')
        ax.set_title(title, fontsize=9)
        ax.axis('off')
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
    fig = _new_figure(6, 4)
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
