// Torch binding of the WKV6 CUDA kernels (kernels/wkv6.cu). Built by rwkv_ts/ops/_build.py with
// torch.utils.cpp_extension.load; the .cu file itself has no torch dependency.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>
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

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct Shape {
    int64_t B, T, H, N;
};

// The checks every entry point shares: r, k, v, w (and dy) contiguous CUDA tensors of one dtype and
// shape (B, T, H, N); u, the state and its gradient float32 of their shapes. The chunked kernels
// also want bfloat16 inputs starting on 16-byte boundaries (they read 16-byte vectors).
Shape check_inputs(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                   const at::Tensor& w, const at::Tensor& u, const std::optional<at::Tensor>& s0,
                   const at::Tensor* dy, const std::optional<at::Tensor>* dsT, bool chunked) {
    TORCH_CHECK(r.dim() == 4, "rwkv_ts wkv6: r must be (B, T, H, N)");
    check_io(r, r, "r");
    check_io(k, r, "k");
    check_io(v, r, "v");
    check_io(w, r, "w");
    if (dy != nullptr) check_io(*dy, r, "dy");
    const Shape sh{r.size(0), r.size(1), r.size(2), r.size(3)};
    check_f32(u, {sh.H, sh.N}, "u");
    if (s0.has_value()) check_f32(*s0, {sh.B, sh.H, sh.N, sh.N}, "state");
    if (dsT != nullptr && dsT->has_value()) check_f32(**dsT, {sh.B, sh.H, sh.N, sh.N}, "d_state");
    if (chunked) {
        TORCH_CHECK(r.scalar_type() == at::kBFloat16,
                    "rwkv_ts wkv6: the chunked kernels take bfloat16 inputs, not ", r.scalar_type());
        for (const at::Tensor* x : {&r, &k, &v, &w, dy})
            TORCH_CHECK(x == nullptr || reinterpret_cast<uintptr_t>(x->data_ptr()) % 16 == 0,
                        "rwkv_ts wkv6: the chunked kernels read 16-byte vectors: r, k, v, w and dy "
                        "must start on a 16-byte boundary");
    }
    return sh;
}

std::tuple<at::Tensor, at::Tensor> run_forward(const at::Tensor& r, const at::Tensor& k,
                                               const at::Tensor& v, const at::Tensor& w,
                                               const at::Tensor& u,
                                               const std::optional<at::Tensor>& s0, bool chunked,
                                               int64_t split) {
    const Shape sh = check_inputs(r, k, v, w, u, s0, nullptr, nullptr, chunked);
    const c10::cuda::CUDAGuard guard(r.device());
    auto y = at::empty_like(r);
    auto sT = at::empty({sh.B, sh.H, sh.N, sh.N}, r.options().dtype(at::kFloat));
    const int b = static_cast<int>(sh.B), t = static_cast<int>(sh.T), h = static_cast<int>(sh.H),
              n = static_cast<int>(sh.N);
    const float* s0p = s0.has_value() ? s0->data_ptr<float>() : nullptr;
    void* stream = at::cuda::getCurrentCUDAStream().stream();
    const int rc =
        chunked ? rwkv_ts_wkv6_forward_chunked(b, t, h, n, r.data_ptr(), k.data_ptr(),
                                               v.data_ptr(), w.data_ptr(), u.data_ptr<float>(),
                                               s0p, y.data_ptr(), sT.data_ptr<float>(), stream)
                : rwkv_ts_wkv6_forward(dtype_code(r), b, t, h, n, r.data_ptr(), k.data_ptr(),
                                       v.data_ptr(), w.data_ptr(), u.data_ptr<float>(), s0p,
                                       y.data_ptr(), sT.data_ptr<float>(),
                                       static_cast<int>(split), stream);
    check_rc(rc, chunked ? "chunked forward" : "forward");
    return {y, sT};
}

