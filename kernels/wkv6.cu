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

namespace {

constexpr int CH = 16;         // time steps staged in shared memory per chunk
constexpr float W_MAX = 40.f;  // w is clamped from above (as the float64 reference does)

template <typename T>
__device__ __forceinline__ float to_f(T x);
template <>
__device__ __forceinline__ float to_f<float>(float x) {
    return x;
}
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) {
    return __bfloat162float(x);
}
template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
    return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
    return __float2bfloat16(x);
}

// w clamped from above; a NaN stays NaN (the comparison is false).
__device__ __forceinline__ float clamp_w(float w) { return w > W_MAX ? W_MAX : w; }
__device__ __forceinline__ float decay_of(float w) { return expf(-expf(clamp_w(w))); }

// Heads per block: blocks have at least 64 threads.
template <int NT>
struct Hpb {
    static constexpr int value = NT >= 64 ? 1 : 64 / NT;
};

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
        if (active && lt < len) {  // bonus scalar a_t = sum_i r_i u_i k_i
            float a = 0.f;
#pragma unroll 8
            for (int n = 0; n < N; ++n) a = fmaf(sh_r[grp][lt][n] * sh_u[grp][n], sh_k[grp][lt][n], a);
            sh_a[grp][lt] = a;
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
// Backward. blockIdx.y selects the role of a block:
//  0 (rows):    thread i holds row i of S (forward recompute: dr, and the "query" terms of dw
//               into qbuf), then row i of dS (reverse time: dk, dw, du, ds0).
//  1 (columns): thread j holds column j of dS (reverse time: dv).
// dS_{t-1} = diag(d_t) dS_t + r_t dy_t^T; dS_{T} = dsT.
// dw uses the cumulative log decay c: dL/dc_t = q_{t+1} - k_t * (dS_t v_t) (+ the final-state term
// at t = T-1), with q_t = r_t * (S_{t-1} dy_t); dL/dw_m = -exp(w_m) * sum_{t >= m} dL/dc_t.
// ---------------------------------------------------------------------------------------------
template <typename T, int N>
__global__ void __launch_bounds__(Hpb<N>::value * N)
    wkv6_bwd_kernel(int BH, int T_, int H, const T* __restrict__ r, const T* __restrict__ k,
                    const T* __restrict__ v, const T* __restrict__ w, const float* __restrict__ u,
                    const float* __restrict__ s0, const T* __restrict__ dy,
                    const float* __restrict__ dsT, T* __restrict__ dr, T* __restrict__ dk,
                    T* __restrict__ dv, T* __restrict__ dw, float* __restrict__ du_part,
                    float* __restrict__ ds0, float* qbuf) {
    constexpr int HPB = Hpb<N>::value;
    constexpr int P = N + 4;
    __shared__ __align__(16) float sh_r[HPB][CH][P];
    __shared__ __align__(16) float sh_k[HPB][CH][P];
    __shared__ __align__(16) float sh_d[HPB][CH][P];
    __shared__ __align__(16) float sh_v[HPB][CH][P];
    __shared__ __align__(16) float sh_g[HPB][CH][P];  // dy
    __shared__ float sh_a[HPB][CH];
    __shared__ float sh_u[HPB][N];

    const int role = blockIdx.y;
    const int grp = threadIdx.x / N;
    const int lt = threadIdx.x % N;  // the row i (role 0) or the column j (role 1)
    const int bh = blockIdx.x * HPB + grp;
    const bool active = bh < BH;
    const int bhc = active ? bh : 0;
    const int b = bhc / H, h = bhc % H;
    const size_t rs = (size_t)H * N;
    const size_t base = (size_t)b * T_ * rs + (size_t)h * N;
    const size_t sbase = (size_t)bhc * N * N;
    const int nchunks = (T_ + CH - 1) / CH;

    for (int n = lt; n < N; n += N) sh_u[grp][n] = u[h * N + n];

    // Stage one chunk [t0, t0 + len): r, k, d, v, dy; then the per-step scalar
    // (role 0: sum_j v_j dy_j, role 1: sum_i r_i u_i k_i).
    auto stage = [&](int t0, int len) {
        __syncthreads();
        if (active) {
            for (int e = lt; e < len * N; e += N) {
                const int tt = e / N, n = e % N;
                const size_t idx = base + (size_t)(t0 + tt) * rs + n;
                sh_r[grp][tt][n] = to_f(r[idx]);
                sh_k[grp][tt][n] = to_f(k[idx]);
                sh_d[grp][tt][n] = decay_of(to_f(w[idx]));
                if (role == 0) sh_v[grp][tt][n] = to_f(v[idx]);
                sh_g[grp][tt][n] = to_f(dy[idx]);
            }
        }
        __syncthreads();
        if (active && lt < len) {
            float a = 0.f;
            if (role == 0) {
#pragma unroll 8
                for (int n = 0; n < N; ++n) a = fmaf(sh_v[grp][lt][n], sh_g[grp][lt][n], a);
            } else {
#pragma unroll 8
                for (int n = 0; n < N; ++n)
                    a = fmaf(sh_r[grp][lt][n] * sh_u[grp][n], sh_k[grp][lt][n], a);
            }
            sh_a[grp][lt] = a;
        }
        __syncthreads();
    };

    float X[N];
    if (role == 0) {
        const int i = lt;
        // ---- phase 1: forward recompute of row i of S: dr and q.
#pragma unroll
        for (int m = 0; m < N; ++m) X[m] = (s0 != nullptr && active) ? s0[sbase + (size_t)i * N + m] : 0.f;
        for (int c = 0; c < nchunks; ++c) {
            const int t0 = c * CH, len = min(CH, T_ - t0);
            stage(t0, len);
            if (!active) continue;
            const float uu = sh_u[grp][i];
            for (int tt = 0; tt < len; ++tt) {
                const float ri = sh_r[grp][tt][i], ki = sh_k[grp][tt][i], di = sh_d[grp][tt][i];
                float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
#pragma unroll
                for (int m = 0; m < N; m += 4) {
                    const float4 gg = *reinterpret_cast<const float4*>(&sh_g[grp][tt][m]);
                    const float4 vv = *reinterpret_cast<const float4*>(&sh_v[grp][tt][m]);
                    p0 = fmaf(gg.x, X[m + 0], p0);
                    p1 = fmaf(gg.y, X[m + 1], p1);
                    p2 = fmaf(gg.z, X[m + 2], p2);
                    p3 = fmaf(gg.w, X[m + 3], p3);
                    X[m + 0] = fmaf(ki, vv.x, X[m + 0] * di);
                    X[m + 1] = fmaf(ki, vv.y, X[m + 1] * di);
                    X[m + 2] = fmaf(ki, vv.z, X[m + 2] * di);
                    X[m + 3] = fmaf(ki, vv.w, X[m + 3] * di);
                }
                const float p = (p0 + p1) + (p2 + p3);
                const size_t idx = base + (size_t)(t0 + tt) * rs + i;
                dr[idx] = from_f<T>(fmaf(uu * ki, sh_a[grp][tt], p));
                qbuf[idx] = ri * p;
            }
        }
        // final-state term of dL/dc_{T-1}: sum_j dsT_ij S_T,ij
        float fin = 0.f;
        if (dsT != nullptr && active) {
#pragma unroll
            for (int m = 0; m < N; ++m) fin = fmaf(dsT[sbase + (size_t)i * N + m], X[m], fin);
        }
        // ---- phase 2: reverse time, row i of dS: dk, dw, du, ds0.
#pragma unroll
        for (int m = 0; m < N; ++m) X[m] = (dsT != nullptr && active) ? dsT[sbase + (size_t)i * N + m] : 0.f;
        // acc = dL/dlog(d_t): a running sum of differences of large terms; double keeps the
        // summation's rounding out of it (one add per step and row).
        double acc = 0.0;
        float qnext = fin, du_acc = 0.f;
        for (int c = nchunks - 1; c >= 0; --c) {
            const int t0 = c * CH, len = min(CH, T_ - t0);
            stage(t0, len);
            if (!active) continue;
            const float uu = sh_u[grp][i];
            for (int tt = len - 1; tt >= 0; --tt) {
                const float ri = sh_r[grp][tt][i], ki = sh_k[grp][tt][i], di = sh_d[grp][tt][i];
                const size_t idx = base + (size_t)(t0 + tt) * rs + i;
                const float wi = to_f(w[idx]);
                const float qt = qbuf[idx];
                float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
#pragma unroll
                for (int m = 0; m < N; m += 4) {
                    const float4 gg = *reinterpret_cast<const float4*>(&sh_g[grp][tt][m]);
                    const float4 vv = *reinterpret_cast<const float4*>(&sh_v[grp][tt][m]);
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
                dk[idx] = from_f<T>(fmaf(uu * ri, a, p));
                du_acc = fmaf(ri * ki, a, du_acc);
                acc += (double)qnext - (double)(ki * p);
                dw[idx] = from_f<T>(wi > W_MAX ? 0.f : -expf(wi) * (float)acc);
                qnext = qt;
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
                const float gj = sh_g[grp][tt][j];
                float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
#pragma unroll
                for (int m = 0; m < N; m += 4) {
                    const float4 kk = *reinterpret_cast<const float4*>(&sh_k[grp][tt][m]);
                    const float4 rr = *reinterpret_cast<const float4*>(&sh_r[grp][tt][m]);
                    const float4 dd = *reinterpret_cast<const float4*>(&sh_d[grp][tt][m]);
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
        // Fewer than ~4 resident-thread waves' worth of columns: split the rows of each column
        // over more threads (shorter serial chain per step, more threads in flight).
        const long long cols = (long long)B * H * N;
        const long long target = (long long)sm_count() * 1024;
        split = 1;
        while (split < 4 && N / (split * 2) >= 8 && cols * split < target) split *= 2;
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
               void* dk, void* dv, void* dw, float* du_part, float* ds0, float* qbuf,
               cudaStream_t st) {
    constexpr int HPB = Hpb<N>::value;
    const int BH = B * H;
    const dim3 grid((BH + HPB - 1) / HPB, 2);
    wkv6_bwd_kernel<T, N><<<grid, HPB * N, 0, st>>>(
        BH, T_, H, static_cast<const T*>(r), static_cast<const T*>(k), static_cast<const T*>(v),
        static_cast<const T*>(w), u, s0, static_cast<const T*>(dy), dsT, static_cast<T*>(dr),
        static_cast<T*>(dk), static_cast<T*>(dv), static_cast<T*>(dw), du_part, ds0, qbuf);
    return static_cast<int>(cudaGetLastError());
}

template <typename T>
int bwd_n(int N, int B, int T_, int H, const void* r, const void* k, const void* v, const void* w,
          const float* u, const float* s0, const void* dy, const float* dsT, void* dr, void* dk,
          void* dv, void* dw, float* du_part, float* ds0, float* qbuf, cudaStream_t st) {
#define RWKV_TS_BWD(NN)                                                                         \
    return launch_bwd<T, NN>(B, T_, H, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du_part, ds0, \
                             qbuf, st)
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

extern "C" int rwkv_ts_wkv6_backward(int dtype, int B, int T, int H, int N, const void* r,
                                     const void* k, const void* v, const void* w, const float* u,
                                     const float* s0, const void* dy, const float* dsT, void* dr,
                                     void* dk, void* dv, void* dw, float* du_part, float* ds0,
                                     float* qbuf, void* stream) {
    if (B < 1 || T < 1 || H < 1) return -4;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (dtype == 0)
        return bwd_n<float>(N, B, T, H, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du_part, ds0,
                            qbuf, st);
    if (dtype == 1)
        return bwd_n<__nv_bfloat16>(N, B, T, H, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw,
                                    du_part, ds0, qbuf, st);
    return -1;
}
