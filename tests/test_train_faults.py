"""Distributed fault handling (issue #8): when one rank dies or stalls, the others stop within a bounded
time with one clear error line (TrainingError, exit code 5) instead of hanging, and ``OUT/last`` stays a
loadable checkpoint.

The faulty rank is made to fail by the trainer's test-only hook ``AUSM_FAULT_INJECT=rankR:stepS:ACTION``
(``exit``: ``os._exit(17)`` during step S, after its forward pass; ``hang``: stall there forever).
"""
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import subprocess_env
from ausm.checkpoint import load_model

TINY = {"compressor_layers": 1, "history_decoder_layers": 1, "pixel_decoder_layers": 1}

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


def _config(tmp_path: Path, **kw) -> Path:
    """A tiny 2-rank run on synthetic data (no data files), a checkpoint after every step."""
    cfg = dict(datasets=[{"type": "synthetic", "num_objects": [1, 2]}],
               model_overrides={**TINY, "class_heads": {"shapes": 6}}, size=[64, 96], clip_len=2, batch_size=1,
               steps=4, num_points=64, threads=1, log_every=1, ckpt_every=1, warmup=1, vis_every=0,
               dist_timeout_s=20, out=str(tmp_path / "run"))
    cfg.update(kw)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(tmp_path: Path, config: Path, fault: str, deadline_s: float, world: int = 2):
    """Start ``python -m ausm.train CONFIG`` once per rank (a plain env:// launch, as one launcher per
    node would: nothing stops the survivors but the trainer itself) and wait for rank 0.

    Returns (returncodes, stderr texts, seconds from the fault to rank 0's exit)."""
    port = _free_port()
    procs, errs = [], []
    for r in range(world):
        env = subprocess_env()
        env.update(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), AUSM_FAULT_INJECT=fault)
        errs.append(tmp_path / f"rank{r}.err")
        with open(errs[-1], "w") as ef, open(tmp_path / f"rank{r}.out", "w") as of:
            procs.append(subprocess.Popen([sys.executable, "-m", "ausm.train", str(config)], stdout=of, stderr=ef,
                                          env=env))
    t_fault = None
    t0 = time.monotonic()
    try:
        while procs[0].poll() is None:
            if time.monotonic() - t0 > deadline_s:
                pytest.fail(f"rank 0 still running after {deadline_s} s (hangs?); its stderr:\n"
                            + errs[0].read_text()[-3000:])
            if t_fault is None and "AUSM_FAULT_INJECT: rank" in errs[1].read_text():
                t_fault = time.monotonic()
            time.sleep(0.1)
        t_end = time.monotonic()
        for p in procs[1:]:  # a dead rank is gone already; a stalled one would stall forever
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert t_fault is not None, "the fault was never injected:\n" + errs[1].read_text()[-3000:]
    return [p.returncode for p in procs], [e.read_text() for e in errs], t_end - t_fault


def _assert_last_checkpoint_intact(out: Path, step: int) -> None:
    model = load_model(out / "last")
    assert model.cfg.class_heads == {"shapes": 6}
    st = torch.load(out / "trainer_state.pt", weights_only=True)
    assert st["step"] == step
    assert [h["step"] for h in json.loads((out / "history.json").read_text())] == list(range(1, step + 1))
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"half-written checkpoint files: {leftovers}"


def _error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_dead_rank_makes_the_other_exit_with_a_clear_error(tmp_path):
    """Rank 1 dies abruptly during step 2: rank 0 notices the closed connection at once (no waiting for
    the timeout), exits with code 5 and one error line; the step-1 checkpoint is intact."""
    config = _config(tmp_path, dist_timeout_s=20)
    rcs, errs, after_fault = _run_ranks(tmp_path, config, "rank1:step2:exit", deadline_s=120)
    assert rcs[1] == 17, errs[1][-2000:]
    assert rcs[0] == 5, errs[0][-3000:]
    assert after_fault < 20, f"rank 0 needed {after_fault:.1f} s after rank 1 died"
    assert "Traceback" not in errs[0]
    lines = _error_lines(errs[0])
    assert len(lines) == 1, errs[0][-3000:]
    assert re.fullmatch(r"error: training: rank 0 lost contact with the other ranks at step 2 \(connection to "
                        r"another rank closed\): another rank failed; see its log; the last checkpoint is "
                        r".*last \(step 1\)", lines[0]), lines[0]
    out = tmp_path / "run"
    assert "lost contact with the other ranks at step 2" in (out / "train.log").read_text()
    _assert_last_checkpoint_intact(out, step=1)


def test_stalled_rank_makes_the_other_time_out_with_a_clear_error(tmp_path):
    """Rank 1 stalls during step 2: rank 0's collective times out after dist_timeout_s and it exits with
    code 5 and one error line naming the timeout (instead of waiting forever)."""
    timeout = 10
    config = _config(tmp_path, dist_timeout_s=timeout)
    rcs, errs, after_fault = _run_ranks(tmp_path, config, "rank1:step2:hang", deadline_s=120)
    assert rcs[0] == 5, errs[0][-3000:]
    assert timeout - 1 <= after_fault < timeout + 20, f"rank 0 exited {after_fault:.1f} s after rank 1 stalled"
    lines = _error_lines(errs[0])
    assert len(lines) == 1, errs[0][-3000:]
    assert re.fullmatch(rf"error: training: rank 0 lost contact with the other ranks at step 2 \(collective timed "
                        rf"out after {timeout} s\): another rank failed or stalled; see its log; the last "
                        rf"checkpoint is .*last \(step 1\)", lines[0]), lines[0]
    _assert_last_checkpoint_intact(tmp_path / "run", step=1)


@pytest.mark.skipif(not (Path(sys.executable).parent / "torchrun").exists(), reason="torchrun is not installed")
def test_torchrun_stops_the_job_when_a_rank_dies(tmp_path):
    """Under torchrun the elastic agent stops the surviving rank itself when one dies (or the survivor
    exits with the error above first): the job ends non-zero, in bounded time, naming the failed rank,
    and the step-1 checkpoint is intact."""
    torchrun = str(Path(sys.executable).parent / "torchrun")
    config = _config(tmp_path, dist_timeout_s=20)
    env = subprocess_env()
    env["AUSM_FAULT_INJECT"] = "rank1:step2:exit"
    cmd = [torchrun, "--nproc_per_node=2", f"--master_port={_free_port()}", "-m", "ausm.train", str(config)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    took = time.monotonic() - t0
    text = r.stdout + r.stderr
    assert r.returncode != 0, text[-3000:]
    assert took < 100
    assert "AUSM_FAULT_INJECT: rank 1 exits at step 2" in text
    # torchrun's failure summary names the rank that died and its exit code
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", text) and re.search(r"exitcode\s*:\s*17", text), text[-3000:]
    # rank 0, if it was not stopped first, said why it stopped
    assert all("lost contact with the other ranks at step 2" in line for line in _error_lines(r.stderr))
    _assert_last_checkpoint_intact(tmp_path / "run", step=1)
