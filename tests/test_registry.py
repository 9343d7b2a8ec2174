"""The model registry: every preset builds (small) and keeps the core invariant; shipped weights load."""
import pytest
import torch

import ausm
from ausm.errors import CheckpointError, ConfigError

SMALL = dict(hidden_dim=64, compressor_layers=1, history_decoder_layers=1, pixel_decoder_layers=1, num_queries=4,
             num_ids=4)


def test_list_models_names_every_preset_and_the_default():
    models = ausm.list_models()
    assert [m["name"] for m in models] == ausm.list_presets()
    assert [m["name"] for m in models if m["default"]] == ["ausm-lite-mo"]
    assert {m["name"] for m in models if m["weights"]} >= {"ausm-lite", "ausm-lite-mo", "ausm-tiny"}


@pytest.mark.parametrize("name", ausm.list_presets())
def test_every_preset_builds_small_and_streaming_equals_parallel(name):
    """Each preset (its backbone as configured, the rest made small): the teacher-forced parallel forward
    over a 2-frame clip equals two streaming steps with the same history."""
    torch.manual_seed(0)
    model = ausm.create_model(name, pretrained=False, **SMALL).eval()
    assert model.cfg.name == name and model.cfg.num_ids == 4
    frames = torch.rand(1, 2, 3, 64, 64)
    ids = torch.tensor([[1, 3]])
    active = torch.tensor([[[True, False], [True, True]]])  # object 2 starts on frame 1
    hist = torch.rand(1, 2, 2, 64) * active.unsqueeze(-1)
    with torch.no_grad():
        par = model(frames, ids, active, hist)
        state = model.init_state(1, (8, 8))
        steps = []
        for k in range(2):
            p, state = model.step(frames[:, k], state, ids, active[:, k], hist[:, k])
            steps.append(p.final_masks)
    for k in range(2):
        torch.testing.assert_close(par.final_masks[:, k], steps[k], atol=2e-3, rtol=1e-3)


def test_create_model_pretrained_and_errors():
    m = ausm.create_model("ausm-tiny")
    assert not m.training and m.cfg.name == "ausm-tiny"
    with pytest.raises(CheckpointError, match="no weights are shipped"):
        ausm.create_model("ausm-swin-b")
    with pytest.raises(CheckpointError, match="pretrained=False"):
        ausm.create_model("ausm-tiny", num_ids=8)
    with pytest.raises(ConfigError, match="unknown preset"):
        ausm.create_model("ausm-huge", pretrained=False)
