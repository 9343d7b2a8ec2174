"""One device picker for CLI, API and training (issues #14, #15): clear exit-2 errors for devices this
machine does not have."""
from __future__ import annotations

import pytest
import torch

from ausm.cli import main
from ausm.device import default_dtype, resolve_device
from ausm.errors import InputError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto == resolve_device(None)
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    assert default_dtype(torch.device("cpu")) == torch.float32


@pytest.mark.parametrize("name, word", [("bogus", "unknown device"), ("opengl", "not supported")])
def test_bad_device_names(name, word):
    with pytest.raises(InputError, match=word):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_an_input_error(capsys, tmp_path):
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda:0")
    rc = main(["segment", "--demo", "--out", str(tmp_path / "o"), "--device", "cuda", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("error:") == 1 and "CUDA is not available" in err
    assert not (tmp_path / "o").exists()


def test_auto_picks_mps_for_inference_but_not_for_training(monkeypatch):
    """Training (``auto_mps=False``) never picks Apple MPS by itself; inference does."""
    import ausm.device as d

    monkeypatch.setattr(d.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(d, "_mps_available", lambda: True)
    assert d.resolve_device("auto").type == "mps"
    assert d.resolve_device("auto", 0, auto_mps=False).type == "cpu"
    assert d.resolve_device(None, auto_mps=False).type == "cpu"


def test_tune_cpu_allocator_applies_on_linux_and_can_be_turned_off(monkeypatch):
    """glibc's mallopt takes the thresholds (True on Linux); AUSM_MALLOC_TUNING=0 leaves malloc alone."""
    import sys

    from ausm.device import tune_cpu_allocator

    monkeypatch.setenv("AUSM_MALLOC_TUNING", "0")
    assert tune_cpu_allocator() is False
    monkeypatch.delenv("AUSM_MALLOC_TUNING")
    if sys.platform.startswith("linux"):
        assert tune_cpu_allocator() is True