Grads run_backward(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                   const at::Tensor& w, const at::Tensor& u, const std::optional<at::Tensor>& s0,
                   const at::Tensor& dy, const std::optional<at::Tensor>& dsT, bool chunked) {
    const Shape sh = check_inputs(r, k, v, w, u, s0, &dy, &dsT, chunked);
    const c10::cuda::CUDAGuard guard(r.device());
    auto dr = at::empty_like(r);
    auto dk = at::empty_like(r);
    auto dv = at::empty_like(r);
    auto dw = at::empty_like(r);
    auto fopt = r.options().dtype(at::kFloat);
    auto du_part = at::empty({sh.B, sh.H, sh.N}, fopt);
    auto ds0 = at::empty({sh.B, sh.H, sh.N, sh.N}, fopt);
    const int b = static_cast<int>(sh.B), t = static_cast<int>(sh.T), h = static_cast<int>(sh.H),
              n = static_cast<int>(sh.N);
    // transient float32 scratch of the sequential backward (dw's query and key terms, the
    // final-state term); with the chunked kernels, used by the (b, h) they hand back only
    auto scratch = at::empty({rwkv_ts_wkv6_backward_scratch(b, t, h, n)}, fopt);
    const float* s0p = s0.has_value() ? s0->data_ptr<float>() : nullptr;
    const float* dsTp = dsT.has_value() ? dsT->data_ptr<float>() : nullptr;
    void* stream = at::cuda::getCurrentCUDAStream().stream();
    int rc;
    if (chunked) {
        auto states = at::empty({rwkv_ts_wkv6_backward_chunked_states(b, t, h, n)}, r.options());
        auto flags = at::zeros({sh.B * sh.H}, r.options().dtype(at::kInt));
        rc = rwkv_ts_wkv6_backward_chunked(
            b, t, h, n, r.data_ptr(), k.data_ptr(), v.data_ptr(), w.data_ptr(),
            u.data_ptr<float>(), s0p, dy.data_ptr(), dsTp, dr.data_ptr(), dk.data_ptr(),
            dv.data_ptr(), dw.data_ptr(), du_part.data_ptr<float>(), ds0.data_ptr<float>(),
            scratch.data_ptr<float>(), states.data_ptr(), flags.data_ptr<int>(), stream);
    } else {
        rc = rwkv_ts_wkv6_backward(dtype_code(r), b, t, h, n, r.data_ptr(), k.data_ptr(),
                                   v.data_ptr(), w.data_ptr(), u.data_ptr<float>(), s0p,
                                   dy.data_ptr(), dsTp, dr.data_ptr(), dk.data_ptr(),
                                   dv.data_ptr(), dw.data_ptr(), du_part.data_ptr<float>(),
                                   ds0.data_ptr<float>(), scratch.data_ptr<float>(), stream);
    }
    check_rc(rc, chunked ? "chunked backward" : "backward");
    return {dr, dk, dv, dw, du_part.sum(0), ds0};
}

std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& r, const at::Tensor& k,
                                           const at::Tensor& v, const at::Tensor& w,
                                           const at::Tensor& u,
                                           const std::optional<at::Tensor>& s0, int64_t split) {
    return run_forward(r, k, v, w, u, s0, false, split);
}

std::tuple<at::Tensor, at::Tensor> forward_chunked(const at::Tensor& r, const at::Tensor& k,
                                                   const at::Tensor& v, const at::Tensor& w,
                                                   const at::Tensor& u,
                                                   const std::optional<at::Tensor>& s0) {
    return run_forward(r, k, v, w, u, s0, true, 0);
}

Grads backward(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v, const at::Tensor& w,
               const at::Tensor& u, const std::optional<at::Tensor>& s0, const at::Tensor& dy,
               const std::optional<at::Tensor>& dsT) {
    return run_backward(r, k, v, w, u, s0, dy, dsT, false);
}

Grads backward_chunked(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& w, const at::Tensor& u,
                       const std::optional<at::Tensor>& s0, const at::Tensor& dy,
                       const std::optional<at::Tensor>& dsT) {
    return run_backward(r, k, v, w, u, s0, dy, dsT, true);
}

// A tensor the kernels can read: contiguous, and for the chunked kernels starting on a 16-byte
// boundary (a view that starts inside an allocation is copied).
at::Tensor readable(const at::Tensor& x, bool chunked) {
    at::Tensor c = x.contiguous();
    if (chunked && reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0) c = c.clone();
    return c;
}

