"""Mask2Former-style set loss: point sampling, pairwise costs, Hungarian matching, fixed slots."""
import torch

from ausm.model import Prediction
from ausm.train.batch import ClipTargets
from ausm.train.losses import (LossConfig, SetCriterion, dice_loss, pairwise_mask_cost,
                               point_sample, uncertain_points)


class FakeModel(torch.nn.Module):
    """Class heads only: the embeddings ARE the class logits (identity head)."""

    def __init__(self, k=2):
        super().__init__()
        head = torch.nn.Linear(k, k, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.eye(k))
        self.class_heads = torch.nn.ModuleDict({"agnostic": head})

    def class_logits(self, embs, head="agnostic"):
        return self.class_heads[head](embs)


def test_point_sample_corners_and_centres():
    x = torch.arange(4.0).view(1, 2, 2)  # pixel centres at 0.25 / 0.75
    pts = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75], [0.5, 0.5]]])
    torch.testing.assert_close(point_sample(x, pts), torch.tensor([[0.0, 1.0, 2.0, 3.0, 1.5]]))


def test_uncertain_points_prefer_the_boundary():
    logits = torch.full((1, 32, 32), -10.0)
    logits[:, :, 16:] = 10.0
    logits[:, :, 12:20] = 0.0  # uncertain band: a quarter of the width
    pts = uncertain_points(logits, 100, oversample=3.0, importance=0.75, generator=torch.Generator().manual_seed(0))
    assert pts.shape == (1, 100, 2)
    band = lambda p: ((p[:, 0] > 11.5 / 32) & (p[:, 0] < 20.5 / 32)).float().mean()
    assert band(pts[0, :75]) > 0.85  # importance points: on the band
    assert band(pts[0, 75:]) < 0.6  # the rest: uniform


def test_pairwise_costs_and_dice():
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    good = torch.tensor([[20.0, 20.0, -20.0, -20.0]])
    bce, dice = pairwise_mask_cost(torch.cat([good, -good]), t)
    assert bce.shape == (2, 2) and bce[0, 0] < 1e-6 and bce[0, 1] > 5 and bce[1, 1] < 1e-6
    assert dice[0, 0] < 1e-6 and dice[0, 1] > 0.6
    assert dice_loss(good, t[:1]).item() < 1e-6


def _targets(masks, det_target, track_active, visible, det_enabled=True):
    B, n = masks.shape[:2]
    return ClipTargets(masks=masks, classes=torch.zeros(B, n, dtype=torch.long),
                       slot_valid=torch.ones(B, n, dtype=torch.bool), track_active=track_active,
                       det_target=det_target, visible=visible, det_enabled=torch.tensor([det_enabled] * B),
                       heads=["agnostic"] * B)


def test_hungarian_matching_finds_the_permuted_detections():
    """Three detection queries, two targets: queries 2 and 0 predict targets 0 and 1 exactly."""
    H = W = 16
    tgt = torch.zeros(1, 2, 1, H, W)
    tgt[0, 0, 0, :8] = 1
    tgt[0, 1, 0, 8:] = 1
    masks = torch.full((1, 1, 3, H, W), -20.0)
    masks[0, 0, 2, :8] = 20.0
    masks[0, 0, 0, 8:] = 20.0
    embs = torch.tensor([[[[10.0, -10.0], [-10.0, 10.0], [10.0, -10.0]]]])  # q1 says no-object
    pred = Prediction(embs=[embs], masks=[masks], num_tracks=0)
    t = _targets(tgt, det_target=torch.ones(1, 1, 2, dtype=torch.bool),
                 track_active=torch.zeros(1, 1, 2, dtype=torch.bool), visible=torch.ones(1, 1, 2, dtype=torch.bool))
    crit = SetCriterion(LossConfig(num_points=256, importance=0.0))
    out = crit(FakeModel(), pred, t, torch.Generator().manual_seed(0))
    # only the bilinear half-pixel boundary band costs anything (uniform points)
    assert out["loss_bce"].item() < 1.0 and out["loss_class"].item() < 1e-3
    # permuting the queries gives the same loss: matching, not a fixed order
    perm = [1, 2, 0]
    out2 = crit(FakeModel(), Prediction([embs[:, :, perm]], [masks[:, :, perm]], 0), t,
                torch.Generator().manual_seed(0))
    torch.testing.assert_close(out2["loss"], out["loss"], rtol=0.05, atol=0)  # points differ per row
    # a prediction set where the mask-carrying queries say "no-object" is much worse
    bad = embs.clone()
    bad[0, 0, [0, 2]] = torch.tensor([-10.0, 10.0])
    out3 = crit(FakeModel(), Prediction([bad], [masks], 0), t, torch.Generator().manual_seed(0))
    assert out3["loss"].item() > out["loss"].item() + 5


def test_tracks_use_the_fixed_slot_and_absent_objects_are_no_object():
    H = W = 8
    tgt = torch.zeros(1, 2, 1, H, W)
    tgt[0, 0, 0, :4] = 1
    # slot 0 predicts instance 0; slot 1 (instance 1, absent) predicts an object → class penalty
    masks = torch.full((1, 1, 2 + 1, H, W), -20.0)
    masks[0, 0, 0, :4] = 20.0
    good_embs = torch.tensor([[[[10.0, -10.0], [-10.0, 10.0], [-10.0, 10.0]]]])
    t = _targets(tgt, det_target=torch.zeros(1, 1, 2, dtype=torch.bool),
                 track_active=torch.ones(1, 1, 2, dtype=torch.bool),
                 visible=torch.tensor([[[True, False]]]), det_enabled=False)
    crit = SetCriterion(LossConfig(num_points=64, importance=0.0))
    good = crit(FakeModel(), Prediction([good_embs], [masks], 2), t)
    assert good["loss_class"].item() < 1e-3 and good["loss_bce"].item() < 1.0
    bad_embs = good_embs.clone()
    bad_embs[0, 0, 1] = torch.tensor([10.0, -10.0])  # absent object predicted as present
    assert crit(FakeModel(), Prediction([bad_embs], [masks], 2), t)["loss_class"].item() > 1.0
    # swapping the slots' masks is penalised: no matching for tracks
    swapped = masks[:, :, [1, 0, 2]]
    assert crit(FakeModel(), Prediction([good_embs], [swapped], 2), t)["loss_bce"].item() > 5.0


def test_deep_supervision_sums_every_layer():
    H = W = 8
    tgt = torch.zeros(1, 1, 1, H, W)
    tgt[0, 0, 0] = 1  # full mask: the loss does not depend on where points fall
    masks = torch.zeros(1, 1, 2, H, W)
    embs = torch.zeros(1, 1, 2, 2)
    t = _targets(tgt, det_target=torch.zeros(1, 1, 1, dtype=torch.bool),
                 track_active=torch.ones(1, 1, 1, dtype=torch.bool), visible=torch.ones(1, 1, 1, dtype=torch.bool))
    one = SetCriterion(LossConfig(num_points=64))(FakeModel(), Prediction([embs], [masks], 1), t)["loss"]
    three = SetCriterion(LossConfig(num_points=64))(FakeModel(), Prediction([embs] * 3, [masks] * 3, 1), t)["loss"]
    torch.testing.assert_close(three, 3 * one)
    last = SetCriterion(LossConfig(num_points=64, deep_supervision=False))(
        FakeModel(), Prediction([embs] * 3, [masks] * 3, 1), t)["loss"]
    torch.testing.assert_close(last, one)
