"""The shipped training configs parse into TrainConfig, name known presets and dataset types, and
chain the paper's three stages (spec §6)."""
import dataclasses
import json
from pathlib import Path

import pytest

from ausm.config import get_config
from ausm.data.mixing import READER_TYPES
from ausm.train.trainer import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses(path):
    d = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(d) <= names, set(d) - names
    tc = TrainConfig(**d)
    cfg = get_config(tc.preset, **tc.model_overrides)
    heads = set(cfg.class_heads)
    start = path.parents[1] / tc.init_from / "config.json"
    if tc.init_from and start.is_file():  # a local checkpoint: its heads carry over (init_from)
        heads |= set(json.loads(start.read_text()).get("class_heads", {}))
    specs = list(tc.datasets)
    for spec in tc.datasets:  # copy_paste nests a clip dataset and an image dataset
        if spec["type"] == "copy_paste":
            specs += [spec["base"], spec["objects"]]
            assert spec["objects"]["type"] == "duts"
    for spec in specs:
        assert spec["type"] in READER_TYPES or spec["type"] in ("synthetic", "copy_paste")
        head = {"ytvis": spec.get("head"), "ovis": "ovis", "coco": "coco", "synthetic": "shapes"}.get(spec["type"])
        if head:
            assert head in heads


def test_paper_stage_recipe():
    for name in ("swin_t", "swin_b"):
        s = [json.loads((CONFIGS[0].parent / f"stage{i}_{name}.json").read_text()) for i in (1, 2, 3)]
        assert [x["clip_len"] for x in s] == [3, 5, 16]
        assert [x["steps"] for x in s] == [147500, 32000, 40000]
        assert s[0]["init_from"].startswith("mask2former:facebook/mask2former-swin-")
        assert s[1]["init_from"] == s[0]["out"] + "/last" and s[2]["init_from"] == s[1]["out"] + "/last"
        assert s[2]["freeze_backbone"] and not s[1].get("freeze_backbone", False)
        assert all(x["lr"] == 1e-4 for x in s)
        assert {d["type"] for d in s[1]["datasets"]} == {"coco", "mose", "sav", "ytvis", "ovis"}
        assert "davis" in {d["type"] for d in s[2]["datasets"]}


@pytest.mark.parametrize("override, words", [
    ('steps="many"', ["steps", "integer"]), ("lr=abc", ["lr", "number"]), ("size=[224]", ["size", "[H, W]"]),
    ("batch_size=-1", ["batch_size", ">= 1"]), ("prompt_prob=2", ["prompt_prob", "[0, 1]"]),
    ("mode=fast", ["mode", "parallel"]), ('exhaustive="yes"', ["exhaustive", "true or false"]),
    ("size=[200,320]", ["multiples of 32"]), ("lr_drop_at=0", ["lr_drop_at"]),
    ('datasets=[{"type":"duts","weight":"x"}]', ["datasets[0].weight"]),
    ('datasets=[{"type":"davis","clip":{"exhaustive":"yes"}}]', ["datasets[0].clip.exhaustive"]),
])
def test_bad_training_options_exit_3_before_anything_is_written(override, words, tmp_path, capsys):
    from ausm.cli import main

    out = tmp_path / "run"
    rc = main(["train", str(CONFIGS[0]), override, f"out={out}"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 3 and len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not out.exists()


def test_a_config_that_is_not_an_object(tmp_path, capsys):
    from ausm.cli import main

    p = tmp_path / "list.json"
    p.write_text("[1, 2]")
    assert main(["train", str(p), f"out={tmp_path / 'run'}"]) == 3
    assert "JSON object" in capsys.readouterr().err and not (tmp_path / "run").exists()
    from ausm.train.trainer import TrainConfig
    tc = TrainConfig.from_dict({"size": [64, 96], "lr": 1})
    assert tc.size == (64, 96) and isinstance(tc.lr, float)
