"""Core invariant of the stateful module: Mamba parallel scan == recurrent step == naive loop."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ausm.model.mamba import Mamba, associative_scan, selective_scan_naive, selective_scan_parallel


def _mamba64(seed=0, **kw):
    torch.manual_seed(seed)
    m = Mamba(16, d_state=4, **kw).double()
    # perturb the parameters away from their init so every term matters
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 37), L=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_associative_scan_matches_loop(T, L, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(L, T, 3, generator=g, dtype=torch.float64)
    b = torch.randn(L, T, 3, generator=g, dtype=torch.float64)
    h = torch.zeros(L, 3, dtype=torch.float64)
    ref = []
    for t in range(T):
        h = a[:, t] * h + b[:, t]
        ref.append(h)
    torch.testing.assert_close(associative_scan(a, b, dim=1), torch.stack(ref, 1), rtol=0, atol=1e-12)


def test_selective_scan_parallel_equals_naive_float64():
    g = torch.Generator().manual_seed(1)
    L, T, d, n = 3, 13, 8, 4
    x = torch.randn(L, T, d, generator=g, dtype=torch.float64)
    dt = torch.rand(L, T, d, generator=g, dtype=torch.float64) * 0.5
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 3
    B = torch.randn(L, T, n, generator=g, dtype=torch.float64)
    C = torch.randn(L, T, n, generator=g, dtype=torch.float64)
    D = torch.randn(d, generator=g, dtype=torch.float64)
    y1, h1 = selective_scan_parallel(x, dt, A, B, C, D)
    y2, h2 = selective_scan_naive(x, dt, A, B, C, D)
    assert (y1 - y2).abs().max().item() < 1e-10
    assert (h1 - h2).abs().max().item() < 1e-10
    assert y1.abs().max() > 0.1  # non-trivial output


def test_mamba_parallel_step_and_naive_agree_float64():
    m = _mamba64()
    u = torch.randn(5, 11, 16, dtype=torch.float64)
    y_par = m(u, scan="parallel")
    y_naive = m(u, scan="naive")
    state = m.init_state(5, dtype=torch.float64)
    ys = []
    for t in range(u.shape[1]):
        y, state = m.step(u[:, t], state)
        ys.append(y)
    y_step = torch.stack(ys, 1)
    assert (y_par - y_naive).abs().max().item() < 1e-10
    assert (y_par - y_step).abs().max().item() < 1e-10
    assert y_par.std() > 1e-3


def test_state_after_parallel_prefix_continues_with_step():
    """forward_with_state over t frames then step == one pass over t+k frames (also for t < d_conv)."""
    m = _mamba64(seed=3)
    u = torch.randn(2, 9, 16, dtype=torch.float64)
    full = m(u)
    for prefix in (1, 2, 5):
        y, state = m.forward_with_state(u[:, :prefix])
        outs = [y]
        for t in range(prefix, u.shape[1]):
            yt, state = m.step(u[:, t], state)
            outs.append(yt[:, None])
        assert (torch.cat(outs, 1) - full).abs().max().item() < 1e-10


def test_step_state_has_fixed_shape_and_is_not_mutated():
    m = _mamba64()
    s0 = m.init_state(4, dtype=torch.float64)
    conv0, ssm0 = s0.conv_state.clone(), s0.ssm_state.clone()
    s = s0
    for _ in range(20):
        _, s = m.step(torch.randn(4, 16, dtype=torch.float64), s)
        assert s.conv_state.shape == (4, m.d_conv, m.d_inner)
        assert s.ssm_state.shape == (4, m.d_state, m.d_inner)
    assert torch.equal(s0.conv_state, conv0) and torch.equal(s0.ssm_state, ssm0)
    assert s.nbytes() == s0.nbytes()


def test_inference_step_in_place_path_equals_autograd_path():
    """Without autograd the step computes in place in its own temporaries: same values, the previous
    state untouched, and the streamed output equals the parallel forward."""
    m = _mamba64()
    u = torch.randn(3, 6, 16, dtype=torch.float64)
    with torch.no_grad():
        full = m(u)
        y, state = m.forward_with_state(u[:, :2])
        outs = [y]
        for t in range(2, 6):
            before = state.ssm_state.clone()
            yt, new = m.step(u[:, t], state)
            assert torch.equal(state.ssm_state, before)
            with torch.enable_grad():
                yg, sg = m.step(u[:, t], state)
            assert (yg - yt).abs().max().item() < 1e-12 and (sg.ssm_state - new.ssm_state).abs().max().item() < 1e-12
            outs.append(yt[:, None])
            state = new
    assert (torch.cat(outs, 1) - full).abs().max().item() < 1e-10


def test_dt_and_A_initialisation():
    m = Mamba(64, d_state=16)
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-3 - 1e-6 and dt.max() <= 0.1 + 1e-6
    A = -torch.exp(m.A_log)
    torch.testing.assert_close(A[0], -torch.arange(1, 17, dtype=torch.float32))
    assert m.dt_rank == 4 and m.d_inner == 128


def _scan_inputs(seed, L=3, T=13, d=8, n=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(L, T, d, generator=g, dtype=dtype)
    dt = torch.rand(L, T, d, generator=g, dtype=dtype) * 0.5
    A = -torch.rand(d, n, generator=g, dtype=dtype) * 3
    B = torch.randn(L, T, n, generator=g, dtype=dtype)
    C = torch.randn(L, T, n, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    return [v.requires_grad_() for v in (x, dt, A, B, C, D)]


@pytest.mark.parametrize("T", [1, 2, 13])
def test_recurrent_scan_values_and_gradients_equal_naive_float64(T):
    """The hand-written backward of the recurrent scan == autograd through the reference loop, for
    every input, with gradients flowing from both outputs (y and the last state)."""
    from ausm.model.mamba import selective_scan_recurrent
    ins = _scan_inputs(7, T=T)
    g = torch.Generator().manual_seed(8)
    wy = torch.randn(3, T, 8, generator=g, dtype=torch.float64)
    wh = torch.randn(3, 8, 4, generator=g, dtype=torch.float64)
    grads = []
    for fn in (selective_scan_recurrent, selective_scan_naive):
        y, h = fn(*ins)
        loss = (y * wy).sum() + (h * wh).sum()
        grads.append((y.detach(), h.detach(), torch.autograd.grad(loss, ins)))
    (y1, h1, g1), (y2, h2, g2) = grads
    assert (y1 - y2).abs().max().item() < 1e-10 and (h1 - h2).abs().max().item() < 1e-10
    for name, a, b in zip("x dt A B C D".split(), g1, g2):
        assert (a - b).abs().max().item() < 1e-9, name
        assert b.abs().max() > 0 or (T == 1 and name == "A"), name  # every gradient is exercised (A: h_{-1} = 0)


def test_recurrent_scan_gradcheck():
    from ausm.model.mamba import selective_scan_recurrent
    ins = _scan_inputs(3, L=2, T=5, d=3, n=2)
    assert torch.autograd.gradcheck(lambda *a: selective_scan_recurrent(*a), ins)


def test_every_scan_name_gives_the_same_mamba_output():
    from ausm.model.mamba import resolve_scan, selective_scan_recurrent
    m = _mamba64(seed=5)
    u = torch.randn(4, 9, 16, dtype=torch.float64)
    ref = m(u, scan="naive")
    for scan in ("auto", "recurrent", "associative", "parallel"):
        assert (m(u, scan=scan) - ref).abs().max().item() < 1e-10, scan
    assert resolve_scan("auto", u) is selective_scan_recurrent  # CPU tensors
    with pytest.raises(ValueError, match="scan must be one of"):
        m(u, scan="bogus")


def test_recurrent_scan_bfloat16_inputs_are_computed_in_float32():
    from ausm.model.mamba import selective_scan_recurrent
    ins = [v.detach().float() for v in _scan_inputs(2)]
    y32, _ = selective_scan_recurrent(*ins)
    y16, h16 = selective_scan_recurrent(*[v.bfloat16() for v in ins])
    assert y16.dtype == torch.bfloat16 and h16.dtype == torch.bfloat16
    assert (y16.float() - y32).abs().max() < 0.1 * y32.abs().max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mamba_ssm_kernel_matches_reference():
    pytest.importorskip("mamba_ssm", reason="mamba_ssm is not installed")
    from ausm.model.mamba import selective_scan_cuda
    ins = [v.detach().float().cuda() for v in _scan_inputs(4, L=4, T=16, d=32, n=8)]
    y1, h1 = selective_scan_cuda(*ins)
    y2, h2 = selective_scan_naive(*ins)
    torch.testing.assert_close(y1, y2, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(h1, h2, rtol=1e-3, atol=1e-3)
