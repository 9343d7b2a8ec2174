"""Tests for the DAVIS region similarity J (ausm.eval.davis)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ausm.eval.davis import jaccard, sequence_j


def mask(h, w, *cells) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for y, x in cells:
        m[y, x] = True
    return m


def test_both_empty_is_one():
    z = np.zeros((4, 5), bool)
    assert jaccard(z, z) == 1.0


def test_one_empty_is_zero():
    z = np.zeros((4, 5), bool)
    m = mask(4, 5, (1, 1), (2, 3))
    assert jaccard(m, z) == 0.0
    assert jaccard(z, m) == 0.0


def test_identical_is_one():
    m = mask(4, 5, (0, 0), (3, 4), (2, 2))
    assert jaccard(m, m) == 1.0


def test_known_values():
    # 4 predicted pixels, 4 ground-truth pixels, 2 shared → 2 / 6
    p = np.zeros((4, 4), bool)
    g = np.zeros((4, 4), bool)
    p[0, :] = True
    g[0, 2:] = True
    g[1, :2] = True
    assert jaccard(p, g) == pytest.approx(2 / 6)
    # prediction inside the ground truth: |P| / |G|
    g2 = np.ones((4, 4), bool)
    assert jaccard(p, g2) == pytest.approx(4 / 16)
    # disjoint
    assert jaccard(p, ~p) == 0.0
    # symmetric
    assert jaccard(g, p) == jaccard(p, g)


def test_integer_masks_are_binarised():
    p = np.array([[0, 3], [1, 0]])
    g = np.array([[0, 1], [0, 0]], dtype=np.uint8)
    assert jaccard(p, g) == pytest.approx(1 / 2)


def test_void_pixels_are_excluded():
    p = np.zeros((2, 4), bool)
    g = np.zeros((2, 4), bool)
    p[0, :] = True      # 4 px
    g[0, :2] = True     # 2 px
    assert jaccard(p, g) == pytest.approx(2 / 4)
    void = np.zeros((2, 4), bool)
    void[0, 2:] = True  # the prediction's false positives are void
    assert jaccard(p, g, void) == 1.0
    # void covering everything of both masks → both empty → 1
    assert jaccard(p, g, np.ones((2, 4), bool)) == 1.0
    # void only on background changes nothing
    assert jaccard(p, g, ~(p | g)) == pytest.approx(2 / 4)


def test_size_mismatch_raises():
    with pytest.raises(ValueError, match="differ in size"):
        jaccard(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError):
        sequence_j([np.zeros((2, 2))] * 3, [np.zeros((2, 2))] * 2, [1])


def test_returns_python_float():
    assert type(jaccard(mask(2, 2, (0, 0)), mask(2, 2, (0, 0), (1, 1)))) is float


def seq_masks():
    """4 frames, 1 object: J per frame = 0, 1, 1/2, 0."""
    g = [np.array([[1, 0], [0, 0]]), np.array([[1, 1], [0, 0]]), np.array([[1, 1], [0, 0]]),
         np.array([[0, 0], [1, 1]])]
    p = [np.array([[0, 1], [0, 0]]), np.array([[1, 1], [0, 0]]), np.array([[1, 0], [0, 0]]),
         np.array([[1, 1], [0, 0]])]
    return p, g


def test_sequence_j_semi_excludes_first_and_last():
    p, g = seq_masks()
    assert sequence_j(p, g, [1]) == {1: pytest.approx((1 + 0.5) / 2)}
    assert sequence_j(p, g, [1], first_last_excluded=True)[1] == pytest.approx(0.75)


def test_sequence_j_all_frames():
    p, g = seq_masks()
    assert sequence_j(p, g, [1], first_last_excluded=False)[1] == pytest.approx((0 + 1 + 0.5 + 0) / 4)


def test_sequence_j_multiple_objects_and_void():
    g = [np.array([[1, 2, 255]]), np.array([[1, 2, 255]]), np.array([[1, 2, 255]])]
    p = [np.array([[0, 0, 0]]), np.array([[1, 1, 1]]), np.array([[0, 0, 0]])]
    out = sequence_j(p, g, [1, 2])  # only the middle frame is scored
    assert out[1] == pytest.approx(1 / 2)  # pred 1 on {0, 1} (void pixel 2 dropped), gt 1 on {0}
    assert out[2] == 0.0
    # without void handling, the void pixel counts as a false positive
    assert sequence_j(p, g, [1], void_id=None)[1] == pytest.approx(1 / 3)


def test_sequence_j_object_absent_everywhere_scores_one():
    g = [np.zeros((2, 2), int)] * 3
    p = [np.zeros((2, 2), int)] * 3
    assert sequence_j(p, g, [5]) == {5: 1.0}


def test_sequence_j_too_short_for_semi():
    g = [np.ones((2, 2), int)] * 2
    out = sequence_j(g, g, [1])
    assert math.isnan(out[1])
    assert sequence_j(g, g, [1], first_last_excluded=False) == {1: 1.0}
