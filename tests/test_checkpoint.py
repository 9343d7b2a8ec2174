"""Tests for saving/loading checkpoints (ausm.checkpoint) and config validation (ausm.config)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import box_mask, make_model, small_config

from ausm.checkpoint import CONFIG_NAME, SHIPPED_DIR, WEIGHTS_NAME, load_model, save_model
from ausm.config import AUSMConfig, get_config, list_presets
from ausm.errors import AUSMError, CheckpointError, ConfigError
from ausm.inference import Session
from ausm.model.ausm import AUSMModel


def run_session(model, frames):
    s = Session(model)
    s.add_prompt(0, 4, box_mask(48, 80, 5, 30, 10, 50))
    return [s.step(f) for f in frames]


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


@pytest.fixture
def ckpt(small_model, tmp_path) -> Path:
    """A fresh, writable copy of the small checkpoint."""
    return save_model(small_model, tmp_path / "ckpt")


# ------------------------------------------------------------------ round trip
def test_round_trip_state_and_outputs(small_model, ckpt, frames):
    assert sorted(os.listdir(ckpt)) == [CONFIG_NAME, WEIGHTS_NAME]
    assert siblings(ckpt) == ["ckpt"]  # no temporary folder left beside it
    loaded = load_model(ckpt)
    assert isinstance(loaded, AUSMModel)
    assert not loaded.training
    assert loaded.cfg == small_model.cfg
    assert_same_state(small_model, loaded)
    ra, rb = run_session(small_model, frames[:3]), run_session(loaded, frames[:3])
    for a, b in zip(ra, rb):
        assert np.array_equal(a.masks, b.masks)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert np.array_equal(a.index_mask, b.index_mask)


def test_config_json_is_the_config(small_model, ckpt):
    d = json.loads((ckpt / CONFIG_NAME).read_text())
    assert AUSMConfig.from_dict(d) == small_model.cfg
    assert d["hidden_dim"] == small_model.cfg.hidden_dim


def test_load_weights_file_path_and_dtype(small_model, ckpt):
    m = load_model(ckpt / WEIGHTS_NAME)  # a .safetensors file with config.json beside it
    assert_same_state(small_model, m)
    m64 = load_model(ckpt, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in m64.parameters())
    assert torch.equal(m64.id_vectors.float(), small_model.id_vectors)


def test_save_replaces_existing_folder(small_model, tmp_path):
    d = tmp_path / "ckpt"
    save_model(make_model(1), d, extra_files={"README.md": "old"})
    save_model(small_model, d, extra_files={"README.md": "# card"})
    assert siblings(d) == ["ckpt"]  # neither the temp folder nor the old copy is left
    assert sorted(os.listdir(d)) == ["README.md", CONFIG_NAME, WEIGHTS_NAME]
    assert (d / "README.md").read_text() == "# card"
    assert_same_state(small_model, load_model(d))


# ------------------------------------------------------------------ atomic save
def test_save_is_atomic_when_writing_fails(small_model, tmp_path, monkeypatch):
    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    d = tmp_path / "new"
    with pytest.raises(OSError, match="disk full"):
        save_model(small_model, d)
    assert list(tmp_path.iterdir()) == []  # no partial folder, no temp folder


def test_failed_save_keeps_the_previous_checkpoint(small_model, tmp_path):
    d = save_model(small_model, tmp_path / "ckpt")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    # an extra file that cannot be written (its sub-folder does not exist) fails after the weights
    with pytest.raises(OSError):
        save_model(make_model(1), d, extra_files={"missing/sub/file.md": "x"})
    assert siblings(d) == ["ckpt"]
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert_same_state(small_model, load_model(d))


# ------------------------------------------------------------------ load errors
def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope")


def test_missing_config(ckpt):
    (ckpt / CONFIG_NAME).unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(ckpt)


def test_missing_weights(ckpt):
    (ckpt / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(ckpt)


@pytest.mark.parametrize("damage", ["truncated", "cut_tail", "garbage", "empty"])
def test_broken_weights(ckpt, damage):
    w = ckpt / WEIGHTS_NAME
    data = w.read_bytes()
    w.write_bytes({"truncated": data[:1000], "cut_tail": data[:-64], "empty": b"",
                   "garbage": np.random.default_rng(0).bytes(4096)}[damage])
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_model(ckpt)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", b"\xff\xfe\x00bin"])
def test_unreadable_config(ckpt, text):
    c = ckpt / CONFIG_NAME
    c.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CheckpointError, match="bad config"):
        load_model(ckpt)


def edit_config(ckpt: Path, **changes):
    c = ckpt / CONFIG_NAME
    d = json.loads(c.read_text())
    d.update(changes)
    c.write_text(json.dumps(d))


def test_config_with_unknown_key(ckpt):
    edit_config(ckpt, hiden_dim=64)
    with pytest.raises(CheckpointError, match=r"unknown config keys: \['hiden_dim'\]"):
        load_model(ckpt)


def test_config_with_invalid_value(ckpt):
    edit_config(ckpt, fg_threshold=1.5)
    with pytest.raises(CheckpointError, match="fg_threshold"):
        load_model(ckpt)


@pytest.mark.parametrize("changes", [{"hidden_dim": 128}, {"num_ids": 8}, {"class_heads": {"coco": 80}},
                                     {"compressor_layers": 2}])
def test_weights_do_not_match_config(ckpt, changes):
    edit_config(ckpt, **changes)
    with pytest.raises(CheckpointError, match="do not match config") as e:
        load_model(ckpt)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 600, msg  # one summarised line, not torch's key list
    assert any(w in msg for w in ("missing", "unexpected", "another shape")), msg


@pytest.mark.parametrize("changes", [{"backbone_type": "no_such_backbone"},
                                     {"backbone_kwargs": {"depths": "x"}}])
def test_config_that_cannot_build_a_model(ckpt, changes):
    edit_config(ckpt, **changes)
    with pytest.raises(CheckpointError, match="cannot build the model"):
        load_model(ckpt)


def test_checkpoint_errors_are_ausm_errors():
    assert issubclass(CheckpointError, AUSMError)


# ------------------------------------------------------------------ shipped default
def test_shipped_default_loads():
    m = load_model()
    assert isinstance(m, AUSMModel) and not m.training
    assert m.cfg.name == "ausm-lite-mo"
    from ausm.data.synthetic import SHAPE_CLASSES, SHAPES_HEAD
    # the preset + the "shapes" class head of the synthetic multi-object data, run at 240 px (docs/MODEL_CARD.md)
    assert m.cfg == get_config("ausm-lite-mo", class_heads={SHAPES_HEAD: len(SHAPE_CLASSES)},
                               class_names={SHAPES_HEAD: list(SHAPE_CLASSES)}, input_short_side=240)
    for name in ("ausm-lite-mo", "ausm-lite"):
        assert (SHIPPED_DIR / name / WEIGHTS_NAME).is_file()
        assert (SHIPPED_DIR / name / WEIGHTS_NAME).stat().st_size <= 25 * 2 ** 20  # issue #13: at most 25 MB
    assert load_model("ausm-tiny").cfg.name == "ausm-tiny"  # the older models stay loadable by name
    assert load_model("ausm-lite").cfg.input_short_side == 192
    m2 = load_model("ausm-lite-mo")
    assert_same_state(m, m2)
    assert all(torch.isfinite(p).all() for p in m.parameters())
    f = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    r = run_session(m, [f, f])
    assert r[1].obj_ids == [4] and np.isfinite(r[1].scores).all()


def test_shipped_multi_object_model_loads():
    from ausm.data.synthetic import SHAPE_CLASSES, SHAPES_HEAD
    m = load_model("ausm-lite-mo")
    assert m.cfg == get_config("ausm-lite-mo", class_heads={SHAPES_HEAD: len(SHAPE_CLASSES)},
                               class_names={SHAPES_HEAD: list(SHAPE_CLASSES)}, input_short_side=240)
    assert m.cfg.track_query_from_history and not load_model("ausm-lite").cfg.track_query_from_history
    assert (SHIPPED_DIR / "ausm-lite-mo" / WEIGHTS_NAME).stat().st_size <= 25 * 2 ** 20
    assert float(m.pixel_decoder.pool_proj.weight.abs().sum()) > 0  # trained, not the zero init


# ------------------------------------------------------------------ config validation
def test_presets():
    assert list_presets() == ["ausm-lite", "ausm-lite-mo", "ausm-swin-b", "ausm-swin-t", "ausm-tiny"]
    t = get_config("ausm-swin-t")
    assert (t.hidden_dim, t.num_queries, t.num_ids, t.compressor_layers, t.pixel_decoder_layers) == (256, 100, 100, 6, 9)
    assert get_config("ausm-tiny", num_ids=4).num_ids == 4
    # get_config returns fresh objects
    a = get_config("ausm-tiny")
    a.backbone_kwargs["depths"][0] = 99
    assert get_config("ausm-tiny").backbone_kwargs["depths"][0] == 1


@pytest.mark.parametrize("kw, msg", [
    ({"hidden_dim": 72, "compressor_heads": 5}, "not divisible by config.compressor_heads"),
    ({"hidden_dim": 66}, "divisible by 4"),
    ({"compressor_layers": -1}, "compressor_layers"),
    ({"pixel_decoder_layers": -2}, "pixel_decoder_layers"),
    ({"fg_threshold": 1.5}, "fg_threshold"),
    ({"fg_threshold": 0.0}, "fg_threshold"),
    ({"num_ids": 0}, "num_ids"),
    ({"hidden_dim": 64.0}, "hidden_dim"),
    ({"num_queries": True}, "num_queries"),
    ({"class_heads": {"agnostic": 3}}, "reserved"),
    ({"class_heads": {"coco": 0}}, "positive class count"),
    ({"class_heads": {"coco": 2}, "class_names": {"coco": ["a"]}}, "class_names"),
])
def test_config_validation(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        small_config(**kw)
    with pytest.raises(ConfigError, match=msg):
        AUSMConfig(**kw)


def test_config_errors_are_value_errors():
    with pytest.raises(ValueError):
        get_config("ausm-tiny", hidden_dim=-4)


def test_unknown_preset_and_key():
    with pytest.raises(ConfigError, match="unknown preset 'ausm-huge'"):
        get_config("ausm-huge")
    with pytest.raises(ConfigError, match="unknown config keys"):
        get_config("ausm-tiny", hidden_dims=64)
    with pytest.raises(ConfigError, match="JSON object"):
        AUSMConfig.from_dict([("hidden_dim", 64)])


def test_config_dict_round_trip():
    c = get_config("ausm-swin-t")
    assert AUSMConfig.from_dict(json.loads(c.to_json())) == c
    assert c.replace(num_ids=7).num_ids == 7 and c.num_ids == 100
