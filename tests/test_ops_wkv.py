"""Tests of the WKV operator package ``rwkv_ts.ops``."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rwkv_ts.ops.chunked as chunked_mod
import rwkv_ts.ops.dispatch as dispatch_mod
from rwkv_ts.ops import (
    available_backends,
    register_backend,
    unregister_backend,
    wkv,
    wkv_chunked,
    wkv_recurrent,
    wkv_reference,
)
from rwkv_ts.ops.timesplit import (
    MAX_CHUNKS,
    MIN_CHUNK,
    SPLIT_MAX_SEQUENCES,
    SPLIT_MIN_T,
    time_split_chunks,
    wkv_time_split,
)

TOL = 1e-4
# (low, high) ranges of w: the per-step decay exp(-exp(w)) runs from ~2e-9 (w = 3) to ~1 - 1e-4
# (w = -9); the mixed range puts decays near 0 and near 1 in the same sequence.
W_RANGES = [(-9.0, 3.0), (-9.0, -6.0), (1.5, 3.0), (-3.0, 1.0)]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a - b| / max(max|b|, tiny)."""
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def make_inputs(
    seed: int,
    B: int,
    T: int,
    H: int,
    N: int,
    w_range: tuple[float, float] = (-9.0, 3.0),
    with_state: bool = False,
    const_w: bool = False,
    dtype: torch.dtype = torch.float32,
):
    g = torch.Generator().manual_seed(seed)
    r, k, v = (torch.randn(B, T, H, N, generator=g, dtype=dtype) for _ in range(3))
    lo, hi = w_range
    if const_w:
        w = (lo + (hi - lo) * torch.rand(1, 1, H, N, generator=g, dtype=dtype)).expand(B, T, H, N)
        w = w.contiguous()
    else:
        w = lo + (hi - lo) * torch.rand(B, T, H, N, generator=g, dtype=dtype)
    u = torch.randn(H, N, generator=g, dtype=dtype)
    state = torch.randn(B, H, N, N, generator=g, dtype=dtype) if with_state else None
    return r, k, v, w, u, state


shapes = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31 - 1),
        "B": st.integers(1, 3),
        "T": st.integers(1, 100),
        "H": st.integers(1, 3),
        "N": st.integers(1, 16),
        "w_range": st.sampled_from(W_RANGES),
        "with_state": st.booleans(),
    }
)


@pytest.fixture
def clean_registry():
    """Snapshot and restore the back-end registry around a test."""
    saved = dict(dispatch_mod._registry)
    yield
    dispatch_mod._registry.clear()
    dispatch_mod._registry.update(saved)


# --------------------------------------------------------------------------------------------
# chunked vs the float64 reference


@settings(max_examples=25, deadline=None)
@given(p=shapes, chunk_size=st.sampled_from([1, 3, 4, 8, 16, 64]))
def test_chunked_matches_reference(p, chunk_size):
    r, k, v, w, u, s0 = make_inputs(**p)
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    y, s = wkv_chunked(r, k, v, w, u, s0, chunk_size=chunk_size)
    assert y.dtype == r.dtype and y.shape == r.shape
    assert s.dtype == torch.float32 and s.shape == (p["B"], p["H"], p["N"], p["N"])
    assert torch.isfinite(y).all() and torch.isfinite(s).all()
    assert rel_err(y, y_ref) < TOL
    assert rel_err(s, s_ref) < TOL


@settings(max_examples=25, deadline=None)
@given(p=shapes)
def test_default_chunk_and_dispatch_match_reference(p):
    r, k, v, w, u, s0 = make_inputs(**p)
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    for fn in (wkv_chunked, wkv, wkv_recurrent):
        y, s = fn(r, k, v, w, u, s0)
        assert rel_err(y, y_ref) < TOL, fn.__name__
        assert rel_err(s, s_ref) < TOL, fn.__name__


def test_chunked_long_sequence_many_chunks():
    r, k, v, w, u, s0 = make_inputs(1, B=2, T=300, H=2, N=8, with_state=True)
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    for cs in (16, 64):
        y, s = wkv_chunked(r, k, v, w, u, s0, chunk_size=cs)
        assert rel_err(y, y_ref) < TOL
        assert rel_err(s, s_ref) < TOL


