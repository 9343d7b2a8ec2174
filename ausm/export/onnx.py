"""ONNX export of the streaming step (issue #17; docs/EXPORT.md).

The exported graph is :meth:`ausm.model.ausm.AUSMModel.step` for one stream at one fixed model input
size, with every piece of state an explicit, named, fixed-shape input and output:

====================== ================================= ===============================================
name                   shape (ausm-lite at 192×352)      meaning
====================== ================================= ===============================================
``frame``              (1, 3, H', W') float32 in [0, 1]  RGB frame resized to the model input
``x_prev``             (1, h·w, D) float32               X_{t-1}, the previous frame's stride-8 tokens
``mamba.<i>.conv_state`` (h·w, d_conv, d_inner) float32  History Compressor layer i, causal-conv window
``mamba.<i>.ssm_state``  (h·w, d_state, d_inner) float32 History Compressor layer i, SSM state
``track_ids``          (1, num_ids) int64 in [0, num_ids) ID-vector rows of the track slots
``track_active``       (1, num_ids) bool                 True = an allocated object, False = empty slot
``hist_masks``         (1, num_ids, h·w) float32 [0, 1]  the History Marker masks M_{t-1}
→ ``mask_logits``      (1, num_ids + N_det, H'/4, W'/4)  mask logits: the track slots, then detections
→ ``class_logits.<head>`` (1, num_ids + N_det, K + 1)    class logits per head; last = no-object
→ ``next.<state name>`` as its input                     the state after this frame
====================== ================================= ===============================================

The initial state is ``x_prev`` = the learned start token X_0 tiled over the h·w rows and zero Mamba
states; the token is written into the contract. The contract (``<file>.json`` beside the ``.onnx``) holds
the model config, the names, shapes, dtypes and value ranges above, the class names and the file's
SHA-256, so that a runtime can check the pair belongs together.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..io.atomic import apply_umask, atomic_open
from ..model.ausm import AUSMModel, StreamState
from ..model.mamba import MambaState

__all__ = ["CONTRACT_FORMAT", "CONTRACT_VERSION", "StepGraph", "check_size", "contract_path", "export_onnx",
           "file_sha256", "state_names"]

CONTRACT_FORMAT = "ausm-onnx-step"
CONTRACT_VERSION = 1
#: opset used when none is asked for (the dynamo exporter's own choice may change between torch releases)
DEFAULT_OPSET = 18


def contract_path(onnx_path: str | os.PathLike) -> Path:
    """The contract file of ``model.onnx``: ``model.onnx.json``."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def state_names(num_layers: int) -> list[str]:
    """Names of the state tensors, in graph order: ``x_prev``, then ``mamba.<i>.conv_state`` and
    ``mamba.<i>.ssm_state`` per History Compressor layer (the keys of :meth:`StreamState.to_tensors`)."""
    names = ["x_prev"]
    for i in range(num_layers):
        names += [f"mamba.{i}.conv_state", f"mamba.{i}.ssm_state"]
    return names


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class StepGraph(nn.Module):
    """:meth:`AUSMModel.step` for one stream with flat, fixed-shape tensor inputs and outputs (the graph
    that is exported). Inputs and outputs in the order of the module docstring's table.

    Args:
        model: the network (eval mode, float32).
        hw: (h, w) stride-8 grid of the model input.
    """

    def __init__(self, model: AUSMModel, hw: tuple[int, int]):
        super().__init__()
        self.model = model
        self.hw = hw
        self.heads = list(model.class_heads)

    def forward(self, frame, x_prev, *rest):
        L = len(self.model.compressor.layers)
        flat, (track_ids, track_active, hist_masks) = rest[:2 * L], rest[2 * L:]
        mamba = [MambaState(conv_state=flat[2 * i], ssm_state=flat[2 * i + 1]) for i in range(L)]
        pred, new = self.model.step(frame, StreamState(x_prev=x_prev, mamba=mamba, hw=self.hw),
                                    track_ids, track_active, hist_masks)
        logits = [self.model.class_logits(pred.final_embs, h) for h in self.heads]
        state = [new.x_prev]
        for m in new.mamba:
            state += [m.conv_state, m.ssm_state]
        return (pred.final_masks, *logits, *state)


