"""The step kernel of the torch-free runtime, compiled by numba.

One call advances many lanes (a lane is one channel of one series) by ``k`` samples each. Per
sample:
causal normalisation over the trailing window (float64 sums, as the torch module), the patch buffer,
and — once a patch completes — one token step of the phase whose patch grid ends at this sample:
every RWKV block (multi-scale token shift, data-dependent decay, WKV recurrence, group norm, gated
TCN branch, channel-mix), the final layer norm and the head. The arithmetic mirrors
``rwkv_ts.nn`` module by module; the tests hold it equal to the torch stream.

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


@njit(cache=True, fastmath=True)
def _matvec(x, w, out):
    """out = w @ x with w (out, in): one contiguous dot product per output."""
    n_in = x.shape[0]
    for o in range(out.shape[0]):
        row = w[o]
        acc = np.float32(0.0)
        for i in range(n_in):
            acc += x[i] * row[i]
        out[o] = acc


@njit(cache=True, fastmath=True)
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


@njit(cache=True, fastmath=True)
def _tanh(x):
    # through one exp: about twice as fast as libm's tanh, equal to float32 precision
    e = math.exp(-2.0 * abs(np.float64(x)))
    t = (1.0 - e) / (1.0 + e)
    return t if x >= 0 else -t


@njit(cache=True, fastmath=True)
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@njit(cache=True, fastmath=True)
def _token_step(tok, params, cfg, shift, wkv, tcn, cm, head, y_out, scratch):
    """One token through the blocks, final norm and head; updates the phase's state slices."""
    (
        ln,
        maa_x,
        maa,
        maa_w1,
        maa_w2,
        decay,
        decay_w1,
        decay_w2,
        bonus,
        lin,
        lnx,
        mix_w,
        mix_b,
        tcn_dw,
        tcn_db,
        tcn_pw,
        tcn_pb,
        fus_w,
        fus_b,
        cm_maa,
        cm_key,
        cm_rec,
        cm_val,
        patch_w,
        patch_b,
        ln_out,
        head_w,
        head_b,
        skip_w,
        skip_b,
    ) = params
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
        _layer_norm(h, ln[layer, 0], ln[layer, 1], hn)
        # ---- multi-scale token shift (weights from the current token)
        buf = shift[layer]
        if n_dist == 1:
            src = max_d - cfg[dist_off]
            for i in range(d):
                shifted[i] = buf[src, i]
        else:
            _matvec(hn, mix_w[layer], tmp[:n_dist])
            mx = -1e30
            for j in range(n_dist):
                tmp[j] += mix_b[layer, j]
                if tmp[j] > mx:
                    mx = tmp[j]
            tot = 0.0
            for j in range(n_dist):
                tmp[j] = math.exp(tmp[j] - mx)
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
        for i in range(d):
            xx[i] = shifted[i] - hn[i]
            tmp[i] = hn[i] + xx[i] * maa_x[layer, i]
        _matvec(tmp[:d], maa_w1[layer], lora)
        for i in range(5 * rank):
            lora[i] = _tanh(lora[i])
        for f in range(5):
            _matvec(lora[f * rank : (f + 1) * rank], maa_w2[layer, f], mixf)
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
            for i in range(d):
                dst[i] = hn[i] + xx[i] * (mixf[i] + maa[layer, f, i])
        _matvec(xr, lin[layer, 0], r)
        _matvec(xk, lin[layer, 1], k)
        _matvec(xv, lin[layer, 2], v)
        _matvec(xg, lin[layer, 3], g)
        for i in range(d):
            g[i] = g[i] * _sigmoid(g[i])
        if data_decay:
            _matvec(xw, decay_w1[layer], dlo)
            for i in range(2 * rank):
                dlo[i] = _tanh(dlo[i])
            _matvec(dlo, decay_w2[layer], w)
            for i in range(d):
                w[i] += decay[layer, i]
        else:
            for i in range(d):
                w[i] = decay[layer, i]
        # ---- WKV: y = r^T (S + diag(u) k v^T); S = diag(exp(-exp(w))) S + k v^T
        s = wkv[layer]
        for hh in range(n_heads):
            base = hh * hs
            for j in range(hs):
                y[base + j] = 0.0
            for i in range(hs):
                ki = k[base + i]
                ri = r[base + i]
                ui = bonus[layer, hh, i]
                di = math.exp(-math.exp(w[base + i]))
                for j in range(hs):
                    kv = ki * v[base + j]
                    sij = s[hh, i, j]
                    y[base + j] += ri * (sij + ui * kv)
                    s[hh, i, j] = di * sij + kv
            # group norm over the head's channels
            mean = 0.0
            for j in range(hs):
                mean += y[base + j]
            mean /= hs
            var = 0.0
            for j in range(hs):
                dd = y[base + j] - mean
                var += dd * dd
            var /= hs
            inv = 1.0 / math.sqrt(var + _GN_EPS)
            for j in range(hs):
                q = base + j
                y[q] = ((y[q] - mean) * inv * lnx[layer, 0, q] + lnx[layer, 1, q]) * g[q]
        _matvec(y, lin[layer, 4], a)
        # ---- causal dilated TCN branch, fused through a gate
        if n_tcn > 0:
            for i in range(d):
                c[i] = hn[i]
            for t in range(n_tcn):
                dil = cfg[dil_off + t]
                rec = (ksize - 1) * dil
                tb = tcn[layer, t]
                for i in range(d):
                    conv[i] = tcn_db[layer, t, i]
                for kk in range(ksize):
                    pos = kk * dil
                    if pos < rec:
                        for i in range(d):
                            conv[i] += tb[pos, i] * tcn_dw[layer, t, kk, i]
                    else:
                        for i in range(d):
                            conv[i] += c[i] * tcn_dw[layer, t, kk, i]
                if rec > 0:
                    for q in range(rec - 1):
                        for i in range(d):
                            tb[q, i] = tb[q + 1, i]
                    for i in range(d):
                        tb[rec - 1, i] = c[i]
                for i in range(d):
                    xv_ = conv[i]
                    conv[i] = 0.5 * xv_ * (1.0 + math.erf(xv_ * 0.7071067811865476))
                _matvec(conv, tcn_pw[layer, t], tmp[:d])
                for i in range(d):
                    c[i] = c[i] + tmp[i] + tcn_pb[layer, t, i]
            for i in range(d):
                cat2[i] = a[i]
                cat2[d + i] = c[i]
            _matvec(cat2, fus_w[layer], tmp[:d])
            for i in range(d):
                gate = _sigmoid(tmp[i] + fus_b[layer, i])
                a[i] = gate * a[i] + (1.0 - gate) * c[i]
        for i in range(d):
            h[i] += a[i]
        # ---- channel-mix
        _layer_norm(h, ln[layer, 2], ln[layer, 3], hn)
        last = cm[layer]
        for i in range(d):
            dd = last[i] - hn[i]
            xk[i] = hn[i] + dd * cm_maa[layer, 0, i]
            xr[i] = hn[i] + dd * cm_maa[layer, 1, i]
            last[i] = hn[i]
        _matvec(xk, cm_key[layer], hid)
        for i in range(hidden):
            rel = hid[i] if hid[i] > 0.0 else 0.0
            hid[i] = rel * rel
        _matvec(xr, cm_rec[layer], r)
        _matvec(hid, cm_val[layer], v)
        for i in range(d):
            h[i] += _sigmoid(r[i]) * v[i]
    _layer_norm(h, ln_out[0], ln_out[1], hn)
    for t in range(n_tok - 1):
        for i in range(d):
            head[t, i] = head[t + 1, i]
    for i in range(d):
        head[n_tok - 1, i] = hn[i]
    _matvec(head.reshape(n_tok * d), head_w, y_out)
    for i in range(y_out.shape[0]):
        y_out[i] += head_b[i]


