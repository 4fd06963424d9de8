/*
 * rwkv-ts WKV (RWKV-6 form) CUDA kernels: the plain C interface.
 *
 * Layout: r, k, v, w, y, dy, dr, dk, dv, dw are (B, T, H, N) contiguous, all of one dtype
 * (dtype code 0 = float32, 1 = bfloat16). u, du_part are float32 (H, N) and (B, H, N).
 * state tensors (s0, sT, dsT, ds0) are float32 (B, H, N, N), S[b, h, i, j] with i the key channel
 * and j the value channel. Null s0 / dsT mean zeros. N must be 16, 32, 64 or 128; T >= 1.
 *
 * Every launcher returns 0 on success, a cudaError_t value after a failed launch, or a negative
 * number for arguments the kernels do not support (-1: dtype, -2: head size, -3: split factor,
 * -4: empty shape, -5: a GPU without bfloat16 tensor cores, -6: a pointer not 16-byte aligned
 * where the kernel reads 16-byte vectors).
 */
#ifndef RWKV_TS_WKV6_H
#define RWKV_TS_WKV6_H

#ifdef __cplusplus
extern "C" {
#endif

/* Forward: y and the final state sT. split = how many threads share one state column
 * (1, 2 or 4; 0 = choose from the occupancy). */
int rwkv_ts_wkv6_forward(int dtype, int B, int T, int H, int N, const void* r, const void* k,
                         const void* v, const void* w, const float* u, const float* s0, void* y,
                         float* sT, int split, void* stream);

/* Forward on tensor cores, chunked over time (kernels/wkv6_chunk.cu): bfloat16 r, k, v, w and y
 * only, float32 state; compute capability 8.0 or newer. Its products round their operands to
 * bfloat16 (float32 accumulation), so it is exact to bfloat16 precision, not float32. */
int rwkv_ts_wkv6_forward_chunked(int B, int T, int H, int N, const void* r, const void* k,
                                 const void* v, const void* w, const float* u, const float* s0,
                                 void* y, float* sT, void* stream);

/* Float32 scratch elements that rwkv_ts_wkv6_backward needs: 2*B*T*H*N + B*H*N (the query and
 * key terms of dw, and the final-state term; see kernels/README.md). */
long long rwkv_ts_wkv6_backward_scratch(int B, int T, int H, int N);

/* Backward: dr, dk, dv, dw (input dtype), du_part (B, H, N) float32 (sum over B for du),
 * ds0 (B, H, N, N) float32; scratch is float32 of rwkv_ts_wkv6_backward_scratch(B, T, H, N)
 * elements (no initialisation needed). Two launches on the stream (the three-role recurrence,
 * then dw). */
int rwkv_ts_wkv6_backward(int dtype, int B, int T, int H, int N, const void* r, const void* k,
                          const void* v, const void* w, const float* u, const float* s0,
                          const void* dy, const float* dsT, void* dr, void* dk, void* dv,
                          void* dw, float* du_part, float* ds0, float* scratch, void* stream);

/* The backward above for the (b, h) with only[b * H + h] != 0 alone (only: B*H ints on the device;
 * null = all); the chunked backward's fallback. */
int rwkv_ts_wkv6_backward_only(int dtype, int B, int T, int H, int N, const void* r, const void* k,
                               const void* v, const void* w, const float* u, const float* s0,
                               const void* dy, const float* dsT, void* dr, void* dk, void* dv,
                               void* dw, float* du_part, float* ds0, float* scratch,
                               const int* only, void* stream);

/* Chunked backward on tensor cores (kernels/wkv6_chunk.cu), bfloat16 inputs: the arguments of
 * rwkv_ts_wkv6_backward plus states (bfloat16, rwkv_ts_wkv6_backward_chunked_states(B, T, H, N)
 * elements) and flags (B*H ints, zeroed by the caller). A (b, h) whose chunks the tensor-core form
 * cannot take exactly (a non-finite input or dy, or a decay over 15 steps below e^-60) is flagged
 * and done again by the sequential backward, which uses scratch. */
long long rwkv_ts_wkv6_backward_chunked_states(int B, int T, int H, int N);
int rwkv_ts_wkv6_backward_chunked(int B, int T, int H, int N, const void* r, const void* k,
                                  const void* v, const void* w, const float* u, const float* s0,
                                  const void* dy, const float* dsT, void* dr, void* dk, void* dv,
                                  void* dw, float* du_part, float* ds0, float* scratch,
                                  void* states, int* flags, void* stream);

/* The combination step of the time split (kernels/wkv6_split.cu; rwkv_ts/ops/timesplit.py).
 * L (B, n, H, N) float32: the total log decay sum_t -exp(min(w_t, 40)) of each of the n chunks of
 * `chunk` steps of w (B, T, H, N; dtype code as above; n * chunk <= T), and its gradient
 * dw (B, T, H, N, w's dtype; 0 at the steps after the chunks and where w is clamped). w and dw
 * must start on 16-byte boundaries. */
int rwkv_ts_wkv6_chunk_log_decay(int dtype, int B, int T, int H, int N, int n, int chunk,
                                 const void* w, float* L, void* stream);
int rwkv_ts_wkv6_chunk_log_decay_backward(int dtype, int B, int T, int H, int N, int n, int chunk,
                                          const void* w, const float* dL, void* dw, void* stream);

/* The state at each chunk's start, starts (B, n, H, N, N) float32: starts_0 = s0 (null: zeros),
 * starts_{c+1} = diag(e^{L_c}) starts_c + Z_c, with Z (B, n, H, N, N) what each chunk adds from
 * a zero state. The backward takes dstarts and gives dZ, dL and ds0 (null: not wanted). */
int rwkv_ts_wkv6_state_scan(int B, int n, int H, int N, const float* Z, const float* L,
                            const float* s0, float* starts, void* stream);
int rwkv_ts_wkv6_state_scan_backward(int B, int n, int H, int N, const float* L,
                                     const float* starts, const float* dstarts, float* dZ,
                                     float* dL, float* ds0, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* RWKV_TS_WKV6_H */
