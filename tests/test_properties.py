"""Property and fuzz tests (hypothesis) for the mask/RLE/JSON readers and the metric functions."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from ausm.data.coco import decode_segmentation
from ausm.errors import InputError
from ausm.eval.davis import f_measure, jaccard
from ausm.io.masks import load_prompt_mask, save_index_png

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

small_masks = arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24)))


def _pair(draw_shape=st.tuples(st.integers(2, 24), st.integers(2, 24))):
    return draw_shape.flatmap(lambda s: st.tuples(arrays(np.bool_, s), arrays(np.bool_, s)))


@FAST
@given(ids=arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20))))
def test_palette_png_round_trip(tmp_path, ids):
    p = tmp_path / "m.png"
    save_index_png(p, ids)
    with Image.open(p) as im:
        assert im.mode == "P"
        assert np.array_equal(np.asarray(im), ids)


@FAST
@given(ids=arrays(np.uint8, st.tuples(st.integers(2, 16), st.integers(2, 16)), elements=st.sampled_from([0, 1, 2, 7, 255])))
def test_prompt_mask_reads_palette_ids_and_drops_void(tmp_path, ids):
    p = tmp_path / "p.png"
    save_index_png(p, ids)
    expect = np.where(ids == 255, 0, ids)
    if not expect.any():
        with pytest.raises(InputError, match="no object"):
            load_prompt_mask(p)
    else:
        assert np.array_equal(load_prompt_mask(p, expected_size=ids.shape), expect)


@FAST
@given(m=small_masks)
def test_rle_round_trip_compressed_and_uncompressed(m):
    from pycocotools import mask as mu

    h, w = m.shape
    rle = mu.encode(np.asfortranarray(m.astype(np.uint8)))
    assert np.array_equal(decode_segmentation(rle, h, w), m)
    rle_str = dict(rle, counts=rle["counts"].decode("ascii"))
    assert np.array_equal(decode_segmentation(rle_str, h, w), m)
    # uncompressed (column-major run lengths starting with a zero run)
    flat = m.T.reshape(-1)
    counts, cur, run = [], False, 0
    for v in flat:
        if bool(v) == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = bool(v), 1
    counts.append(run)
    assert np.array_equal(decode_segmentation({"size": [h, w], "counts": counts}, h, w), m)


@FAST
@given(pair=_pair())
def test_j_and_f_are_in_range_symmetric_and_perfect_is_one(pair):
    a, b = pair
    for v in (jaccard(a, b), f_measure(a, b)):
        assert 0.0 <= v <= 1.0
    assert jaccard(a, b) == pytest.approx(jaccard(b, a))
    assert f_measure(a, b) == pytest.approx(f_measure(b, a))
    assert jaccard(a, a) == 1.0 and f_measure(a, a) == 1.0
    if a.any() and not (a & b).any():
        assert jaccard(a, b) == 0.0


json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                           max_leaves=12)


@FAST
@given(doc=st.fixed_dictionaries({}, optional={"videos": json_values, "annotations": json_values,
                                               "categories": json_values}))
def test_malformed_ytvis_json_raises_input_error(tmp_path, doc):
    from ausm.data.ytvis import YTVISDataset

    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    try:
        YTVISDataset(p)
    except InputError:
        pass  # a clear error is the expected outcome for garbage


@FAST
@given(doc=json_values)
def test_malformed_ytvis_results_raise_input_error(doc):
    from ausm.eval.ytvis import evaluate_ytvis

    gt = {"videos": [{"id": 1, "height": 4, "width": 4, "length": 1}], "categories": [{"id": 1, "name": "a"}],
          "annotations": []}
    try:
        evaluate_ytvis(gt, doc)
    except InputError:
        pass


@FAST
@given(m=arrays(np.bool_, (2, 6, 8)))
def test_perfect_vis_results_score_ap_one(m):
    from pycocotools import mask as mu

    from ausm.eval.ytvis import evaluate_ytvis

    if not m.any(axis=(1, 2)).any():
        return
    rle = lambda x: dict(mu.encode(np.asfortranarray(x.astype(np.uint8))), counts=mu.encode(np.asfortranarray(x.astype(np.uint8)))["counts"].decode())  # noqa: E731
    segs = [rle(x) if x.any() else None for x in m]
    gt = {"videos": [{"id": 1, "height": 6, "width": 8, "length": 2}], "categories": [{"id": 3, "name": "c"}],
          "annotations": [{"id": 1, "video_id": 1, "category_id": 3, "iscrowd": 0, "segmentations": segs,
                           "areas": [int(x.sum()) if x.any() else None for x in m]}]}
    res = evaluate_ytvis(gt, [{"video_id": 1, "category_id": 3, "score": 0.9, "segmentations": segs}])
    assert res["AP"] == pytest.approx(1.0)
