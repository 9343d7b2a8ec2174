"""History Marker, History Compressor and History Decoder (spec §4; paper §3.2).

Token layout: a frame's stride-8 feature map (D, h, w) is flattened row-major to (h·w, D).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import FFN, Attention
from .mamba import Mamba, MambaState


def history_marker(ids: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """History Marker S (parameter-free, from Token Mark; spec §4):

    ``S[p] = Σ_i M_i[p] · A_i / (ε + Σ_i M_i[p])`` for every grid position p.

    Pixels covered by one object get its ID vector (up to ε), overlaps get the mask-weighted mean,
    background (Σ M = 0) gets exactly 0.

    Args:
        ids: (N, n, D) ID vectors A of the allocated objects (padding rows may hold anything when
            their masks are zero).
        masks: (N, n, P) float masks in [0, 1] on the flattened h·w grid (area-averaged).
        eps: ε > 0.

    Returns:
        (N, P, D) the marker S, same dtype as ``ids``.
    """
    masks = masks.to(ids.dtype)
    num = torch.einsum("nip,nid->npd", masks, ids)
    den = masks.sum(1).unsqueeze(-1) + eps
    return num / den


class CompressorLayer(nn.Module):
    """One History Compressor layer: temporal Mamba → spatial self-attention → FFN, each a pre-norm
    residual block (spec §4 [P] + [D])."""

    def __init__(self, cfg):
        super().__init__()
        D = cfg.hidden_dim
        self.norm_mamba = nn.LayerNorm(D)
        self.mamba = Mamba(D, d_state=cfg.mamba_d_state, d_conv=cfg.mamba_d_conv,
                           expand=cfg.mamba_expand, dt_rank=cfg.mamba_dt_rank)
        self.norm_attn = nn.LayerNorm(D)
        self.attn = Attention(D, cfg.compressor_heads)
        self.norm_ffn = nn.LayerNorm(D)
        self.ffn = FFN(D, cfg.compressor_ffn)

    def _spatial(self, x, pos):
        y = self.norm_attn(x)
        qk = y + pos
        x = x + self.attn(qk, qk, y)
        return x + self.ffn(self.norm_ffn(x))

    def forward(self, x: torch.Tensor, pos: torch.Tensor, scan: str = "auto") -> torch.Tensor:
        """x: (B, T, P, D); pos: (P, D). Returns (B, T, P, D)."""
        B, T, P, D = x.shape
        seq = self.norm_mamba(x).permute(0, 2, 1, 3).reshape(B * P, T, D)
        x = x + self.mamba(seq, scan=scan).reshape(B, P, T, D).permute(0, 2, 1, 3)
        x = self._spatial(x.reshape(B * T, P, D), pos).reshape(B, T, P, D)
        return x

    def step(self, x: torch.Tensor, pos: torch.Tensor, state: MambaState):
        """x: (B, P, D) one frame; state for B·P sequences. Returns (B, P, D), new state."""
        B, P, D = x.shape
        y, state = self.mamba.step(self.norm_mamba(x).reshape(B * P, D), state)
        x = x + y.reshape(B, P, D)
        return self._spatial(x, pos), state


class HistoryCompressor(nn.Module):
    """Stack of :class:`CompressorLayer`; compresses the marked history E_1..T into F_1..T with a
    per-pixel fixed-size recurrent state (paper §3.2)."""

    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList(CompressorLayer(cfg) for _ in range(cfg.compressor_layers))
        self.norm = nn.LayerNorm(cfg.hidden_dim)

    def forward(self, e: torch.Tensor, pos: torch.Tensor, scan: str = "auto") -> torch.Tensor:
        """Parallel form over a clip. e: (B, T, P, D); pos: (P, D). Returns F: (B, T, P, D)."""
        for layer in self.layers:
            e = layer(e, pos, scan=scan)
        return self.norm(e)

    def init_state(self, L: int, device=None, dtype=torch.float32) -> list[MambaState]:
        """Zero recurrent state for L = B·P pixel sequences: one :class:`MambaState` per layer."""
        return [layer.mamba.init_state(L, device=device, dtype=dtype) for layer in self.layers]

    def step(self, e: torch.Tensor, pos: torch.Tensor, state: list[MambaState]):
        """Recurrent form: one frame. e: (B, P, D). Returns F_t (B, P, D) and the new state."""
        new_state = []
        for layer, s in zip(self.layers, state):
            e, s = layer.step(e, pos, s)
            new_state.append(s)
        return self.norm(e), new_state


class HistoryDecoderLayer(nn.Module):
    """Pre-norm Transformer decoder layer: [self-attention →] cross-attention → FFN."""

    def __init__(self, cfg):
        super().__init__()
        D = cfg.hidden_dim
        self.use_self_attn = cfg.history_decoder_self_attn
        if self.use_self_attn:
            self.norm_self = nn.LayerNorm(D)
            self.self_attn = Attention(D, cfg.history_decoder_heads)
        self.norm_cross = nn.LayerNorm(D)
        self.cross_attn = Attention(D, cfg.history_decoder_heads)
        self.norm_ffn = nn.LayerNorm(D)
        self.ffn = FFN(D, cfg.history_decoder_ffn)

    def forward(self, x, mem, pos):
        if self.use_self_attn:
            y = self.norm_self(x)
            x = x + self.self_attn(y + pos, y + pos, y)
        y = self.norm_cross(x)
        x = x + self.cross_attn(y + pos, mem + pos, mem)
        return x + self.ffn(self.norm_ffn(x))


class HistoryDecoder(nn.Module):
    """Queries = the h·w tokens of X_t, keys/values = the tokens of F_t; output G_t (paper §3.2).
    Frames are independent given F, so any batch of frames (N = b·T) runs at once.

    ``forward(x, f, pos)``: x, f (N, P, D); pos (P, D) → G (N, P, D).
    """

    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList(HistoryDecoderLayer(cfg) for _ in range(cfg.history_decoder_layers))
        self.norm = nn.LayerNorm(cfg.hidden_dim)

    def forward(self, x, f, pos):
        for layer in self.layers:
            x = layer(x, f, pos)
        return self.norm(x)
