// rwkv-ts WKV (RWKV-6 form) forward and backward CUDA kernels. Plain CUDA C++, no torch headers:
// the torch binding lives in wkv6_binding.cpp; kernels/README.md describes the algorithm.
//
// Per (batch, head), with d_t = exp(-exp(w_t)):
//   y_t = r_t^T (S_{t-1} + diag(u) k_t v_t^T),   S_t = diag(d_t) S_{t-1} + k_t v_t^T.
// State and all accumulation in float32; inputs float32 or bfloat16.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "wkv6.h"
#include "wkv6_device.cuh"

namespace {

constexpr int CH = 16;  // time steps staged in shared memory per chunk

__device__ __forceinline__ float decay_of(float w) { return expf(-expf(clamp_w(w))); }

// Heads per block: blocks have at least 64 threads.
template <int NT>
struct Hpb {
    static constexpr int value = NT >= 64 ? 1 : 64 / NT;
};

// The per-step scalars of a chunk, a_t = sum_n A[t][n] B[t][n] (C[n]), t < CH, computed by all NT
// threads of a group at once: S = NT / CH consecutive lanes share step t = lt / S, lane s of them
// takes n = s, s + S, s + 2S, ... (conflict-free on the padded rows P = N + 4), and the S partial
// sums are added with shuffles. Every lane of the warp must call it (inactive groups too); the
// result is valid in every lane of the step's S lanes.
template <int N, int NT, bool WITH_C>
__device__ __forceinline__ float chunk_dot(const float* A, const float* B, const float* C, int lt) {
    constexpr int S = NT / CH;
    constexpr int P = N + 4;
    static_assert(S >= 1 && S <= 32 && (S & (S - 1)) == 0 && NT == S * CH && N % S == 0,
                  "a group must have CH * (a power of two <= 32) threads");
    const float* a = A + (lt / S) * P;
    const float* b = B + (lt / S) * P;
    const int s = lt % S;
    float acc = 0.f;
#pragma unroll 4
    for (int m = 0; m < N / S; ++m) {
        const int n = s + S * m;
        acc = WITH_C ? fmaf(a[n] * C[n], b[n], acc) : fmaf(a[n], b[n], acc);
    }
#pragma unroll
    for (int off = S / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    return acc;
}

// ---------------------------------------------------------------------------------------------
// Forward. A group of N*G threads handles one (b, h); thread (j, g) holds the rows
// i in [g*M, (g+1)*M) of column j of the state (M = N/G) in registers. The G threads of a column
// are consecutive lanes and add their partial outputs with shuffles.
// ---------------------------------------------------------------------------------------------
template <typename T, int N, int G>
__global__ void __launch_bounds__(Hpb<N * G>::value * N * G)
    wkv6_fwd_kernel(int BH, int T_, int H, const T* __restrict__ r, const T* __restrict__ k,
                    const T* __restrict__ v, const T* __restrict__ w, const float* __restrict__ u,
                    const float* __restrict__ s0, T* __restrict__ y, float* __restrict__ sT) {
    constexpr int NG = N * G;
    constexpr int HPB = Hpb<NG>::value;
    constexpr int P = N + 4;  // padded row (keeps 16-byte alignment, spreads banks)
    constexpr int M = N / G;
    static_assert(M % 4 == 0, "N / G must be a multiple of 4");
    __shared__ __align__(16) float sh_r[HPB][CH][P];
    __shared__ __align__(16) float sh_k[HPB][CH][P];
    __shared__ __align__(16) float sh_d[HPB][CH][P];
    __shared__ float sh_v[HPB][CH][N];
    __shared__ float sh_a[HPB][CH];
    __shared__ float sh_u[HPB][N];

    const int grp = threadIdx.x / NG;
    const int lt = threadIdx.x % NG;
    const int j = lt / G;
    const int g = lt % G;
    const int i0 = g * M;
    const int bh = blockIdx.x * HPB + grp;
    const bool active = bh < BH;
    const int bhc = active ? bh : 0;
    const int b = bhc / H, h = bhc % H;
    const size_t rs = (size_t)H * N;  // stride of one time step
    const size_t base = (size_t)b * T_ * rs + (size_t)h * N;

    float S[M];
#pragma unroll
    for (int m = 0; m < M; ++m)
        S[m] = (s0 != nullptr && active) ? s0[((size_t)bhc * N + i0 + m) * N + j] : 0.f;
    for (int n = lt; n < N; n += NG) sh_u[grp][n] = u[h * N + n];

    for (int t0 = 0; t0 < T_; t0 += CH) {
        const int len = min(CH, T_ - t0);
        __syncthreads();  // the previous chunk is consumed
        if (active) {
            for (int e = lt; e < len * N; e += NG) {
                const int tt = e / N, n = e % N;
                const size_t idx = base + (size_t)(t0 + tt) * rs + n;
                sh_r[grp][tt][n] = to_f(r[idx]);
                sh_k[grp][tt][n] = to_f(k[idx]);
                sh_d[grp][tt][n] = decay_of(to_f(w[idx]));
                sh_v[grp][tt][n] = to_f(v[idx]);
            }
        }
        __syncthreads();
        {  // bonus scalars a_t = sum_i r_i u_i k_i of the chunk (every thread takes part)
            constexpr int S = NG / CH;
            const float a = chunk_dot<N, NG, true>(&sh_r[grp][0][0], &sh_k[grp][0][0], sh_u[grp], lt);
            if (active && lt % S == 0 && lt / S < len) sh_a[grp][lt / S] = a;
        }
        __syncthreads();
        if (active) {
            for (int tt = 0; tt < len; ++tt) {
                const float vj = sh_v[grp][tt][j];
                float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f;
#pragma unroll
                for (int m = 0; m < M; m += 4) {
                    const float4 rr = *reinterpret_cast<const float4*>(&sh_r[grp][tt][i0 + m]);
                    const float4 kk = *reinterpret_cast<const float4*>(&sh_k[grp][tt][i0 + m]);
                    const float4 dd = *reinterpret_cast<const float4*>(&sh_d[grp][tt][i0 + m]);
                    acc0 = fmaf(rr.x, S[m + 0], acc0);
                    acc1 = fmaf(rr.y, S[m + 1], acc1);
                    acc2 = fmaf(rr.z, S[m + 2], acc2);
                    acc3 = fmaf(rr.w, S[m + 3], acc3);
                    S[m + 0] = fmaf(S[m + 0], dd.x, kk.x * vj);
                    S[m + 1] = fmaf(S[m + 1], dd.y, kk.y * vj);
                    S[m + 2] = fmaf(S[m + 2], dd.z, kk.z * vj);
                    S[m + 3] = fmaf(S[m + 3], dd.w, kk.w * vj);
                }
                float yv = (acc0 + acc1) + (acc2 + acc3);
#pragma unroll
                for (int off = G / 2; off > 0; off /= 2) yv += __shfl_xor_sync(0xffffffffu, yv, off);
                if (g == 0) y[base + (size_t)(t0 + tt) * rs + j] = from_f<T>(fmaf(vj, sh_a[grp][tt], yv));
            }
        }
    }
    if (active) {
#pragma unroll
        for (int m = 0; m < M; ++m) sT[((size_t)bhc * N + i0 + m) * N + j] = S[m];
    }
}

// ---------------------------------------------------------------------------------------------
// Backward: one launch of three roles (blockIdx.y), each one serial pass over T, then a small
// kernel for dw. With dS_T = dsT and dS_{t-1} = diag(d_t) dS_t + r_t dy_t^T:
//  0 (forward rows): thread i holds row i of S, recomputed from s0 forward in time:
//      dr_t = S_{t-1} dy_t + u k_t (v_t . dy_t), q_t = r_t * (S_{t-1} dy_t) into qbuf, and at the
//      end fin_i = sum_j dsT_ij S_T,ij into fin;
//  1 (reverse rows): thread i holds row i of dS, reverse time: dk_t = dS_t v_t + u r_t (v_t . dy_t),
//      kp_t = k_t * (dS_t v_t) into kpbuf, du (per (b, h)), ds0 = dS_0;
//  2 (reverse columns): thread j holds column j of dS, reverse time:
//      dv_t = dS_t^T k_t + (sum_i r_i u_i k_i) dy_t.
// dw (wkv6_dw_kernel) uses the cumulative log decay c: dL/dc_t = q_{t+1} - kp_t (q_T := fin),
// dL/dw_m = -exp(w_m) * sum_{t >= m} dL/dc_t.
// Each role stages only what it reads: rows roles v, dy (whole rows) and r_i, k_i, d_i (their own
// element); the column role r, k, d (whole rows) and dy_j.
// ---------------------------------------------------------------------------------------------
template <typename T, int N>
__global__ void __launch_bounds__(Hpb<N>::value * N)
    wkv6_bwd_kernel(int BH, int T_, int H, const T* __restrict__ r, const T* __restrict__ k,
                    const T* __restrict__ v, const T* __restrict__ w, const float* __restrict__ u,
                    const float* __restrict__ s0, const T* __restrict__ dy,
                    const float* __restrict__ dsT, T* __restrict__ dr, T* __restrict__ dk,
                    T* __restrict__ dv, float* __restrict__ du_part, float* __restrict__ ds0,
                    float* __restrict__ qbuf, float* __restrict__ kpbuf, float* __restrict__ fin,
                    const int* __restrict__ only) {
    constexpr int HPB = Hpb<N>::value;
    constexpr int P = N + 4;
    constexpr int S = N / CH;  // lanes per step in chunk_dot
    // rows roles: sh_x = v, sh_y = dy, sh_z = decay, sh_e0 = r, sh_e1 = k
    // column role: sh_x = r, sh_y = k, sh_z = decay, sh_e0 = dy
    __shared__ __align__(16) float sh_x[HPB][CH][P];
    __shared__ __align__(16) float sh_y[HPB][CH][P];
    __shared__ __align__(16) float sh_z[HPB][CH][P];
    __shared__ float sh_e0[HPB][CH][N];
    __shared__ float sh_e1[HPB][CH][N];
    __shared__ float sh_a[HPB][CH];
    __shared__ float sh_u[HPB][N];

    const int role = blockIdx.y;  // uniform per block
    const int grp = threadIdx.x / N;
    const int lt = threadIdx.x % N;  // the row i (roles 0, 1) or the column j (role 2)
    const int bh = blockIdx.x * HPB + grp;
    // only (may be null): the (b, h) to do, the others were done by the chunked backward
    const bool active = bh < BH && (only == nullptr || only[bh] != 0);
    if (__syncthreads_or(active) == 0) return;  // uniform: nothing for this block
    const int bhc = active ? bh : 0;
    const int b = bhc / H, h = bhc % H;
    const size_t rs = (size_t)H * N;
    const size_t base = (size_t)b * T_ * rs + (size_t)h * N;
    const size_t sbase = (size_t)bhc * N * N;
    const int nchunks = (T_ + CH - 1) / CH;

    sh_u[grp][lt] = u[h * N + lt];

    // Stage one chunk [t0, t0 + len) (thread lt loads element lt of every step), then the per-step
    // scalar a_t (rows: v_t . dy_t; columns: sum_i r_i u_i k_i).
    auto stage = [&](int t0, int len) {
        __syncthreads();  // the previous chunk is consumed
        if (active) {
            const size_t at = base + (size_t)t0 * rs + lt;
            if (role == 2) {
#pragma unroll CH
                for (int tt = 0; tt < len; ++tt) {
                    const size_t idx = at + (size_t)tt * rs;
                    sh_x[grp][tt][lt] = to_f(r[idx]);
                    sh_y[grp][tt][lt] = to_f(k[idx]);
                    sh_z[grp][tt][lt] = decay_of(to_f(w[idx]));
                    sh_e0[grp][tt][lt] = to_f(dy[idx]);
                }
            } else {
#pragma unroll CH
                for (int tt = 0; tt < len; ++tt) {
                    const size_t idx = at + (size_t)tt * rs;
                    sh_x[grp][tt][lt] = to_f(v[idx]);
                    sh_y[grp][tt][lt] = to_f(dy[idx]);
                    sh_z[grp][tt][lt] = decay_of(to_f(w[idx]));
                    sh_e0[grp][tt][lt] = to_f(r[idx]);
                    sh_e1[grp][tt][lt] = to_f(k[idx]);
                }
            }
        }
        __syncthreads();
        const float a =
            role == 2 ? chunk_dot<N, N, true>(&sh_x[grp][0][0], &sh_y[grp][0][0], sh_u[grp], lt)
                      : chunk_dot<N, N, false>(&sh_x[grp][0][0], &sh_y[grp][0][0], nullptr, lt);
        if (active && lt % S == 0 && lt / S < len) sh_a[grp][lt / S] = a;
        __syncthreads();
    };

    float X[N];
    if (role == 0) {
        const int i = lt;
        // ---- forward time, row i of S: dr, q, and the final-state term fin.
#pragma unroll
        for (int m = 0; m < N; ++m) X[m] = (s0 != nullptr && active) ? s0[sbase + (size_t)i * N + m] : 0.f;
        for (int c = 0; c < nchunks; ++c) {
            const int t0 = c * CH, len = min(CH, T_ - t0);
            stage(t0, len);
            if (!active) continue;
            const float uu = sh_u[grp][i];
            for (int tt = 0; tt < len; ++tt) {
                const float ri = sh_e0[grp][tt][i], ki = sh_e1[grp][tt][i], di = sh_z[grp][tt][i];
                float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
#pragma unroll
                for (int m = 0; m < N; m += 4) {
                    const float4 gg = *reinterpret_cast<const float4*>(&sh_y[grp][tt][m]);
                    const float4 vv = *reinterpret_cast<const float4*>(&sh_x[grp][tt][m]);
                    p0 = fmaf(gg.x, X[m + 0], p0);
                    p1 = fmaf(gg.y, X[m + 1], p1);
                    p2 = fmaf(gg.z, X[m + 2], p2);
                    p3 = fmaf(gg.w, X[m + 3], p3);
                    X[m + 0] = fmaf(ki, vv.x, X[m + 0] * di);
                    X[m + 1] = fmaf(ki, vv.y, X[m + 1] * di);
                    X[m + 2] = fmaf(ki, vv.z, X[m + 2] * di);
                    X[m + 3] = fmaf(ki, vv.w, X[m + 3] * di);
                }
                const float p = (p0 + p1) + (p2 + p3);  // (S_{t-1} dy_t)_i
                const size_t idx = base + (size_t)(t0 + tt) * rs + i;
                dr[idx] = from_f<T>(fmaf(uu * ki, sh_a[grp][tt], p));
                qbuf[idx] = ri * p;
            }
        }
        if (active) {
            float f = 0.f;
            if (dsT != nullptr) {
#pragma unroll
                for (int m = 0; m < N; ++m) f = fmaf(dsT[sbase + (size_t)i * N + m], X[m], f);
            }
            fin[(size_t)bhc * N + i] = f;
        }
    } else if (role == 1) {
        const int i = lt;
        // ---- reverse time, row i of dS: dk, kp, du, ds0.
#pragma unroll
        for (int m = 0; m < N; ++m) X[m] = (dsT != nullptr && active) ? dsT[sbase + (size_t)i * N + m] : 0.f;
        float du_acc = 0.f;
        for (int c = nchunks - 1; c >= 0; --c) {
            const int t0 = c * CH, len = min(CH, T_ - t0);
            stage(t0, len);
            if (!active) continue;
            const float uu = sh_u[grp][i];
            for (int tt = len - 1; tt >= 0; --tt) {
                const float ri = sh_e0[grp][tt][i], ki = sh_e1[grp][tt][i], di = sh_z[grp][tt][i];
                float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
#pragma unroll
                for (int m = 0; m < N; m += 4) {
                    const float4 gg = *reinterpret_cast<const float4*>(&sh_y[grp][tt][m]);
                    const float4 vv = *reinterpret_cast<const float4*>(&sh_x[grp][tt][m]);
                    p0 = fmaf(vv.x, X[m + 0], p0);
                    p1 = fmaf(vv.y, X[m + 1], p1);
                    p2 = fmaf(vv.z, X[m + 2], p2);
                    p3 = fmaf(vv.w, X[m + 3], p3);
                    X[m + 0] = fmaf(ri, gg.x, X[m + 0] * di);
                    X[m + 1] = fmaf(ri, gg.y, X[m + 1] * di);
                    X[m + 2] = fmaf(ri, gg.z, X[m + 2] * di);
                    X[m + 3] = fmaf(ri, gg.w, X[m + 3] * di);
                }
                const float p = (p0 + p1) + (p2 + p3);  // (dS_t v_t)_i
                const float a = sh_a[grp][tt];          // v_t . dy_t
                const size_t idx = base + (size_t)(t0 + tt) * rs + i;
                dk[idx] = from_f<T>(fmaf(uu * ri, a, p));
                kpbuf[idx] = ki * p;
                du_acc = fmaf(ri * ki, a, du_acc);
            }
        }
        if (active) {
#pragma unroll
            for (int m = 0; m < N; ++m) ds0[sbase + (size_t)i * N + m] = X[m];
            du_part[(size_t)bhc * N + i] = du_acc;
        }
    } else {
        const int j = lt;
        // ---- reverse time, column j of dS: dv.
#pragma unroll
        for (int m = 0; m < N; ++m) X[m] = (dsT != nullptr && active) ? dsT[sbase + (size_t)m * N + j] : 0.f;
        for (int c = nchunks - 1; c >= 0; --c) {
            const int t0 = c * CH, len = min(CH, T_ - t0);
            stage(t0, len);
            if (!active) continue;
            for (int tt = len - 1; tt >= 0; --tt) {
                const float gj = sh_e0[grp][tt][j];
                float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
#pragma unroll
                for (int m = 0; m < N; m += 4) {
                    const float4 kk = *reinterpret_cast<const float4*>(&sh_y[grp][tt][m]);
                    const float4 rr = *reinterpret_cast<const float4*>(&sh_x[grp][tt][m]);
                    const float4 dd = *reinterpret_cast<const float4*>(&sh_z[grp][tt][m]);
                    p0 = fmaf(kk.x, X[m + 0], p0);
                    p1 = fmaf(kk.y, X[m + 1], p1);
                    p2 = fmaf(kk.z, X[m + 2], p2);
                    p3 = fmaf(kk.w, X[m + 3], p3);
                    X[m + 0] = fmaf(rr.x, gj, X[m + 0] * dd.x);
                    X[m + 1] = fmaf(rr.y, gj, X[m + 1] * dd.y);
                    X[m + 2] = fmaf(rr.z, gj, X[m + 2] * dd.z);
                    X[m + 3] = fmaf(rr.w, gj, X[m + 3] * dd.w);
                }
                const float p = (p0 + p1) + (p2 + p3);
                const size_t idx = base + (size_t)(t0 + tt) * rs + j;
                dv[idx] = from_f<T>(fmaf(sh_a[grp][tt], gj, p));
            }
        }
    }
}

// dw from the scratch of the backward: one thread per (b, h, i), consecutive threads take
// consecutive (h, i) (coalesced), reverse time, a running sum in double of
// dL/dc_t = q_{t+1} - kp_t (q_T := fin): a sum of differences of large terms, where float32
// summation would add its rounding. DW_U steps are loaded before they are summed.
constexpr int DW_THREADS = 128;
constexpr int DW_U = 8;

__device__ __forceinline__ float dw_of(float w, double acc) {
    // w > W_MAX is clamped in the forward (zero gradient); a NaN w or acc gives NaN
    return w > W_MAX ? 0.f : -expf(w) * (float)acc;
}

// (at most 64 registers: room for the DW_U loads in flight without ptxas' full-occupancy target)
template <typename T>
__global__ void __launch_bounds__(DW_THREADS, 8)
    wkv6_dw_kernel(long long BHN, int T_, int HN, const T* __restrict__ w,
                   const float* __restrict__ qbuf, const float* __restrict__ kpbuf,
                   const float* __restrict__ fin, T* __restrict__ dw, int N,
                   const int* __restrict__ only) {
    const long long e = (long long)blockIdx.x * DW_THREADS + threadIdx.x;  // (b, h, i)
    if (e >= BHN || (only != nullptr && only[e / N] == 0)) return;
    const long long b = e / HN;
    const size_t rs = (size_t)HN;
    const size_t base = (size_t)b * T_ * rs + (size_t)(e - b * HN);
    double acc = 0.0;
    float qnext = fin[e];
    int t = T_ - 1;
    for (; t >= DW_U - 1; t -= DW_U) {
        float qv[DW_U], kv[DW_U], wv[DW_U];
#pragma unroll
        for (int s = 0; s < DW_U; ++s) {
            const size_t idx = base + (size_t)(t - s) * rs;
            qv[s] = qbuf[idx];
            kv[s] = kpbuf[idx];
            wv[s] = to_f(w[idx]);
        }
#pragma unroll
        for (int s = 0; s < DW_U; ++s) {
            acc += (double)qnext - (double)kv[s];
            dw[base + (size_t)(t - s) * rs] = from_f<T>(dw_of(wv[s], acc));
            qnext = qv[s];
        }
    }
    for (; t >= 0; --t) {
        const size_t idx = base + (size_t)t * rs;
        acc += (double)qnext - (double)kpbuf[idx];
        dw[idx] = from_f<T>(dw_of(to_f(w[idx]), acc));
        qnext = qbuf[idx];
    }
}

int sm_count() {
    static int count = 0;
    if (count == 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
            count <= 0)
            count = 132;
    }
    return count;
}

template <typename T, int N, int G>
int launch_fwd(int B, int T_, int H, const void* r, const void* k, const void* v, const void* w,
               const float* u, const float* s0, void* y, float* sT, cudaStream_t st) {
    constexpr int HPB = Hpb<N * G>::value;
    const int BH = B * H;
    const dim3 grid((BH + HPB - 1) / HPB);
    wkv6_fwd_kernel<T, N, G><<<grid, HPB * N * G, 0, st>>>(
        BH, T_, H, static_cast<const T*>(r), static_cast<const T*>(k), static_cast<const T*>(v),
        static_cast<const T*>(w), u, s0, static_cast<T*>(y), sT);
    return static_cast<int>(cudaGetLastError());
}

template <typename T, int N>
int fwd_split(int split, int B, int T_, int H, const void* r, const void* k, const void* v,
              const void* w, const float* u, const float* s0, void* y, float* sT, cudaStream_t st) {
    if (split == 0) {
        // One thread per state column: on the H100 split 1 was the fastest (or within 2%) on
        // every time-series shape, 1.7-3.5x faster than 2 or 4 threads per column even at
        // B*H*N = 16k columns (benchmarks/results/wkv_kernel.md, "Forward ms by split"): the
        // shuffles and shorter rows cost more than the extra threads in flight give. Only when
        // there are fewer than two warps of columns per SM (long sequences over a few heads) do
        // two threads per column pay (2-17% faster than 1 at B*H = 8-64, N = 64; 4 was slower).
        const long long cols = (long long)B * H * N;
        split = (cols < (long long)sm_count() * 64 && N >= 16) ? 2 : 1;
    }
    switch (split) {
        case 1:
            return launch_fwd<T, N, 1>(B, T_, H, r, k, v, w, u, s0, y, sT, st);
        case 2:
            return launch_fwd<T, N, 2>(B, T_, H, r, k, v, w, u, s0, y, sT, st);
        case 4:
            return launch_fwd<T, N, 4>(B, T_, H, r, k, v, w, u, s0, y, sT, st);
        default:
            return -3;
    }
}

template <typename T>
int fwd_n(int N, int split, int B, int T_, int H, const void* r, const void* k, const void* v,
          const void* w, const float* u, const float* s0, void* y, float* sT, cudaStream_t st) {
    switch (N) {
        case 16:
            return fwd_split<T, 16>(split, B, T_, H, r, k, v, w, u, s0, y, sT, st);
        case 32:
            return fwd_split<T, 32>(split, B, T_, H, r, k, v, w, u, s0, y, sT, st);
        case 64:
            return fwd_split<T, 64>(split, B, T_, H, r, k, v, w, u, s0, y, sT, st);
        case 128:
            return fwd_split<T, 128>(split, B, T_, H, r, k, v, w, u, s0, y, sT, st);
        default:
            return -2;
    }
}

template <typename T, int N>
int launch_bwd(int B, int T_, int H, const void* r, const void* k, const void* v, const void* w,
               const float* u, const float* s0, const void* dy, const float* dsT, void* dr,
               void* dk, void* dv, void* dw, float* du_part, float* ds0, float* scratch,
               const int* only, cudaStream_t st) {
    constexpr int HPB = Hpb<N>::value;
    const int BH = B * H;
    const size_t elems = (size_t)B * T_ * H * N;
    float* qbuf = scratch;
    float* kpbuf = scratch + elems;
    float* fin = scratch + 2 * elems;
    const dim3 grid((BH + HPB - 1) / HPB, 3);
    wkv6_bwd_kernel<T, N><<<grid, HPB * N, 0, st>>>(
        BH, T_, H, static_cast<const T*>(r), static_cast<const T*>(k), static_cast<const T*>(v),
        static_cast<const T*>(w), u, s0, static_cast<const T*>(dy), dsT, static_cast<T*>(dr),
        static_cast<T*>(dk), static_cast<T*>(dv), du_part, ds0, qbuf, kpbuf, fin, only);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return static_cast<int>(err);
    const long long BHN = (long long)BH * N;
    const unsigned blocks = static_cast<unsigned>((BHN + DW_THREADS - 1) / DW_THREADS);
    wkv6_dw_kernel<T><<<blocks, DW_THREADS, 0, st>>>(BHN, T_, H * N, static_cast<const T*>(w), qbuf,
                                                     kpbuf, fin, static_cast<T*>(dw), N, only);
    return static_cast<int>(cudaGetLastError());
}

template <typename T>
int bwd_n(int N, int B, int T_, int H, const void* r, const void* k, const void* v, const void* w,
          const float* u, const float* s0, const void* dy, const float* dsT, void* dr, void* dk,
          void* dv, void* dw, float* du_part, float* ds0, float* scratch, const int* only,
          cudaStream_t st) {
#define RWKV_TS_BWD(NN)                                                                         \
    return launch_bwd<T, NN>(B, T_, H, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du_part, ds0, \
                             scratch, only, st)
    switch (N) {
        case 16:
            RWKV_TS_BWD(16);
        case 32:
            RWKV_TS_BWD(32);
        case 64:
            RWKV_TS_BWD(64);
        case 128:
            RWKV_TS_BWD(128);
        default:
            return -2;
    }
#undef RWKV_TS_BWD
}

}  // namespace

