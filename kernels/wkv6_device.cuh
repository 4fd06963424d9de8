// rwkv-ts: device helpers shared by the WKV kernels (wkv6.cu, wkv6_chunk.cu, wkv6_split.cu):
// float32 <-> input type conversions and the clamp of w. Each translation unit gets its own
// internal copy (an unnamed namespace), as if written there.
#pragma once

#include <cuda_bf16.h>

namespace {

// w is clamped from above (as the float64 reference does; the gradient is zero there).
constexpr float W_MAX = 40.f;

// w clamped from above; a NaN stays NaN (the comparison is false).
__device__ __forceinline__ float clamp_w(float w) { return w > W_MAX ? W_MAX : w; }

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

}  // namespace
