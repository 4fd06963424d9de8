"""The CUDA WKV back-end (``rwkv_ts.ops.cuda``) against the float64 reference.

GPU tests are skipped when CUDA is absent; the build-lock tests run everywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import pytest
import torch

from rwkv_ts.ops import _build
from rwkv_ts.ops import cuda as wkv_cuda_mod
from rwkv_ts.ops.cuda import (
    CHUNKED_LONG_T,
    CHUNKED_MIN_SEQUENCES,
    CHUNKED_MIN_T,
    CHUNKED_N16_MAX_SEQUENCES,
)
from rwkv_ts.ops.reference import wkv_reference
from rwkv_ts.ops.timesplit import chunk_starts, time_split_chunks

HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_CUDA, reason="CUDA not available")

TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
#: dw is computed as a reverse cumulative sum of differences (as fla does); where the decay is
#: tiny (w near 3) those differences cancel and exp(w) ~ 20 amplifies the float32 rounding of the
#: states, so dw gets a looser float32 bound (measured ~1e-5 to 4e-5 over these shapes).
DW_TOL = {torch.float32: 1e-4, torch.bfloat16: 1e-2}
# (B, T, H, N): T = 1, T not a multiple of the chunk (16), B*H from 1 to 4096, every head size.
SHAPES = [
    (1, 1, 1, 16),
    (2, 1, 3, 64),
    (1, 5, 1, 128),
    (2, 37, 3, 32),
    (3, 100, 2, 64),
    (1, 70, 1, 128),
    (2, 17, 2, 16),
    (4, 250, 1, 32),
    (1, 333, 2, 64),
    (64, 5, 64, 16),
    (8, 19, 512, 32),
    (32, 3, 128, 64),
    # B*H not a multiple of the heads per block (N = 16: 4, N = 32: 2): idle groups in a block
    (3, 33, 1, 16),
    (1, 48, 3, 32),
]
# Few long sequences: wkv_cuda cuts them into time chunks run side by side (rwkv_ts.ops.timesplit),
# with steps left after the last whole chunk.
LONG_SHAPES = [(1, 4101, 1, 64), (2, 4200, 1, 32), (1, 4100, 1, 128), (3, 4097, 1, 16)]


def rel_err(a: torch.Tensor, ref: torch.Tensor, scale: float | None = None) -> float:
    """max|a - ref| / max|ref| (float64); over ``scale`` when given, and the absolute error when
    ``ref`` is identically 0 and no scale is given."""
    a, ref = a.double(), ref.double()
    if scale is None:
        scale = ref.abs().max().item()
    return ((a - ref).abs().max() / (scale if scale > 0 else 1.0)).item()


def poison() -> None:
    """Leave NaN in the caching allocator's free blocks, so unwritten outputs show up."""
    junk = [torch.full((n,), float("nan"), device="cuda") for n in (1 << 16, 1 << 20, 1 << 24)]
    del junk


#: Ranges of w: "wide" mixes decays exp(-exp(w)) from ~2e-9 (w = 3) to ~1 - 1e-4 (w = -9) in one
#: sequence, so almost every 16-step chunk of the chunked kernels takes their exact path
#: (per-element in the forward, the sequential kernel in the backward); "init" is RWKV-6's initial
#: range (w in [-6, -1], decays 0.69 to 0.998), their tensor-core path.
DECAYS = {"wide": (-9.0, 3.0), "init": (-6.0, -1.0)}


def make(seed, B, T, H, N, dtype, with_state, device="cuda", decay="wide"):
    g = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g)

    r, k, v = rnd(B, T, H, N), rnd(B, T, H, N), rnd(B, T, H, N)
    lo, hi = DECAYS[decay]
    w = lo + (hi - lo) * torch.rand(B, T, H, N, generator=g)
    u = rnd(H, N)
    s0 = rnd(B, H, N, N) if with_state else None
    xs = [x.to(device=device, dtype=dtype) for x in (r, k, v, w)]
    u = u.to(device)
    s0 = None if s0 is None else s0.to(device)
    return (*xs, u, s0)


def check_all(
    seed,
    shape,
    dtype,
    with_state,
    use_dy=True,
    use_ds=True,
    form=None,
    decay="wide",
    tweak=None,
):
    B, T, H, N = shape
    r, k, v, w, u, s0 = make(seed, B, T, H, N, dtype, with_state, decay=decay)
    if tweak is not None:
        r, k, v, w, u, s0 = tweak(r, k, v, w, u, s0)
    g = torch.Generator(device="cpu").manual_seed(seed + 1)
    gy = torch.randn(B, T, H, N, generator=g).to("cuda")
    gs = torch.randn(B, H, N, N, generator=g).to("cuda")

    # ours
    leaves = [x.clone().requires_grad_(True) for x in (r, k, v, w, u)]
    st = None if s0 is None else s0.clone().requires_grad_(True)
    poison()
    y, s_t = wkv_cuda_mod.wkv_cuda(*leaves, st, form=form)
    assert y.dtype == dtype and s_t.dtype == torch.float32
    loss = 0.0
    if use_dy:
        loss = loss + (y.float() * gy).sum()
    if use_ds:
        loss = loss + (s_t * gs).sum()
    poison()
    loss.backward()
    ours = [y, s_t] + [x.grad for x in leaves] + ([st.grad] if st is not None else [])

    # float64 reference on the same (possibly bf16-rounded) values
    ref_leaves = [x.detach().double().requires_grad_(True) for x in (r, k, v, w, u)]
    ref_st = None if s0 is None else s0.double().requires_grad_(True)
    y_ref, s_ref = wkv_reference(*ref_leaves, ref_st)
    loss_ref = 0.0
    if use_dy:
        # the op receives dy in y's dtype (autograd casts it): give the reference the same values
        loss_ref = loss_ref + (y_ref * gy.to(dtype).double()).sum()
    if use_ds:
        loss_ref = loss_ref + (s_ref * gs.double()).sum()
    loss_ref.backward()
    refs = [y_ref, s_ref] + [x.grad for x in ref_leaves]
    refs += [ref_st.grad] if ref_st is not None else []
    # an input the loss does not reach has no reference gradient: ours must be zeros
    refs = [
        torch.zeros_like(a, dtype=torch.float64) if b is None else b
        for a, b in zip(ours, refs, strict=True)
    ]

    names = ["y", "state", "dr", "dk", "dv", "dw", "du", "dstate0"]
    scales = {}
    if T == 1 and s0 is None and use_ds:
        # The reference dw is 0 by structure (the one decay multiplies a zero state); ours is the
        # float32 rounding of two equal terms that cancel, exp(w) k (dS_T v) each (the final
        # state's share and the last step's): measure it against their size.
        dsv = torch.einsum("bhij,bhj->bhi", gs.double(), v[:, 0].double())
        terms = w[:, 0].double().exp() * k[:, 0].double() * dsv
        scales["dw"] = terms.abs().max().item()
    errs = {}
    for name, a, b in zip(names, ours, refs, strict=False):
        assert a is not None, f"{name} missing"
        assert a.shape == b.shape, (name, a.shape, b.shape)
        assert torch.isfinite(a).all(), f"{name} has non-finite values"
        errs[name] = rel_err(a, b, scales.get(name))
    bad = {n: e for n, e in errs.items() if not e < (DW_TOL if n == "dw" else TOL)[dtype]}
    assert not bad, f"shape={shape} dtype={dtype} state={with_state}: {errs}"


@gpu
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("with_state", [False, True], ids=["nostate", "state"])
def test_matches_reference(shape, dtype, with_state):
    # a seed of the parameters that is the same in every process (hash() of a str is not)
    seed = zlib.crc32(repr((shape, str(dtype), with_state)).encode())
    check_all(seed, shape, dtype, with_state)


@gpu
@pytest.mark.parametrize("shape", LONG_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_time_split_matches_reference(shape, dtype):
    B, T, H, N = shape
    n_chunks = time_split_chunks(B, T, H, N)
    assert n_chunks > 1 and T % n_chunks  # the split and the steps after it are exercised
    seed = zlib.crc32(repr(("split", shape, str(dtype))).encode())
    check_all(seed, shape, dtype, with_state=True)


@gpu
@pytest.mark.parametrize("shape", LONG_SHAPES[:2], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("decay", list(DECAYS))
def test_time_split_without_state(shape, decay):
    """The split with no initial state (the scan starts from zeros) and mild decays (states that
    carry across many chunks): outputs and every gradient vs float64, bf16 and fp32."""
    for dtype in (torch.float32, torch.bfloat16):
        seed = zlib.crc32(repr(("split0", shape, decay, str(dtype))).encode())
        check_all(seed, shape, dtype, with_state=False, decay=decay)


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("with_state", [False, True], ids=["nostate", "state"])
@pytest.mark.parametrize("N", [16, 64, 128])
def test_split_combine_matches_torch(dtype, with_state, N):
    """The split's step 2 on the kernels (chunk log decays, scan over the chunks) against the
    float64 product of ``chunk_starts``: the starts and the gradients to what the chunks add,
    to w (steps past the chunks included) and to the initial state."""
    B, n, chunk, H = 2, 9, 7, 3
    T = n * chunk + 5  # steps after the last chunk: no share in the starts
    g = torch.Generator(device="cpu").manual_seed(N + 2 * with_state)
    added = torch.randn(B, n, H, N, N, generator=g).cuda()
    # decays from ~0 (w = 2) to ~1 over a chunk (w = -8), so starts carry over many chunks
    w = (-8.0 + 10.0 * torch.rand(B, T, H, N, generator=g)).to(device="cuda", dtype=dtype)
    s0 = torch.randn(B, H, N, N, generator=g).cuda() if with_state else None
    gout = torch.randn(B, n, H, N, N, generator=g).cuda()

    def run(fn, dt):
        # ours takes w in its dtype; the reference the same values in float64
        w_in = w.clone() if dt == torch.float32 else w.to(dt)
        leaves = [added.to(dt, copy=True).requires_grad_(True), w_in.requires_grad_(True)]
        st = None if s0 is None else s0.to(dt, copy=True).requires_grad_(True)
        out = fn(leaves[0], leaves[1], n, st)
        (out.to(torch.float64) * gout.double()).sum().backward()
        grads = [x.grad for x in leaves] + ([st.grad] if st is not None else [])
        return [out, *grads]

    ours = run(wkv_cuda_mod._chunk_starts, torch.float32)
    ref = run(chunk_starts, torch.float64)
    names = ["starts", "d_added", "dw", "dstate0"]
    assert ours[2].dtype == dtype and torch.all(ours[2][:, n * chunk :] == 0)
    errs = {name: rel_err(a, b) for name, a, b in zip(names, ours, ref, strict=False)}
    bound = 1e-5 if dtype == torch.float32 else 1e-2
    assert all(torch.isfinite(x).all() for x in ours)
    assert all(e < bound for e in errs.values()), errs


@gpu
def test_split_combine_propagates_nan():
    """A NaN decay in one chunk reaches the starts of the later chunks only, and the gradient of
    w there."""
    B, n, chunk, H, N = 1, 6, 8, 1, 16
    added = torch.randn(B, n, H, N, N, device="cuda")
    w = torch.full((B, n * chunk, H, N), -3.0, device="cuda", requires_grad=True)
    with torch.no_grad():
        w[0, 2 * chunk + 3, 0, 4] = float("nan")
    starts = wkv_cuda_mod._chunk_starts(added, w, n, None)
    assert torch.isfinite(starts[:, :3]).all()
    assert torch.isnan(starts[:, 3:, :, 4]).all() and torch.isfinite(starts[:, 3:, :, :4]).all()
    starts.sum().backward()
    assert torch.isnan(w.grad[0, 2 * chunk + 3, 0, 4])


@gpu
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("decay", list(DECAYS))
@pytest.mark.parametrize("with_state", [False, True], ids=["nostate", "state"])
def test_chunked_matches_reference(shape, decay, with_state):
    """The tensor-core kernels (bf16) on both of their paths vs float64: outputs and gradients."""
    seed = zlib.crc32(repr(("chunked", shape, decay, with_state)).encode())
    check_all(seed, shape, torch.bfloat16, with_state, form="chunked", decay=decay)


@gpu
def test_chunked_mixed_chunks():
    """Steep chunks (exact paths) beside mild ones (tensor cores), in one head and not the others:
    the backward hands that (b, h) alone to the sequential kernel; all gradients vs float64."""

    def steep(r, k, v, w, u, s0):
        w = w.clone()
        w[0, 16:32, 0] = 2.5  # log decay -12 a step: past the fast path's bound
        w[1, 70, 1] = 6.0  # one step that all but clears the state (decay e^-403)
        return r, k, v, w, u, s0

    check_all(21, (2, 100, 3, 64), torch.bfloat16, True, form="chunked", decay="init", tweak=steep)


@gpu
@pytest.mark.parametrize("form", ["sequential", "chunked"])
@pytest.mark.parametrize("where", ["r", "k", "v", "w"])
def test_nan_is_causal(form, where):
    """A NaN at step 21 reaches y from there on and the final state, never the steps before."""
    B, T, H, N, t_bad = 1, 40, 2, 32, 21
    args = list(make(13, B, T, H, N, torch.bfloat16, True, decay="init"))
    y_clean, _ = wkv_cuda_mod.wkv_cuda(*args, form=form)
    i = "rkvw".index(where)
    args[i] = args[i].clone()
    args[i][0, t_bad, 1, 7] = float("nan")
    y, s = wkv_cuda_mod.wkv_cuda(*args, form=form)
    # the chunked kernel may take its other (exact) path for the chunk holding the NaN, so the
    # steps before it in that chunk agree to bf16 precision; earlier chunks are bit-identical
    assert torch.isfinite(y[:, :t_bad]).all()
    assert rel_err(y[:, :t_bad], y_clean[:, :t_bad]) < TOL[torch.bfloat16]
    assert torch.equal(y[:, :16], y_clean[:, :16])
    # y_t does not read the decay of step t: a NaN in w shows from the next step on
    assert torch.isnan(y[:, t_bad + (where == "w"), 1]).any()
    if where != "r":  # r does not enter the state
        assert torch.isnan(y[:, -1, 1]).any() and torch.isnan(s[:, 1]).any()
    assert torch.isfinite(y[:, :, 0]).all() and torch.isfinite(s[:, 0]).all()


@gpu
def test_chunked_unaligned_views():
    """Inputs that start 2 bytes into their storage (a sliced view) are taken and give the same."""
    B, T, H, N = 2, 40, 2, 32
    args = make(17, B, T, H, N, torch.bfloat16, True, decay="init")
    shifted = []
    for x in args[:4]:
        buf = torch.empty(x.numel() + 8, dtype=x.dtype, device=x.device)
        view = buf[1 : 1 + x.numel()].view(x.shape)
        view.copy_(x)
        assert view.is_contiguous() and view.data_ptr() % 16 == 2
        shifted.append(view)
    plain = [x.clone() for x in args[:4]]
    y1, s1 = wkv_cuda_mod.wkv_cuda(*shifted, *args[4:], form="chunked")
    y2, s2 = wkv_cuda_mod.wkv_cuda(*plain, *args[4:], form="chunked")
    assert torch.equal(y1, y2) and torch.equal(s1, s2)


def test_kernel_form_auto(monkeypatch):
    # the rule reads only the shape, the dtype and the GPU's compute capability
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))

    def form(B, T, N, dtype=torch.bfloat16):
        return wkv_cuda_mod.kernel_form(torch.zeros(B, T, 1, N, dtype=dtype))

    assert form(1, CHUNKED_LONG_T, 64, torch.float32) == "sequential"  # float32: exact always
    assert form(1, CHUNKED_LONG_T, 64) == "chunked"
    assert form(1, CHUNKED_LONG_T - 1, 64) == "sequential"
    assert form(4096, CHUNKED_MIN_T - 1, 64) == "sequential"
    r = torch.zeros(1, CHUNKED_LONG_T, 1, 64, dtype=torch.bfloat16)
    assert wkv_cuda_mod.kernel_form(r, "sequential") == "sequential"
    for N in (32, 64, 128):
        many = CHUNKED_MIN_SEQUENCES[min(N, 64)]
        assert form(many, CHUNKED_MIN_T, N) == "chunked"
        assert form(many - 1, CHUNKED_MIN_T, N) == "sequential"
    # head size 16: long sequences, not too many of them
    assert form(CHUNKED_N16_MAX_SEQUENCES, CHUNKED_LONG_T, 16) == "chunked"
    assert form(CHUNKED_N16_MAX_SEQUENCES + 1, CHUNKED_LONG_T, 16) == "sequential"
    assert form(4, CHUNKED_LONG_T - 1, 16) == "sequential"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert form(1, CHUNKED_LONG_T, 64) == "sequential"  # no bfloat16 tensor cores


def test_kernel_form_errors(monkeypatch):
    r = torch.zeros(1, 4, 1, 16)
    with pytest.raises(ValueError, match="bfloat16"):
        wkv_cuda_mod.kernel_form(r, "chunked")
    with pytest.raises(ValueError, match="'fast'"):
        wkv_cuda_mod.kernel_form(r, "fast")
    monkeypatch.setenv(wkv_cuda_mod.FORM_ENV_VAR, "parallel")
    with pytest.raises(ValueError, match="RWKV_TS_WKV_FORM"):
        wkv_cuda_mod.kernel_form(r)
    monkeypatch.setenv(wkv_cuda_mod.FORM_ENV_VAR, "sequential")
    assert wkv_cuda_mod.kernel_form(r) == "sequential"


@gpu
@pytest.mark.parametrize("use_dy,use_ds", [(True, False), (False, True)])
@pytest.mark.parametrize(
    "dtype,form", [(torch.float32, "sequential"), (torch.bfloat16, "chunked")], ids=["seq", "chk"]
)
def test_partial_gradients(use_dy, use_ds, dtype, form):
    # the unused output's gradient reaches the kernels undefined (not as zeros)
    check_all(7, (2, 40, 3, 64), dtype, True, use_dy=use_dy, use_ds=use_ds, form=form, decay="init")


@gpu
@pytest.mark.parametrize("form", ["sequential", "chunked"])
def test_bonus_gradient_keeps_its_dtype(form):
    r, k, v, w, u, s0 = make(8, 2, 33, 2, 64, torch.bfloat16, True, decay="init")
    u16 = u.bfloat16().requires_grad_(True)
    u32 = u16.detach().float().requires_grad_(True)
    for bonus in (u16, u32):
        y, s = wkv_cuda_mod.wkv_cuda(r, k, v, w, bonus, s0, form=form)
        (y.float().sum() + s.sum()).backward()
    assert u16.grad.dtype == torch.bfloat16 and u32.grad.dtype == torch.float32
    assert rel_err(u16.grad, u32.grad) < 1e-2


@gpu
def test_second_derivative_is_refused():
    r, k, v, w, u, s0 = make(9, 1, 20, 1, 32, torch.float32, False)
    r.requires_grad_(True)
    y, _ = wkv_cuda_mod.wkv_cuda(r, k, v, w, u, s0)
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(y.sum(), r, create_graph=True)


@gpu
@pytest.mark.parametrize("split", [1, 2, 4])
@pytest.mark.parametrize("N", [16, 32, 64, 128])
def test_forward_splits(split, N):
    ext = wkv_cuda_mod.extension()
    assert ext is not None
    r, k, v, w, u, s0 = make(11, 3, 45, 2, N, torch.float32, True)
    y, s = ext.forward(r, k, v, w, u, s0, split)
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    assert rel_err(y, y_ref) < 1e-5 and rel_err(s, s_ref) < 1e-5


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("where", ["w", "dy"])
def test_nan_propagates(dtype, where):
    """A NaN in an input (w) or in the output gradient (dy) never yields all-finite results."""
    B, T, H, N = 2, 37, 2, 32
    r, k, v, w, u, s0 = make(9, B, T, H, N, dtype, True)
    if where == "w":
        w = w.clone()
        w[1, 20, 0, 5] = float("nan")
    leaves = [x.clone().requires_grad_(True) for x in (r, k, v, w, u)]
    st = s0.clone().requires_grad_(True)
    y, s_t = wkv_cuda_mod.wkv_cuda(*leaves, st)
    gy = torch.randn_like(y)
    if where == "dy":
        gy[1, 20, 0, 5] = float("nan")
    torch.autograd.backward([y, s_t], [gy, torch.randn_like(s_t)])
    outs = {"dr": leaves[0].grad, "dk": leaves[1].grad, "dv": leaves[2].grad}
    outs |= {"dw": leaves[3].grad, "dstate0": st.grad}
    if where == "w":
        outs |= {"y": y, "state": s_t}
    else:
        outs["du"] = leaves[4].grad
    finite = [name for name, x in outs.items() if not torch.isnan(x).any()]
    assert not finite, f"NaN in {where} did not reach {finite}"


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_streaming_matches_full(dtype):
    B, T, H, N = 3, 23, 2, 64
    r, k, v, w, u, s0 = make(3, B, T, H, N, dtype, True)
    y_full, s_full = wkv_cuda_mod.wkv_cuda(r, k, v, w, u, s0)
    s = s0
    ys = []
    for t in range(T):
        sl = slice(t, t + 1)
        y_t, s = wkv_cuda_mod.wkv_cuda(r[:, sl], k[:, sl], v[:, sl], w[:, sl], u, s)
        ys.append(y_t)
    y_step = torch.cat(ys, 1)
    tol = TOL[dtype]
    # float32: both runs take the sequential kernel; bf16: the full run takes the tensor-core
    # forward, whose products round their operands to bf16 (the steps stay float32 throughout)
    s_tol = 1e-5 if dtype == torch.float32 else tol
    assert rel_err(y_step, y_full) < tol and rel_err(s, s_full) < s_tol


