"""Box and point prompts through the universal model: candidate selection and its fallbacks."""
import numpy as np
import pytest
import torch

from ausm.errors import InputError
from ausm.inference import Session
from ausm.inference.prompting import GeometricPrompt, select_candidate


def _cands():
    m = torch.zeros(3, 40, 60, dtype=torch.bool)
    m[0, 5:15, 5:20] = True     # box (5, 5, 20, 15)
    m[1, 20:38, 30:58] = True   # box (30, 20, 58, 38)
    m[2, 20:38, 30:44] = True   # left half of candidate 1
    return m


def test_box_picks_the_best_fitting_candidate_and_falls_back_to_the_box():
    m, scores = _cands(), torch.tensor([0.9, 0.5, 0.8])
    sel, how, q = select_candidate(GeometricPrompt("box", np.array([29.0, 19.0, 58.0, 39.0])), m, scores)
    assert how == "candidate" and q == 1 and torch.equal(sel, m[1])
    sel, how, q = select_candidate(GeometricPrompt("box", np.array([29.0, 19.0, 45.0, 38.0])), m, scores)
    assert q == 2
    sel, how, q = select_candidate(GeometricPrompt("box", np.array([0.0, 30.0, 10.0, 40.0])), m, scores)
    assert how == "fallback" and q is None and sel.sum() == 100 and sel[30:40, 0:10].all()
    # two candidates fit the box (box IoU 1.0 and ~0.6): the model's confidence decides between them
    box = GeometricPrompt("box", np.array([30.0, 20.0, 58.0, 38.0]))
    assert select_candidate(box, m, torch.tensor([0.1, 0.2, 0.9]))[2] == 2
    assert select_candidate(box, m, torch.tensor([0.1, 0.6, 0.5]))[2] == 1


def test_points_contain_positives_and_exclude_negatives():
    m, scores = _cands(), torch.tensor([0.9, 0.8, 0.5])
    pos_only = GeometricPrompt("points", np.array([[35.0, 25.0]]), np.array([1]))
    assert select_candidate(pos_only, m, scores)[2] == 1  # both 1 and 2 contain it: higher score
    with_neg = GeometricPrompt("points", np.array([[35.0, 25.0], [50.0, 30.0]]), np.array([1, 0]))
    assert select_candidate(with_neg, m, scores)[2] == 2  # the negative point lies in candidate 1 only
    both = GeometricPrompt("points", np.array([[35.0, 25.0], [50.0, 30.0]]), np.array([1, 1]))
    assert select_candidate(both, m, scores)[2] == 1
    nowhere = GeometricPrompt("points", np.array([[2.0, 38.0]]), np.array([1]))
    sel, how, q = select_candidate(nowhere, m, scores)
    assert how == "fallback" and q is None and sel[38, 2] and 1 <= sel.sum() < 30


def test_session_box_and_point_prompts(small_model):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 80, 3), dtype=np.uint8) for _ in range(4)]
    s = Session(small_model)
    s.add_prompt(0, 5, box=(10, 8, 40, 30))
    s.add_prompt(2, 9, points=[[60, 40], [5, 5]], labels=[1, 0])
    r0 = s.step(frames[0])
    assert r0.obj_ids == [5] and r0.new_obj_ids == [5] and r0.masks[0].any()
    assert s.prompt_sources[(0, 5)] in ("candidate", "fallback")
    if s.prompt_sources[(0, 5)] == "fallback":
        assert r0.masks[0, 8:30, 10:40].all() and r0.masks[0].sum() == 22 * 30
    s.step(frames[1])
    r2 = s.step(frames[2])
    assert r2.obj_ids == [5, 9] and r2.new_obj_ids == [9]
    i = r2.obj_ids.index(9)
    assert r2.masks[i, 40, 60] and not r2.masks[i, 5, 5]
    r3 = s.step(frames[3])
    assert r3.obj_ids == [5, 9]


def test_prompt_argument_errors(small_model):
    s = Session(small_model)
    with pytest.raises(InputError, match="exactly one"):
        s.add_prompt(0, 1)
    with pytest.raises(InputError, match="exactly one"):
        s.add_prompt(0, 1, mask=np.ones((4, 4)), box=(0, 0, 1, 1))
    with pytest.raises(InputError, match="x1 > x0"):
        s.add_prompt(0, 1, box=(5, 5, 5, 9))
    with pytest.raises(InputError, match="positive"):
        s.add_prompt(0, 1, points=[[1, 1]], labels=[0])
    with pytest.raises(InputError, match="labels"):
        s.add_prompt(0, 1, points=[[1, 1]], labels=[2])
