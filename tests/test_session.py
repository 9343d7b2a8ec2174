"""Tests for the streaming inference session (ausm.inference.session)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import box_mask, make_model

from ausm.errors import InputError
from ausm.inference import FrameResult, Session, propagate

H, W = 48, 80


@pytest.fixture
def m3():
    return box_mask(H, W, 5, 20, 5, 30)


@pytest.fixture
def m7():
    return box_mask(H, W, 25, 45, 40, 75)


@pytest.fixture
def m5():
    return box_mask(H, W, 2, 12, 50, 70)


def random_frames(n: int, seed: int = 0, h: int = H, w: int = W) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def prompted(model, m3, m7, **kw) -> Session:
    s = Session(model, **kw)
    s.add_prompt(0, 3, m3)
    s.add_prompt(0, 7, m7)
    return s


def check_consistent(r: FrameResult):
    """Invariants of one FrameResult at the 48x80 input resolution."""
    n = len(r.obj_ids)
    assert r.masks.shape == (n, H, W) and r.masks.dtype == np.bool_
    assert r.scores.shape == (n,) and r.scores.dtype == np.float32
    assert np.all((r.scores >= 0) & (r.scores <= 1))
    assert r.index_mask.shape == (H, W) and r.index_mask.dtype == np.uint16
    assert len(set(r.obj_ids)) == n
    # index mask: 0 exactly where no object mask is on; otherwise an object whose mask is on
    assert np.array_equal(r.index_mask == 0, ~r.masks.any(0) if n else np.ones((H, W), bool))
    for i, o in enumerate(r.obj_ids):
        assert np.all(r.masks[i][r.index_mask == o])
    assert set(np.unique(r.index_mask).tolist()) <= {0, *r.obj_ids}


# ------------------------------------------------------------------ prompted sessions
def test_prompted_first_frame_is_the_prompt(small_model, frames, m3, m7):
    s = prompted(small_model, m3, m7)
    assert s.detect_new_objects is False  # prompts given before the first frame
    r0 = s.step(frames[0])
    check_consistent(r0)
    assert r0.frame_idx == 0
    assert r0.obj_ids == [3, 7]
    assert r0.new_obj_ids == [3, 7]
    assert np.array_equal(r0.masks[0], m3)
    assert np.array_equal(r0.masks[1], m7)
    assert np.array_equal(r0.index_mask, 3 * m3 + 7 * m7)
    np.testing.assert_array_equal(r0.scores, [1.0, 1.0])
    assert s.frame_idx == 1
    assert s.obj_ids == [3, 7]
    for k in range(1, 4):
        r = s.step(frames[k])
        check_consistent(r)
        assert r.frame_idx == k
        assert r.obj_ids == [3, 7]
        assert r.new_obj_ids == []


def test_tensor_frames_match_uint8_frames(small_model, frames, m3, m7):
    a = prompted(small_model, m3, m7)
    b = prompted(small_model, m3, m7)
    for f in frames[:3]:
        ra = a.step(f)
        rb = b.step(torch.from_numpy(f).permute(2, 0, 1).float() / 255.0)
        assert np.array_equal(ra.masks, rb.masks)
        np.testing.assert_allclose(ra.scores, rb.scores, rtol=1e-5, atol=1e-6)


def test_add_object_mid_video(small_model, frames, m3, m7, m5):
    s = prompted(small_model, m3, m7)
    s.step(frames[0])
    s.add_prompt(2, 5, m5)  # a future frame
    r1 = s.step(frames[1])
    assert r1.obj_ids == [3, 7] and r1.new_obj_ids == []
    r2 = s.step(frames[2])
    check_consistent(r2)
    assert r2.obj_ids == [3, 7, 5]
    assert r2.new_obj_ids == [5]
    assert np.array_equal(r2.masks[2], m5)
    assert r2.scores[2] == 1.0
    r3 = s.step(frames[3])
    check_consistent(r3)
    assert r3.obj_ids == [3, 7, 5] and r3.new_obj_ids == []


def test_reprompt_existing_object_replaces_its_mask(small_model, frames, m3, m7, m5):
    s = prompted(small_model, m3, m7)
    s.step(frames[0])
    s.add_prompt(1, 3, m5)
    r1 = s.step(frames[1])
    assert r1.obj_ids == [3, 7]
    assert r1.new_obj_ids == []
    assert np.array_equal(r1.masks[0], m5)
    assert r1.scores[0] == 1.0


def test_remove(small_model, frames, m3, m7):
    s = prompted(small_model, m3, m7)
    s.step(frames[0])
    s.remove(3)
    assert s.obj_ids == [7]
    r = s.step(frames[1])
    check_consistent(r)
    assert r.obj_ids == [7]
    assert r.masks.shape == (1, H, W)
    assert 3 not in np.unique(r.index_mask)
    with pytest.raises(InputError):
        s.remove(3)
    with pytest.raises(InputError, match="unknown object id 42"):
        s.remove(42)


def test_remove_frees_an_id():
    model = make_model(0, num_ids=2)
    f = random_frames(3)
    a, b, c = box_mask(H, W, 0, 10, 0, 10), box_mask(H, W, 20, 30, 20, 30), box_mask(H, W, 35, 45, 60, 75)
    s = Session(model)
    s.add_prompt(0, 3, a)
    s.add_prompt(0, 7, b)
    s.step(f[0])
    s.add_prompt(1, 9, c)
    with pytest.raises(InputError, match="free ID"):
        s.step(f[1])  # both ID vectors are taken
    # the failed step changed nothing
    assert s.frame_idx == 1 and s.obj_ids == [3, 7]
    s.remove(7)
    r = s.step(f[1])  # the freed ID vector takes the pending prompt
    assert r.obj_ids == [3, 9]
    assert r.new_obj_ids == [9]
    assert np.array_equal(r.masks[1], c)
    assert s.frame_idx == 2


def test_too_many_prompts_on_first_frame():
    model = make_model(0, num_ids=2)
    s = Session(model)
    for o in (1, 2, 3):
        s.add_prompt(0, o, box_mask(H, W, 0, 10, 10 * o, 10 * o + 5))
    with pytest.raises(InputError, match="free ID"):
        s.step(random_frames(1)[0])
    assert s.frame_idx == 0 and s.obj_ids == []


def test_reset_empties_everything(small_model, frames, m3, m7, m5):
    ref = [prompted(small_model, m3, m7)]
    ref_out = [ref[0].step(f) for f in frames[:3]]
    fresh_nbytes = Session(small_model).state_nbytes()

    s = prompted(small_model, m3, m7)
    for f in frames[:2]:
        s.step(f)
    s.add_prompt(4, 5, m5)  # pending prompt, must be forgotten too
    s.reset()
    assert s.frame_idx == 0
    assert s.obj_ids == []
    assert s.state_nbytes() == fresh_nbytes
    assert s.detect_new_objects is True  # no prompts any more: unprompted defaults apply
    # the frame size is forgotten: a new video of another size is accepted
    s2 = Session(small_model, detect_new_objects=False)
    s2.add_prompt(2, 5, m5)
    s2.step(frames[0])
    s2.reset()
    for f in random_frames(5, h=40, w=64):
        r = s2.step(f)
        assert r.obj_ids == [] and r.masks.shape == (0, 40, 64)
        assert not r.index_mask.any()
    # a reset session reproduces a fresh one exactly (same seed, same ID draws)
    s.add_prompt(0, 3, m3)
    s.add_prompt(0, 7, m7)
    for f, r_ref in zip(frames[:3], ref_out):
        r = s.step(f)
        assert r.obj_ids == r_ref.obj_ids
        assert np.array_equal(r.masks, r_ref.masks)
        np.testing.assert_array_equal(r.scores, r_ref.scores)


# ------------------------------------------------------------------ input errors
def test_add_prompt_errors(small_model, frames, m3, m7):
    s = Session(small_model)
    with pytest.raises(InputError, match="empty"):
        s.add_prompt(0, 3, np.zeros((H, W), bool))
    with pytest.raises(InputError, match="obj_id"):
        s.add_prompt(0, 0, m3)
    with pytest.raises(InputError, match="obj_id"):
        s.add_prompt(0, 65536, m3)
    with pytest.raises(InputError, match="obj_id"):
        s.add_prompt(0, -2, m3)
    with pytest.raises(InputError, match="2-D"):
        s.add_prompt(0, 3, np.ones((H, W, 3), bool))
    s.add_prompt(0, 3, m3)
    s.step(frames[0])
    s.step(frames[1])
    with pytest.raises(InputError, match="size"):
        s.add_prompt(2, 7, np.ones((H + 1, W), bool))
    with pytest.raises(InputError, match="already processed"):
        s.add_prompt(1, 7, m7)
    with pytest.raises(InputError, match="already processed"):
        s.add_prompt(0, 3, m3)
    # nothing was registered by the failed calls
    r = s.step(frames[2])
    assert r.obj_ids == [3] and r.new_obj_ids == []


def test_wrong_size_prompt_before_first_frame(small_model, frames):
    s = Session(small_model)
    s.add_prompt(0, 3, np.ones((H // 2, W // 2), bool))  # the frame size is not known yet
    with pytest.raises(InputError, match="size"):
        s.step(frames[0])


def test_frame_errors(small_model, frames, m3):
    s = Session(small_model)
    s.add_prompt(0, 3, m3)
    s.step(frames[0])
    with pytest.raises(InputError, match="stream started at 48x80"):
        s.step(np.zeros((H, W + 32, 3), np.uint8))
    with pytest.raises(InputError):
        s.step(np.zeros((H, W), np.uint8))
    with pytest.raises(InputError):
        s.step(torch.zeros(H, W, 3))
    with pytest.raises(InputError):
        s.step([[0, 0, 0]])
    assert s.frame_idx == 1  # a rejected frame does not advance the stream
    assert s.step(frames[1]).frame_idx == 1


def test_session_argument_errors(small_model):
    with pytest.raises(InputError, match="class head"):
        Session(small_model, class_head="coco")
    with pytest.raises(InputError, match="fg_threshold"):
        Session(small_model, fg_threshold=1.5)
    with pytest.raises(InputError, match="fg_threshold"):
        Session(small_model, fg_threshold=0.0)


# ------------------------------------------------------------------ unprompted sessions
def test_unprompted_detects_at_most_num_ids(small_model):
    n_ids = small_model.cfg.num_ids
    s = Session(small_model, detect_new_objects=True, fg_threshold=0.01)
    assert s.detect_new_objects is True
    prev: list[int] = []
    seen_new: list[int] = []
    for k, f in enumerate(random_frames(5, seed=1)):
        r = s.step(f)
        check_consistent(r)
        assert len(r.obj_ids) <= n_ids
        assert r.obj_ids[: len(prev)] == prev  # tracks are never dropped or reordered
        assert r.new_obj_ids == r.obj_ids[len(prev):]
        new_scores = r.scores[len(prev):]
        assert np.all(new_scores > 0.01)  # a detection becomes a track only above the threshold
        seen_new += r.new_obj_ids
        prev = r.obj_ids
    assert len(set(seen_new)) == len(seen_new)
    assert 0 < len(prev)
    # with a 1 % threshold a random model fires on (almost) every query: the ID buffer fills up
    assert len(prev) == n_ids
    assert all(1 <= o < 65536 for o in prev)


def test_unprompted_detections_avoid_pending_prompt_ids(small_model, m5):
    s = Session(small_model, detect_new_objects=True, fg_threshold=0.01)
    s.add_prompt(1, 1, m5)  # client id 1 is reserved for the next frame
    f = random_frames(2, seed=1)
    r0 = s.step(f[0])
    assert len(r0.obj_ids) > 0 and 1 not in r0.obj_ids
    r1 = s.step(f[1])
    assert 1 in r1.new_obj_ids  # the prompted object is new, not a re-prompt of a detection
    assert np.array_equal(r1.masks[r1.obj_ids.index(1)], m5)
    assert r1.scores[r1.obj_ids.index(1)] == 1.0
    assert len(r1.obj_ids) <= small_model.cfg.num_ids


def test_default_detection_mode(small_model, m3):
    assert Session(small_model).detect_new_objects is True
    s = Session(small_model)
    s.add_prompt(0, 3, m3)
    assert s.detect_new_objects is False
    assert Session(small_model, detect_new_objects=False).detect_new_objects is False


# ------------------------------------------------------------------ state size, determinism
def test_state_size_is_constant(small_model, m3, m7, m5):
    s = prompted(small_model, m3, m7)
    assert s.state_nbytes() > 0
    sizes = {}
    for k, f in enumerate(random_frames(31, seed=2)):
        if k == 10:
            s.add_prompt(10, 5, m5)
        if k == 20:
            s.remove(7)
        s.step(f)
        sizes[k] = s.state_nbytes()
    assert sizes[2] == sizes[30]
    assert len(set(sizes.values())) == 1


def test_state_size_constant_unprompted(small_model):
    s = Session(small_model, detect_new_objects=True, fg_threshold=0.01)
    sizes = []
    for f in random_frames(8, seed=3):
        s.step(f)
        sizes.append(s.state_nbytes())
    assert len(set(sizes)) == 1


def test_deterministic(small_model, frames, m3, m7):
    def run(seed, **kw):
        s = prompted(small_model, m3, m7, seed=seed, **kw)
        return [s.step(f) for f in frames]

    a, b = run(0), run(0)
    for ra, rb in zip(a, b):
        assert ra.obj_ids == rb.obj_ids
        assert np.array_equal(ra.masks, rb.masks)
        assert np.array_equal(ra.index_mask, rb.index_mask)
        np.testing.assert_array_equal(ra.scores, rb.scores)
    # the seed drives the ID sampler: another seed picks other ID vectors → other predictions
    c = run(1)
    assert not all(np.array_equal(ra.scores, rc.scores) for ra, rc in zip(a[1:], c[1:]))

    def run_unprompted():
        s = Session(small_model, detect_new_objects=True, fg_threshold=0.01, seed=5)
        return [s.step(f) for f in frames[:3]]

    for ra, rb in zip(run_unprompted(), run_unprompted()):
        assert ra.obj_ids == rb.obj_ids and ra.new_obj_ids == rb.new_obj_ids
        assert np.array_equal(ra.masks, rb.masks)


def test_propagate(small_model, frames, m3, m7, m5):
    prompts = {0: {3: m3, 7: m7}, 2: {5: m5}}
    out = list(propagate(small_model, iter(frames), prompts))
    assert len(out) == len(frames)
    assert [r.frame_idx for r in out] == list(range(len(frames)))
    assert all(isinstance(r, FrameResult) for r in out)
    assert np.array_equal(out[0].masks, np.stack([m3, m7]))
    assert out[2].new_obj_ids == [5]
    assert out[-1].obj_ids == [3, 7, 5]
    # the same as a hand-driven session
    s = prompted(small_model, m3, m7)
    s.add_prompt(2, 5, m5)
    for f, r in zip(frames, out):
        ref = s.step(f)
        assert ref.obj_ids == r.obj_ids and np.array_equal(ref.masks, r.masks)
    # unprompted propagate, session kwargs passed through
    un = list(propagate(small_model, frames[:2], None, fg_threshold=0.01))
    assert len(un) == 2 and len(un[0].obj_ids) > 0
    assert list(propagate(small_model, [], prompts)) == []


def test_frames_without_tracks_then_a_late_prompt(small_model, frames, m5):
    """Frames with no object at all (nothing prompted yet, no detection) must not fail."""
    s = Session(small_model, detect_new_objects=False)
    s.add_prompt(2, 5, m5)
    for k in range(2):
        r = s.step(frames[k])
        check_consistent(r)
        assert r.obj_ids == [] and r.new_obj_ids == []
        assert r.masks.shape == (0, H, W) and r.scores.shape == (0,)
        assert not r.index_mask.any()
    r2 = s.step(frames[2])
    check_consistent(r2)
    assert r2.obj_ids == [5] and r2.new_obj_ids == [5]
    assert np.array_equal(r2.masks[0], m5)
    assert np.array_equal(r2.index_mask, 5 * m5)
    r3 = s.step(frames[3])
    check_consistent(r3)
    assert r3.obj_ids == [5]


def test_unprompted_without_detections(small_model, frames):
    s = Session(small_model, detect_new_objects=True, fg_threshold=0.999999)
    for f in frames[:3]:
        r = s.step(f)
        check_consistent(r)
        assert r.obj_ids == [] and not r.index_mask.any()


def test_class_scores_are_maxed_over_frames_and_named(frames):

    from conftest import make_model
    from ausm.inference import Session

    model = make_model(0, class_heads={"ytvis2019": 3}, class_names={"ytvis2019": ["cat", "dog", "fox"]})
    s = Session(model, detect_new_objects=True, class_head="ytvis2019", fg_threshold=0.01)
    seen = {}
    for f in frames[:4]:
        r = s.step(f)
        assert r.class_names == ["cat", "dog", "fox"]
        assert len(r.class_ids) == len(r.obj_ids) == len(r.class_scores)
        table = s.track_class_scores()
        for o, cid, cs in zip(r.obj_ids, r.class_ids, r.class_scores):
            assert table[o].shape == (3,) and table[o].argmax() == cid and abs(table[o].max() - cs) < 1e-6
            if o in seen:
                assert (table[o] >= seen[o] - 1e-7).all()  # max over frames never decreases
            seen[o] = table[o]
        assert r.boxes.shape == (len(r.obj_ids), 4)
    assert seen, "a random model with fg_threshold 0.01 detects something"


def test_replay_order_and_propagate_with_replay(small_model, frames):
    from ausm.inference import propagate, replay_order

    assert replay_order(4) == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert replay_order(1) == [0]
    prompt = np.zeros(frames[0].shape[:2], bool)
    prompt[10:30, 20:50] = True
    out = list(propagate(small_model, frames[:4], {0: {3: prompt}}, replay=True))
    assert [r.frame_idx for r in out] == [0, 1, 2, 3]
    assert all(r.obj_ids == [3] for r in out)
    plain = list(propagate(small_model, frames[:4], {0: {3: prompt}}))
    assert [r.frame_idx for r in plain] == [0, 1, 2, 3]
    with pytest.raises(InputError, match="frame 0"):
        list(propagate(small_model, frames[:4], {2: {3: prompt}}, replay=True))


def test_session_batch_equals_separate_sessions(small_model, frames):
    """Several streams in one network call give the same results as each stream alone."""
    from ausm.inference import SessionBatch

    def make(seed):
        s = Session(small_model, seed=seed, detect_new_objects=True, fg_threshold=0.3)
        return s

    p1 = np.zeros(frames[0].shape[:2], bool)
    p1[5:25, 10:40] = True
    p2 = np.zeros_like(p1)
    p2[20:40, 30:70] = True
    alone = [make(0), make(1), make(2)]
    batch = SessionBatch([make(0), make(1), make(2)])
    for group in (alone, batch.sessions):
        group[0].add_prompt(0, 1, p1)
        group[1].add_prompt(0, 4, p1)
        group[1].add_prompt(0, 5, p2)
        group[2].add_prompt(2, 9, p2)  # joins mid-stream; stream 2 starts with no objects
    streams = [frames[:5], frames[1:6], frames[::-1][:5]]
    for t in range(5):
        ref = [s.step(st[t]) for s, st in zip(alone, streams)]
        got = batch.step([st[t] for st in streams])
        for a, b in zip(ref, got):
            assert a.obj_ids == b.obj_ids and a.new_obj_ids == b.new_obj_ids
            assert np.array_equal(a.index_mask, b.index_mask)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    assert batch.state_nbytes() == sum(s.state_nbytes() for s in alone)
    with pytest.raises(InputError, match="frames for"):
        batch.step(frames[:2])


def test_index_mask_equals_argmax_of_positive_logits():
    """results.index_mask (one contiguous pass per object) == argmax over objects among positive logits,
    ties to the first object, 0 where no logit is positive (spec §7)."""
    from ausm.inference.results import index_mask

    g = torch.Generator().manual_seed(0)
    for n in (0, 1, 2, 7):
        lg = torch.randint(-3, 4, (n, 19, 23), generator=g).float()  # integer logits: many ties
        ids = torch.arange(5, 5 + n)
        want = torch.where((lg > 0).any(0), ids[lg.argmax(0)], 0) if n else torch.zeros(19, 23, dtype=torch.long)
        assert torch.equal(index_mask(lg, ids), want), n


def test_frame_masks_equal_a_full_resize():
    """results.frame_masks (each object resized only where its taps are positive) == F.interpolate of
    every logit map to the frame, > 0, and index_mask — bit for bit, prompt overrides included."""
    import torch.nn.functional as F

    from ausm.inference.results import PROMPT_LOGIT, frame_masks, index_mask

    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    for trial in range(12):
        n, h, w = int(rng.integers(1, 6)), int(rng.integers(4, 20)), int(rng.integers(4, 30))
        H, W = int(rng.integers(h, 120)), int(rng.integers(w, 200))
        low = torch.randn(n, h, w, generator=g) * 3 - (2 if trial % 2 else -1)  # small and large objects
        ids = torch.arange(7, 7 + n)
        over = {}
        if trial % 3 == 0:
            m = np.zeros((H, W), bool)
            m[H // 4:H // 2, W // 3:W // 2] = True
            over[n - 1] = m
        full = F.interpolate(low[None], size=(H, W), mode="bilinear", align_corners=False)[0]
        for i, m in over.items():
            full[i] = torch.where(torch.from_numpy(m), PROMPT_LOGIT, -PROMPT_LOGIT)
        masks, index = frame_masks(low, (H, W), over, ids)
        assert torch.equal(masks, full > 0), trial
        assert torch.equal(index, index_mask(full, ids)), trial
