"""Mamba-1 selective state-space layer in pure PyTorch (Gu & Dao 2023), with two code paths.

* :meth:`Mamba.forward` runs a whole sequence at once (the parallel, teacher-forced training path).
  The linear recurrence ``h_t = a_t * h_{t-1} + b_t`` has several interchangeable implementations
  (``scan=``):

  - ``"recurrent"``: :func:`selective_scan_recurrent`, a time loop over whole (L, d_inner, d_state)
    tensors with a hand-written backward (one stored state tensor, no autograd graph per step).
    Measured 5–7× faster than ``"associative"`` for forward + backward at T = 16 on CPU
    (docs/PERFORMANCE.md), with less memory than the autograd loop ``"naive"``.
  - ``"associative"`` (alias ``"parallel"``): the Hillis-Steele associative scan, ``ceil(log2 T)``
    whole-tensor steps; it materialises (L, T, d_inner, d_state) tensors log2 T times, which costs
    more than it saves on CPU.
  - ``"cuda"``: the fused ``selective_scan_fn`` kernel of the ``mamba_ssm`` package, when it is
    installed and the tensors are on a CUDA device.
  - ``"auto"`` (default): ``"cuda"`` when possible, else ``"recurrent"``.
  - ``"naive"``: :func:`selective_scan_naive`, the reference loop under autograd.
* :meth:`Mamba.step` advances one time step from an explicit fixed-size :class:`MambaState`
  (``conv_state`` of shape (L, d_conv, d_inner) and ``ssm_state`` of shape (L, d_state, d_inner):
  d_inner innermost, so that every element-wise op of the step runs along the contiguous d_inner
  axis — 3–7× faster on CPU than (L, d_inner, d_state), where the innermost axis is only d_state
  long, and 3–4× for the conv state's shift and sum than (L, d_inner, d_conv); docs/PERFORMANCE.md).
  Without autograd the step updates its fresh temporaries in place.

All must agree with :func:`selective_scan_naive` (tested in float64 to 1e-10, gradients included).
In AUSM (spec §4, History Compressor) every pixel of the stride-8 grid is one independent sequence
over frames: layout (b·h·w, T, D).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MambaState:
    """Recurrent state of one :class:`Mamba` layer for L independent sequences.

    Attributes:
        conv_state: (L, d_conv, d_inner) float, the last ``d_conv`` inputs of the causal conv,
            oldest first (time-major: the transpose of ``nn.Conv1d``'s (L, d_inner, d_conv) window).
        ssm_state: (L, d_state, d_inner) float, the SSM hidden state h_t (state-major: the transpose
            of the (L, d_inner, d_state) layout the scans use).
    """

    conv_state: torch.Tensor
    ssm_state: torch.Tensor

    def nbytes(self) -> int:
        return self.conv_state.numel() * self.conv_state.element_size() + (
            self.ssm_state.numel() * self.ssm_state.element_size()
        )


def associative_scan(a: torch.Tensor, b: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Inclusive parallel scan of the first-order recurrence ``h_t = a_t * h_{t-1} + b_t``, h_{-1} = 0.

    Uses the associative operator (a1, b1) ∘ (a2, b2) = (a1·a2, a2·b1 + b2) in the
    Hillis-Steele form: ceil(log2 T) steps, each a whole-tensor multiply-add.

    Args:
        a: decay factors, any shape with time along ``dim``; float.
        b: inputs, same shape and dtype as ``a``.
        dim: the time dimension.

    Returns:
        h: same shape as ``b``; ``h[t] = sum_{s<=t} (prod_{s<r<=t} a_r) b_s``.
    """
    if a.shape != b.shape:
        raise ValueError(f"associative_scan: a {tuple(a.shape)} and b {tuple(b.shape)} differ")
    T = a.shape[dim]
    a = a.movedim(dim, 0)
    b = b.movedim(dim, 0)
    offset = 1
    while offset < T:
        # element t combines with element t - offset (those t < offset are already complete)
        b_new = b[offset:] + a[offset:] * b[:-offset]
        a_new = a[offset:] * a[:-offset]
        b = torch.cat([b[:offset], b_new], dim=0)
        a = torch.cat([a[:offset], a_new], dim=0)
        offset *= 2
    return b.movedim(0, dim)


def _discretize(x, dt, A, B):
    """Zero-order-hold discretisation used by Mamba: dA = exp(dt·A), dBx = dt·B·x.

    Shapes: x, dt (L, T, d_inner); A (d_inner, d_state); B (L, T, d_state).
    Returns dA, dBx of shape (L, T, d_inner, d_state).
    """
    dA = torch.exp(dt.unsqueeze(-1) * A)
    dBx = (dt * x).unsqueeze(-1) * B.unsqueeze(2)
    return dA, dBx


def selective_scan_parallel(x, dt, A, B, C, D):
    """Selective scan with the associative parallel scan over time.

    Args:
        x: (L, T, d_inner) input after conv + SiLU.
        dt: (L, T, d_inner) positive step sizes (after softplus).
        A: (d_inner, d_state) negative real state matrix (diagonal).
        B, C: (L, T, d_state) input-dependent projections.
        D: (d_inner,) skip connection.

    Returns:
        y: (L, T, d_inner); last hidden state h_T: (L, d_inner, d_state).
    """
    dA, dBx = _discretize(x, dt, A, B)
    h = associative_scan(dA, dBx, dim=1)  # (L, T, d_inner, d_state)
    y = torch.einsum("ltdn,ltn->ltd", h, C) + x * D
    return y, h[:, -1]


class _RecurrentScan(torch.autograd.Function):
    """Selective scan as a time loop with an explicit backward (see :func:`selective_scan_recurrent`).

    Forward stores every state h_t (L, T, d_inner, d_state) once. Backward runs the adjoint
    recurrence ``g_t = dy_t ⊗ C_t + a_{t+1} * g_{t+1}`` in reverse, forming the gradients of time
    step t from g_t inside the same loop (a_t is recomputed, not stored).
    """

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D):
        L, T, d = x.shape
        dtx = dt * x
        H = x.new_empty(L, T, d, A.shape[1])
        y = torch.empty_like(x)
        h = x.new_zeros(L, d, A.shape[1])
        for t in range(T):
            h = torch.exp(dt[:, t, :, None] * A) * h + dtx[:, t, :, None] * B[:, t, None, :]
            H[:, t] = h
            y[:, t] = torch.bmm(h, C[:, t, :, None])[..., 0]
        y += x * D
        ctx.save_for_backward(x, dt, A, B, C, D, H)
        return y, h.clone()

    @staticmethod
    def backward(ctx, gy, gh):
        x, dt, A, B, C, D, H = ctx.saved_tensors
        L, T, d, n = H.shape
        if gy is None:
            gy = torch.zeros_like(x)
        dtx = dt * x
        dC, d_dtx, dB = torch.empty_like(C), torch.empty_like(x), torch.empty_like(B)
        d_dt = torch.zeros_like(x)  # the a-part of dL/d(dt) is 0 at t = 0 (h_{-1} = 0)
        dA = torch.zeros_like(A)
        g = gh.clone() if gh is not None else H.new_zeros(L, d, n)
        for t in range(T - 1, -1, -1):  # adjoint recurrence, one time step of whole tensors at a time
            gy_t = gy[:, t, :, None]
            g = torch.addcmul(g, gy_t, C[:, t, None, :])          # dL/dh_t
            dC[:, t] = torch.bmm(gy[:, t, None, :], H[:, t])[:, 0]
            d_dtx[:, t] = torch.bmm(g, B[:, t, :, None])[..., 0]
            dB[:, t] = torch.bmm(dtx[:, t, None, :], g)[:, 0]
            if t > 0:
                a_t = torch.exp(dt[:, t, :, None] * A)
                w = g * H[:, t - 1] * a_t                            # dL/da_t * a_t
                d_dt[:, t] = (w * A).sum(-1)
                dA += torch.einsum("ldn,ld->dn", w, dt[:, t])
                g = g * a_t
        d_dt += d_dtx * x
        dx = d_dtx * dt + gy * D
        dD = (gy * x).sum((0, 1))
        return dx, d_dt, dA, dB, dC, dD