@pytest.mark.parametrize("w_range", [(2.9, 3.0), (-9.0, -8.9), (20.0, 60.0), (-30.0, -20.0)])
def test_extreme_decays_finite(w_range):
    """Decays ~0 (including w beyond exp overflow) and ~1: finite values and gradients."""
    r, k, v, w, u, s0 = make_inputs(2, B=2, T=70, H=2, N=8, w_range=w_range, with_state=True)
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    leaves = [x.clone().requires_grad_() for x in (r, k, v, w, u, s0)]
    y, s = wkv_chunked(*leaves, chunk_size=32)
    assert rel_err(y, y_ref) < TOL
    assert rel_err(s, s_ref) < TOL
    (y.square().sum() + s.square().sum()).backward()
    for x in leaves:
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mixed_decays_relative_precision():
    """A channel that first decays hard, then barely: segment sums keep fp32 relative precision."""
    B, T, H, N = 1, 64, 1, 4
    r, k, v, _, u, s0 = make_inputs(3, B, T, H, N, with_state=True)
    w = torch.full((B, T, H, N), -9.0)
    w[:, :20] = 3.0
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    y, s = wkv_chunked(r, k, v, w, u, s0)
    assert rel_err(y, y_ref) < TOL
    assert rel_err(s, s_ref) < TOL


# --------------------------------------------------------------------------------------------
# splitting a sequence


@settings(max_examples=25, deadline=None)
@given(p=shapes, split=st.floats(0.0, 1.0), chunk_size=st.sampled_from([4, 16, 64]))
def test_split_equals_whole(p, split, chunk_size):
    if p["T"] < 2:
        p["T"] = 2
    r, k, v, w, u, s0 = make_inputs(**p)
    T = p["T"]
    t = min(T - 1, max(1, int(split * T)))
    y_ref, _ = wkv_reference(r, k, v, w, u, s0)

    def run(fn):
        y, s = fn(r, k, v, w, u, s0)
        y1, s1 = fn(r[:, :t], k[:, :t], v[:, :t], w[:, :t], u, s0)
        y2, s2 = fn(r[:, t:], k[:, t:], v[:, t:], w[:, t:], u, s1)
        return y, s, torch.cat([y1, y2], 1), s2

    for fn in (lambda *a: wkv_chunked(*a, chunk_size=chunk_size), wkv):
        y, s, y_split, s_split = run(fn)
        assert rel_err(y_split, y) < TOL
        assert rel_err(s_split, s) < TOL
        assert rel_err(y_split, y_ref) < TOL


def test_streaming_one_step_at_a_time():
    r, k, v, w, u, _ = make_inputs(4, B=2, T=12, H=2, N=6)
    y_ref, s_ref = wkv_reference(r, k, v, w, u)
    s, ys = None, []
    for t in range(12):
        y_t, s = wkv(r[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1], w[:, t : t + 1], u, s)
        ys.append(y_t)
    assert rel_err(torch.cat(ys, 1), y_ref) < TOL
    assert rel_err(s, s_ref) < TOL


# --------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize(
    ("B", "T", "H", "N", "chunk_size"),
    [(1, 7, 2, 3, 4), (2, 9, 1, 2, 64), (1, 5, 1, 3, 1), (1, 1, 1, 2, 64)],
)
def test_gradcheck_chunked(B, T, H, N, chunk_size):
    r, k, v, w, u, s0 = make_inputs(
        5, B, T, H, N, w_range=(-2.0, 1.0), with_state=True, dtype=torch.float64
    )
    inputs = tuple(x.requires_grad_() for x in (r, k, v, w, u, s0))

    def f(*a):
        return wkv_chunked(*a, chunk_size=chunk_size)

    assert torch.autograd.gradcheck(f, inputs)


def test_gradcheck_chunked_without_state():
    r, k, v, w, u, _ = make_inputs(6, 1, 6, 2, 2, w_range=(-2.0, 1.0), dtype=torch.float64)
    inputs = tuple(x.requires_grad_() for x in (r, k, v, w, u))
    assert torch.autograd.gradcheck(lambda *a: wkv_chunked(*a, chunk_size=4), inputs)


# --------------------------------------------------------------------------------------------
# time split (chunks side by side, combined in closed form): the CUDA back-end's long-sequence
# path, checked here with the torch paths as the inner back-end


