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

// The combination step of the time split (kernels/wkv6_split.cu), as two autograd nodes:
// chunk_log_decay(w, n) -> L (B, n, H, N) and state_scan(Z, L, s0) -> starts (B, n, H, N, N).
class ChunkLogDecayFunction : public torch::autograd::Function<ChunkLogDecayFunction> {
   public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& w,
                              int64_t n) {
        TORCH_CHECK(w.dim() == 4 && w.is_cuda(), "rwkv_ts chunk_log_decay: w must be a CUDA "
                    "tensor (B, T, H, N)");
        const at::Tensor wc = readable(w, true);  // read as 16-byte vectors
        const c10::cuda::CUDAGuard guard(wc.device());
        const int64_t B = wc.size(0), T = wc.size(1), H = wc.size(2), N = wc.size(3);
        TORCH_CHECK(n >= 1 && n <= T, "rwkv_ts chunk_log_decay: n must be in [1, T], got ", n);
        auto L = at::empty({B, n, H, N}, wc.options().dtype(at::kFloat));
        check_rc(rwkv_ts_wkv6_chunk_log_decay(dtype_code(wc), static_cast<int>(B),
                                              static_cast<int>(T), static_cast<int>(H),
                                              static_cast<int>(N), static_cast<int>(n),
                                              static_cast<int>(T / n), wc.data_ptr(),
                                              L.data_ptr<float>(),
                                              at::cuda::getCurrentCUDAStream().stream()),
                 "chunk log decay");
        ctx->save_for_backward({wc});
        ctx->saved_data["n"] = n;
        ctx->set_materialize_grads(false);
        return L;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        const at::Tensor w = ctx->get_saved_variables()[0];
        const int64_t n = ctx->saved_data["n"].toInt();
        if (!grads[0].defined()) return {at::Tensor(), at::Tensor()};
        const at::Tensor dL = grads[0].to(at::kFloat).contiguous();
        const c10::cuda::CUDAGuard guard(w.device());
        auto dw = at::empty_like(w);
        const int64_t T = w.size(1);
        check_rc(rwkv_ts_wkv6_chunk_log_decay_backward(
                     dtype_code(w), static_cast<int>(w.size(0)), static_cast<int>(T),
                     static_cast<int>(w.size(2)), static_cast<int>(w.size(3)),
                     static_cast<int>(n), static_cast<int>(T / n), w.data_ptr(),
                     dL.data_ptr<float>(), dw.data_ptr(), at::cuda::getCurrentCUDAStream().stream()),
                 "chunk log decay backward");
        return {dw, at::Tensor()};
    }
};

class StateScanFunction : public torch::autograd::Function<StateScanFunction> {
   public:
    // s0: the initial state (B, H, N, N), or an empty tensor for none
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& Z,
                              const at::Tensor& L, const at::Tensor& s0) {
        TORCH_CHECK(Z.dim() == 5 && Z.is_cuda(), "rwkv_ts state_scan: Z must be (B, n, H, N, N) "
                    "on CUDA");
        const int64_t B = Z.size(0), n = Z.size(1), H = Z.size(2), N = Z.size(3);
        check_f32(Z, {B, n, H, N, N}, "Z");
        check_f32(L, {B, n, H, N}, "L");
        const bool with_state = s0.numel() > 0;
        if (with_state) check_f32(s0, {B, H, N, N}, "state");
        const c10::cuda::CUDAGuard guard(Z.device());
        auto starts = at::empty_like(Z);
        check_rc(rwkv_ts_wkv6_state_scan(static_cast<int>(B), static_cast<int>(n),
                                         static_cast<int>(H), static_cast<int>(N),
                                         Z.data_ptr<float>(), L.data_ptr<float>(),
                                         with_state ? s0.data_ptr<float>() : nullptr,
                                         starts.data_ptr<float>(),
                                         at::cuda::getCurrentCUDAStream().stream()),
                 "state scan");
        ctx->save_for_backward({L, starts});
        ctx->saved_data["with_state"] = with_state;
        ctx->set_materialize_grads(false);
        return starts;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &L = saved[0], &starts = saved[1];
        const bool with_state = ctx->saved_data["with_state"].toBool();
        const at::Tensor dstarts = grads[0].to(at::kFloat).contiguous();
        const c10::cuda::CUDAGuard guard(L.device());
        const int64_t B = starts.size(0), n = starts.size(1), H = starts.size(2),
                      N = starts.size(3);
        auto dZ = at::empty_like(starts);
        auto dL = at::empty_like(L);
        at::Tensor ds0 = with_state ? at::empty({B, H, N, N}, L.options()) : at::Tensor();
        check_rc(rwkv_ts_wkv6_state_scan_backward(
                     static_cast<int>(B), static_cast<int>(n), static_cast<int>(H),
                     static_cast<int>(N), L.data_ptr<float>(), starts.data_ptr<float>(),
                     dstarts.data_ptr<float>(), dZ.data_ptr<float>(), dL.data_ptr<float>(),
                     with_state ? ds0.data_ptr<float>() : nullptr,
                     at::cuda::getCurrentCUDAStream().stream()),
                 "state scan backward");
        return {dZ, dL, ds0};
    }
};

at::Tensor chunk_log_decay(const at::Tensor& w, int64_t n) {
    return ChunkLogDecayFunction::apply(w, n);
}

at::Tensor state_scan(const at::Tensor& Z, const at::Tensor& L,
                      const std::optional<at::Tensor>& s0) {
    const at::Tensor state = s0.has_value() ? s0->contiguous()
                                            : at::empty({0}, Z.options().dtype(at::kFloat));
    return StateScanFunction::apply(Z.contiguous(), L.contiguous(), state);
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
    m.def("chunk_log_decay", &chunk_log_decay,
          "time split: the total log decay of each of n chunks of w, (B, n, H, N) float32");
    m.def("state_scan", &state_scan,
          "time split: the state at each chunk's start from what each chunk adds (Z), the chunks' "
          "log decays (L) and the initial state or None, (B, n, H, N, N)");
}
