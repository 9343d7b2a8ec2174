"""The ONNX step back-end: an exported ``.onnx`` file run by onnxruntime (issue #17; docs/EXPORT.md).

:class:`OnnxStep` has the interface of :class:`ausm.inference.backends.TorchStep`, so the one
:class:`~ausm.inference.session.Session` (prompts, ID allocation, detections, outputs) drives it::

    from ausm.export import OnnxStep
    from ausm.inference import Session
    session = Session(OnnxStep("ausm-lite.onnx"))
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..config import AUSMConfig
from ..errors import AUSMError, CheckpointError, InputError
from ..inference.backends import StepOutput
from ..model.ausm import StreamState
from ..model.mamba import MambaState
from .onnx import CONTRACT_FORMAT, CONTRACT_VERSION, contract_path, file_sha256, state_names

__all__ = ["OnnxStep"]


def _read_contract(path: Path) -> dict:
    cp = contract_path(path)
    if not cp.is_file():
        raise CheckpointError(f"{path}: its contract {cp.name} is missing beside it (ausm export onnx writes both)")
    try:
        c = json.loads(cp.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cp}: not a readable JSON contract ({type(e).__name__}: {e})") from e
    if not isinstance(c, dict) or c.get("format") != CONTRACT_FORMAT:
        raise CheckpointError(f"{cp}: not an ausm ONNX contract (format {c.get('format') if isinstance(c, dict) else None!r})")
    if c.get("version") != CONTRACT_VERSION:
        raise CheckpointError(f"{cp}: contract version {c.get('version')!r}, this ausm reads {CONTRACT_VERSION}")
    return c


class OnnxStep:
    """Runs the streaming step of an exported ``.onnx`` file (``ausm export onnx``) with onnxruntime.

    Args:
        path: the ``.onnx`` file; its contract ``<path>.json`` must lie beside it.
        threads: intra-op threads of onnxruntime (default: ``torch.get_num_threads()``, so ``--threads``
            applies to both back-ends).
        providers: onnxruntime execution providers (default: CPU).

    The graph is fixed to one stream, ``num_ids`` track slots and one model input size; :meth:`step`
    pads the track queries to ``num_ids`` empty slots and runs the streams of a batch one by one.
    Outputs are float32 CPU tensors.

    Raises:
        InputError: onnxruntime is not installed. CheckpointError: a missing, corrupt or mismatched file
            (no contract, the file's SHA-256 differs from the contract's, inputs or outputs that differ from
            the contract).
    """

    kind = "onnx"
    model = None  # no PyTorch network: no test-time fine-tuning
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise InputError("the ONNX back-end needs onnxruntime: pip install 'ausm[export]'") from e
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX file not found: {path}")
        c = _read_contract(path)
        if file_sha256(path) != c.get("sha256"):
            raise CheckpointError(f"{path} does not match its contract {contract_path(path).name} (another "
                                  f"export or a damaged file): export it again with ausm export onnx")
        try:
            self.cfg = AUSMConfig.from_dict(c["config"])
        except (AUSMError, KeyError, TypeError) as e:
            raise CheckpointError(f"{contract_path(path)}: bad model config ({e})") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.log_severity_level = 3
        try:
            self.network = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for invalid graphs
            raise CheckpointError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''})") from e
        self.path, self.contract = path, c
        self._check_io(c)
        self.class_heads = {str(k): int(v) for k, v in c["class_heads"].items()}
        self.exported_size = tuple(c["input_size"])
        self.num_ids, self.num_layers = int(c["num_ids"]), len(c["state"]) // 2
        self._start = torch.tensor(c["initial_state"]["start_token"], dtype=torch.float32)
        self._state_names = state_names(self.num_layers)  # graph order: x_prev, then each layer's conv, ssm
        self._outputs = [o.name for o in self.network.get_outputs()]

    def _check_io(self, c: dict) -> None:
        """The graph's inputs and outputs are the contract's (names, shapes)."""
        for kind, have, want in (("input", self.network.get_inputs(), c["inputs"]),
                                 ("output", self.network.get_outputs(), c["outputs"])):
            got = [(a.name, list(a.shape)) for a in have]
            exp = [(r["name"], list(r["shape"])) for r in want]
            if got != exp:
                diff = next((f"{g} vs {e}" for g, e in zip(got, exp) if g != e), f"{len(got)} vs {len(exp)} {kind}s")
                raise CheckpointError(f"{self.path}: the graph's {kind}s differ from its contract ({diff})")

    def __repr__(self) -> str:
        return f"OnnxStep({str(self.path)!r}, input {self.exported_size[0]}x{self.exported_size[1]})"

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The exported model input size, when frames of (height, width) map to it.

        Raises:
            InputError: frames that need another model input size (another aspect ratio).
        """
        size = self.cfg.input_size(height, width)
        if tuple(size) != self.exported_size:
            H, W = self.exported_size
            fh, fw = self.contract["frame_size"]
            raise InputError(f"{self.path.name} was exported for model input {H}x{W} (frames like {fh}x{fw}); "
                             f"{height}x{width} frames need {size[0]}x{size[1]}: export again with "
                             f"ausm export onnx --size {height} {width}")
        return tuple(size)

    def init_state(self, batch: int, hw: tuple[int, int]) -> StreamState:
        """X_0 = the start token tiled over the grid, zero Mamba states (the contract's initial state)."""
        P = hw[0] * hw[1]
        shapes = {r["name"]: r["shape"] for r in self.contract["inputs"]}
        mamba = [MambaState(conv_state=torch.zeros(batch * P, *shapes[f"mamba.{i}.conv_state"][1:]),
                            ssm_state=torch.zeros(batch * P, *shapes[f"mamba.{i}.ssm_state"][1:]))
                 for i in range(self.num_layers)]
        return StreamState(x_prev=self._start.view(1, 1, -1).expand(batch, P, -1).clone(), mamba=mamba, hw=hw)

    def step(self, x: torch.Tensor, state: StreamState, track_ids: torch.Tensor, track_active: torch.Tensor,
             hist_masks: torch.Tensor) -> StepOutput:
        """One streaming step for B streams (one graph run each); arguments and result as
        :meth:`ausm.inference.backends.TorchStep.step`.

        Raises:
            InputError: a model input of another size, or more track queries than the graph's ``num_ids``.
        """
        B, n = track_ids.shape
        if tuple(x.shape[-2:]) != self.exported_size:
            raise InputError(f"model input {tuple(x.shape[-2:])}, the ONNX graph takes {self.exported_size}")
        if n > self.num_ids:
            raise InputError(f"{n} track queries, the ONNX graph has {self.num_ids} slots")
        outs = [self._run_one(x[b:b + 1], s, track_ids[b], track_active[b], hist_masks[b])
                for b, s in enumerate(state.split() if B > 1 else [state])]
        keep = torch.cat([torch.arange(n), torch.arange(self.num_ids, self.num_ids + self.cfg.num_queries)])
        masks = torch.cat([o["mask_logits"] for o in outs])[:, keep]
        logits = {h: torch.cat([o[f"class_logits.{h}"] for o in outs])[:, keep] for h in self.class_heads}
        states = [self._state_from(o, state.hw) for o in outs]
        new = StreamState.cat(states) if B > 1 else states[0]
        new.t = state.t + 1
        return StepOutput(masks=masks, class_logits=logits, state=new)

    def _run_one(self, x, state: StreamState, ids, active, hist) -> dict[str, torch.Tensor]:
        n, N = ids.shape[0], self.num_ids
        feeds = {"frame": x.float().contiguous().numpy()}
        feeds.update(self._state_feeds(state))
        pad_ids = np.zeros((1, N), np.int64)
        pad_ids[0, :n] = ids.cpu().numpy()
        pad_act = np.zeros((1, N), bool)
        pad_act[0, :n] = active.cpu().numpy()
        pad_hist = np.zeros((1, N, hist.shape[-1]), np.float32)
        pad_hist[0, :n] = hist.float().cpu().numpy()
        feeds.update(track_ids=pad_ids, track_active=pad_act, hist_masks=pad_hist)
        values = self.network.run(self._outputs, feeds)
        return {name: torch.from_numpy(v) for name, v in zip(self._outputs, values)}

    def _state_feeds(self, state: StreamState):
        """(name, array) of every state tensor, in the graph's order (:func:`~ausm.export.onnx.state_names`)."""
        flat = [state.x_prev] + [t for m in state.mamba for t in (m.conv_state, m.ssm_state)]
        for name, t in zip(self._state_names, flat):
            yield name, t.float().contiguous().numpy()

    def _state_from(self, out: dict, hw) -> StreamState:
        """The next state from a graph run's ``next.<name>`` outputs."""
        flat = [out[f"next.{name}"] for name in self._state_names]
        mamba = [MambaState(conv_state=flat[1 + 2 * i], ssm_state=flat[2 + 2 * i]) for i in range(self.num_layers)]
        return StreamState(x_prev=flat[0], mamba=mamba, hw=hw)