@settings(max_examples=25, deadline=None)
@given(p=shapes, n_chunks=st.integers(1, 12))
def test_time_split_matches_reference(p, n_chunks):
    r, k, v, w, u, s0 = make_inputs(**p)
    # float64 inner: the combination itself is exact up to float64 rounding
    x64 = [None if x is None else x.double() for x in (r, k, v, w, u, s0)]
    y_ref, s_ref = wkv_reference(*x64)
    y, s = wkv_time_split(*x64, n_chunks=n_chunks, inner=wkv_reference)
    assert y.shape == r.shape and s.shape == (p["B"], p["H"], p["N"], p["N"])
    assert rel_err(y, y_ref) < 1e-9 and rel_err(s, s_ref) < 1e-9
    # float32 inner: within the operator's tolerance
    y, s = wkv_time_split(r, k, v, w, u, s0, n_chunks=n_chunks, inner=wkv_chunked)
    assert y.dtype == r.dtype and s.dtype == torch.float32
    assert rel_err(y, y_ref) < TOL and rel_err(s, s_ref) < TOL


@pytest.mark.parametrize("n_chunks", [2, 3, 7])
def test_gradcheck_time_split(n_chunks):
    r, k, v, w, u, s0 = make_inputs(
        8, 1, 11, 2, 3, w_range=(-2.0, 1.0), with_state=True, dtype=torch.float64
    )
    inputs = tuple(x.requires_grad_() for x in (r, k, v, w, u, s0))

    def f(*a):
        return wkv_time_split(*a, n_chunks=n_chunks, inner=wkv_chunked)

    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradcheck(lambda *a: f(*a, None), inputs[:5])


@pytest.mark.parametrize("w_range", [(20.0, 60.0), (-30.0, -20.0)])
def test_time_split_extreme_decays(w_range):
    """Decays of exactly 0 (exp(w) overflows) and of 1 in float32: finite and exact."""
    r, k, v, w, u, s0 = make_inputs(3, B=1, T=90, H=2, N=4, w_range=w_range, with_state=True)
    w[0, 40] = float("inf")  # an infinite decay rate: the state is forgotten at that step
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    leaves = [x.clone().requires_grad_() for x in (r, k, v, w, u, s0)]
    y, s = wkv_time_split(*leaves, n_chunks=6, inner=wkv_chunked)
    assert rel_err(y, y_ref) < TOL and rel_err(s, s_ref) < TOL
    (y.square().sum() + s.square().sum()).backward()
    for x in leaves:
        assert torch.isfinite(x.grad[torch.isfinite(x)] if x is leaves[3] else x.grad).all()


def test_time_split_propagates_nan():
    r, k, v, w, u, s0 = make_inputs(4, B=1, T=40, H=1, N=4)
    w[0, 12, 0, 1] = float("nan")
    y, s = wkv_time_split(r, k, v, w, u, s0, n_chunks=4, inner=wkv_chunked)
    assert torch.isnan(y[0, 12:]).any() and torch.isnan(s).any()


def test_time_split_rejects_bad_chunk_count():
    r, k, v, w, u, s0 = make_inputs(4, B=1, T=8, H=1, N=2)
    with pytest.raises(ValueError, match="n_chunks"):
        wkv_time_split(r, k, v, w, u, s0, n_chunks=0, inner=wkv_chunked)


@settings(max_examples=200, deadline=None)
@given(
    B=st.integers(1, 4096),
    T=st.integers(1, 70000),
    H=st.integers(1, 64),
    N=st.sampled_from([16, 32, 64, 128]),
)
def test_time_split_chunks_rule(B, T, H, N):
    n = time_split_chunks(B, T, H, N)
    assert 1 <= n <= MAX_CHUNKS
    if n > 1:
        assert T // n >= MIN_CHUNK and B * H <= SPLIT_MAX_SEQUENCES
    if T < SPLIT_MIN_T or B * H > SPLIT_MAX_SEQUENCES:
        assert n == 1


def test_gradcheck_reference_and_recurrent():
    r, k, v, w, u, s0 = make_inputs(
        7, 1, 4, 2, 2, w_range=(-2.0, 1.0), with_state=True, dtype=torch.float64
    )
    inputs = tuple(x.requires_grad_() for x in (r, k, v, w, u, s0))
    assert torch.autograd.gradcheck(wkv_reference, inputs)
    assert torch.autograd.gradcheck(wkv_recurrent, inputs)


