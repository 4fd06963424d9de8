// Torch binding of the WKV6 CUDA kernels (kernels/wkv6.cu). Built by rwkv_ts/ops/_build.py with
// torch.utils.cpp_extension.load; the .cu file itself has no torch dependency.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <optional>
#include <tuple>

#include "wkv6.h"

namespace {

int dtype_code(const at::Tensor& x) {
    if (x.scalar_type() == at::kFloat) return 0;
    if (x.scalar_type() == at::kBFloat16) return 1;
    TORCH_CHECK(false, "rwkv_ts wkv6: unsupported dtype ", x.scalar_type());
    return -1;
}

void check_io(const at::Tensor& x, const at::Tensor& like, const char* name) {
    TORCH_CHECK(x.is_cuda() && x.is_contiguous(), "rwkv_ts wkv6: ", name,
                " must be a contiguous CUDA tensor");
    TORCH_CHECK(x.scalar_type() == like.scalar_type() && x.sizes() == like.sizes(),
                "rwkv_ts wkv6: ", name, " must match r in dtype and shape");
}

void check_f32(const at::Tensor& x, at::IntArrayRef shape, const char* name) {
    TORCH_CHECK(x.is_cuda() && x.is_contiguous() && x.scalar_type() == at::kFloat,
                "rwkv_ts wkv6: ", name, " must be a contiguous float32 CUDA tensor");
    TORCH_CHECK(x.sizes() == shape, "rwkv_ts wkv6: ", name, " has the wrong shape");
}

void check_rc(int rc, const char* what) {
    TORCH_CHECK(rc == 0, "rwkv_ts wkv6 ", what, " failed: ",
                rc > 0 ? cudaGetErrorString(static_cast<cudaError_t>(rc)) : "unsupported arguments",
                " (code ", rc, ")");
}

std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& r, const at::Tensor& k,
                                           const at::Tensor& v, const at::Tensor& w,
                                           const at::Tensor& u,
                                           const std::optional<at::Tensor>& s0, int64_t split) {
    TORCH_CHECK(r.dim() == 4, "rwkv_ts wkv6: r must be (B, T, H, N)");
    check_io(r, r, "r");
    check_io(k, r, "k");
    check_io(v, r, "v");
    check_io(w, r, "w");
    const int64_t B = r.size(0), T = r.size(1), H = r.size(2), N = r.size(3);
    check_f32(u, {H, N}, "u");
    if (s0.has_value()) check_f32(*s0, {B, H, N, N}, "state");
    const c10::cuda::CUDAGuard guard(r.device());
    auto y = at::empty_like(r);
    auto sT = at::empty({B, H, N, N}, r.options().dtype(at::kFloat));
    const int rc = rwkv_ts_wkv6_forward(
        dtype_code(r), static_cast<int>(B), static_cast<int>(T), static_cast<int>(H),
        static_cast<int>(N), r.data_ptr(), k.data_ptr(), v.data_ptr(), w.data_ptr(),
        u.data_ptr<float>(), s0.has_value() ? s0->data_ptr<float>() : nullptr, y.data_ptr(),
        sT.data_ptr<float>(), static_cast<int>(split), at::cuda::getCurrentCUDAStream().stream());
    check_rc(rc, "forward");
    return {y, sT};
}

