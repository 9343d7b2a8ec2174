"""The training configuration: :class:`TrainConfig` (spec §6 hyper-parameters; [D] where the paper is
silent), loaded from JSON + ``key=value`` overrides and type-checked before a run writes anything."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Training hyper-parameters (spec §6; [D] where the paper is silent).

    ``batch_size`` clips per step on this process; the global batch is
    ``batch_size × grad_accum × world_size``.
    """

    preset: str = "ausm-tiny"
    model_overrides: dict = field(default_factory=dict)
    datasets: list = field(default_factory=list)  # mixture specs (see docs/DATA.md); empty = davis_* below
    davis_root: str = ""
    davis_split: str = "train"
    davis_resolution: str = "240p"
    davis_year: int = 2016
    exhaustive: bool = True  # DAVIS-2016 labels the one primary object: detection loss on [D]
    prompt_prob: float = 0.7
    detect_only_prob: float = 0.1
    clip_len: int = 4
    max_stride: int = 3
    size: tuple[int, int] = (224, 384)
    batch_size: int = 2
    grad_accum: int = 1
    steps: int = 2000  # length of the schedule (lr drop at lr_drop_at · steps)
    max_steps: int = 0  # stop after this step without changing the schedule (0 = steps)
    lr: float = 2e-4
    backbone_lr_mult: float = 1.0
    weight_decay: float = 0.05
    lr_drop_at: float = 0.85
    warmup: int = 50
    clip_grad: float = 1.0
    dist_timeout_s: int = 1800  # collective timeout across ranks
    max_nonfinite: int = 20  # stop after this many consecutive steps with a non-finite loss/gradient
    num_points: int = 2048
    seed: int = 0
    out: str = "runs/ausm-tiny"
    ckpt_every: int = 100
    keep_every: int = 0  # also keep OUT/ckpts/step_NNNNN every N steps (for score-vs-step curves)
    log_every: int = 10
    vis_every: int = 100  # TensorBoard sample-mask images every N steps (0 = never)
    threads: int = 0
    mode: str = "parallel"  # or "iterative" (frame-by-frame baseline)
    init_from: str = ""  # "" = random init; a checkpoint folder (the previous stage); or
    # "mask2former:<folder or hub id>" (Mask2Former COCO instance weights, needs encoder="mask2former")
    freeze_backbone: bool = False  # Stage 3 [P]: the backbone's parameters get no updates
    # train only the parameters whose names start with one of these prefixes (e.g. ["class_heads.shapes"]
    # to fit a new class head on frozen features); empty = all. Frozen BatchNorm layers keep their statistics.
    trainable: list = field(default_factory=list)
    device: str = "auto"  # auto: CUDA (rank's local GPU) if available, else CPU
    bf16: bool = True  # bf16 autocast on CUDA GPUs that support it (never fp16 on CPU)

    def __post_init__(self):
        self.validate()

    @classmethod
    def from_dict(cls, d) -> "TrainConfig":
        """A config from a JSON object, every field type-checked (ints stay ints, ``[H, W]`` → a tuple).

        Raises:
            ConfigError: not an object, unknown keys, a wrong type or an out-of-range value (one line).
        """
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a JSON object, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"unknown training options {unknown}; known: {sorted(fields)}")
        return cls(**{k: _check_type(k, v, fields[k].type) for k, v in d.items()})

    @classmethod
    def load(cls, path=None, overrides=()) -> "TrainConfig":
        """A config from a JSON file (or none) plus ``key=value`` overrides (values parsed as JSON, else
        kept as strings), type-checked before anything is written (``ausm train`` uses it).

        Args:
            path: a JSON file of TrainConfig fields, or None.
            overrides: ``"key=value"`` strings; later ones win.

        Raises:
            ConfigError: an unreadable file, not a JSON object, a malformed override, unknown keys, a
                wrong type or range (one line).
        """
        kw = {}
        if path:
            try:
                loaded = json.loads(Path(path).read_text())
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"cannot read config {path}: {e}") from e
            if not isinstance(loaded, dict):
                raise ConfigError(f"{path}: a training config must be a JSON object, got {type(loaded).__name__}")
            kw.update(loaded)
        fields = {f.name for f in dataclasses.fields(cls)}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not key=value")
            k, v = item.split("=", 1)
            if k not in fields:
                raise ConfigError(f"unknown training option {k!r}; known: {sorted(fields)}")
            try:
                kw[k] = json.loads(v)
            except json.JSONDecodeError:
                kw[k] = v
        return cls.from_dict(kw)

    def validate(self) -> None:
        """Ranges and enums of every field.

        Raises:
            ConfigError: the first bad value, in one line.
        """
        for f in dataclasses.fields(self):  # constructed directly (not from JSON): types too
            setattr(self, f.name, _check_type(f.name, getattr(self, f.name), f.type))
        at_least = {"steps": 1, "batch_size": 1, "grad_accum": 1, "clip_len": 1, "max_stride": 1, "num_points": 1,
                    "ckpt_every": 1, "log_every": 1, "max_nonfinite": 1, "dist_timeout_s": 1, "max_steps": 0,
                    "warmup": 0, "keep_every": 0, "vis_every": 0, "threads": 0, "davis_year": 2016}
        for k, lo in at_least.items():
            if getattr(self, k) < lo:
                raise ConfigError(f"training option {k} must be >= {lo}, got {getattr(self, k)}")
        for k in ("lr",):
            if not getattr(self, k) > 0:
                raise ConfigError(f"training option {k} must be > 0, got {getattr(self, k)}")
        for k in ("backbone_lr_mult", "weight_decay", "clip_grad"):
            if getattr(self, k) < 0:
                raise ConfigError(f"training option {k} must be >= 0, got {getattr(self, k)}")
        for k in ("prompt_prob", "detect_only_prob"):
            if not 0 <= getattr(self, k) <= 1:
                raise ConfigError(f"training option {k} must be in [0, 1], got {getattr(self, k)}")
        if not 0 < self.lr_drop_at <= 1:
            raise ConfigError(f"training option lr_drop_at must be in (0, 1], got {self.lr_drop_at}")
        if self.mode not in ("parallel", "iterative"):
            raise ConfigError(f"training option mode must be 'parallel' or 'iterative', got {self.mode!r}")
        if len(self.size) != 2 or any(v <= 0 or v % 32 for v in self.size):
            raise ConfigError(f"training option size must be [H, W], positive multiples of 32, got {list(self.size)}")
        for i, spec in enumerate(self.datasets):
            if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
                raise ConfigError(f"datasets[{i}] must be an object with a 'type' string, got {spec!r}")
            w = spec.get("weight", 1.0)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise ConfigError(f"datasets[{i}].weight must be a number >= 0, got {w!r}")
            for key, val in (spec.get("clip") or {}).items():
                if key in ("exhaustive",) and not isinstance(val, bool):
                    raise ConfigError(f"datasets[{i}].clip.{key} must be true or false, got {val!r}")


def _check_type(name: str, value, annotation: str):
    """``value`` checked against a field annotation (``from __future__`` strings: int, float, bool, str,
    dict, list, tuple[int, int]); returns it (ints accepted for floats, a 2-list for the tuple).

    Raises:
        ConfigError: a wrong type.
    """
    ann = str(annotation)
    def bad(what):
        return ConfigError(f"training option {name} must be {what}, got {value!r}")
    if ann == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif ann == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif ann == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif ann == "str":
        if not isinstance(value, str):
            raise bad("a string")
    elif ann == "dict":
        if not isinstance(value, dict):
            raise bad("an object")
    elif ann == "list":
        if not isinstance(value, list):
            raise bad("a list")
    elif ann.startswith("tuple"):
        if not isinstance(value, (list, tuple)) or len(value) != 2 or \
                any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise bad("[H, W] (two integers)")
        value = tuple(value)
    return value