def test_chunked_gradients_match_reference_fp32():
    r, k, v, w, u, s0 = make_inputs(8, 2, 40, 2, 8, with_state=True)

    def grads(fn):
        leaves = [x.clone().requires_grad_() for x in (r, k, v, w, u, s0)]
        y, s = fn(*leaves)
        (y.double().sin().sum() + s.double().cos().sum()).backward()
        return [x.grad for x in leaves]

    for g, g_ref in zip(grads(wkv_chunked), grads(wkv_reference), strict=True):
        assert rel_err(g, g_ref) < 1e-3


# --------------------------------------------------------------------------------------------
# RWKV-5, dtypes


@settings(max_examples=10, deadline=None)
@given(p=shapes)
def test_constant_w_rwkv5(p):
    r, k, v, w, u, s0 = make_inputs(**p, const_w=True)
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    # RWKV-5 passes w broadcast in time: a stride-0 expand must work as well
    y, s = wkv(r, k, v, w[:, :1].expand_as(w), u, s0)
    assert rel_err(y, y_ref) < TOL
    assert rel_err(s, s_ref) < TOL


def test_dtypes():
    r, k, v, w, u, s0 = make_inputs(9, 2, 20, 2, 4, with_state=True, dtype=torch.float64)
    y, s = wkv_chunked(r, k, v, w, u, s0)
    assert y.dtype == torch.float64 and s.dtype == torch.float64
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    assert rel_err(y, y_ref) < 1e-10 and s_ref.dtype == torch.float64
    rb, kb, vb, wb = (x.to(torch.bfloat16) for x in (r, k, v, w))
    y, s = wkv(rb, kb, vb, wb, u.float(), s0.float())
    assert y.dtype == torch.bfloat16 and s.dtype == torch.float32
    y_ref, _ = wkv_reference(rb, kb, vb, wb, u.float(), s0.float())
    assert y_ref.dtype == torch.bfloat16
    assert rel_err(y, y_ref) < 2e-2


# --------------------------------------------------------------------------------------------
# input validation


def _ok():
    return make_inputs(10, 2, 5, 3, 4, with_state=True)


@pytest.mark.parametrize("fn", [wkv, wkv_chunked, wkv_reference, wkv_recurrent])
@pytest.mark.parametrize(
    "mutate",
    [
        lambda a: {**a, "k": a["k"][:, :4]},  # T mismatch
        lambda a: {**a, "v": a["v"][..., :3]},  # N mismatch
        lambda a: {**a, "w": a["w"][0]},  # wrong rank
        lambda a: {**a, "r": a["r"][0], "k": a["k"][0], "v": a["v"][0], "w": a["w"][0]},  # 3-D
        lambda a: {**a, "u": a["u"][:2]},  # u heads
        lambda a: {**a, "u": a["u"].reshape(-1)},  # u rank
        lambda a: {**a, "state": a["state"][:1]},  # state batch
        lambda a: {**a, "state": a["state"][..., :2]},  # state N
        lambda a: {k_: x[:, :0] if k_ in "rkvw" else x for k_, x in a.items()},  # T == 0
        lambda a: {**a, "r": a["r"].long()},  # integer dtype
    ],
)
def test_bad_shapes_raise(fn, mutate):
    r, k, v, w, u, s0 = _ok()
    args = mutate({"r": r, "k": k, "v": v, "w": w, "u": u, "state": s0})
    with pytest.raises(ValueError, match=r"shape|must|dtype"):
        fn(args["r"], args["k"], args["v"], args["w"], args["u"], args["state"])


def test_shape_error_names_the_shapes():
    r, k, v, w, u, s0 = _ok()
    with pytest.raises(ValueError) as info:
        wkv(r, k[:, :4], v, w, u, s0)
    msg = str(info.value)
    assert "(2, 5, 3, 4)" in msg and "(2, 4, 3, 4)" in msg and "(3, 4)" in msg


# --------------------------------------------------------------------------------------------
# dispatch


def test_env_torch_and_auto(monkeypatch):
    r, k, v, w, u, s0 = _ok()
    y_ref, _ = wkv_reference(r, k, v, w, u, s0)
    for value in ("torch", "auto", "", " AUTO "):
        monkeypatch.setenv("RWKV_TS_KERNEL", value)
        y, _ = wkv(r, k, v, w, u, s0)
        assert rel_err(y, y_ref) < TOL
    monkeypatch.delenv("RWKV_TS_KERNEL")
    assert dispatch_mod.kernel_choice() == "auto"


