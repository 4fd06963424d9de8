"""The step kernel of the torch-free runtime, compiled by numba.

One call advances many lanes (a lane is one channel of one series) by ``k`` samples each. Per
sample:
causal normalisation over the trailing window (float64 sums, as the torch module), the patch buffer,
and — once a patch completes — one token step of the phase whose patch grid ends at this sample:
every RWKV block (multi-scale token shift, data-dependent decay, WKV recurrence, group norm, gated
TCN branch, channel-mix), the final layer norm and the head. The arithmetic mirrors
``rwkv_ts.nn`` module by module; the tests hold it equal to the torch stream.

Weights come as one flat float32 array and an int64 table of where each parameter lies in it
(:func:`rwkv_ts.runtime.weights.flatten`): numba unboxes every array argument of a call (about
50 ns each), so one array instead of thirty parameter arrays keeps the dispatch of a one-sample
update near a microsecond.

State arrays (lanes first):
``nbuf`` (L, window) float64, ``count`` (L,) int64, ``zbuf`` (L, patch_len, or lookback with the
linear branch), ``shift``
(L, P, layers, max_distance, D), ``wkv`` (L, P, layers, H, N, N), ``tcn`` (L, P, layers, n_tcn,
max_receptive, D), ``cm`` (L, P, layers, D), ``head`` (L, P, head_tokens, D), ``fc`` (L, horizon).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_F = np.float32
_LN_EPS = 1e-5
_GN_EPS = 1e-5 * 64
_NORM_EPS = 1e-5
# error_model="numpy": a float division by zero gives inf/nan instead of raising, so divisions
# carry no branch and the element-wise loops below (sigmoid, tanh, GELU, decay) vectorise.
_JIT = dict(cache=True, fastmath=True, error_model="numpy")

# Parameters, in the order of rwkv_ts.runtime.weights.PARAM_NAMES (rows of the ``table``).
(
    _LN,
    _MAA_X,
    _MAA,
    _MAA_W1,
    _MAA_W2,
    _DECAY,
    _DECAY_W1,
    _DECAY_W2,
    _BONUS,
    _LIN,
    _LNX,
    _MIX_W,
    _MIX_B,
    _TCN_DW,
    _TCN_DB,
    _TCN_PW,
    _TCN_PB,
    _FUS_W,
    _FUS_B,
    _CM_MAA,
    _CM_KEY,
    _CM_REC,
    _CM_VAL,
    _PATCH_W,
    _PATCH_B,
    _LN_OUT,
    _HEAD_W,
    _HEAD_B,
    _SKIP_W,
    _SKIP_B,
    _DECAY_STATIC,
) = range(31)

# erfc(z) * exp(z^2) ~= t * poly(t), t = 1 / (1 + z / 2): least-squares fit on z in [0, 6]
# (200,001 points, weighted by exp(-z^2)); erf from it has max abs error 4.6e-10 for all z, far
# below float32 resolution (6e-8 near 1). The A&S 7.1.26 form, refitted with more terms.
_ERFC0 = 0.2851958632851281
_ERFC1 = 0.24562238072783732
_ERFC2 = 0.43215873350856226
_ERFC3 = -0.34981158283640346
_ERFC4 = 0.9761042624587919
_ERFC5 = -0.8785452189316858
_ERFC6 = 0.340366601555059
_ERFC7 = -0.05109103931662929


# ------------------------------------------------------------------ element-wise functions
# llvmlite here has no vector math library: math.exp/math.erf are scalar libm calls, and a loop
# that calls them does not vectorise. These are plain float64 arithmetic (inlined by LLVM), so the
# loops that apply them run 8 lanes at a time; float64 keeps their error far below float32's.


@njit(**_JIT)
def _exp(x):
    """exp(x) in float64, relative error < 2e-12 on [-87, 88] (clamped there: float32 exp over-
    or underflows beyond): the degree-11 Taylor polynomial of exp(x / 256) (Horner), squared 8
    times. No table and no bit manipulation, so a loop that applies it vectorises."""
    x = min(max(x, -87.0), 88.0)
    y = x * (1.0 / 256.0)
    p = 1.0 / 39916800.0
    p = p * y + 1.0 / 3628800.0
    p = p * y + 1.0 / 362880.0
    p = p * y + 1.0 / 40320.0
    p = p * y + 1.0 / 5040.0
    p = p * y + 1.0 / 720.0
    p = p * y + 1.0 / 120.0
    p = p * y + 1.0 / 24.0
    p = p * y + 1.0 / 6.0
    p = p * y + 0.5
    p = p * y + 1.0
    p = p * y + 1.0
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p * p


@njit(**_JIT)
def _erf(x):
    """erf(x) in float64, max abs error 4.6e-10 (see the coefficients above)."""
    z = x if x >= 0.0 else -x
    t = 1.0 / (1.0 + 0.5 * z)
    r = _ERFC7
    r = r * t + _ERFC6
    r = r * t + _ERFC5
    r = r * t + _ERFC4
    r = r * t + _ERFC3
    r = r * t + _ERFC2
    r = r * t + _ERFC1
    r = r * t + _ERFC0
    e = 1.0 - _exp(-z * z) * (r * t)
    return e if x >= 0.0 else -e


@njit(**_JIT)
def _tanh(x):
    # through one exp; float64, so the cancellation in 1 - e near 0 stays far below float32's ulp
    e = _exp(-2.0 * (x if x >= 0.0 else -x))
    t = (1.0 - e) / (1.0 + e)
    return t if x >= 0.0 else -t


@njit(**_JIT)
def _sigmoid(x):
    return 1.0 / (1.0 + _exp(-x))


def erf(x: np.ndarray) -> np.ndarray:
    """The kernel's erf, element-wise (float64; for tests)."""
    a = np.ascontiguousarray(x, dtype=np.float64)
    return _map_erf(a.ravel()).reshape(a.shape)


