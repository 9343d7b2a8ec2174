"""Presets build real models at the paper's sizes; the README and CI run the same test command."""
import re
from pathlib import Path

import pytest
import torch

from ausm.config import AUSMConfig, get_config, list_presets
from ausm.errors import ConfigError
from ausm.model import AUSMModel

ROOT = Path(__file__).resolve().parents[1]


def test_paper_sizes():
    for name in ("ausm-swin-t", "ausm-swin-b"):
        c = get_config(name)
        assert (c.hidden_dim, c.compressor_layers, c.history_decoder_layers, c.pixel_decoder_layers,
                c.num_queries, c.num_ids) == (256, 6, 6, 9, 100, 100)
        assert c.class_heads == {"coco": 80, "ytvis2019": 40, "ytvis2021": 40, "ovis": 25}
    assert set(list_presets()) >= {"ausm-lite", "ausm-tiny", "ausm-swin-t", "ausm-swin-b"}


def test_swin_t_builds_and_runs_both_paths():
    torch.manual_seed(0)
    model = AUSMModel(get_config("ausm-swin-t")).eval()
    n_params = sum(p.numel() for p in model.parameters())
    # every parameter initialised (transformers' post_init runs for the Mask2Former pixel-level module)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.encoder.pixel_level_module.decoder.level_embed.abs().max() < 10
    assert 30e6 < n_params < 80e6, n_params
    assert set(model.class_heads) == {"agnostic", "coco", "ytvis2019", "ytvis2021", "ovis"}
    assert model.class_heads["coco"].out_features == 81
    frames = torch.rand(1, 2, 3, 64, 64)
    ids = torch.tensor([[3]])
    active = torch.ones(1, 2, 1, dtype=torch.bool)
    hist = torch.rand(1, 2, 1, 64)
    with torch.no_grad():
        par = model(frames, ids, active, hist)
        state = model.init_state(1, (8, 8))
        p0, state = model.step(frames[:, 0], state, ids, active[:, 0], hist[:, 0])
        p1, state = model.step(frames[:, 1], state, ids, active[:, 1], hist[:, 1])
    assert par.final_masks.shape == (1, 2, 101, 16, 16)
    assert len(par.masks) == 10  # initial queries + 9 layers (deep supervision)
    torch.testing.assert_close(par.final_masks[:, 1], p1.final_masks, atol=2e-3, rtol=1e-3)


def test_config_roundtrip_and_errors():
    c = get_config("ausm-tiny")
    assert AUSMConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown config keys"):
        AUSMConfig.from_dict({**c.to_dict(), "hiden_dim": 3})
    with pytest.raises(ConfigError, match="divisible"):
        get_config("ausm-tiny", hidden_dim=66)
    with pytest.raises(ConfigError, match="unknown preset"):
        get_config("ausm-huge")


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) >= 2 and "ausm segment" in blocks[0] and "pytest" in blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci
