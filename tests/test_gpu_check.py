"""scripts/gpu_check.py (issue #16): the prepared GPU check runs end to end in its CPU dry run and writes
one JSON file with every section's numbers."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_every_section(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "gpu_check.json"
    assert mod.main(["--dry-run", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["dry_run"] and r["device"] == "cpu"
    assert list(r["sections"]) == ["parity", "train_speed", "stream", "objects"]
    assert all(s["ok"] for s in r["sections"].values()), {k: s.get("error") for k, s in r["sections"].items()}
    assert r["sections"]["parity"]["result"]["ausm-tiny"]["max_abs_diff"] < 1e-3  # parallel == streaming
    speeds = r["sections"]["train_speed"]["result"]
    assert [row["T"] for row in speeds] == [1, 2] and all(row["speed-up"] > 0 for row in speeds)
    marks = [rec["frames"] for rec in r["sections"]["stream"]["result"]["default_480p"]]
    assert marks == [6, 12]
    assert {(rec["model"], rec["objects"]) for rec in r["sections"]["objects"]["result"]} == {("ausm", 1), ("ausm", 2)}
    assert "parity: ok" in capsys.readouterr().err