def exp(x: np.ndarray) -> np.ndarray:
    """The kernel's exp, element-wise (float64; for tests)."""
    a = np.ascontiguousarray(x, dtype=np.float64)
    return _map_exp(a.ravel()).reshape(a.shape)


@njit(**_JIT)
def _map_erf(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = _erf(x[i])
    return out


@njit(**_JIT)
def _map_exp(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = _exp(x[i])
    return out


# ------------------------------------------------------------------ matrix-vector products


@njit(**_JIT)
def _matvec(x, w, out):
    """out = W @ x, W (out, in) stored row after row in the 1-D ``w``: dot products over
    contiguous rows, two rows at a time (each load of ``x`` serves two outputs; four rows or more
    measured slower here, one row a little slower)."""
    n_in = x.shape[0]
    n_out = out.shape[0]
    o = 0
    while o + 2 <= n_out:
        b = o * n_in
        r0 = w[b : b + n_in]
        r1 = w[b + n_in : b + 2 * n_in]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        for i in range(n_in):
            xi = x[i]
            a0 += xi * r0[i]
            a1 += xi * r1[i]
        out[o] = a0
        out[o + 1] = a1
        o += 2
    if o < n_out:
        row = w[o * n_in : (o + 1) * n_in]
        acc = np.float32(0.0)
        for i in range(n_in):
            acc += x[i] * row[i]
        out[o] = acc


@njit(**_JIT)
def _matvec_t(x, w, out):
    """out = W @ x, W (out, in) stored transposed, (in, out), in the 1-D ``w``; for short inputs
    (LoRA ranks, the patch): a dot product over 16 inputs is mostly its horizontal sum, while
    this form accumulates whole output vectors, four inputs per pass."""
    n_in = x.shape[0]
    n_out = out.shape[0]
    for o in range(n_out):
        out[o] = 0.0
    i = 0
    while i + 4 <= n_in:
        x0 = x[i]
        x1 = x[i + 1]
        x2 = x[i + 2]
        x3 = x[i + 3]
        b = i * n_out
        w0 = w[b : b + n_out]
        w1 = w[b + n_out : b + 2 * n_out]
        w2 = w[b + 2 * n_out : b + 3 * n_out]
        w3 = w[b + 3 * n_out : b + 4 * n_out]
        for o in range(n_out):
            out[o] += (x0 * w0[o] + x1 * w1[o]) + (x2 * w2[o] + x3 * w3[o])
        i += 4
    while i < n_in:
        xi = x[i]
        wi = w[i * n_out : (i + 1) * n_out]
        for o in range(n_out):
            out[o] += xi * wi[o]
        i += 1


@njit(**_JIT)
def _layer_norm(x, weight, bias, out):
    n = x.shape[0]
    mean = 0.0
    for i in range(n):
        mean += x[i]
    mean /= n
    var = 0.0
    for i in range(n):
        d = x[i] - mean
        var += d * d
    var /= n
    inv = 1.0 / math.sqrt(var + _LN_EPS)
    for i in range(n):
        out[i] = (x[i] - mean) * inv * weight[i] + bias[i]


# ------------------------------------------------------------------ the flat weights


@njit(**_JIT)
def _at(table, k, layer):
    """Offset of parameter ``k`` (of ``layer``; 0 for global ones) in the flat weights."""
    return table[k, 0] + layer * table[k, 1]


# ------------------------------------------------------------------ one token


@njit(**_JIT)
def _token_step(tok, wf, table, cfg, shift, wkv, tcn, cm, head, y_out, scratch):
    """One token through the blocks, final norm and head; updates the phase's state slices.

    Parameters are read as 1-D slices of ``wf`` at the offsets of ``table`` (shapes follow from
    ``cfg``): no reshape, no array built per parameter.
    """
    n_layers = cfg[0]
    n_heads = cfg[1]
    hs = cfg[2]
    data_decay = cfg[3]
    rank = cfg[4]
    n_dist = cfg[5]
    max_d = cfg[6]
    n_tcn = cfg[7]
    ksize = cfg[8]
    hidden = cfg[9]
    n_tok = cfg[10]
    dist_off = 16
    dil_off = 16 + n_dist
    d = tok.shape[0]
    dd2 = d * d
    # one 2-D scratch array (a single argument to unbox per call), rows cut to their lengths
    big = max(d, n_dist)
    h = scratch[0, :d]
    hn = scratch[1, :d]
    shifted = scratch[2, :d]
    xx = scratch[3, :d]
    tmp = scratch[4, :big]
    lora = scratch[5, : 5 * rank]
    mixf = scratch[6, :d]
    xr = scratch[7, :d]
    xk = scratch[8, :d]
    xv = scratch[9, :d]
    xg = scratch[10, :d]
    xw = scratch[11, :d]
    r = scratch[12, :d]
    k = scratch[13, :d]
    v = scratch[14, :d]
    g = scratch[15, :d]
    w = scratch[16, :d]
    y = scratch[17, :d]
    a = scratch[18, :d]
    c = scratch[19, :d]
    conv = scratch[20, :d]
    cat2 = scratch[21, : 2 * d]
    hid = scratch[22, :hidden]
    dlo = scratch[23, : 2 * rank]

    for i in range(d):
        h[i] = tok[i]
    for layer in range(n_layers):
        o_ln = _at(table, _LN, layer)  # rows: ln1 weight, ln1 bias, ln2 weight, ln2 bias
        _layer_norm(h, wf[o_ln : o_ln + d], wf[o_ln + d : o_ln + 2 * d], hn)
        # ---- multi-scale token shift (weights from the current token)
        buf = shift[layer]
        if n_dist == 1:
            src = max_d - cfg[dist_off]
            for i in range(d):
                shifted[i] = buf[src, i]
        else:
            o_mw = _at(table, _MIX_W, layer)
            o_mb = _at(table, _MIX_B, layer)
            _matvec(hn, wf[o_mw : o_mw + n_dist * d], tmp[:n_dist])
            mx = -1e30
            for j in range(n_dist):
                tmp[j] += wf[o_mb + j]
                if tmp[j] > mx:
                    mx = tmp[j]
            tot = 0.0
            for j in range(n_dist):
                tmp[j] = _exp(np.float64(tmp[j] - mx))
                tot += tmp[j]
            for i in range(d):
                shifted[i] = 0.0
            for j in range(n_dist):
                wj = tmp[j] / tot
                src = max_d - cfg[dist_off + j]
                for i in range(d):
                    shifted[i] += wj * buf[src, i]
        for t in range(max_d - 1):
            for i in range(d):
                buf[t, i] = buf[t + 1, i]
        for i in range(d):
            buf[max_d - 1, i] = hn[i]
        # ---- data-dependent interpolation (RWKV-6 ddlerp)
        o_mx = _at(table, _MAA_X, layer)
        maa_x = wf[o_mx : o_mx + d]
        for i in range(d):
            xx[i] = shifted[i] - hn[i]
            tmp[i] = hn[i] + xx[i] * maa_x[i]
        o_w1 = _at(table, _MAA_W1, layer)
        _matvec(tmp[:d], wf[o_w1 : o_w1 + 5 * rank * d], lora)
        for i in range(5 * rank):
            lora[i] = _tanh(np.float64(lora[i]))
        o_w2 = _at(table, _MAA_W2, layer)  # (5, rank, d): (in, out) per target
        o_maa = _at(table, _MAA, layer)  # (5, d)
        for f in range(5):
            wf2 = wf[o_w2 + f * rank * d : o_w2 + (f + 1) * rank * d]
            _matvec_t(lora[f * rank : (f + 1) * rank], wf2, mixf)
            if f == 0:
                dst = xw
            elif f == 1:
                dst = xk
            elif f == 2:
                dst = xv
            elif f == 3:
                dst = xr
            else:
                dst = xg
            mf = wf[o_maa + f * d : o_maa + (f + 1) * d]
            for i in range(d):
                dst[i] = hn[i] + xx[i] * (mixf[i] + mf[i])
        o_lin = _at(table, _LIN, layer)  # (5, d, d): receptance, key, value, gate, output
        _matvec(xr, wf[o_lin : o_lin + dd2], r)
        _matvec(xk, wf[o_lin + dd2 : o_lin + 2 * dd2], k)
        _matvec(xv, wf[o_lin + 2 * dd2 : o_lin + 3 * dd2], v)
        _matvec(xg, wf[o_lin + 3 * dd2 : o_lin + 4 * dd2], g)
        for i in range(d):
            gi = np.float64(g[i])
            g[i] = gi * _sigmoid(gi)
        # the per-channel decay factor exp(-exp(w)) for the WKV update
        if data_decay:
            o_dc = _at(table, _DECAY, layer)
            o_d1 = _at(table, _DECAY_W1, layer)
            o_d2 = _at(table, _DECAY_W2, layer)
            _matvec(xw, wf[o_d1 : o_d1 + 2 * rank * d], dlo)
            for i in range(2 * rank):
                dlo[i] = _tanh(np.float64(dlo[i]))
            _matvec_t(dlo, wf[o_d2 : o_d2 + 2 * rank * d], w)
            decay = wf[o_dc : o_dc + d]
            for i in range(d):
                w[i] = _exp(-_exp(np.float64(w[i] + decay[i])))
        else:
            # weights only: computed once at load time
            o_ds = _at(table, _DECAY_STATIC, layer)
            for i in range(d):
                w[i] = wf[o_ds + i]
        # ---- WKV: y = r^T (S + diag(u) k v^T); S = diag(exp(-exp(w))) S + k v^T
        o_bo = _at(table, _BONUS, layer)  # (heads, head_size)
        o_lx = _at(table, _LNX, layer)  # (2, d): group-norm weight, bias
        s = wkv[layer]
        for hh in range(n_heads):
            base = hh * hs
            yh = y[base : base + hs]
            vh = v[base : base + hs]
            # the bonus term r^T diag(u) k v^T = (sum_i r_i u_i k_i) v
            ruk = np.float32(0.0)
            for i in range(hs):
                ruk += r[base + i] * wf[o_bo + base + i] * k[base + i]
            for j in range(hs):
                yh[j] = ruk * vh[j]
            # four rows of S per pass over j: fewer passes over y, fewer loop entries
            i = 0
            while i + 4 <= hs:
                q = base + i
                r0 = r[q]
                r1 = r[q + 1]
                r2 = r[q + 2]
                r3 = r[q + 3]
                k0 = k[q]
                k1 = k[q + 1]
                k2 = k[q + 2]
                k3 = k[q + 3]
                d0 = w[q]
                d1 = w[q + 1]
                d2 = w[q + 2]
                d3 = w[q + 3]
                s0 = s[hh, i]
                s1 = s[hh, i + 1]
                s2 = s[hh, i + 2]
                s3 = s[hh, i + 3]
                for j in range(hs):
                    a0 = s0[j]
                    a1 = s1[j]
                    a2 = s2[j]
                    a3 = s3[j]
                    vj = vh[j]
                    yh[j] += (r0 * a0 + r1 * a1) + (r2 * a2 + r3 * a3)
                    s0[j] = d0 * a0 + k0 * vj
                    s1[j] = d1 * a1 + k1 * vj
                    s2[j] = d2 * a2 + k2 * vj
                    s3[j] = d3 * a3 + k3 * vj
                i += 4
            while i < hs:
                ri = r[base + i]
                ki = k[base + i]
                di = w[base + i]
                si = s[hh, i]
                for j in range(hs):
                    a0 = si[j]
                    yh[j] += ri * a0
                    si[j] = di * a0 + ki * vh[j]
                i += 1
            # group norm over the head's channels
            mean = 0.0
            for j in range(hs):
                mean += yh[j]
            mean /= hs
            var = 0.0
            for j in range(hs):
                dd = yh[j] - mean
                var += dd * dd
            var /= hs
            inv = 1.0 / math.sqrt(var + _GN_EPS)
            gw = wf[o_lx + base : o_lx + base + hs]
            gb = wf[o_lx + d + base : o_lx + d + base + hs]
            gh = g[base : base + hs]
            for j in range(hs):
                yh[j] = ((yh[j] - mean) * inv * gw[j] + gb[j]) * gh[j]
        _matvec(y, wf[o_lin + 4 * dd2 : o_lin + 5 * dd2], a)
        # ---- causal dilated TCN branch, fused through a gate
        if n_tcn > 0:
            o_dw = _at(table, _TCN_DW, layer)  # (n_tcn, ksize, d)
            o_db = _at(table, _TCN_DB, layer)  # (n_tcn, d)
            o_pw = _at(table, _TCN_PW, layer)  # (n_tcn, d, d)
            o_pb = _at(table, _TCN_PB, layer)  # (n_tcn, d)
            for i in range(d):
                c[i] = hn[i]
            for t in range(n_tcn):
                dil = cfg[dil_off + t]
                rec = (ksize - 1) * dil
                tb = tcn[layer, t]
                db = wf[o_db + t * d : o_db + (t + 1) * d]
                for i in range(d):
                    conv[i] = db[i]
                for kk in range(ksize):
                    pos = kk * dil
                    dwk = wf[o_dw + (t * ksize + kk) * d : o_dw + (t * ksize + kk + 1) * d]
                    if pos < rec:
                        tbp = tb[pos]
                        for i in range(d):
                            conv[i] += tbp[i] * dwk[i]
                    else:
                        for i in range(d):
                            conv[i] += c[i] * dwk[i]
                if rec > 0:
                    for q in range(rec - 1):
                        for i in range(d):
                            tb[q, i] = tb[q + 1, i]
                    for i in range(d):
                        tb[rec - 1, i] = c[i]
                for i in range(d):
                    xv_ = np.float64(conv[i])
                    conv[i] = 0.5 * xv_ * (1.0 + _erf(xv_ * 0.7071067811865476))
                _matvec(conv, wf[o_pw + t * dd2 : o_pw + (t + 1) * dd2], tmp[:d])
                pb = wf[o_pb + t * d : o_pb + (t + 1) * d]
                for i in range(d):
                    c[i] = c[i] + tmp[i] + pb[i]
            for i in range(d):
                cat2[i] = a[i]
                cat2[d + i] = c[i]
            o_fw = _at(table, _FUS_W, layer)
            o_fb = _at(table, _FUS_B, layer)
            _matvec(cat2, wf[o_fw : o_fw + 2 * dd2], tmp[:d])
            fus_b = wf[o_fb : o_fb + d]
            for i in range(d):
                gate = _sigmoid(np.float64(tmp[i] + fus_b[i]))
                a[i] = gate * a[i] + (1.0 - gate) * c[i]
        for i in range(d):
            h[i] += a[i]
        # ---- channel-mix
        _layer_norm(h, wf[o_ln + 2 * d : o_ln + 3 * d], wf[o_ln + 3 * d : o_ln + 4 * d], hn)
        o_cm = _at(table, _CM_MAA, layer)  # (2, d): key, receptance
        maa_k = wf[o_cm : o_cm + d]
        maa_r = wf[o_cm + d : o_cm + 2 * d]
        last = cm[layer]
        for i in range(d):
            dd = last[i] - hn[i]
            xk[i] = hn[i] + dd * maa_k[i]
            xr[i] = hn[i] + dd * maa_r[i]
            last[i] = hn[i]
        o_ck = _at(table, _CM_KEY, layer)
        o_cr = _at(table, _CM_REC, layer)
        o_cv = _at(table, _CM_VAL, layer)
        _matvec(xk, wf[o_ck : o_ck + hidden * d], hid)
        for i in range(hidden):
            rel = hid[i] if hid[i] > 0.0 else 0.0
            hid[i] = rel * rel
        _matvec(xr, wf[o_cr : o_cr + dd2], r)
        _matvec(hid, wf[o_cv : o_cv + d * hidden], v)
        for i in range(d):
            h[i] += _sigmoid(np.float64(r[i])) * v[i]
    o_lo = _at(table, _LN_OUT, 0)
    _layer_norm(h, wf[o_lo : o_lo + d], wf[o_lo + d : o_lo + 2 * d], hn)
    for t in range(n_tok - 1):
        for i in range(d):
            head[t, i] = head[t + 1, i]
    for i in range(d):
        head[n_tok - 1, i] = hn[i]
    n_out = y_out.shape[0]
    o_hw = _at(table, _HEAD_W, 0)
    o_hb = _at(table, _HEAD_B, 0)
    _matvec(head.reshape(n_tok * d), wf[o_hw : o_hw + n_out * n_tok * d], y_out)
    for i in range(n_out):
        y_out[i] += wf[o_hb + i]


# ------------------------------------------------------------------ entry points


@njit(cache=True)
def scale_samples(values, mean, std, profile, phase, lanes, x):
    """Scale samples ``values`` (S, k, C) float64 into the kernel's lanes ``x`` (S*C, k) float32,
    as ``((v.astype(float32) - mean) / std - profile[phase]).astype(float32)``, the phase of the
    j-th sample of lane ``l`` being ``(phase[l] + j) % period`` (a removed cycle; a model without
    one has a (1, C) profile of zeros); False if any value is not finite (then ``x`` is partly
    written and must not be used)."""
    n_series, k, c = values.shape
    period = profile.shape[0]
    for s in range(n_series):
        for ch in range(c):
            first = phase[lanes[s * c + ch]]
            for j in range(k):
                v = values[s, j, ch]
                if not np.isfinite(v):
                    return False
                z = (np.float64(np.float32(v)) - mean[ch]) / std[ch]
                x[s * c + ch, j] = np.float32(z - profile[(first + j) % period, ch])
    return True


@njit(cache=True)
def unscale_forecasts(fc, count, lanes, mean, std, profile, phase, lookback, out):
    """Forecasts ``out`` (S, horizon, C) float64 of the series whose lanes are ``lanes`` (S*C,):
    ``(fc + profile[phase + h]) * std + mean`` (``phase``: of each lane's next sample), NaN for
    series with fewer than ``lookback`` samples."""
    n_series, horizon, c = out.shape
    period = profile.shape[0]
    for s in range(n_series):
        ready = count[lanes[s * c]] >= lookback
        for ch in range(c):
            lane = lanes[s * c + ch]
            for h in range(horizon):
                if ready:
                    cyc = profile[(phase[lane] + h) % period, ch]
                    out[s, h, ch] = (np.float64(fc[lane, h]) + cyc) * std[ch] + mean[ch]
                else:
                    out[s, h, ch] = np.nan


@njit(cache=True)
def update_lanes(
    values,
    mean,
    std,
    profile,
    phase,
    lanes,
    wf,
    table,
    cfg,
    nbuf,
    count,
    zbuf,
    shift,
    wkv,
    tcn,
    cm,
    head,
    fc,
    scratch,
    out,
):
    """Scale ``values`` (S, k, C) into the lanes, advance ``lanes`` and their phases and write the
    forecasts ``out`` (S, horizon, C); one call (one dispatch) per update. False, with no state
    changed, if a value is not finite."""
    x = np.empty((lanes.shape[0], values.shape[1]), np.float32)
    if not scale_samples(values, mean, std, profile, phase, lanes, x):
        return False
    run_lanes(lanes, x, wf, table, cfg, nbuf, count, zbuf, shift, wkv, tcn, cm, head, fc, scratch)
    period = profile.shape[0]
    for lane in lanes:
        phase[lane] = (phase[lane] + values.shape[1]) % period
    unscale_forecasts(fc, count, lanes, mean, std, profile, phase, cfg[14], out)
    return True


_SCRATCH_ROWS = 26


def make_scratch(cfg_np: np.ndarray, d: int, horizon: int) -> np.ndarray:
    """The kernel's work space: one row per intermediate vector, of the longest length."""
    rank, hidden, n_dist = int(cfg_np[4]), int(cfg_np[9]), int(cfg_np[5])
    return np.zeros((_SCRATCH_ROWS, max(2 * d, n_dist, 5 * rank, hidden, horizon)), dtype=_F)


@njit(**_JIT)
def run_lanes(lanes, x, wf, table, cfg, nbuf, count, zbuf, shift, wkv, tcn, cm, head, fc, scratch):
    """Advance ``lanes`` (m,) by the samples ``x`` (m, k) (scaled, float32)."""
    patch_len = cfg[11]
    stride = cfg[12]
    skip = cfg[13]
    lookback = cfg[14]
    window = nbuf.shape[1]
    d = cfg[1] * cfg[2]
    horizon = fc.shape[1]
    o_pw = _at(table, _PATCH_W, 0)
    o_pb = _at(table, _PATCH_B, 0)
    o_sw = _at(table, _SKIP_W, 0)
    o_sb = _at(table, _SKIP_B, 0)
    patch_w = wf[o_pw : o_pw + patch_len * d]  # (in, out)
    patch_b = wf[o_pb : o_pb + d]
    tok = scratch[24, :d]
    yb = scratch[25, :horizon]
    zl = zbuf.shape[1]
    for row in range(lanes.shape[0]):
        lane = lanes[row]
        nb = nbuf[lane]
        zb = zbuf[lane]
        for j in range(x.shape[1]):
            xs = np.float64(x[row, j])
            for q in range(window - 1):
                nb[q] = nb[q + 1]
            nb[window - 1] = xs
            count[lane] += 1
            n = count[lane]
            if n > window:
                n = window
            s1 = 0.0
            s2 = 0.0
            for q in range(window):
                s1 += nb[q]
                s2 += nb[q] * nb[q]
            mean = s1 / n
            var = s2 / n - mean * mean
            if var < 0.0:
                var = 0.0
            std = math.sqrt(var + _NORM_EPS)
            z = np.float32((xs - mean) / std)
            for q in range(zl - 1):
                zb[q] = zb[q + 1]
            zb[zl - 1] = z
            if count[lane] < patch_len:
                continue
            p = (count[lane] - patch_len) % stride
            _matvec_t(zb[zl - patch_len :], patch_w, tok)
            for i in range(d):
                tok[i] += patch_b[i]
            _token_step(
                tok,
                wf,
                table,
                cfg,
                shift[lane, p],
                wkv[lane, p],
                tcn[lane, p],
                cm[lane, p],
                head[lane, p],
                yb,
                scratch,
            )
            if skip:
                for i in range(horizon):
                    skip_row = wf[o_sw + i * lookback : o_sw + (i + 1) * lookback]
                    acc = np.float32(0.0)
                    for q in range(lookback):
                        acc += zb[zl - lookback + q] * skip_row[q]
                    yb[i] += acc + wf[o_sb + i]
            mean32 = np.float32(mean)
            std32 = np.float32(std)
            for i in range(horizon):
                fc[lane, i] = yb[i] * std32 + mean32
