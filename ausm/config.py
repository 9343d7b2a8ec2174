"""Model configuration: one dataclass and its named presets (spec §2 and §4).

Presets:
    ``ausm-lite``   ImageNet EfficientNet-Lite0, D = 128, 32 ID vectors (2-core CPU); single-object weights.
    ``ausm-tiny``   a small ResNet backbone and shallow stacks that train on a 2-core CPU.
    ``ausm-swin-t`` the paper's Swin-T model: D = 256, 6 compressor layers, 6 history-decoder layers,
                    9 pixel-decoder layers, 100 detection queries, 100 ID vectors.
    ``ausm-swin-b`` the same with a Swin-B backbone.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

#: Class heads of the paper's labelled datasets (spec §4): name → number of classes (without no-object).
PAPER_CLASS_HEADS: dict[str, int] = {"coco": 80, "ytvis2019": 40, "ytvis2021": 40, "ovis": 25}


@dataclass
class AUSMConfig:
    """Every architectural choice of an AUSM model.

    Attributes:
        name: preset name or a user's label.
        backbone_type: a ``transformers`` model type with an ``AutoBackbone`` (``resnet``, ``swin``,
            ``convnext``, ...).
        backbone_kwargs: keyword arguments of that type's config (``out_features`` is set by us).
        backbone_pretrained: optional hub id / path for ``AutoBackbone.from_pretrained``; ``None`` =
            random init from the config (offline).
        encoder: neck of the frame encoder: ``"fpn"`` (light) or ``"mask2former"`` (the paper's:
            Mask2Former's pixel-level module, so COCO instance weights can initialise it).
        mask2former_kwargs: extra ``Mask2FormerConfig`` fields for ``encoder="mask2former"``.
        hidden_dim: D, width of every token (256 [P]).
        num_queries: N_det detection queries V (100 [P]).
        num_ids: N_id ID vectors in the buffer B (100 [P]); also the most objects a stream can hold.
        compressor_layers / compressor_heads / compressor_ffn: History Compressor stack (6 [P] / 8 / 4·D).
        mamba_d_state / mamba_d_conv / mamba_expand / mamba_dt_rank: Mamba-1 sizes (16 / 4 / 2 /
            ceil(D/16) when ``None``).
        history_decoder_layers / history_decoder_self_attn: History Decoder stack (6 [P]).
        pixel_decoder_layers / pixel_decoder_heads / pixel_decoder_ffn: Pixel Decoder (9 / 8 / 2048).
        track_query_from_history: a track query is its ID vector plus a linear map (zero-initialised)
            of G_t average-pooled over its History Marker mask M_{t-1} [D] (docs/DESIGN.md: without it
            ausm-lite predicted the same salient object for every prompted ID).
        mask_dim: channels of the stride-4 mask features P_t and the mask embeddings.
        fine_dim: channels of the FPN's stride-4 level (``None`` = D); smaller saves most of the
            neck's cost at stride 4.
        class_heads: per-dataset class heads, name → number of classes (a class-agnostic
            object/no-object head named ``agnostic`` always exists).
        class_names: optional category names per head, stored in checkpoints.
        input_short_side: inference resize: shorter image side in pixels (the paper uses 1024).
        input_max_long_side: cap on the longer side after resizing.
        size_divisor: model input sides are rounded to a multiple of this (backbone stride 32).
        fg_threshold: foreground probability above which a detection becomes a new track (0.5 [P]).
        marker_eps: ε of the History Marker.
        pixel_mean / pixel_std: ImageNet normalisation on 0..1 RGB.
    """

    name: str = "custom"
    backbone_type: str = "resnet"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    backbone_pretrained: str | None = None
    encoder: str = "fpn"
    mask2former_kwargs: dict[str, Any] = field(default_factory=dict)
    hidden_dim: int = 256
    num_queries: int = 100
    num_ids: int = 100
    compressor_layers: int = 6
    compressor_heads: int = 8
    compressor_ffn: int = 1024
    mamba_d_state: int = 16
    mamba_d_conv: int = 4
    mamba_expand: int = 2
    mamba_dt_rank: int | None = None
    history_decoder_layers: int = 6
    history_decoder_heads: int = 8
    history_decoder_ffn: int = 1024
    history_decoder_self_attn: bool = True
    pixel_decoder_layers: int = 9
    pixel_decoder_heads: int = 8
    pixel_decoder_ffn: int = 2048
    track_query_from_history: bool = False
    mask_dim: int = 256
    fine_dim: int | None = None
    class_heads: dict[str, int] = field(default_factory=dict)
    class_names: dict[str, list[str]] = field(default_factory=dict)
    input_short_side: int = 1024
    input_max_long_side: int = 1824
    size_divisor: int = 32
    fg_threshold: float = 0.5
    marker_eps: float = 1e-6
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a clear message on an inconsistent config."""
        def positive(name):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"config.{name} must be a positive integer, got {v!r}")
        for n in ("hidden_dim", "num_queries", "num_ids", "compressor_heads", "compressor_ffn",
                  "mamba_d_state", "mamba_d_conv", "mamba_expand", "history_decoder_heads",
                  "history_decoder_ffn", "pixel_decoder_heads", "pixel_decoder_ffn", "mask_dim",
                  "input_short_side", "input_max_long_side", "size_divisor"):
            positive(n)
        if self.fine_dim is not None and (not isinstance(self.fine_dim, int) or isinstance(self.fine_dim, bool)
                                          or self.fine_dim <= 0):
            raise ConfigError(f"config.fine_dim must be a positive integer or null, got {self.fine_dim!r}")
        for n in ("compressor_layers", "history_decoder_layers", "pixel_decoder_layers"):
            v = getattr(self, n)
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"config.{n} must be a non-negative integer, got {v!r}")
        if self.hidden_dim % 4:
            raise ConfigError(f"config.hidden_dim must be divisible by 4, got {self.hidden_dim}")
        for n in ("compressor_heads", "history_decoder_heads", "pixel_decoder_heads"):
            if self.hidden_dim % getattr(self, n):
                raise ConfigError(f"config.hidden_dim {self.hidden_dim} is not divisible by config.{n}")
        if not 0.0 < self.fg_threshold < 1.0:
            raise ConfigError(f"config.fg_threshold must be in (0, 1), got {self.fg_threshold}")
        if self.encoder not in ("fpn", "mask2former"):
            raise ConfigError(f"config.encoder must be 'fpn' or 'mask2former', got {self.encoder!r}")
        if "agnostic" in self.class_heads:
            raise ConfigError("class head name 'agnostic' is reserved for the class-agnostic head")
        for k, v in self.class_heads.items():
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"class head {k!r} needs a positive class count, got {v!r}")
        for k, names in self.class_names.items():
            n = 1 if k == "agnostic" else self.class_heads.get(k)
            if n is None or len(names) != n:
                raise ConfigError(f"class_names[{k!r}] has {len(names)} names, head has {n}")

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Model input (H', W') in pixels for an image of (height, width) pixels: shorter side scaled to
        ``input_short_side`` (longer side capped at ``input_max_long_side``), both rounded to a multiple of
        ``size_divisor`` (at least one multiple). The one rule of every step back-end."""
        div = self.size_divisor
        s = self.input_short_side / min(height, width)
        s = min(s, self.input_max_long_side / max(height, width))
        return (max(div, round(height * s / div) * div), max(div, round(width * s / div) * div))

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pixel_mean"] = list(self.pixel_mean)
        d["pixel_std"] = list(self.pixel_std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AUSMConfig":
        """Build from a dict; unknown keys raise :class:`ConfigError` (typos must not pass silently)."""
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config keys: {unknown}")
        d = dict(d)
        for k in ("pixel_mean", "pixel_std"):
            if k in d:
                d[k] = tuple(d[k])
        try:
            return cls(**d)
        except TypeError as e:  # pragma: no cover - dataclass signature errors
            raise ConfigError(str(e)) from e

    def replace(self, **kw) -> "AUSMConfig":
        """A copy with some fields changed (validated)."""
        d = copy.deepcopy(self.to_dict())
        d.update(kw)
        return AUSMConfig.from_dict(d)


def _tiny() -> AUSMConfig:
    return AUSMConfig(
        name="ausm-tiny",
        backbone_type="resnet",
        backbone_kwargs=dict(embedding_size=32, hidden_sizes=[32, 64, 128, 192], depths=[1, 1, 2, 1],
                             layer_type="basic"),
        hidden_dim=64, num_queries=10, num_ids=16,
        compressor_layers=2, compressor_heads=4, compressor_ffn=256,
        mamba_d_state=8,
        history_decoder_layers=2, history_decoder_heads=4, history_decoder_ffn=256,
        pixel_decoder_layers=3, pixel_decoder_heads=4, pixel_decoder_ffn=256,
        mask_dim=64,
        input_short_side=192, input_max_long_side=448,
    )


def _lite() -> AUSMConfig:
    """The shipped default (issue #13): ImageNet EfficientNet-Lite0 backbone (frozen BatchNorm, stem and
    stride-4 blocks frozen), D = 128, 32 ID vectors, sized to stream at 480p on a 2-core CPU."""
    from .model.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD
    return AUSMConfig(
        name="ausm-lite",
        backbone_type="efficientnet_lite",
        backbone_kwargs=dict(variant="lite0", frozen_stages=2),
        backbone_pretrained="imagenet",
        hidden_dim=128, num_queries=20, num_ids=32,
        compressor_layers=2, compressor_heads=4, compressor_ffn=256,
        mamba_d_state=8,
        history_decoder_layers=2, history_decoder_heads=4, history_decoder_ffn=256, history_decoder_self_attn=False,
        pixel_decoder_layers=3, pixel_decoder_heads=4, pixel_decoder_ffn=512,
        mask_dim=64, fine_dim=64,
        input_short_side=192, input_max_long_side=448,
        pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD,
    )


def _swin(name: str, embed_dim: int, depths: list[int], heads: list[int], window: int) -> AUSMConfig:
    return AUSMConfig(
        name=name,
        backbone_type="swin",
        backbone_kwargs=dict(embed_dim=embed_dim, depths=depths, num_heads=heads, window_size=window,
                             image_size=384 if window == 12 else 224, drop_path_rate=0.3),
        hidden_dim=256, num_queries=100, num_ids=100,
        compressor_layers=6, compressor_heads=8, compressor_ffn=1024,
        history_decoder_layers=6, history_decoder_heads=8, history_decoder_ffn=1024,
        pixel_decoder_layers=9, pixel_decoder_heads=8, pixel_decoder_ffn=2048,
        mask_dim=256, class_heads=dict(PAPER_CLASS_HEADS), encoder="mask2former",
        input_short_side=1024, input_max_long_side=1824,
    )


def _lite_mo() -> AUSMConfig:
    """ausm-lite with history-pooled track queries (``track_query_from_history``): the shipped
    multi-object model (stage 3 of the lite recipe; issue #13)."""
    return _lite().replace(name="ausm-lite-mo", track_query_from_history=True)


PRESETS = {
    "ausm-lite": _lite,
    "ausm-lite-mo": _lite_mo,
    "ausm-tiny": _tiny,
    "ausm-swin-t": lambda: _swin("ausm-swin-t", 96, [2, 2, 6, 2], [3, 6, 12, 24], 7),
    "ausm-swin-b": lambda: _swin("ausm-swin-b", 128, [2, 2, 18, 2], [4, 8, 16, 32], 12),
}


def list_presets() -> list[str]:
    """Names accepted by :func:`get_config`."""
    return sorted(PRESETS)


def get_config(name: str, **overrides) -> AUSMConfig:
    """A fresh preset config, optionally with fields overridden.

    Raises:
        ConfigError: unknown preset name or invalid override.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {list_presets()}")
    cfg = PRESETS[name]()
    return cfg.replace(**overrides) if overrides else cfg
