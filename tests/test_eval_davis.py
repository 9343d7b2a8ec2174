"""DAVIS J&F (ausm.eval.davis): hand-made edge cases, an independent re-statement of the official
``davis2017-evaluation`` computation as an oracle, and the real OSVOS / RVOS predictions."""
from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ausm.errors import InputError
from ausm.eval.cli import add_eval_parser
from ausm.eval.davis import (
    _label_boundaries, boundary_tolerance, db_statistics, evaluate_davis, f_measure, format_table,
    score_sequence, seg2bmap,
)
from ausm.io.masks import save_index_png
from conftest import SHARED, needs_shared

DAVIS_ROOT = SHARED / "derived" / "davis2017_singleobj_root"
RESULTS = SHARED / "davis2017_val_predictions__davis2017-evaluation" / "results"
OSVOS = RESULTS / "semi-supervised" / "osvos"
RVOS = RESULTS / "unsupervised" / "rvos"


# -- an independent oracle: the official computation re-stated with its own primitives ----------------
# (the BSDS seg2bmap as shipped in vos-benchmark, dilation by cv2 with skimage's disk, per-object loops)
def _oracle_prims():
    cv2 = pytest.importorskip("cv2")
    morphology = pytest.importorskip("skimage.morphology")
    utils = pytest.importorskip("vos_benchmark.utils")
    return cv2, morphology.disk, utils._seg2bmap


def ref_j(gt, pred, void=None):
    keep = np.ones(gt.shape, bool) if void is None else ~void
    inter = np.count_nonzero(gt & pred & keep)
    union = np.count_nonzero((gt | pred) & keep)
    return 1.0 if union == 0 else inter / union


def ref_f(gt, pred, void=None, bound_th=0.008):
    cv2, disk, seg2bmap_ = _oracle_prims()
    if void is not None:
        gt, pred = gt & ~void, pred & ~void
    k = disk(np.ceil(bound_th * np.linalg.norm(pred.shape))).astype(np.uint8)
    bp = seg2bmap_(pred).astype(np.uint8)
    bg = seg2bmap_(gt).astype(np.uint8)
    n_fg, n_gt = int(bp.sum()), int(bg.sum())
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    prec = int((bp * cv2.dilate(bg, k)).sum()) / float(n_fg)
    rec = int((bg * cv2.dilate(bp, k)).sum()) / float(n_gt)
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def ref_stats(v):
    v = np.asarray(v, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edges = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.uint8)
        decay = np.nanmean(v[edges[0]: edges[1] + 1]) - np.nanmean(v[edges[3]: edges[4] + 1])
        return np.nanmean(v), np.nanmean(v > 0.5), decay


def ref_sequence(gts, preds, task):
    """[(object id, proposal, J per frame, F per frame)] in the official order."""
    from scipy.optimize import linear_sum_assignment

    gts = np.stack(gts).astype(np.int64)
    void = gts == 255
    gts[void] = 0
    n = int(gts[0].max())
    idx = list(range(1, len(gts) - 1)) if task == "semi" else list(range(len(gts)))
    preds = np.stack([preds[t] for t in idx]).astype(np.int64)
    gts, void = gts[idx], void[idx]
    if task == "semi":
        assert preds.max() <= n
        return [(o, None, np.array([ref_j(g == o, p == o) for g, p in zip(gts, preds)]),
                 np.array([ref_f(g == o, p == o) for g, p in zip(gts, preds)])) for o in range(1, n + 1)]
    R = max(int(preds.max()), n)
    jm = np.zeros((R, n, len(idx)))
    fm = np.zeros((R, n, len(idx)))
    for b in range(n):
        for a in range(R):
            for t in range(len(idx)):
                jm[a, b, t] = ref_j(gts[t] == b + 1, preds[t] == a + 1, void[t])
                fm[a, b, t] = ref_f(gts[t] == b + 1, preds[t] == a + 1, void[t])
    rows, cols = linear_sum_assignment(-(np.mean(jm, axis=2) + np.mean(fm, axis=2)) / 2)
    return [(c + 1, r + 1, jm[r, c], fm[r, c]) for r, c in zip(rows, cols)]