extern "C" int rwkv_ts_wkv6_forward(int dtype, int B, int T, int H, int N, const void* r,
                                    const void* k, const void* v, const void* w, const float* u,
                                    const float* s0, void* y, float* sT, int split, void* stream) {
    if (B < 1 || T < 1 || H < 1) return -4;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (dtype == 0) return fwd_n<float>(N, split, B, T, H, r, k, v, w, u, s0, y, sT, st);
    if (dtype == 1) return fwd_n<__nv_bfloat16>(N, split, B, T, H, r, k, v, w, u, s0, y, sT, st);
    return -1;
}

extern "C" long long rwkv_ts_wkv6_backward_scratch(int B, int T, int H, int N) {
    return 2LL * B * T * H * N + (long long)B * H * N;
}

extern "C" int rwkv_ts_wkv6_backward_only(int dtype, int B, int T, int H, int N, const void* r,
                                          const void* k, const void* v, const void* w,
                                          const float* u, const float* s0, const void* dy,
                                          const float* dsT, void* dr, void* dk, void* dv, void* dw,
                                          float* du_part, float* ds0, float* scratch,
                                          const int* only, void* stream) {
    if (B < 1 || T < 1 || H < 1) return -4;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (dtype == 0)
        return bwd_n<float>(N, B, T, H, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du_part, ds0,
                            scratch, only, st);
    if (dtype == 1)
        return bwd_n<__nv_bfloat16>(N, B, T, H, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw,
                                    du_part, ds0, scratch, only, st);
    return -1;
}

extern "C" int rwkv_ts_wkv6_backward(int dtype, int B, int T, int H, int N, const void* r,
                                     const void* k, const void* v, const void* w, const float* u,
                                     const float* s0, const void* dy, const float* dsT, void* dr,
                                     void* dk, void* dv, void* dw, float* du_part, float* ds0,
                                     float* scratch, void* stream) {
    return rwkv_ts_wkv6_backward_only(dtype, B, T, H, N, r, k, v, w, u, s0, dy, dsT, dr, dk, dv,
                                      dw, du_part, ds0, scratch, nullptr, stream);
}
