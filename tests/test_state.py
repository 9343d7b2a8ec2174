"""Constant memory is a promise: the streaming state does not grow with the number of frames."""
import numpy as np
import torch

from ausm.config import get_config
from ausm.inference import Session
from ausm.model import AUSMModel


def _tiny_stream_model():
    torch.manual_seed(0)
    cfg = get_config("ausm-tiny", compressor_layers=1, history_decoder_layers=1, pixel_decoder_layers=1,
                     num_queries=4, num_ids=6, input_short_side=32, input_max_long_side=64)
    return AUSMModel(cfg).eval()


def _tensor_bytes(session):
    """Every tensor reachable from the session's state, counted independently of state_nbytes()."""
    st = session.stream_state
    tensors = [st.x_prev] + [t for m in st.mamba for t in (m.conv_state, m.ssm_state)]
    tensors += session.objects.tensors()
    return sum(t.numel() * t.element_size() for t in tensors), [tuple(t.shape) for t in tensors]


def test_state_size_after_1000_steps_equals_after_10():
    model = _tiny_stream_model()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 64, 3), dtype=np.uint8) for _ in range(8)]
    prompt = np.zeros((32, 64), bool)
    prompt[8:20, 10:30] = True
    # prompted + discovering new objects, so the object tables change during the stream
    session = Session(model, detect_new_objects=True, fg_threshold=0.05)
    session.add_prompt(0, 1, prompt)
    sizes = {}
    for t in range(1000):
        session.step(frames[t % len(frames)])
        if t + 1 in (10, 100, 1000):
            sizes[t + 1] = (session.state_nbytes(), *_tensor_bytes(session))
    assert sizes[10][0] > 0
    assert sizes[10] == sizes[100] == sizes[1000]
    assert session.frame_idx == 1000
    # the state holds what the spec lists: X_{t-1}, one Mamba conv/SSM state per layer and pixel,
    # and fixed slot tables of num_ids rows
    shapes = sizes[1000][2]
    P = (32 // 8) * (64 // 8)
    assert shapes[0] == (1, P, model.cfg.hidden_dim)
    assert shapes[1] == (P, model.cfg.mamba_d_conv, 2 * model.cfg.hidden_dim)
    assert shapes[2] == (P, model.cfg.mamba_d_state, 2 * model.cfg.hidden_dim)
    assert shapes[5] == (model.cfg.num_ids, P)