def same(a, b) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def assert_matches_oracle(gts, preds, task):
    got = score_sequence(gts, preds, task=task)
    ref = ref_sequence(gts, preds, task)
    assert [(o.object_id, o.proposal) for o in got] == [(o, p) for o, p, _, _ in ref]
    for o, (_, _, j, f) in zip(got, ref):
        np.testing.assert_array_equal(o.j, j)
        np.testing.assert_array_equal(o.f, f)
        for mine, theirs in zip((o.j_mean, o.j_recall, o.j_decay, o.f_mean, o.f_recall, o.f_decay),
                                (*ref_stats(j), *ref_stats(f))):
            assert same(mine, theirs)


# -- helpers ---------------------------------------------------------------------------------------------
def band(h, w, y0, y1):
    """A full-width horizontal band: touches the left and right image borders."""
    m = np.zeros((h, w), bool)
    m[y0:y1] = True
    return m


def blobs(rng, h, w, n_obj, n_frames, void=False):
    """A random index-mask sequence with moving rectangles (ids 1..n_obj) and optional void."""
    out = []
    pos = rng.integers(0, [h, w], size=(n_obj, 2))
    for _ in range(n_frames):
        m = np.zeros((h, w), np.uint8)
        pos = np.clip(pos + rng.integers(-4, 5, size=pos.shape), 0, [h - 1, w - 1])
        for o in range(n_obj):
            y, x = pos[o]
            dy, dx = rng.integers(1, h // 2), rng.integers(1, w // 2)
            m[y:y + dy, x:x + dx] = o + 1
        if void:
            y, x = rng.integers(0, [h, w])
            m[y:y + 3, x:x + 9] = 255
        out.append(m)
    return out


# -- primitives -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, r", [((480, 854), 8), ((720, 1280), 12), ((1080, 1920), 18), ((240, 427), 4)])
def test_tolerance_is_ceil_of_0008_diagonal(shape, r):
    assert boundary_tolerance(shape) == r


@pytest.mark.parametrize("shape, r", [((480, 854), 8), ((720, 1280), 12), ((1080, 1920), 18)])
def test_boundaries_exactly_r_apart_match_and_r_plus_1_do_not(shape, r):
    h, w = shape
    gt = band(h, w, 100, 300)  # touches the left and right borders: only horizontal boundaries
    assert f_measure(band(h, w, 100 + r, 300 + r), gt) == 1.0
    assert f_measure(band(h, w, 100 + r + 1, 300 + r + 1), gt) == 0.0
    # half the prediction's boundary within the tolerance: top edge r away, bottom edge r + 1
    p = band(h, w, 100 + r, 300 + r + 1)
    assert f_measure(p, gt) == pytest.approx(0.5)
    assert f_measure(p, gt) == ref_f(gt, p)


def test_seg2bmap_rules():
    m = np.zeros((4, 4), bool)
    m[1, 1] = True
    # the pixel itself and its upper / left / upper-left neighbours (they differ from their lower /
    # right / lower-right neighbour)
    assert sorted(map(tuple, np.argwhere(seg2bmap(m)))) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    full = np.ones((5, 6), bool)
    assert not seg2bmap(full).any()  # the image border is not a boundary
    last_row = np.zeros((5, 6), bool)
    last_row[-1] = True
    assert sorted(map(tuple, np.argwhere(seg2bmap(last_row)))) == [(3, x) for x in range(6)]
    corner = np.zeros((5, 6), bool)
    corner[-1, -1] = True
    assert sorted(map(tuple, np.argwhere(seg2bmap(corner)))) == [(3, 4), (3, 5), (4, 4)]


def test_seg2bmap_equals_official_and_label_boundaries_equal_seg2bmap():
    _, _, official = _oracle_prims()
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w = rng.integers(1, 12, size=2)
        lab = rng.integers(0, 4, size=(h, w)).astype(np.uint8)
        lab[rng.random((h, w)) < 0.3] = 0
        got = _label_boundaries(lab, [1, 2, 3])
        for o in (1, 2, 3):
            expect = official(lab == o).astype(bool)
            np.testing.assert_array_equal(seg2bmap(lab == o), expect)
            keys = got.get(o, np.zeros(0, int))
            np.testing.assert_array_equal(keys, np.flatnonzero(expect))


def test_empty_cases():
    z = np.zeros((48, 64), bool)
    m = band(48, 64, 10, 20)
    assert f_measure(z, z) == 1.0
    assert f_measure(m, z) == 0.0 and f_measure(z, m) == 0.0
    # a mask covering the whole image has no boundary: F(empty, full) = 1 (as the official tool), J = 0
    full = np.ones((48, 64), bool)
    assert f_measure(z, full) == 1.0
    # an object absent from both the ground truth and the prediction in a frame scores J = F = 1
    first = np.where(m, 1, 0).astype(np.uint8)
    empty = np.zeros((48, 64), np.uint8)
    (o,) = score_sequence([first, empty, empty, empty], [empty] * 4, task="semi")
    assert o.j.tolist() == [1.0, 1.0] and o.f.tolist() == [1.0, 1.0]


def test_db_statistics_bins():
    m, r, d = db_statistics(np.arange(10) / 10)
    assert m == pytest.approx(0.45) and r == pytest.approx(0.4)
    # bins [0:3], [2:6], [5:8], [7:10] → 0.1 − 0.8
    assert d == pytest.approx(0.1 - 0.8)
    assert all(math.isnan(v) for v in db_statistics([]))
    assert db_statistics([1.0]) == (1.0, 1.0, 0.0)


# -- protocols ---------------------------------------------------------------------------------------------
def test_void_ignored_in_semi_excluded_in_unsupervised():
    g = np.zeros((30, 40), np.uint8)
    g[5:15, 5:15] = 1
    g[5:15, 15:25] = 255  # void next to the object
    p = np.zeros((30, 40), np.uint8)
    p[5:15, 5:25] = 1     # the object + the void region
    gts, preds = [g] * 3, [p] * 3
    (semi,) = score_sequence(gts, preds, task="semi")
    assert semi.j.tolist() == [0.5]          # the official semi evaluation does not exclude void
    (uns,) = score_sequence(gts, preds, task="unsupervised")
    assert uns.j.tolist() == [1.0] * 3 and uns.f.tolist() == [1.0] * 3
    assert_matches_oracle(gts, preds, "semi")
    assert_matches_oracle(gts, preds, "unsupervised")


def test_year_2016_255_is_the_object():
    g = np.zeros((20, 30), np.uint8)
    g[3:12, 4:20] = 255
    p = (g > 0).astype(np.uint8)
    (o,) = score_sequence([g] * 4, [p] * 4, task="semi", year=2016)
    assert o.j.tolist() == [1.0, 1.0] and o.f.tolist() == [1.0, 1.0]
    # read as DAVIS-2017, the same mask is all void: no object at all
    assert score_sequence([g] * 4, [np.zeros_like(p)] * 4, task="semi", year=2017) == []


def test_object_appearing_at_frame_3():
    h, w = 24, 32
    gts, preds = [], []
    for t in range(6):
        g = np.zeros((h, w), np.uint8)
        g[2:8, 2:8] = 1
        if t >= 3:
            g[12:20, 12:24] = 2
        p = g.copy()
        if t == 4:
            p[p == 2] = 0  # object 2 missed at frame 4
        gts.append(g)
        preds.append(p)
    objs = score_sequence(gts, preds, task="semi", layout="youtube")
    assert [o.object_id for o in objs] == [1, 2]
    assert objs[0].frames == ["00001", "00002", "00003", "00004"]
    assert objs[1].frames == ["00003", "00004"]  # scored from its first annotated frame
    assert objs[1].j.tolist() == [1.0, 0.0] and objs[1].f.tolist() == [1.0, 0.0]
    # DAVIS layout: the objects are those of the first frame, and id 2 is refused in predictions
    with pytest.raises(InputError, match="predicted id 2"):
        score_sequence(gts, preds, task="semi", layout="davis")
    uns = score_sequence(gts, preds, task="unsupervised", layout="youtube")
    assert [(o.object_id, o.proposal, len(o.j)) for o in uns] == [(1, 1, 6), (2, 2, 3)]


def test_prediction_id_not_in_ground_truth():
    rng = np.random.default_rng(3)
    gts = blobs(rng, 30, 40, 2, 5)
    preds = [g.copy() for g in gts]
    preds[2][0:4, 0:4] = 7
    with pytest.raises(InputError, match="predicted id 7"):
        score_sequence(gts, preds, task="semi")
    # YouTube-VOS / MOSE layout: ids that are not objects are ignored
    clean = [np.where(p == 7, 0, p).astype(np.uint8) for p in preds]
    a = score_sequence(gts, preds, task="semi", layout="youtube")
    b = score_sequence(gts, clean, task="semi", layout="youtube")
    assert [(o.j_mean, o.f_mean) for o in a] == [(o.j_mean, o.f_mean) for o in b]
    # unsupervised: an extra proposal is just one more candidate for the matching
    assert_matches_oracle(gts, preds, "unsupervised")
    with pytest.raises(InputError, match="maximum number of proposals"):
        score_sequence(gts, [np.where(p == 7, 21, p).astype(np.uint8) for p in preds], task="unsupervised")


def test_hungarian_matching_and_labels():
    rng = np.random.default_rng(5)
    gts = blobs(rng, 40, 50, 2, 6)
    perm = {0: 0, 1: 3, 2: 1}  # object 1 → proposal 3, object 2 → proposal 1
    preds = [np.vectorize(perm.get, otypes=[np.uint8])(g) for g in gts]
    preds[1][30:36, 40:48] = 2  # a stray proposal
    got = score_sequence(gts, preds, task="unsupervised")
    assert sorted((o.object_id, o.proposal) for o in got) == [(1, 3), (2, 1)]
    assert all(o.j_mean > 0.8 for o in got)
    assert_matches_oracle(gts, preds, "unsupervised")


@pytest.mark.parametrize("seed", range(6))
def test_random_sequences_match_oracle(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 70, size=2)
    n = int(rng.integers(1, 4))
    gts = blobs(rng, h, w, n, 5, void=bool(seed % 2))
    preds = blobs(rng, h, w, n, 5)
    for t in range(5):  # make some predictions close to the truth
        if rng.random() < 0.6:
            preds[t] = np.where(gts[t] == 255, 0, gts[t]).astype(np.uint8)
            preds[t][rng.random((h, w)) < 0.05] = 0
    assert_matches_oracle(gts, preds, "semi")
    props = [np.where(p > 0, p + rng.integers(0, 3), 0).astype(np.uint8) for p in preds]
    assert_matches_oracle(gts, props, "unsupervised")


# -- files and the command ---------------------------------------------------------------------------------
def write_seq(root: Path, seq: str, masks, start=0):
    for i, m in enumerate(masks):
        save_index_png(root / seq / f"{start + i:05d}.png", m)


@pytest.fixture
def tiny_root(tmp_path):
    rng = np.random.default_rng(11)
    root = tmp_path / "davis"
    ann = root / "Annotations" / "480p"
    pred = tmp_path / "pred"
    seqs = ["a", "b"]
    for s in seqs:
        g = blobs(rng, 36, 48, 2, 5, void=True)
        write_seq(ann, s, g)
        write_seq(pred, s, [np.where(x == 255, 0, x).astype(np.uint8) for x in g])
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(seqs) + "\n")
    return root, pred