@njit(cache=True)
def scale_samples(values, mean, std, x):
    """Scale samples ``values`` (S, k, C) float64 into the kernel's lanes ``x`` (S*C, k) float32,
    as ``((v.astype(float32) - mean) / std).astype(float32)``; False if any value is not finite
    (then ``x`` is partly written and must not be used)."""
    n_series, k, c = values.shape
    for s in range(n_series):
        for j in range(k):
            for ch in range(c):
                v = values[s, j, ch]
                if not np.isfinite(v):
                    return False
                x[s * c + ch, j] = np.float32((np.float64(np.float32(v)) - mean[ch]) / std[ch])
    return True


@njit(cache=True)
def unscale_forecasts(fc, count, lanes, mean, std, lookback, out):
    """Forecasts ``out`` (S, horizon, C) float64 of the series whose lanes are ``lanes`` (S*C,):
    ``fc * std + mean``, NaN for series with fewer than ``lookback`` samples."""
    n_series, horizon, c = out.shape
    for s in range(n_series):
        ready = count[lanes[s * c]] >= lookback
        for ch in range(c):
            lane = lanes[s * c + ch]
            for h in range(horizon):
                if ready:
                    out[s, h, ch] = np.float64(fc[lane, h]) * std[ch] + mean[ch]
                else:
                    out[s, h, ch] = np.nan


@njit(cache=True)
def update_lanes(
    values,
    mean,
    std,
    lanes,
    params,
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
    tok,
    yb,
    x,
    out,
):
    """Scale ``values`` (S, k, C) into ``x``, advance ``lanes`` and write the forecasts ``out``
    (S, horizon, C); one call (one dispatch) per update. False, with no state changed, if a value
    is not finite."""
    if not scale_samples(values, mean, std, x):
        return False
    run_lanes(
        lanes, x, params, cfg, nbuf, count, zbuf, shift, wkv, tcn, cm, head, fc, scratch, tok, yb
    )
    unscale_forecasts(fc, count, lanes, mean, std, cfg[14], out)
    return True


def make_scratch(cfg_np: np.ndarray, d: int, horizon: int) -> np.ndarray:
    """The kernel's work space: 24 rows (one per intermediate vector) of the longest length."""
    rank, hidden, n_dist = int(cfg_np[4]), int(cfg_np[9]), int(cfg_np[5])
    return np.zeros((24, max(2 * d, n_dist, 5 * rank, hidden)), dtype=_F)


@njit(cache=True, fastmath=True)
def run_lanes(
    lanes, x, params, cfg, nbuf, count, zbuf, shift, wkv, tcn, cm, head, fc, scratch, tok, yb
):
    """Advance ``lanes`` (m,) by the samples ``x`` (m, k) (scaled, float32)."""
    patch_len = cfg[11]
    stride = cfg[12]
    skip = cfg[13]
    lookback = cfg[14]
    window = nbuf.shape[1]
    patch_w = params[23]
    patch_b = params[24]
    skip_w = params[28]
    skip_b = params[29]
    d = patch_b.shape[0]
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
            _matvec(zb[zl - patch_len :], patch_w, tok)
            for i in range(d):
                tok[i] += patch_b[i]
            _token_step(
                tok,
                params,
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
                for i in range(yb.shape[0]):
                    skip_row = skip_w[i]
                    acc = np.float32(0.0)
                    for q in range(lookback):
                        acc += zb[zl - lookback + q] * skip_row[q]
                    yb[i] += acc + skip_b[i]
            mean32 = np.float32(mean)
            std32 = np.float32(std)
            for i in range(yb.shape[0]):
                fc[lane, i] = yb[i] * std32 + mean32