def test_env_cuda_without_kernel_raises(monkeypatch, clean_registry):
    unregister_backend("cuda")
    monkeypatch.setenv("RWKV_TS_KERNEL", "cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        wkv(*_ok())
    with pytest.raises(RuntimeError, match="cuda"):
        wkv(*_ok(), backend="cuda")


def test_env_bad_value_raises(monkeypatch):
    monkeypatch.setenv("RWKV_TS_KERNEL", "triton-ish")
    with pytest.raises(ValueError, match=r"triton-ish.*auto.*cuda.*torch"):
        wkv(*_ok())


def test_registry_auto_uses_supported_cuda_backend(monkeypatch, clean_registry):
    calls = []

    def fake(r, k, v, w, u, state):
        calls.append(r.shape)
        return wkv_chunked(r, k, v, w, u, state)

    supported = {"yes": False}
    register_backend("cuda", fake, lambda r, *rest: supported["yes"], available=lambda: True)
    assert "cuda" in available_backends() and "torch" in available_backends()
    monkeypatch.setenv("RWKV_TS_KERNEL", "auto")
    wkv(*_ok())
    assert calls == []  # not supported -> torch path
    monkeypatch.setenv("RWKV_TS_KERNEL", "cuda")
    with pytest.raises(RuntimeError, match="does not support"):
        wkv(*_ok())
    supported["yes"] = True
    monkeypatch.setenv("RWKV_TS_KERNEL", "auto")
    wkv(*_ok())
    monkeypatch.setenv("RWKV_TS_KERNEL", "cuda")
    wkv(*_ok())
    monkeypatch.setenv("RWKV_TS_KERNEL", "torch")
    wkv(*_ok())
    assert len(calls) == 2
    unregister_backend("cuda")
    assert "cuda" not in available_backends()


def test_unavailable_cuda_backend(monkeypatch, clean_registry):
    register_backend("cuda", wkv_chunked, available=lambda: False)
    assert available_backends() == ["torch"]
    monkeypatch.setenv("RWKV_TS_KERNEL", "cuda")
    with pytest.raises(RuntimeError, match="not available"):
        wkv(*_ok())
    monkeypatch.setenv("RWKV_TS_KERNEL", "auto")
    wkv(*_ok())


def test_register_reserved_names_rejected(clean_registry):
    for name in ("torch", "auto", ""):
        with pytest.raises(ValueError):
            register_backend(name, wkv_chunked)


def test_short_sequences_use_recurrent_path(monkeypatch):
    seen = []
    monkeypatch.setattr(
        dispatch_mod, "wkv_recurrent", lambda *a: seen.append("rec") or wkv_recurrent(*a)
    )
    monkeypatch.setattr(
        dispatch_mod, "wkv_chunked", lambda *a: seen.append("chunk") or wkv_chunked(*a)
    )
    monkeypatch.setenv("RWKV_TS_KERNEL", "torch")
    r, k, v, w, u, s0 = make_inputs(11, 2, 40, 2, 4)
    wkv(r[:, :1], k[:, :1], v[:, :1], w[:, :1], u)
    wkv(r, k, v, w, u)
    assert seen == ["rec", "chunk"]


def test_slabs_match_whole(monkeypatch):
    """Large CPU problems run in slabs of the batch: same values and gradients."""
    r, k, v, w, u, s0 = make_inputs(12, B=5, T=23, H=2, N=4, with_state=True)

    def run():
        leaves = [x.clone().requires_grad_() for x in (r, k, v, w, u, s0)]
        y, s = wkv_chunked(*leaves)
        (y.sin().sum() + s.cos().sum()).backward()
        return y, s, [x.grad for x in leaves]

    y, s, grads = run()
    monkeypatch.setattr(chunked_mod, "SLAB_ELEMENTS", 2 * 2 * 24 * 4)  # slabs of 2, 2, 1
    y2, s2, grads2 = run()
    assert rel_err(y2, y) < 1e-6 and rel_err(s2, s) < 1e-6
    for g, g2 in zip(grads, grads2, strict=True):
        assert rel_err(g2, g) < 1e-5


def test_plan_levels_cover_sequence():
    for T in list(range(1, 70)) + [100, 257, 1000]:
        for cs in (1, 2, 3, 4, 16, 64, 128):
            factors, nc = chunked_mod.plan_levels(T, cs)
            L = 1
            for f in factors:
                L *= f
            assert L <= max(cs, 1) or factors == ()
            assert nc * L >= T and (nc - 1) * L < T