def run_cli(argv):
    p = argparse.ArgumentParser()
    add_eval_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def test_cli_writes_table_and_full_precision_json(tiny_root, tmp_path, capsys):
    root, pred = tiny_root
    out = tmp_path / "res" / "davis.json"
    assert run_cli(["eval", "davis", "--gt-root", str(root), "--pred", str(pred), "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    for col in ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay", "a_1", "b_2"):
        assert col in text
    res = json.loads(out.read_text())
    assert res["J-Mean"] == 1.0 and res["F-Mean"] == 1.0 and res["num_objects"] == 4
    assert set(res["per_object"]) == {"a_1", "a_2", "b_1", "b_2"}
    assert not list(out.parent.glob(".*tmp"))  # written atomically
    assert "J&F-Mean" in format_table(res)


def test_bad_input_raises_input_error(tiny_root, tmp_path):
    root, pred = tiny_root
    with pytest.raises(InputError, match="does not exist"):
        evaluate_davis(tmp_path / "nope", pred)
    with pytest.raises(InputError, match="does not exist"):
        evaluate_davis(root, tmp_path / "nope")
    with pytest.raises(InputError, match="no ImageSets"):
        evaluate_davis(root, pred, split="test-dev")
    # a predicted sequence missing
    (pred / "b").rename(tmp_path / "b_moved")
    with pytest.raises(InputError, match="predicted sequence.*missing.*b"):
        evaluate_davis(root, pred)
    (tmp_path / "b_moved").rename(pred / "b")
    # a predicted frame missing (the first and last frames are not needed in semi mode)
    (pred / "a" / "00004.png").unlink()
    evaluate_davis(root, pred)
    (pred / "a" / "00002.png").unlink()
    with pytest.raises(InputError, match="00002"):
        evaluate_davis(root, pred)
    # a mask of the wrong size
    save_index_png(pred / "a" / "00002.png", np.zeros((36, 47), np.uint8))
    with pytest.raises(InputError, match="36x47"):
        evaluate_davis(root, pred)
    # a colour image
    Image.fromarray(np.zeros((36, 48, 3), np.uint8)).save(pred / "a" / "00002.png")
    with pytest.raises(InputError, match="RGB"):
        evaluate_davis(root, pred)
    (pred / "a" / "00002.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot decode mask"):
        evaluate_davis(root, pred)


def test_youtube_layout_sparse_annotations(tmp_path):
    """Annotations every 5th frame, an object that appears late; predictions for every frame."""
    root, pred = tmp_path / "ytvos", tmp_path / "pred"
    h, w = 30, 40
    for t in range(0, 30, 5):
        g = np.zeros((h, w), np.uint8)
        g[2:10, 2:12] = 1
        if t >= 15:
            g[15:25, 20:35] = 2
        save_index_png(root / "Annotations" / "v1" / f"{t:05d}.png", g)
    for t in range(30):
        p = np.zeros((h, w), np.uint8)
        p[2:10, 2:12] = 1
        if t >= 15:
            p[15:25, 20:30] = 2
        save_index_png(pred / "v1" / f"{t:05d}.png", p)
    res = evaluate_davis(root, pred, split=None)
    assert res["layout"] == "youtube"
    assert res["per_object"]["v1_1"]["frames"] == 4  # annotated frames 5..20 (first and last excluded)
    assert res["per_object"]["v1_2"]["frames"] == 2  # 15, 20
    assert res["per_object"]["v1_2"]["J-Mean"] == pytest.approx(100 / 150)


# -- real predictions ------------------------------------------------------------------------------------------
# Oracle values: the re-statement above run on all 13 sequences (identical to vos-benchmark's J and F means
# for OSVOS), see docs/EVAL.md.
OSVOS_GLOBAL = {"J&F-Mean": 0.8072934975287289, "J-Mean": 0.796673674766294, "J-Recall": 0.9074301360524042,
                "J-Decay": 0.16739011730191927, "F-Mean": 0.8179133202911637, "F-Recall": 0.9428422407302388,
                "F-Decay": 0.14564856415257857}
OSVOS_PER_OBJECT = {
    "blackswan_1": (0.9430200107249278, 0.9740964785153858), "breakdance_1": (0.7272058108086938, 0.7559520261762988),
    "camel_1": (0.8594593779725596, 0.8905338723159325), "car-roundabout_1": (0.8895363361348493, 0.8269456643641002),
    "car-shadow_1": (0.9284015952829885, 0.9174071827386898), "cows_1": (0.9522318621406558, 0.9567269395028105),
    "dance-twirl_1": (0.6408918365671089, 0.7164247903249229), "dog_1": (0.7107922794984851, 0.6911087718213588),
    "drift-chicane_1": (0.7742201934629012, 0.8288930891734982),
    "drift-straight_1": (0.665460967781256, 0.7067742607751887), "goat_1": (0.869381521401722, 0.8759269922023346),
    "libby_1": (0.6230269658692634, 0.7512319256345152), "parkour_1": (0.7731290143164098, 0.7408511702400915)}
RVOS_GLOBAL = {"J&F-Mean": 0.7905850815899746, "J-Mean": 0.7807154196865633, "J-Recall": 0.8708726804331199,
               "J-Decay": 0.046251158318155884, "F-Mean": 0.800454743493386, "F-Recall": 0.9129118866481505,
               "F-Decay": 0.049268009098524204}
RVOS_PER_OBJECT = {
    "blackswan_1": (0.9213062254478733, 0.9434522128102338), "breakdance_1": (0.49619269526459236, 0.49177612086163724),
    "camel_1": (0.8105277587450912, 0.8369985754963841), "car-roundabout_1": (0.8832916465527764, 0.8432160490222583),
    "car-shadow_1": (0.9195785329881255, 0.9574679286966106), "cows_1": (0.9076809880869191, 0.9251698469815037),
    "dance-twirl_1": (0.7678788408930026, 0.7455946828732709), "dog_1": (0.9186468849154742, 0.9285224626470316),
    "drift-chicane_1": (0.4519961584622822, 0.5517194096583442),
    "drift-straight_1": (0.7978436611427765, 0.7318736206310575), "goat_1": (0.833561426181143, 0.8122010713452952),
    "libby_1": (0.625851897521629, 0.7789680440254393), "parkour_1": (0.814943739723639, 0.8589516403649506)}


def check(res, glob, per):
    for k, v in glob.items():
        assert res[k] == pytest.approx(v, abs=1e-6), k
    assert set(res["per_object"]) == set(per)
    for name, (j, f) in per.items():
        assert res["per_object"][name]["J-Mean"] == pytest.approx(j, abs=1e-6), name
        assert res["per_object"][name]["F-Mean"] == pytest.approx(f, abs=1e-6), name


@needs_shared
def test_osvos_semi_13_sequences(tmp_path, capsys):
    out = tmp_path / "osvos.json"
    assert run_cli(["eval", "davis", "--gt-root", str(DAVIS_ROOT), "--pred", str(OSVOS), "--task", "semi",
                    "--json", str(out), "--quiet"]) == 0
    assert "80.7" in capsys.readouterr().out  # J&F-Mean in percent
    res = json.loads(out.read_text())
    check(res, OSVOS_GLOBAL, OSVOS_PER_OBJECT)
    assert res["num_objects"] == 13


@needs_shared
def test_osvos_semi_vs_vos_benchmark_live():
    vb = pytest.importorskip("vos_benchmark.benchmark")
    seqs = ["car-shadow", "libby", "drift-straight"]
    res = evaluate_davis(DAVIS_ROOT, OSVOS, task="semi", sequences=seqs)
    for s in seqs:
        _, iou, bf = vb.VideoEvaluator(str(DAVIS_ROOT / "Annotations" / "480p"), str(OSVOS))(s)
        assert res["per_object"][f"{s}_1"]["J-Mean"] == pytest.approx(iou[1] / 100, abs=1e-9)
        assert res["per_object"][f"{s}_1"]["F-Mean"] == pytest.approx(bf[1] / 100, abs=1e-9)


@needs_shared
def test_rvos_unsupervised_13_sequences():
    res = evaluate_davis(DAVIS_ROOT, RVOS, task="unsupervised")
    check(res, RVOS_GLOBAL, RVOS_PER_OBJECT)
    assert all(o["proposal"] == 1 for o in res["per_object"].values())


@needs_shared
def test_rvos_unsupervised_vs_oracle_live():
    seq = "car-shadow"
    files = sorted((DAVIS_ROOT / "Annotations" / "480p" / seq).glob("*.png"))
    gts = [np.array(Image.open(p)) for p in files]
    preds = [np.array(Image.open(RVOS / seq / p.name)) for p in files]
    assert_matches_oracle(gts, preds, "unsupervised")


@needs_shared
def test_real_void_snippet_unsupervised():
    """Real DAVIS-2017 ground truth with objects 1, 2 and void 255 (tennis), against perturbed predictions."""
    d = SHARED / "davis2017_gt_snippets__davis-interactive" / "davisinteractive" / "session" / "test_data" / "DAVIS"
    files = sorted((d / "Annotations" / "480p" / "tennis").glob("*.png"))
    gts = [np.array(Image.open(p)) for p in files]
    assert any((g == 255).any() for g in gts) and max(int(g[g != 255].max()) for g in gts) == 2
    rng = np.random.default_rng(0)
    preds = []
    for g in gts:
        p = np.where(g == 255, 1, g).astype(np.uint8)  # void pixels predicted as object 1
        p = np.roll(p, int(rng.integers(-6, 7)), axis=1)
        p = np.where(p == 2, 3, p).astype(np.uint8)     # object 2 as proposal 3
        preds.append(p)
    assert_matches_oracle(gts, preds, "unsupervised")
    got = score_sequence(gts, preds, task="unsupervised")
    assert sorted((o.object_id, o.proposal) for o in got) == [(1, 1), (2, 3)]


@needs_shared
def test_davis2016_binary_root_gives_the_same_scores():
    """DAVIS-2016 0/255 ground truth (255 = the object) scores like its DAVIS-2017 recoding."""
    seqs = ["blackswan", "car-shadow", "libby"]
    res = evaluate_davis(SHARED / "davis2016", OSVOS, task="semi", year=2016, sequences=seqs)
    check(res, {}, {f"{s}_1": OSVOS_PER_OBJECT[f"{s}_1"] for s in seqs})