@gpu
def test_dispatch_uses_cuda():
    from rwkv_ts.ops import dispatch

    wkv_cuda_mod.register()
    assert "cuda" in dispatch.available_backends()
    r, k, v, w, u, s0 = make(5, 2, 30, 2, 32, torch.float32, True)
    y, s = dispatch.wkv(r, k, v, w, u, s0, backend="cuda")
    y_ref, s_ref = wkv_reference(r, k, v, w, u, s0)
    assert rel_err(y, y_ref) < 1e-5 and rel_err(s, s_ref) < 1e-5
    # non-contiguous inputs are accepted
    r_nc = r.transpose(1, 2).contiguous().transpose(1, 2)
    assert not r_nc.is_contiguous()
    y2, _ = dispatch.wkv(r_nc, k, v, w, u, s0, backend="cuda")
    assert rel_err(y2, y_ref) < 1e-5


@gpu
def test_supports():
    r, k, v, w, u, s0 = make(1, 1, 4, 1, 64, torch.float32, True)
    assert wkv_cuda_mod.supports(r, k, v, w, u, s0)
    assert not wkv_cuda_mod.supports(r, k, v, w.double(), u, s0)
    assert not wkv_cuda_mod.supports(r, k, v, w, u, s0.double())
    r2, k2, v2, w2, u2, _ = make(1, 1, 4, 1, 24, torch.float32, False)
    assert not wkv_cuda_mod.supports(r2, k2, v2, w2, u2, None)


# ------------------------------------------------------------------ everywhere (no GPU needed)


def test_cpu_tensors_never_build():
    r = torch.zeros(1, 2, 1, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not wkv_cuda_mod.supports(r, r, r, r, torch.zeros(1, 16), None)


def test_extension_name_keys():
    name = _build.extension_name((9, 0))
    assert name.startswith("rwkv_ts_wkv6_t") and "_sm90_" in name
    assert ("_cu" + (torch.version.cuda or "none").replace(".", "")) in name
    assert _build.extension_name((8, 0)) != name
    for src in _build.kernel_sources():
        assert src.is_file()


def test_extension_name_changes_with_sources(tmp_path: Path, monkeypatch):
    """Any change of a kernel source or header gives a new extension name (a rebuild)."""
    import shutil

    for src in [*_build.kernel_sources(), *_build.kernel_headers()]:
        shutil.copy(src, tmp_path / src.name)
    monkeypatch.setattr(_build, "kernel_dir", lambda: tmp_path)
    names = {_build.extension_name((9, 0))}
    changed = ("wkv6.cu", "wkv6_split.cu", "wkv6.h", "wkv6_device.cuh", "wkv6_binding.cpp")
    for fname in changed:
        with open(tmp_path / fname, "a") as fh:
            fh.write("\n// changed\n")
        names.add(_build.extension_name((9, 0)))
    assert len(names) == len(changed) + 1


def test_build_lock_times_out_while_held(tmp_path: Path):
    lock = tmp_path / "x.lock"
    with _build.build_lock(lock):
        t0 = time.monotonic()
        with pytest.raises(_build.BuildLockTimeout):
            with _build.build_lock(lock, timeout_s=0.3, poll_s=0.05):
                pass
        assert time.monotonic() - t0 < 5
    with _build.build_lock(lock, timeout_s=1.0):
        pass


def test_build_lock_released_when_holder_killed(tmp_path: Path):
    lock = tmp_path / "y.lock"
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[2]);"
        "from rwkv_ts.ops import _build;"
        "from pathlib import Path;"
        "cm = _build.build_lock(Path(sys.argv[1])); cm.__enter__();"
        "print('held', flush=True); time.sleep(60)"
    )
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(lock), root], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(_build.BuildLockTimeout):
            with _build.build_lock(lock, timeout_s=0.2, poll_s=0.05):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        with _build.build_lock(lock, timeout_s=5.0, poll_s=0.05):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
