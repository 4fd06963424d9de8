// rwkv-ts: the combination step of the WKV time split (rwkv_ts/ops/timesplit.py) on the GPU.
// Plain CUDA C++ (no torch headers); kernels/README.md ("Long sequences: split over time").
//
// A sequence cut into n chunks of `chunk` steps runs every chunk from a zero state first; its
// final state Z_c is what chunk c adds to the state, and L_c = sum_{t in c} log d_t (per key
// channel, d_t = exp(-exp(w_t))) its total log decay. The state at each chunk's start follows by
// a scan over the chunks, S_0 = s0, S_{c+1} = diag(e^{L_c}) S_c + Z_c, one float32 multiply-add
// per chunk and state element, as the kernels' own recurrence does per step. Four kernels: L and
// its gradient (dw = -e^w dL), the scan and its gradient.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "wkv6.h"
#include "wkv6_device.cuh"

namespace {

// Sixteen bytes of w or dw: 8 bfloat16 or 4 float32 values, one vector load or store (the two
// elementwise kernels are bound by memory; scalar 2-byte accesses leave too few bytes in flight).
template <typename T>
union Vec {
    static constexpr int n = 16 / sizeof(T);
    uint4 raw;
    T x[n];
};

// The log decay of one step, -exp(min(w, W_MAX)); a NaN w gives NaN.
__device__ __forceinline__ float log_decay(float w) { return -expf(clamp_w(w)); }

constexpr int LD_THREADS = 256;

// L[b, c, h, i] = sum over the chunk's steps of log_decay(w[b, t, h, i]). One block per
// (b, c, h): threadIdx.x one group of Vec<T>::n channels, threadIdx.y one of the interleaved step
// groups; the groups' sums meet in shared memory.
template <typename T>
__global__ void __launch_bounds__(LD_THREADS)
    chunk_log_decay_kernel(int T_, int H, int N, int n, int chunk, const T* __restrict__ w,
                           float* __restrict__ L) {
    constexpr int V = Vec<T>::n;
    __shared__ float part[LD_THREADS * V];  // [step group][channel]
    const int i0 = threadIdx.x * V, s = threadIdx.y, groups = blockDim.y;
    const int h = blockIdx.x % H;
    const int c = (blockIdx.x / H) % n;
    const int b = blockIdx.x / (H * n);
    const size_t rs = (size_t)H * N;
    const size_t base = (size_t)b * T_ * rs + (size_t)h * N + i0;
    float acc[V];
#pragma unroll
    for (int m = 0; m < V; ++m) acc[m] = 0.f;
    const int t1 = (c + 1) * chunk;
#pragma unroll 2
    for (int t = c * chunk + s; t < t1; t += groups) {
        Vec<T> p;
        p.raw = *reinterpret_cast<const uint4*>(w + base + (size_t)t * rs);
#pragma unroll
        for (int m = 0; m < V; ++m) acc[m] += log_decay(to_f(p.x[m]));
    }
#pragma unroll
    for (int m = 0; m < V; ++m) part[s * N + i0 + m] = acc[m];
    __syncthreads();
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    if (tid < N) {
        float sum = 0.f;
        for (int g = 0; g < groups; ++g) sum += part[g * N + tid];
        L[((size_t)b * n + c) * rs + (size_t)h * N + tid] = sum;
    }
}

// dw[b, t, h, i] = dL[b, t / chunk, h, i] * d log_decay / dw for the steps of the chunks, 0 after
// them (steps the split leaves to a last call), 0 where w is clamped. One Vec<T> a thread (H * N
// is a multiple of its size), grid-stride.
template <typename T>
__global__ void chunk_log_decay_backward_kernel(long long vecs, int T_, int HN, int n, int chunk,
                                                const T* __restrict__ w,
                                                const float* __restrict__ dL, T* __restrict__ dw) {
    constexpr int V = Vec<T>::n;
    for (long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x; q < vecs;
         q += (long long)gridDim.x * blockDim.x) {
        const long long e = q * V;
        const long long bt = e / HN;
        const int hi = static_cast<int>(e - bt * HN);
        const int t = static_cast<int>(bt % T_);
        const long long b = bt / T_;
        Vec<T> out;
        if (t < n * chunk) {
            Vec<T> p;
            p.raw = *reinterpret_cast<const uint4*>(w + e);
            const float* dl = dL + ((size_t)b * n + t / chunk) * HN + hi;
#pragma unroll
            for (int m = 0; m < V; ++m) {
                const float wv = to_f(p.x[m]);
                out.x[m] = from_f<T>(wv > W_MAX ? 0.f : -expf(wv) * dl[m]);  // NaN w: NaN
            }
        } else {
            out.raw = make_uint4(0u, 0u, 0u, 0u);  // +0 in both dtypes
        }
        *reinterpret_cast<uint4*>(dw + e) = out.raw;
    }
}

// The scan: one thread per state element (b, h, i, j), consecutive threads consecutive j.
constexpr int SCAN_THREADS = 256;

__global__ void __launch_bounds__(SCAN_THREADS)
    state_scan_kernel(long long total, int n, int H, int N, const float* __restrict__ Z,
                      const float* __restrict__ L, const float* __restrict__ s0,
                      float* __restrict__ starts) {
    const long long e = (long long)blockIdx.x * SCAN_THREADS + threadIdx.x;  // (b, h, i, j)
    if (e >= total) return;
    const size_t hnn = (size_t)H * N * N, hn = (size_t)H * N;
    const size_t b = (size_t)(e / (long long)hnn), hij = (size_t)(e % (long long)hnn);
    const size_t hi = hij / N;
    float S = s0 != nullptr ? s0[e] : 0.f;
#pragma unroll 4
    for (int c = 0; c < n; ++c) {
        const size_t cs = b * n + c;
        starts[cs * hnn + hij] = S;
        if (c + 1 < n) S = fmaf(expf(L[cs * hn + hi]), S, Z[cs * hnn + hij]);
    }
}

// Its gradient, in reverse over the chunks with g = dLoss/dS_{c+1} carried:
//   dZ_c = g (c < n-1; dZ_{n-1} = 0),  dL_c,i = e^{L_c,i} sum_j S_c,ij g_ij,
//   then g <- dstarts_c + diag(e^{L_c}) g;  ds0 = g at the end.
// One warp per state row (b, h, i), the lanes over j (a warp-wide sum for dL).
constexpr int SCAN_BWD_WARPS = 4;

__global__ void __launch_bounds__(SCAN_BWD_WARPS * 32)
    state_scan_backward_kernel(long long rows, int n, int H, int N, const float* __restrict__ L,
                               const float* __restrict__ starts,
                               const float* __restrict__ dstarts, float* __restrict__ dZ,
                               float* __restrict__ dL, float* __restrict__ ds0) {
    const long long row = (long long)blockIdx.x * SCAN_BWD_WARPS + threadIdx.x / 32;  // (b, h, i)
    if (row >= rows) return;
    const int lane = threadIdx.x % 32;
    const size_t hnn = (size_t)H * N * N, hn = (size_t)H * N;
    const size_t b = (size_t)(row / (long long)hn), hi = (size_t)(row % (long long)hn);
    constexpr int MAXJ = 4;  // N <= 128: at most four columns a lane
    const int per = (N + 31) / 32;
    float g[MAXJ];
    {
        const size_t off = (b * n + (n - 1)) * hnn + hi * N;
#pragma unroll
        for (int m = 0; m < MAXJ; ++m) {
            const int j = lane + 32 * m;
            g[m] = 0.f;
            if (m < per && j < N) {
                g[m] = dstarts[off + j];
                dZ[off + j] = 0.f;
            }
        }
        if (lane == 0) dL[(b * n + (n - 1)) * hn + hi] = 0.f;
    }
    // the loop is a chain of dependent chunks: the next chunk's loads are issued before this
    // chunk's arithmetic
    float L_cur = 0.f, S_cur[MAXJ], dS_cur[MAXJ];
    auto load = [&](int c, float& Lc, float* Sc, float* dSc) {
        const size_t cs = b * n + c;
        const size_t off = cs * hnn + hi * N;
        Lc = L[cs * hn + hi];
#pragma unroll
        for (int m = 0; m < MAXJ; ++m) {
            const int j = lane + 32 * m;
            const bool in = m < per && j < N;
            Sc[m] = in ? starts[off + j] : 0.f;
            dSc[m] = in ? dstarts[off + j] : 0.f;
        }
    };
    if (n >= 2) load(n - 2, L_cur, S_cur, dS_cur);
    for (int c = n - 2; c >= 0; --c) {
        float L_next = 0.f, S_next[MAXJ] = {}, dS_next[MAXJ] = {};
        if (c >= 1) load(c - 1, L_next, S_next, dS_next);
        const size_t cs = b * n + c;
        const size_t off = cs * hnn + hi * N;
        const float e = expf(L_cur);
        float acc = 0.f;
#pragma unroll
        for (int m = 0; m < MAXJ; ++m) {
            const int j = lane + 32 * m;
            if (m < per && j < N) {
                dZ[off + j] = g[m];
                acc = fmaf(S_cur[m], g[m], acc);
                g[m] = fmaf(e, g[m], dS_cur[m]);
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) dL[cs * hn + hi] = e * acc;
        L_cur = L_next;
#pragma unroll
        for (int m = 0; m < MAXJ; ++m) S_cur[m] = S_next[m], dS_cur[m] = dS_next[m];
    }
    if (ds0 != nullptr) {
#pragma unroll
        for (int m = 0; m < MAXJ; ++m) {
            const int j = lane + 32 * m;
            if (m < per && j < N) ds0[b * hnn + hi * N + j] = g[m];
        }
    }
}

int blocks_for(long long total, int threads) {
    const long long blocks = (total + threads - 1) / threads;
    return static_cast<int>(blocks < (1LL << 30) ? blocks : (1LL << 30));
}

// 0 for a supported shape, else the header's error code (-2: head size, -4: empty or
// inconsistent shape)
int check_shape(int B, int T, int H, int N, int n, int chunk) {
    if (N != 16 && N != 32 && N != 64 && N != 128) return -2;
    if (B < 1 || T < 1 || H < 1 || n < 1 || chunk < 1 || (long long)n * chunk > T) return -4;
    return 0;
}

// w and dw are read and written as 16-byte vectors: their pointers must be 16-byte aligned.
template <typename T>
int launch_log_decay(int B, int T_, int H, int N, int n, int chunk, const void* w, float* L,
                     cudaStream_t st) {
    constexpr int V = Vec<T>::n;
    if (reinterpret_cast<uintptr_t>(w) % 16 != 0) return -6;
    const dim3 block(N / V, LD_THREADS / (N / V));
    chunk_log_decay_kernel<T>
        <<<B * n * H, block, 0, st>>>(T_, H, N, n, chunk, static_cast<const T*>(w), L);
    return static_cast<int>(cudaGetLastError());
}

template <typename T>
int launch_log_decay_backward(int B, int T_, int H, int N, int n, int chunk, const void* w,
                              const float* dL, void* dw, cudaStream_t st) {
    constexpr int V = Vec<T>::n;
    if (reinterpret_cast<uintptr_t>(w) % 16 != 0 || reinterpret_cast<uintptr_t>(dw) % 16 != 0)
        return -6;
    const long long vecs = (long long)B * T_ * H * N / V;
    chunk_log_decay_backward_kernel<T><<<blocks_for(vecs, 256), 256, 0, st>>>(
        vecs, T_, H * N, n, chunk, static_cast<const T*>(w), dL, static_cast<T*>(dw));
    return static_cast<int>(cudaGetLastError());
}

}  // namespace

extern "C" int rwkv_ts_wkv6_chunk_log_decay(int dtype, int B, int T, int H, int N, int n,
                                            int chunk, const void* w, float* L, void* stream) {
    if (const int bad = check_shape(B, T, H, N, n, chunk)) return bad;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (dtype == 0) return launch_log_decay<float>(B, T, H, N, n, chunk, w, L, st);
    if (dtype == 1) return launch_log_decay<__nv_bfloat16>(B, T, H, N, n, chunk, w, L, st);
    return -1;
}

extern "C" int rwkv_ts_wkv6_chunk_log_decay_backward(int dtype, int B, int T, int H, int N, int n,
                                                     int chunk, const void* w, const float* dL,
                                                     void* dw, void* stream) {
    if (const int bad = check_shape(B, T, H, N, n, chunk)) return bad;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (dtype == 0) return launch_log_decay_backward<float>(B, T, H, N, n, chunk, w, dL, dw, st);
    if (dtype == 1)
        return launch_log_decay_backward<__nv_bfloat16>(B, T, H, N, n, chunk, w, dL, dw, st);
    return -1;
}

extern "C" int rwkv_ts_wkv6_state_scan(int B, int n, int H, int N, const float* Z, const float* L,
                                       const float* s0, float* starts, void* stream) {
    if (const int bad = check_shape(B, n, H, N, n, 1)) return bad;
    const long long total = (long long)B * H * N * N;
    state_scan_kernel<<<blocks_for(total, SCAN_THREADS), SCAN_THREADS, 0,
                        static_cast<cudaStream_t>(stream)>>>(total, n, H, N, Z, L, s0, starts);
    return static_cast<int>(cudaGetLastError());
}

extern "C" int rwkv_ts_wkv6_state_scan_backward(int B, int n, int H, int N, const float* L,
                                                const float* starts, const float* dstarts,
                                                float* dZ, float* dL, float* ds0, void* stream) {
    if (const int bad = check_shape(B, n, H, N, n, 1)) return bad;
    const long long rows = (long long)B * H * N;
    state_scan_backward_kernel<<<blocks_for(rows, SCAN_BWD_WARPS), SCAN_BWD_WARPS * 32, 0,
                                 static_cast<cudaStream_t>(stream)>>>(rows, n, H, N, L, starts,
                                                                      dstarts, dZ, dL, ds0);
    return static_cast<int>(cudaGetLastError());
}
