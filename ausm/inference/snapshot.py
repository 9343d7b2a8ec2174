"""A :class:`~ausm.inference.session.Session` as tensors + JSON-able metadata, and back (no pickle).

Layout of the state (version :data:`SESSION_STATE_VERSION`):

* tensors — the object table (:meth:`ObjectTable.state_tensors`: ``slot_id``, ``slot_obj``, ``free``,
  ``cls_max``, ``rng``, ``slot_mask`` once the stream has started), the network's stream state
  (:meth:`StreamState.to_tensors`: ``x_prev``, ``mamba.<i>.conv_state`` / ``ssm_state``) and the pending
  mask prompts (``pending.<frame>.<obj>``);
* meta — options (class head, threshold, detection switch, seed), frame index, sizes, object
  bookkeeping, pending box / point prompts and how box / point prompts were resolved.

:mod:`ausm.inference.resume` writes it to disk (safetensors + JSON).
"""
from __future__ import annotations

import torch

from ..errors import InputError
from ..model.ausm import StreamState

__all__ = ["SESSION_STATE_VERSION", "session_state", "restore_session"]

#: state format; 2 stores the Mamba SSM states state-major (L, d_state, d_inner), 3 also the conv
#: states time-major (L, d_conv, d_inner) (:class:`~ausm.model.mamba.MambaState`); version-1 and -2
#: states (the older layouts) still load, transposed.
SESSION_STATE_VERSION = 3


def session_state(session) -> dict:
    """``{"tensors": {name: CPU tensor}, "meta": JSON-able dict}`` of ``session`` (module doc)."""
    tensors = session.objects.state_tensors()
    pending, pending_tensors = session.pending.state()
    tensors.update(pending_tensors)
    st = session.stream_state
    if st is not None:
        tensors.update(st.to_tensors())
    meta = {
        "version": SESSION_STATE_VERSION, "num_ids": int(session.cfg.num_ids), "class_head": session.class_head,
        "fg_threshold": session.fg_threshold, "detect_new_objects": session._detect_arg, "seed": session._seed,
        "frame_idx": session._frame_idx, **session.objects.state_meta(), "any_prompt": session._any_prompt,
        "frame_size": list(session._frame_size) if session._frame_size else None,
        "input_size": list(session._input_size) if session._input_size else None,
        "hw": list(st.hw) if st is not None else None, "t": st.t if st is not None else None,
        "mamba_layers": len(st.mamba) if st is not None else None,
        "prompt_sources": [[f, o, how] for (f, o), how in sorted(session.prompt_sources.items())],
        "pending": pending,
    }
    return {"tensors": tensors, "meta": meta}


def restore_session(session, state: dict) -> None:
    """Load :func:`session_state`'s output into ``session`` (over the same model); on any error the
    session is left reset.

    Raises:
        InputError: the state is incomplete, of an unknown version, or belongs to a model of another shape.
    """
    if not isinstance(state, dict) or not isinstance(state.get("meta", {}), dict) \
            or not isinstance(state.get("tensors", {}), dict):
        raise InputError(f"not a session state: expected {{'tensors': {{...}}, 'meta': {{...}}}}, got "
                         f"{type(state).__name__}")
    try:
        meta, tensors = state["meta"], state["tensors"]
        version = _check_owner(session, meta)
        session.class_head = meta["class_head"]
        session.fg_threshold = float(meta["fg_threshold"])
        session._detect_arg = meta["detect_new_objects"]
        session._seed = int(meta["seed"])
        session.reset()
        started = meta["frame_size"] is not None
        session.objects.load(tensors, meta, with_history=started, device=session.device, dtype=session.dtype)
        session._frame_idx = int(meta["frame_idx"])
        session._any_prompt = bool(meta["any_prompt"])
        session.prompt_sources = {(int(f), int(o)): str(how) for f, o, how in meta["prompt_sources"]}
        session.pending.load(meta["pending"], tensors)
        if started:
            session.stream_state = _stream_state(session, tensors, meta, version)
            session._frame_size = tuple(int(v) for v in meta["frame_size"])
            session._input_size = tuple(int(v) for v in meta["input_size"])
    except KeyError as e:
        session.reset()
        raise InputError(f"incomplete session state: {e} is missing") from e
    except InputError:
        session.reset()
        raise
    except (TypeError, ValueError, AttributeError, RuntimeError) as e:  # fields of the wrong type or shape
        session.reset()
        raise InputError(f"malformed session state: {type(e).__name__}: {e}") from e


def _check_owner(session, meta: dict) -> int:
    """The state's version, after checking it belongs to a session of this model."""
    version = meta.get("version")
    if version not in (1, 2, SESSION_STATE_VERSION):
        raise InputError(f"unsupported session state version {meta.get('version')!r}")
    cfg, heads = session.cfg, session.backend.class_heads
    if meta["num_ids"] != cfg.num_ids:
        raise InputError(f"the session state has {meta['num_ids']} ID slots, this model has "
                         f"{cfg.num_ids}: it belongs to another model")
    if meta["class_head"] not in heads:
        raise InputError(f"the session state uses class head {meta['class_head']!r}, which this model "
                         f"lacks ({sorted(heads)})")
    return version


def _stream_state(session, tensors: dict, meta: dict, version: int) -> StreamState:
    """The network's stream state of the snapshot, checked against a fresh state of this model."""
    hw = tuple(int(v) for v in meta["hw"])
    ref = session.backend.init_state(1, hw)
    if len(ref.mamba) != int(meta["mamba_layers"]):
        raise InputError("the session state does not fit this model (another architecture)")
    try:
        with torch.inference_mode():
            return StreamState.from_tensors(tensors, ref, int(meta["t"]), ssm_inner_major=version == 1,
                                          conv_inner_major=version < 3)
    except ValueError as e:
        raise InputError(f"the session state does not fit this model (another architecture): {e}") from e
