"""Comparison figures: a row of zoomed crops of the region where bicubic is worst, marked on the full images."""
import cv2
import numpy as np
import pytest

from mzsr_plugin.utils.figures import save_comparison, zoom_region


def test_zoom_region_finds_the_largest_error_else_the_most_detail():
    rng = np.random.default_rng(0)
    gt = rng.random((60, 80, 3)) * 0.1
    bicubic = gt.copy()
    bicubic[30:40, 50:60] += 0.5  # the one badly reconstructed spot
    assert zoom_region(bicubic, gt, size=10) == (30, 50, 10)
    flat = np.zeros((60, 80, 3))
    flat[5:15, 10:20] = rng.random((10, 10, 3))  # texture only there
    top, left, side = zoom_region(flat, None, size=10)
    assert (top, left, side) == (5, 10, 10)
    assert zoom_region(flat, None, size=500)[2] == 60  # clipped to the image


def test_comparison_has_a_zoom_row_and_marks_the_region(tmp_path):
    rng = np.random.default_rng(1)
    gt = (rng.random((64, 64, 3)) * 0.2 + 0.4)
    bicubic = gt.copy()
    bicubic[8:18, 40:50] = 0.0
    panels = [('Bicubic\n20.00 dB', bicubic), ('MZSR 10 steps\n30.00 dB', gt * 0.99), ('GT', gt)]
    save_comparison(str(tmp_path / 'zoom.png'), panels, zoom=3)
    save_comparison(str(tmp_path / 'flat.png'), panels, zoom=None)
    zoomed, flat = cv2.imread(str(tmp_path / 'zoom.png')), cv2.imread(str(tmp_path / 'flat.png'))
    assert zoomed.shape[1] == flat.shape[1] and zoomed.shape[0] > 1.8 * flat.shape[0]
    # The yellow box (BGR: high G and R, low B) is drawn on the full images of the top row.
    top = zoomed[:zoomed.shape[0] // 2]
    yellow = (top[..., 2] > 200) & (top[..., 1] > 200) & (top[..., 0] < 80)
    assert yellow.sum() > 50


def test_panels_of_different_sizes_skip_the_zoom_row(tmp_path):
    save_comparison(str(tmp_path / 'mixed.png'), [('a', np.zeros((10, 10, 3))), ('b', np.zeros((20, 20, 3)))])
    assert cv2.imread(str(tmp_path / 'mixed.png')) is not None
    with pytest.raises(ValueError, match='expected an RGB image'):
        save_comparison(str(tmp_path / 'bad.png'), [('gray', np.zeros((10, 10)))])
