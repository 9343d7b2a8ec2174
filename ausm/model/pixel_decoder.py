"""Pixel Decoder: Mask2Former's masked-attention Transformer decoder over concat(ID vectors, V)
(spec §4; paper §3.2). Prediction heads run after the initial queries and after every layer
(deep supervision)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import FFN, MLP, Attention


class PixelDecoderLayer(nn.Module):
    """Masked cross-attention → self-attention → FFN, post-norm residual blocks (as Mask2Former)."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.cross_attn = Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm_self = nn.LayerNorm(dim)
        self.ffn = FFN(dim, ffn)
        self.norm_ffn = nn.LayerNorm(dim)

    def forward(self, q, q_pos, mem, mem_pos, cross_mask, self_mask):
        q = self.norm_cross(q + self.cross_attn(q + q_pos, mem + mem_pos, mem, mask=cross_mask))
        q = self.norm_self(q + self.self_attn(q + q_pos, q + q_pos, q, mask=self_mask))
        return self.norm_ffn(q + self.ffn(q))


class PixelDecoder(nn.Module):
    """Decodes track (ID-vector) and detection queries into masks and class embeddings.

    Owns the learned detection queries V (content ``query_feat`` and positional ``query_pos``,
    each (N_det, D)).
    """

    def __init__(self, cfg):
        super().__init__()
        D = cfg.hidden_dim
        self.num_queries = cfg.num_queries
        self.query_feat = nn.Embedding(cfg.num_queries, D)
        self.query_pos = nn.Embedding(cfg.num_queries, D)
        self.layers = nn.ModuleList(
            PixelDecoderLayer(D, cfg.pixel_decoder_heads, cfg.pixel_decoder_ffn)
            for _ in range(cfg.pixel_decoder_layers)
        )
        self.query_from_history = cfg.track_query_from_history
        if self.query_from_history:
            self.pool_proj = nn.Linear(D, D)
            nn.init.zeros_(self.pool_proj.weight)
            nn.init.zeros_(self.pool_proj.bias)
        self.decoder_norm = nn.LayerNorm(D)
        self.mask_embed = MLP(D, D, cfg.mask_dim, 3)

    def predict(self, q, mask_feats, mem_hw):
        """Prediction head. q (N, Q, D); mask_feats (N, C, H4, W4).

        Returns the normed query embedding (N, Q, D) (input of the class heads), mask logits
        (N, Q, H4, W4) and the next layer's cross-attention mask (N, 1, Q, h·w), bool, True = attend.
        """
        emb = self.decoder_norm(q)
        masks = torch.einsum("nqc,nchw->nqhw", self.mask_embed(emb), mask_feats)
        with torch.no_grad():
            small = F.interpolate(masks.detach().float(), size=mem_hw, mode="bilinear", align_corners=False)
            allow = small.flatten(2) >= 0.0  # sigmoid >= 0.5
            allow = allow | ~allow.any(-1, keepdim=True)  # a fully blocked row is unblocked
        return emb, masks, allow.unsqueeze(1)

    def forward(self, track_queries, track_valid, mem, mem_pos, mem_hw, mask_feats, track_hist):
        """Run the decoder on N frames at once.

        Args:
            track_queries: (N, n, D) ID vectors of the allocated objects (n may be 0).
            track_valid: (N, n) bool; False for padding / not-yet-allocated slots (key padding).
            mem: (N, P, D) G_t tokens; mem_pos (P, D); mem_hw = (h, w) with h·w = P.
            mask_feats: (N, mask_dim, H4, W4) stride-4 mask features P_t.
            track_hist: (N, n, h·w) History Marker masks M_{t-1} in [0, 1]; read only when the config's
                ``track_query_from_history`` is set: each track query becomes its ID vector plus
                ``pool_proj`` of G_t average-pooled over its mask (an empty mask adds ``pool_proj``'s bias).

        Returns:
            list over L+1 prediction points of (emb (N, n+N_det, D), mask logits (N, n+N_det, H4, W4));
            the first n queries are the tracks, the rest the detections.
        """
        N, n, D = track_queries.shape
        det = self.query_feat.weight.unsqueeze(0).expand(N, -1, -1)
        tq = track_queries.to(det.dtype)
        if self.query_from_history and n:
            # masked average pooling of G_t over each track's History Marker mask (0 when empty)
            w = track_hist.to(mem.dtype)
            tq = tq + self.pool_proj(torch.einsum("nip,npd->nid", w, mem) / (w.sum(-1, keepdim=True) + 1e-6))
        q = torch.cat([tq, det], dim=1)
        q_pos = torch.cat([q.new_zeros(N, n, D), self.query_pos.weight.unsqueeze(0).expand(N, -1, -1)], dim=1)
        valid = torch.cat([track_valid, track_valid.new_ones(N, self.num_queries)], dim=1)
        self_mask = valid[:, None, None, :]  # (N, 1, 1, Q)
        outputs = []
        emb, masks, cross_mask = self.predict(q, mask_feats, mem_hw)
        outputs.append((emb, masks))
        for layer in self.layers:
            q = layer(q, q_pos, mem, mem_pos, cross_mask, self_mask)
            emb, masks, cross_mask = self.predict(q, mask_feats, mem_hw)
            outputs.append((emb, masks))
        return outputs