def selective_scan_recurrent(x, dt, A, B, C, D):
    """Selective scan as a loop over time with a hand-written backward: the same contract as
    :func:`selective_scan_parallel`. Half-precision inputs are computed in float32 and returned in
    their dtype.

    Memory: one (L, T, d_inner, d_state) tensor of states is kept for the backward (the associative
    scan keeps about 2·log2 T of them).
    """
    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x, dt, A, B, C, D = (v.float() for v in (x, dt, A, B, C, D))
    y, h = _RecurrentScan.apply(x, dt, A, B, C, D)
    return y.to(dtype), h.to(dtype)


@functools.lru_cache(maxsize=1)
def _mamba_ssm_scan():
    """``mamba_ssm``'s fused CUDA ``selective_scan_fn``, or ``None`` when the package is missing."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # not installed, or built for another torch/CUDA
        return None
    return selective_scan_fn


def selective_scan_cuda(x, dt, A, B, C, D):
    """The fused CUDA kernel of ``mamba_ssm`` with the contract of :func:`selective_scan_parallel`.

    Raises:
        RuntimeError: ``mamba_ssm`` is not installed or the tensors are not on a CUDA device.
    """
    fn = _mamba_ssm_scan()
    if fn is None or not x.is_cuda:
        raise RuntimeError("scan='cuda' needs the mamba_ssm package and CUDA tensors")
    # mamba_ssm layout: u, delta (batch, dim, len); B, C (batch, dstate, len)
    y, h = fn(x.transpose(1, 2).contiguous(), dt.transpose(1, 2).contiguous(), A.float().contiguous(),
              B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), D.float(),
              delta_softplus=False, return_last_state=True)
    return y.transpose(1, 2).to(x.dtype), h.to(x.dtype)


def selective_scan_naive(x, dt, A, B, C, D):
    """Reference selective scan: a plain loop over time steps. Same contract as
    :func:`selective_scan_parallel`."""
    L, T, d_inner = x.shape
    h = x.new_zeros(L, d_inner, A.shape[1])
    ys = []
    for t in range(T):
        dA = torch.exp(dt[:, t].unsqueeze(-1) * A)
        h = dA * h + (dt[:, t] * x[:, t]).unsqueeze(-1) * B[:, t].unsqueeze(1)
        ys.append(torch.einsum("ldn,ln->ld", h, C[:, t]) + x[:, t] * D)
    return torch.stack(ys, dim=1), h


SCANS = {"recurrent": selective_scan_recurrent, "associative": selective_scan_parallel,
         "parallel": selective_scan_parallel, "cuda": selective_scan_cuda, "naive": selective_scan_naive}


def resolve_scan(scan: str, x: torch.Tensor):
    """The scan function for ``scan`` (``"auto"``, ``"recurrent"``, ``"associative"``/``"parallel"``,
    ``"cuda"``, ``"naive"``) and tensors like ``x``.

    Raises:
        ValueError: an unknown name.
    """
    if scan == "auto":
        return selective_scan_cuda if (x.is_cuda and _mamba_ssm_scan() is not None) else selective_scan_recurrent
    if scan not in SCANS:
        raise ValueError(f"scan must be one of auto, recurrent, associative, parallel, cuda, naive; got {scan!r}")
    return SCANS[scan]


class Mamba(nn.Module):
    """One Mamba-1 mixer (no residual, no norm; the caller adds those).

    Args:
        d_model: model width D.
        d_state: SSM state size N (16 [D]).
        d_conv: causal depthwise conv width (4 [D]).
        expand: d_inner = expand · d_model (2 [D]).
        dt_rank: rank of the dt projection; ``None`` → ceil(d_model / 16).
        dt_min, dt_max: softplus(dt_bias) is initialised log-uniform in [dt_min, dt_max].
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | None = None, dt_min: float = 1e-3, dt_max: float = 0.1):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, bias=True)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # S4D-real initialisation of A: A[:, n] = -(n + 1)
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        # dt bias: softplus(bias) log-uniform in [dt_min, dt_max]
        dt_std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -dt_std, dt_std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    # -- shared pieces ---------------------------------------------------------------------------
    def _ssm_params(self, x):
        """x: (..., d_inner) → dt (..., d_inner), B (..., d_state), C (..., d_state)."""
        dbc = self.x_proj(x)
        dt, B, C = torch.split(dbc, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))
        return dt, B, C

    def forward(self, u: torch.Tensor, scan: str = "auto") -> torch.Tensor:
        """Whole-sequence forward from a zero state.

        Args:
            u: (L, T, d_model) float; L independent causal sequences of length T.
            scan: the scan implementation (module docstring): ``"auto"`` (default), ``"recurrent"``,
                ``"associative"`` / ``"parallel"``, ``"cuda"``, ``"naive"``.

        Returns:
            (L, T, d_model), same dtype as ``u``.
        """
        y, _ = self.forward_with_state(u, scan=scan)
        return y

    def forward_with_state(self, u: torch.Tensor, scan: str = "auto"):
        """Like :meth:`forward` but also returns the :class:`MambaState` after the last step, so that
        streaming can continue from a parallel prefix."""
        L, T, _ = u.shape
        xz = self.in_proj(u)
        x, z = xz.chunk(2, dim=-1)
        x_raw = x
        x = self.conv1d(F.pad(x.transpose(1, 2), (self.d_conv - 1, 0)))  # causal
        x = F.silu(x.transpose(1, 2))
        dt, B, C = self._ssm_params(x)
        A = -torch.exp(self.A_log.float()).to(x.dtype)
        fn = resolve_scan(scan, x)
        y, h_last = fn(x, dt, A, B, C, self.D.to(x.dtype))
        y = y * F.silu(z)
        # conv state: the last d_conv pre-conv inputs (zero-padded on the left when T < d_conv)
        xr = F.pad(x_raw, (0, 0, max(0, self.d_conv - T), 0))[:, -self.d_conv:]
        return self.out_proj(y), MambaState(conv_state=xr.contiguous(), ssm_state=h_last.transpose(1, 2).contiguous())

    def init_state(self, L: int, device=None, dtype=torch.float32) -> MambaState:
        """Zero state for L sequences (the state before the first step)."""
        return MambaState(
            conv_state=torch.zeros(L, self.d_conv, self.d_inner, device=device, dtype=dtype),
            ssm_state=torch.zeros(L, self.d_state, self.d_inner, device=device, dtype=dtype),
        )

    def step(self, u: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """One recurrent step.

        Args:
            u: (L, d_model) input at the current time step.
            state: the state after the previous step (shapes fixed; never grows).

        Returns:
            y: (L, d_model); the new state (new tensors; ``state`` is not modified in place).
        """
        xz = self.in_proj(u)
        x, z = xz.chunk(2, dim=-1)
        conv_state = torch.cat([state.conv_state[:, 1:], x.unsqueeze(1).to(state.conv_state.dtype)], dim=1)
        w = self.conv1d.weight.squeeze(1).t()  # (d_conv, d_inner)
        x = (conv_state.to(w.dtype) * w).sum(1) + self.conv1d.bias
        x = F.silu(x)
        dt, B, C = self._ssm_params(x)
        A_t = (-torch.exp(self.A_log.float())).t().contiguous().to(x.dtype)  # (d_state, d_inner)
        dtA = dt.unsqueeze(1) * A_t  # (L, d_state, d_inner)
        h_prev = state.ssm_state.to(x.dtype)
        dtx = (dt * x).unsqueeze(1)  # (L, 1, d_inner)
        if torch.is_grad_enabled():
            h = torch.addcmul(B.unsqueeze(-1) * dtx, torch.exp(dtA), h_prev)
        else:  # same values, computed in place in the fresh temporary dtA (the state is not touched)
            h = dtA.exp_().mul_(h_prev).addcmul_(B.unsqueeze(-1), dtx)
        y = torch.bmm(C.unsqueeze(1), h).squeeze(1) + x * self.D.to(x.dtype)  # Σ_n C_n h_n
        y = y * F.silu(z)
        return self.out_proj(y), MambaState(conv_state=conv_state, ssm_state=h.to(state.ssm_state.dtype))
