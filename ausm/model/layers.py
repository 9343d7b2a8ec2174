"""Small building blocks shared by the AUSM modules: SDPA attention, FFN, MLP, sine positions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention on ``torch.nn.functional.scaled_dot_product_attention``.

    Args:
        dim: model width D (divisible by ``heads``).
        heads: number of heads.

    ``forward(q, k, v, mask=None)``: q (N, Lq, D), k and v (N, Lk, D); ``mask`` is a boolean
    tensor broadcastable to (N, heads, Lq, Lk) where **True means "may attend"** (SDPA
    convention). Returns (N, Lq, D).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, q, k, v, mask: torch.Tensor | None = None):
        N, Lq, D = q.shape
        Lk = k.shape[1]
        h = self.heads
        q = self.q_proj(q).view(N, Lq, h, D // h).transpose(1, 2)
        k = self.k_proj(k).view(N, Lk, h, D // h).transpose(1, 2)
        v = self.v_proj(v).view(N, Lk, h, D // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(N, Lq, D))


class FFN(nn.Module):
    """Two-layer feed-forward block ``Linear(D, hidden) → ReLU → Linear(hidden, D)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (Mask2Former's mask-embedding MLP)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def sine_position_embedding(h: int, w: int, dim: int, device=None, dtype=torch.float32,
                            temperature: float = 10000.0) -> torch.Tensor:
    """2-D sine positional encoding (DETR / Mask2Former style, normalised coordinates).

    Returns:
        (h·w, dim) tensor, row-major over (y, x); the first dim/2 channels encode y, the rest x.
    Raises:
        ValueError: if ``dim`` is not divisible by 4.
    """
    if dim % 4:
        raise ValueError(f"position-embedding dim must be divisible by 4, got {dim}")
    npf = dim // 2
    scale = 2 * math.pi
    eps = 1e-6
    y = (torch.arange(1, h + 1, device=device, dtype=torch.float32) / (h + eps)) * scale
    x = (torch.arange(1, w + 1, device=device, dtype=torch.float32) / (w + eps)) * scale
    dim_t = torch.arange(npf, device=device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / npf)
    py = y[:, None] / dim_t  # (h, npf)
    px = x[:, None] / dim_t  # (w, npf)
    py = torch.stack([py[:, 0::2].sin(), py[:, 1::2].cos()], dim=2).flatten(1)
    px = torch.stack([px[:, 0::2].sin(), px[:, 1::2].cos()], dim=2).flatten(1)
    pos = torch.cat([py[:, None, :].expand(h, w, npf), px[None, :, :].expand(h, w, npf)], dim=-1)
    return pos.reshape(h * w, dim).to(dtype)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide ``channels``."""
    g = min(32, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)