std::tuple<at::Tensor, at::Tensor> forward_chunked(const at::Tensor& r, const at::Tensor& k,
                                                   const at::Tensor& v, const at::Tensor& w,
                                                   const at::Tensor& u,
                                                   const std::optional<at::Tensor>& s0) {
    TORCH_CHECK(r.dim() == 4, "rwkv_ts wkv6: r must be (B, T, H, N)");
    TORCH_CHECK(r.scalar_type() == at::kBFloat16,
                "rwkv_ts wkv6: the chunked forward takes bfloat16 inputs, not ", r.scalar_type());
    check_io(r, r, "r");
    check_io(k, r, "k");
    check_io(v, r, "v");
    check_io(w, r, "w");
    const int64_t B = r.size(0), T = r.size(1), H = r.size(2), N = r.size(3);
    check_f32(u, {H, N}, "u");
    if (s0.has_value()) check_f32(*s0, {B, H, N, N}, "state");
    for (const at::Tensor* x : {&r, &k, &v, &w})
        TORCH_CHECK(reinterpret_cast<uintptr_t>(x->data_ptr()) % 16 == 0,
                    "rwkv_ts wkv6: the chunked forward reads 16-byte vectors: r, k, v and w must "
                    "start on a 16-byte boundary");
    const c10::cuda::CUDAGuard guard(r.device());
    auto y = at::empty_like(r);
    auto sT = at::empty({B, H, N, N}, r.options().dtype(at::kFloat));
    const int rc = rwkv_ts_wkv6_forward_chunked(
        static_cast<int>(B), static_cast<int>(T), static_cast<int>(H), static_cast<int>(N),
        r.data_ptr(), k.data_ptr(), v.data_ptr(), w.data_ptr(), u.data_ptr<float>(),
        s0.has_value() ? s0->data_ptr<float>() : nullptr, y.data_ptr(), sT.data_ptr<float>(),
        at::cuda::getCurrentCUDAStream().stream());
    check_rc(rc, "chunked forward");
    return {y, sT};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& r, const at::Tensor& k, const at::Tensor& v, const at::Tensor& w,
    const at::Tensor& u, const std::optional<at::Tensor>& s0, const at::Tensor& dy,
    const std::optional<at::Tensor>& dsT) {
    TORCH_CHECK(r.dim() == 4, "rwkv_ts wkv6: r must be (B, T, H, N)");
    check_io(r, r, "r");
    check_io(k, r, "k");
    check_io(v, r, "v");
    check_io(w, r, "w");
    check_io(dy, r, "dy");
    const int64_t B = r.size(0), T = r.size(1), H = r.size(2), N = r.size(3);
    check_f32(u, {H, N}, "u");
    if (s0.has_value()) check_f32(*s0, {B, H, N, N}, "state");
    if (dsT.has_value()) check_f32(*dsT, {B, H, N, N}, "d_state");
    const c10::cuda::CUDAGuard guard(r.device());
    auto dr = at::empty_like(r);
    auto dk = at::empty_like(r);
    auto dv = at::empty_like(r);
    auto dw = at::empty_like(r);
    auto fopt = r.options().dtype(at::kFloat);
    auto du_part = at::empty({B, H, N}, fopt);
    auto ds0 = at::empty({B, H, N, N}, fopt);
    // transient float32 scratch of the backward (dw's query and key terms, final-state term)
    const int64_t nscratch = rwkv_ts_wkv6_backward_scratch(
        static_cast<int>(B), static_cast<int>(T), static_cast<int>(H), static_cast<int>(N));
    auto scratch = at::empty({nscratch}, fopt);
    const int rc = rwkv_ts_wkv6_backward(
        dtype_code(r), static_cast<int>(B), static_cast<int>(T), static_cast<int>(H),
        static_cast<int>(N), r.data_ptr(), k.data_ptr(), v.data_ptr(), w.data_ptr(),
        u.data_ptr<float>(), s0.has_value() ? s0->data_ptr<float>() : nullptr, dy.data_ptr(),
        dsT.has_value() ? dsT->data_ptr<float>() : nullptr, dr.data_ptr(), dk.data_ptr(),
        dv.data_ptr(), dw.data_ptr(), du_part.data_ptr<float>(), ds0.data_ptr<float>(),
        scratch.data_ptr<float>(), at::cuda::getCurrentCUDAStream().stream());
    check_rc(rc, "backward");
    return {dr, dk, dv, dw, du_part.sum(0), ds0};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
backward_chunked(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                 const at::Tensor& w, const at::Tensor& u, const std::optional<at::Tensor>& s0,
                 const at::Tensor& dy, const std::optional<at::Tensor>& dsT) {
    TORCH_CHECK(r.dim() == 4, "rwkv_ts wkv6: r must be (B, T, H, N)");
    TORCH_CHECK(r.scalar_type() == at::kBFloat16,
                "rwkv_ts wkv6: the chunked backward takes bfloat16 inputs, not ", r.scalar_type());
    check_io(r, r, "r");
    check_io(k, r, "k");
    check_io(v, r, "v");
    check_io(w, r, "w");
    check_io(dy, r, "dy");
    for (const at::Tensor* x : {&r, &k, &v, &w, &dy})
        TORCH_CHECK(reinterpret_cast<uintptr_t>(x->data_ptr()) % 16 == 0,
                    "rwkv_ts wkv6: the chunked backward reads 16-byte vectors: r, k, v, w and dy "
                    "must start on a 16-byte boundary");
    const int64_t B = r.size(0), T = r.size(1), H = r.size(2), N = r.size(3);
    check_f32(u, {H, N}, "u");
    if (s0.has_value()) check_f32(*s0, {B, H, N, N}, "state");
    if (dsT.has_value()) check_f32(*dsT, {B, H, N, N}, "d_state");
    const c10::cuda::CUDAGuard guard(r.device());
    auto dr = at::empty_like(r);
    auto dk = at::empty_like(r);
    auto dv = at::empty_like(r);
    auto dw = at::empty_like(r);
    auto fopt = r.options().dtype(at::kFloat);
    auto du_part = at::empty({B, H, N}, fopt);
    auto ds0 = at::empty({B, H, N, N}, fopt);
    const int b = static_cast<int>(B), t = static_cast<int>(T), h = static_cast<int>(H),
              n = static_cast<int>(N);
    auto states = at::empty({rwkv_ts_wkv6_backward_chunked_states(b, t, h, n)}, r.options());
    auto flags = at::zeros({B * H}, r.options().dtype(at::kInt));
    // the sequential fallback's scratch (used by flagged (b, h) only)
    auto scratch = at::empty({rwkv_ts_wkv6_backward_scratch(b, t, h, n)}, fopt);
    const int rc = rwkv_ts_wkv6_backward_chunked(
        b, t, h, n, r.data_ptr(), k.data_ptr(), v.data_ptr(), w.data_ptr(), u.data_ptr<float>(),
        s0.has_value() ? s0->data_ptr<float>() : nullptr, dy.data_ptr(),
        dsT.has_value() ? dsT->data_ptr<float>() : nullptr, dr.data_ptr(), dk.data_ptr(),
        dv.data_ptr(), dw.data_ptr(), du_part.data_ptr<float>(), ds0.data_ptr<float>(),
        scratch.data_ptr<float>(), states.data_ptr(), flags.data_ptr<int>(),
        at::cuda::getCurrentCUDAStream().stream());
    check_rc(rc, "chunked backward");
    return {dr, dk, dv, dw, du_part.sum(0), ds0};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &forward, "WKV6 forward: (y, final state)");
    m.def("forward_chunked", &forward_chunked,
          "WKV6 forward on tensor cores, bfloat16 inputs: (y, final state)");
    m.def("backward_chunked", &backward_chunked,
          "WKV6 backward on tensor cores, bfloat16 inputs: (dr, dk, dv, dw, du, d_state0)");
    m.def("backward", &backward, "WKV6 backward: (dr, dk, dv, dw, du, d_state0)");
}
