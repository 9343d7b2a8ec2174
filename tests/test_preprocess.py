"""Teacher-forcing Preprocess (Algorithm 2; spec §5): switch frames, prompts, absent objects."""
import pytest
import torch

from ausm.train.batch import preprocess, sample_switch_frames

H, W, T = 16, 16, 5
HW = (2, 2)


def clip_masks():
    """Instance 0 visible on every frame; instance 1 absent on frames 0 and 3."""
    m = torch.zeros(2, T, H, W)
    for t in range(T):
        m[0, t, :8, :8] = 1  # top-left quadrant → grid cell 0
        m[1, t, 8:, 8:] = 1  # bottom-right → grid cell 3
    m[1, 0] = 0
    m[1, 3] = 0
    return m


def test_prompted_instance_is_tracked_from_the_first_frame():
    tf = preprocess(clip_masks(), HW, num_ids=10, switch=torch.tensor([0, 2]))
    # instance 0 (s=0): track query on every frame, never a detection target
    assert tf.track_active[:, 0].all()
    assert not tf.det_target[:, 0].any()
    # M_0 = y_1 painted on X_0; M_k = y_k (0-based frame k-1) for k >= 1
    assert tf.hist_masks[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert tf.hist_masks[:, 0, 0].tolist() == [1.0] * T


def test_switch_frame_semantics_and_absent_objects():
    tf = preprocess(clip_masks(), HW, num_ids=10, switch=torch.tensor([0, 2]))
    # instance 1 (s=2, i.e. frame t=2 → 0-based 1): detection target for t <= 2 where visible,
    # i.e. 0-based frames {1} (frame 0 it is absent); history from M_2 (0-based row 2 = frame 1)
    assert tf.det_target[:, 1].tolist() == [False, True, False, False, False]
    assert tf.track_active[:, 1].tolist() == [False, False, True, True, True]
    assert tf.hist_masks[:, 1, 3].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]  # row 4 = frame 3: absent → empty
    # tracking target on frame 3 is "no-object": visible is False there while the slot stays active
    assert tf.visible[:, 1].tolist() == [False, True, True, False, True]
    assert tf.track_active[3, 1]


def test_detection_only_instance():
    tf = preprocess(clip_masks(), HW, num_ids=10, switch=torch.tensor([T, T]))
    assert not tf.track_active.any()
    assert tf.hist_masks.abs().sum() == 0
    assert tf.det_target[:, 0].all()
    assert tf.det_target[:, 1].tolist() == [False, True, True, False, True]


def test_ids_are_distinct_and_in_range():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        tf = preprocess(torch.ones(7, 2, 8, 8), (1, 1), num_ids=7, generator=g)
        assert sorted(tf.id_index.tolist()) == list(range(7))


def test_errors():
    with pytest.raises(ValueError, match="exceed"):
        preprocess(torch.ones(5, 2, 8, 8), (1, 1), num_ids=4)
    with pytest.raises(ValueError, match="switch"):
        preprocess(torch.ones(2, 3, 8, 8), (1, 1), num_ids=4, switch=torch.tensor([0, 4]))


def test_sample_switch_frames_distribution():
    g = torch.Generator().manual_seed(0)
    vis = torch.tensor([[True] * 4, [False, True, False, True]])
    # prompt_prob 1: an instance visible on frame 0 is a prompt; one that is not falls back
    s = sample_switch_frames(vis, prompt_prob=1.0, detect_only_prob=0.0, generator=g)
    assert s[0] == 0 and s[1] in (2, 4)
    counts = torch.zeros(5)
    for _ in range(400):
        s = sample_switch_frames(vis, prompt_prob=0.0, detect_only_prob=0.0, generator=g)
        counts[s[0]] += 1
        assert s[1].item() in (2, 4)  # only frames where it is visible
    assert counts[0] == 0 and (counts[1:] > 60).all()  # uniform over 1..4
