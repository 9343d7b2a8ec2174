"""Initialise AUSM from Mask2Former COCO instance weights (spec §6: the paper's Stage-1 init).

Mapping from ``transformers``' ``Mask2FormerForUniversalSegmentation`` (e.g. the hub ids
``facebook/mask2former-swin-tiny-coco-instance`` / ``facebook/mask2former-swin-base-coco-instance``,
or any folder written by its ``save_pretrained``):

================================================================  ==========================================
Mask2Former                                                        AUSM
================================================================  ==========================================
``model.pixel_level_module.*``                                     ``encoder.pixel_level_module.*`` (frame encoder)
``model.transformer_module.queries_features``                      ``pixel_decoder.query_feat`` (V)
``model.transformer_module.queries_embedder``                      ``pixel_decoder.query_pos``
``...decoder.layers.i.cross_attn.in_proj_{weight,bias}``           ``pixel_decoder.layers.i.cross_attn.{q,k,v}_proj``
``...decoder.layers.i.cross_attn.out_proj``                        ``pixel_decoder.layers.i.cross_attn.out_proj``
``...decoder.layers.i.self_attn.{q,k,v,out}_proj``                 ``pixel_decoder.layers.i.self_attn.{q,k,v,out}_proj``
``...decoder.layers.i.{cross_attn,self_attn}_layer_norm``          ``pixel_decoder.layers.i.norm_{cross,self}``
``...decoder.layers.i.fc1 / fc2 / final_layer_norm``               ``pixel_decoder.layers.i.ffn.fc1 / fc2 / norm_ffn``
``...decoder.layernorm``                                           ``pixel_decoder.decoder_norm``
``...decoder.mask_predictor.mask_embedder.{0,1,2}.0``              ``pixel_decoder.mask_embed.layers.{0,1,2}``
``class_predictor``                                                ``class_heads.coco``
================================================================  ==========================================

Not mapped (AUSM-only, keep their init): History Compressor / Decoder, start token, ID vectors, the
other class heads. Mask2Former's ``level_embed`` is unused: AUSM's Pixel Decoder attends to the single
stride-8 map G_t.
"""
from __future__ import annotations

import re

import torch

from ..errors import CheckpointError


def map_mask2former_state_dict(src: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Rename (and split) a Mask2Former state dict into AUSM parameter names.

    Args:
        src: ``Mask2FormerForUniversalSegmentation.state_dict()``.
        num_layers: AUSM Pixel Decoder layers to fill (Mask2Former layers beyond are ignored).

    Returns:
        {AUSM name: tensor}.
    """
    out: dict[str, torch.Tensor] = {}
    tm = "model.transformer_module."
    for k, v in src.items():
        if k.startswith("model.pixel_level_module."):
            out["encoder." + k[len("model."):]] = v
        elif k == tm + "queries_features.weight":
            out["pixel_decoder.query_feat.weight"] = v
        elif k == tm + "queries_embedder.weight":
            out["pixel_decoder.query_pos.weight"] = v
        elif k.startswith("class_predictor."):
            out["class_heads.coco." + k.split(".", 1)[1]] = v
        elif k.startswith(tm + "decoder.layernorm."):
            out["pixel_decoder.decoder_norm." + k.rsplit(".", 1)[1]] = v
        elif k.startswith(tm + "decoder.mask_predictor.mask_embedder."):
            m = re.match(r".*mask_embedder\.(\d+)\.0\.(weight|bias)$", k)
            if m:
                out[f"pixel_decoder.mask_embed.layers.{m.group(1)}.{m.group(2)}"] = v
        else:
            m = re.match(re.escape(tm) + r"decoder\.layers\.(\d+)\.(.+)$", k)
            if not m:
                continue
            i, rest = int(m.group(1)), m.group(2)
            if i >= num_layers:
                continue
            p = f"pixel_decoder.layers.{i}."
            if rest.startswith("cross_attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]  # weight | bias
                for name, part in zip(("q", "k", "v"), v.chunk(3, dim=0)):
                    out[f"{p}cross_attn.{name}_proj.{kind}"] = part.clone()
            elif rest.startswith("cross_attn.out_proj."):
                out[p + "cross_attn.out_proj." + rest.rsplit(".", 1)[1]] = v
            elif rest.startswith("self_attn."):
                out[p + rest] = v  # q_proj / k_proj / v_proj / out_proj share our names
            elif rest.startswith("cross_attn_layer_norm."):
                out[p + "norm_cross." + rest.rsplit(".", 1)[1]] = v
            elif rest.startswith("self_attn_layer_norm."):
                out[p + "norm_self." + rest.rsplit(".", 1)[1]] = v
            elif rest.startswith("final_layer_norm."):
                out[p + "norm_ffn." + rest.rsplit(".", 1)[1]] = v
            elif rest.startswith(("fc1.", "fc2.")):
                out[p + "ffn." + rest] = v
    return out


def init_from_mask2former(model, path_or_id: str, strict_shapes: bool = True) -> dict:
    """Copy Mask2Former COCO instance weights into an AUSM model built with ``encoder="mask2former"``.

    Args:
        model: :class:`~ausm.model.AUSMModel`.
        path_or_id: a folder written by ``Mask2FormerForUniversalSegmentation.save_pretrained`` or a hub id.
        strict_shapes: raise on a shape mismatch (else skip those tensors).

    Returns:
        {"loaded": [AUSM names], "skipped": [(name, reason)], "not_initialised": [AUSM names]}.

    Raises:
        CheckpointError: the model does not use the Mask2Former encoder, the weights cannot be loaded,
            or shapes disagree.
    """
    from transformers import Mask2FormerForUniversalSegmentation

    if model.cfg.encoder != "mask2former":
        raise CheckpointError("init_from_mask2former needs a model with encoder='mask2former'")
    try:
        src = Mask2FormerForUniversalSegmentation.from_pretrained(path_or_id).state_dict()
    except Exception as e:  # missing folder, no network, corrupt file
        raise CheckpointError(f"cannot load Mask2Former weights from {path_or_id!r}: {e}") from e
    mapped = map_mask2former_state_dict(src, model.cfg.pixel_decoder_layers)
    own = model.state_dict()
    loaded, skipped = [], []
    for k, v in mapped.items():
        if k not in own:
            skipped.append((k, "no such AUSM parameter"))
            continue
        if own[k].shape != v.shape:
            if k.startswith("pixel_decoder.query_") and own[k].shape[1:] == v.shape[1:]:
                v = v[: own[k].shape[0]]  # fewer detection queries: keep the first ones
            elif strict_shapes:
                raise CheckpointError(f"shape mismatch for {k}: AUSM {tuple(own[k].shape)} vs Mask2Former {tuple(v.shape)}")
            else:
                skipped.append((k, f"shape {tuple(v.shape)} != {tuple(own[k].shape)}"))
                continue
        own[k] = v.to(own[k].dtype)
        loaded.append(k)
    model.load_state_dict(own)
    loaded_set = set(loaded)
    not_init = [k for k in own if k not in loaded_set]
    return {"loaded": loaded, "skipped": skipped, "not_initialised": not_init}