// The operator's autograd node in C++: the backward runs without the Python interpreter. As a
// torch.autograd.Function the node cost ~0.35 ms of host time per forward+backward, here ~0.2 ms
// (at (B*H, T, N) = (512, 96, 32) on an H100); the kernels themselves take 0.1-0.5 ms at the
// time-series shapes, so that overhead set the step time there.
class WkvFunction : public torch::autograd::Function<WkvFunction> {
   public:
    static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                  const at::Tensor& r, const at::Tensor& k,
                                                  const at::Tensor& v, const at::Tensor& w,
                                                  const at::Tensor& u, const at::Tensor& s0,
                                                  bool chunked) {
        // s0: the initial state, or an empty tensor for none
        const at::Tensor rc = readable(r, chunked), kc = readable(k, chunked),
                         vc = readable(v, chunked), wc = readable(w, chunked);
        const at::Tensor u32 = u.to(at::kFloat).contiguous();
        std::optional<at::Tensor> state;
        if (s0.numel() > 0) state = s0.contiguous();
        auto [y, sT] = run_forward(rc, kc, vc, wc, u32, state, chunked, 0);
        ctx->save_for_backward({rc, kc, vc, wc, u32, state.has_value() ? *state : s0});
        ctx->saved_data["chunked"] = chunked;
        ctx->saved_data["u_dtype"] = static_cast<int64_t>(u.scalar_type());
        // an unused output's gradient arrives undefined instead of as a tensor of zeros
        ctx->set_materialize_grads(false);
        return {y, sT};
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        // the gradients come from kernels, not from differentiable operations
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "rwkv_ts wkv6: the CUDA WKV operator is differentiable once; a backward with "
                    "create_graph=True through it is not supported");
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &r = saved[0], &k = saved[1], &v = saved[2], &w = saved[3],
                         &u32 = saved[4], &s0 = saved[5];
        const bool chunked = ctx->saved_data["chunked"].toBool();
        const auto u_dtype = static_cast<at::ScalarType>(ctx->saved_data["u_dtype"].toInt());
        const at::Tensor dy = grads[0].defined()
                                  ? readable(grads[0].to(r.scalar_type()), chunked)
                                  : at::zeros_like(r);
        std::optional<at::Tensor> dsT;
        if (grads[1].defined()) dsT = grads[1].to(at::kFloat).contiguous();
        std::optional<at::Tensor> state;
        if (s0.numel() > 0) state = s0;
        auto [dr, dk, dv, dw, du, ds0] = run_backward(r, k, v, w, u32, state, dy, dsT, chunked);
        const at::Tensor d_state = state.has_value() ? ds0 : at::Tensor();
        return {dr, dk, dv, dw, du.to(u_dtype), d_state, at::Tensor()};
    }
};

std::tuple<at::Tensor, at::Tensor> wkv(const at::Tensor& r, const at::Tensor& k,
                                       const at::Tensor& v, const at::Tensor& w,
                                       const at::Tensor& u, const std::optional<at::Tensor>& s0,
                                       bool chunked) {
    // no state: an empty tensor (an undefined one has no device, which autograd asks for)
    const at::Tensor state = s0.has_value() ? *s0 : at::empty({0}, r.options().dtype(at::kFloat));
    auto out = WkvFunction::apply(r, k, v, w, u, state, chunked);
    return {out[0], out[1]};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &forward, "WKV6 forward: (y, final state)");
    m.def("forward_chunked", &forward_chunked,
          "WKV6 forward on tensor cores, bfloat16 inputs: (y, final state)");
    m.def("backward_chunked", &backward_chunked,
          "WKV6 backward on tensor cores, bfloat16 inputs: (dr, dk, dv, dw, du, d_state0)");
    m.def("backward", &backward, "WKV6 backward: (dr, dk, dv, dw, du, d_state0)");
    m.def("wkv", &wkv,
          "WKV6 with autograd (r, k, v, w, u, state or None, chunked): (y, final state); "
          "gradients to r, k, v, w, u and the state");
}
