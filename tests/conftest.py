"""Shared fixtures: a tiny random AUSM model, its checkpoint, small synthetic frames, real-data paths."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ausm.checkpoint import save_model
from ausm.config import get_config
from ausm.model.ausm import AUSMModel

#: Real data beside the checkout (``../shared/data``); absent in a user's fresh clone.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason="../shared/data is absent (real-data tests need the shared DAVIS data beside the checkout)",
)

# The test machines are small and shared: one intra-op thread avoids oversubscription stalls.
torch.set_num_threads(1)

#: Overrides that make ``ausm-tiny`` fast enough for unit tests.
SMALL = dict(compressor_layers=1, history_decoder_layers=1, pixel_decoder_layers=1,
             input_short_side=64, input_max_long_side=128)


def small_config(**kw):
    return get_config("ausm-tiny", **{**SMALL, **kw})


def make_model(seed: int = 0, **kw) -> AUSMModel:
    torch.manual_seed(seed)
    return AUSMModel(small_config(**kw)).eval()


def subprocess_env() -> dict:
    """Environment for ``python -m ausm`` subprocesses: single-threaded torch, no hub access."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return env


@pytest.fixture(scope="session")
def small_model() -> AUSMModel:
    """A randomly initialised small model (shared: tests must not modify it)."""
    return make_model(0)


@pytest.fixture(scope="session")
def small_ckpt(small_model, tmp_path_factory) -> Path:
    """``small_model`` saved as a checkpoint folder."""
    return save_model(small_model, tmp_path_factory.mktemp("ckpt") / "small")


@pytest.fixture
def frames() -> list[np.ndarray]:
    """Six random 48x80 RGB uint8 frames."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(6)]


def box_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m