def _example_inputs(model: AUSMModel, size: tuple[int, int]) -> tuple[list[str], tuple]:
    """(input names, example tensors) of the graph at model input ``size``."""
    H, W = size
    hw = (H // 8, W // 8)
    n, P = model.cfg.num_ids, hw[0] * hw[1]
    st = model.init_state(1, hw)
    state = [st.x_prev.detach().clone()]
    for m in st.mamba:
        state += [m.conv_state, m.ssm_state]
    names = ["frame", *state_names(len(st.mamba)), "track_ids", "track_active", "hist_masks"]
    args = (torch.rand(1, 3, H, W), *state, torch.arange(n)[None], torch.ones(1, n, dtype=torch.bool),
            torch.zeros(1, n, P))
    return names, args


def _io_spec(model: AUSMModel, names: list[str], args: tuple, out_names: list[str], outs: tuple) -> tuple[list, list]:
    """The contract's input and output tables: name, shape, dtype, range, meaning."""
    cfg = model.cfg
    doc = {"frame": ("[0, 1]", "RGB frame resized to the model input (bilinear, antialiased)"),
           "x_prev": ("real", "X_{t-1}: the previous frame's stride-8 tokens (the start token X_0 tiled at t = 0)"),
           "track_ids": (f"[0, {cfg.num_ids})", "ID-vector row of each track slot (any value in an empty slot)"),
           "track_active": ("{false, true}", "true = an allocated object in this slot, false = empty slot"),
           "hist_masks": ("[0, 1]", "History Marker masks M_{t-1} of each slot on the h·w grid (zeros for empty slots)"),
           "mask_logits": ("real", f"mask logits at stride 4: rows [0, {cfg.num_ids}) the track slots, then "
                                   f"{cfg.num_queries} detection queries; > 0 = object"),
           }

    def row(name, t):
        key = name[len("next."):] if name.startswith("next.") else name
        rng, meaning = doc.get(key, ("real", "History Compressor Mamba state (zeros at t = 0)"))
        if key.startswith("class_logits."):
            rng, meaning = "real", "class logits of head " + key.split(".", 1)[1] + "; the last class is no-object"
        if name.startswith("next."):
            meaning = f"the next {key} (feed it back as input {key!r})"
        return {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                "range": rng, "meaning": meaning}

    return [row(n, t) for n, t in zip(names, args)], [row(n, t) for n, t in zip(out_names, outs)]


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's logging and warnings (torchvision ops, deprecations) are not the user's business."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._export", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def check_size(size) -> tuple[int, int]:
    """``size`` as (height, width) of positive integers.

    Raises:
        InputError: anything else.
    """
    if len(size) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in size):
        raise InputError(f"--size needs two positive integers (height width), got {tuple(size)!r}")
    return tuple(size)


def export_onnx(model: AUSMModel, out: str | os.PathLike, size: tuple[int, int] = (480, 854),
                opset: int | None = None, source: str = "") -> dict:
    """Export the streaming step of ``model`` to ``out`` (an ``.onnx`` file) and its contract to
    ``out + ".json"``; both appear only when complete (written to temporary files, then renamed).

    Args:
        model: the network; exported in float32 on the CPU (a copy; ``model`` is not changed).
        out: path of the ``.onnx`` file.
        size: (height, width) of the video frames the file is for, in pixels; the graph's fixed model input
            is ``cfg.input_size(*size)`` (e.g. 480×854 → 256×416 for the default ``ausm-lite-mo``). A model input size
            itself (multiples of 32 with the shorter side = ``cfg.input_short_side``) maps to itself.
        opset: ONNX opset, 18 (the default) up to the installed onnx's newest.
        source: where the weights came from (recorded in the contract).

    Returns:
        The contract (a JSON-able dict).

    Raises:
        InputError: a size that is not two positive integers, an opset out of range, or
            ``onnx``/``onnxscript`` missing.
    """
    check_size(size)
    try:
        import onnx  # the exporter needs both
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise InputError(f"ONNX export needs the export extra: pip install 'ausm[export]' ({e.name} is missing)") from e
    import copy

    net = copy.deepcopy(model).to("cpu", torch.float32).eval()
    in_size = net.cfg.input_size(*size)
    hw = (in_size[0] // 8, in_size[1] // 8)
    names, args = _example_inputs(net, in_size)
    graph = StepGraph(net, hw).eval()
    out_names = ["mask_logits", *[f"class_logits.{h}" for h in graph.heads],
                 *[f"next.{n}" for n in state_names(len(net.compressor.layers))]]
    with torch.no_grad():
        net.position(*hw, args[0])  # the position table is a constant of the graph
        outs = graph(*args)
    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not DEFAULT_OPSET <= opset <= newest:
        raise InputError(f"--opset must be an integer from {DEFAULT_OPSET} to {newest} (the installed onnx), got {opset!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(graph, args, tmp, input_names=names, output_names=out_names, opset_version=opset,
                              dynamo=True, external_data=False)
        apply_umask(tmp)
        inputs, outputs = _io_spec(net, names, args, out_names, outs)
        contract = {
            "format": CONTRACT_FORMAT, "version": CONTRACT_VERSION, "opset": opset, "source": str(source),
            "onnx_file": out.name, "sha256": file_sha256(tmp),
            "input_size": list(in_size), "grid": list(hw), "frame_size": list(size),
            "num_ids": net.cfg.num_ids, "num_queries": net.cfg.num_queries,
            "class_heads": {h: int(net.class_heads[h].out_features) for h in graph.heads},
            "state": [{"input": n, "output": f"next.{n}"} for n in state_names(len(net.compressor.layers))],
            "initial_state": {"x_prev": "start_token tiled over the h·w rows", "mamba": "zeros",
                              "start_token": [float(v) for v in net.start_token.detach().float()]},
            "inputs": inputs, "outputs": outputs, "config": net.cfg.to_dict(),
        }
        with atomic_open(contract_path(out), "w") as f:
            json.dump(contract, f, indent=1)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return contract
