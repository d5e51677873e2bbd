// engine/ops/linalg.cpp: forward and backward of matmul and linear.
//
// Both reduce to one call of the row-major GEMM (kernels/cpu/gemm.h, kernels/cuda/gemm.h):
// tensors are contiguous, so a [B, M, K] operand is B matrices of leading dimension K
// spaced M*K elements apart, and a shared 2-D operand has batch stride 0. The backward
// functions are matmuls themselves (grad mode is off there), with the transpose flags
// chosen so nothing is ever materialized transposed.
#include "engine/ops/linalg.h"

#include <algorithm>

#include "engine/ops/common.h"
#include "engine/ops/reduce.h"
#include "engine/profiler.h"
#include "kernels/cpu/gemm.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/gemm.h"
#endif

namespace ddpm {

namespace {

// One strided-batched product C = op(A) op(B) + beta C; see kernels/cpu/gemm.h.
struct GemmShape {
  bool ta = false, tb = false;
  std::int64_t M = 0, N = 0, K = 0;
  std::int64_t lda = 1, ldb = 1, ldc = 1;
  std::int64_t stride_a = 0, stride_b = 0, stride_c = 0, batch = 1;
};

void run_gemm(const char* op, GemmShape s, const Tensor& a, const Tensor& b, double beta, Tensor& c) {
  // A shared B with an untransposed A: the batch's rows stack into one [batch*M, K] matrix
  // (and C into [batch*M, N]), so a single large GEMM replaces `batch` small ones.
  if (s.batch > 1 && s.stride_b == 0 && !s.ta) {
    s.M *= s.batch;
    s.batch = 1;
  }
  if (c.device().is_cuda()) {
    DDPM_ON_CUDA(op, s.batch == 1 ? cuda::gemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.data<float>(), s.lda,
                                               b.data<float>(), s.ldb, static_cast<float>(beta), c.data<float>(),
                                               s.ldc, cuda::stream())
                                  : cuda::gemm_strided_batched(s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.data<float>(),
                                                               s.lda, s.stride_a, b.data<float>(), s.ldb, s.stride_b,
                                                               static_cast<float>(beta), c.data<float>(), s.ldc,
                                                               s.stride_c, s.batch, cuda::stream()));
  } else {
    ops::cpu_dispatch(op, c.dtype(), [&](auto t) {
      using T = decltype(t);
      if (s.batch == 1)
        cpu::gemm<T>(s.ta, s.tb, s.M, s.N, s.K, T(1), a.data<T>(), s.lda, b.data<T>(), s.ldb, static_cast<T>(beta),
                     c.data<T>(), s.ldc);
      else
        cpu::gemm_strided_batched<T>(s.ta, s.tb, s.M, s.N, s.K, T(1), a.data<T>(), s.lda, s.stride_a, b.data<T>(),
                                     s.ldb, s.stride_b, static_cast<T>(beta), c.data<T>(), s.ldc, s.stride_c,
                                     s.batch);
    });
  }
}

void check_operands(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  ops::check_float(op, a, a_name);
  ops::check_float(op, b, b_name);
  ops::check_same_device(op, a, a_name, b, b_name);
  ops::check_same_dtype(op, a, a_name, b, b_name);
}

// Collapses every axis but the last: [..., n] -> [rows, n] (a view; no copy).
Tensor as_rows(const Tensor& t) {
  std::int64_t n = t.dim(-1);
  Shape s = t.shape();
  s.pop_back();
  return t.reshape({shape_numel(s), n});
}

}  // namespace

// C = op(a) op(b);  dA-hat = G op(b)^T,  dB-hat = op(a)^T G, where X-hat = op(X).
// Undoing the transposes gives, with ta/tb the forward flags:
//   ta = false: dA = G op(b)^T      = matmul(G, b, false, !tb)
//   ta = true:  dA = (G op(b)^T)^T  = op(b) G^T = matmul(b, G, tb, true)
//   tb = false: dB = op(a)^T G      = matmul(a, G, !ta, false)
//   tb = true:  dB = (op(a)^T G)^T  = G^T op(a) = matmul(G, a, true, ta)
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  const char* op = "matmul";
  check_operands(op, a, "a", b, "b");
  DDPM_CHECK(a.ndim() == 2 || a.ndim() == 3, "matmul: 'a' must be a matrix [M, K] or a batch of matrices [B, M, K], "
                                             "got shape " << shape_str(a.shape()));
  DDPM_CHECK(b.ndim() == 2 || b.ndim() == 3, "matmul: 'b' must be a matrix [K, N] or a batch of matrices [B, K, N], "
                                             "got shape " << shape_str(b.shape()));
  const bool batched = a.ndim() == 3 || b.ndim() == 3;
  DDPM_CHECK(a.ndim() == 2 || b.ndim() == 2 || a.dim(0) == b.dim(0),
             "matmul: batch sizes differ: 'a' is " << shape_str(a.shape()) << " and 'b' is " << shape_str(b.shape()));
  const std::int64_t batch = a.ndim() == 3 ? a.dim(0) : (b.ndim() == 3 ? b.dim(0) : 1);

  GemmShape s;
  s.ta = transpose_a;
  s.tb = transpose_b;
  s.M = a.dim(transpose_a ? -1 : -2);
  s.K = a.dim(transpose_a ? -2 : -1);
  const std::int64_t k_b = b.dim(transpose_b ? -1 : -2);
  s.N = b.dim(transpose_b ? -2 : -1);
  DDPM_CHECK(s.K == k_b, "matmul: inner dimensions differ: 'a' "
                             << shape_str(a.shape()) << " (transpose_a=" << (transpose_a ? "true" : "false")
                             << ") has K=" << s.K << " but 'b' " << shape_str(b.shape())
                             << " (transpose_b=" << (transpose_b ? "true" : "false") << ") has K=" << k_b);
  s.lda = std::max<std::int64_t>(1, a.dim(-1));
  s.ldb = std::max<std::int64_t>(1, b.dim(-1));
  s.ldc = std::max<std::int64_t>(1, s.N);
  s.stride_a = a.ndim() == 3 ? s.M * s.K : 0;  // 0: shared by every matrix of the batch
  s.stride_b = b.ndim() == 3 ? s.K * s.N : 0;
  s.stride_c = s.M * s.N;
  s.batch = batch;

  Tensor out = Tensor::empty(batched ? Shape{batch, s.M, s.N} : Shape{s.M, s.N}, a.dtype(), a.device());
  OpScope scope("matmul", cost::gemm_flops(s.M, s.N, s.K, batch),
                cost::bytes(a.numel() + b.numel() + out.numel(), a.dtype()), a.device());
  run_gemm(op, s, a, b, 0.0, out);

  Tensor ad = a.detach(), bd = b.detach();
  const bool ta = transpose_a, tb = transpose_b;
  record(out, "matmul", {a, b}, [ad, bd, ta, tb](const Tensor& g, const std::vector<bool>& need) {
    // Each operand gradient is a product of the forward's size.
    OpScope scope("matmul.backward",
                  (int(need[0]) + int(need[1])) * 2.0 * static_cast<double>(g.numel()) *
                      static_cast<double>(ta ? ad.dim(-2) : ad.dim(-1)),
                  cost::bytes(g.numel() + 2 * (ad.numel() + bd.numel()), g.dtype()), g.device());
    // An operand shared across the batch (2-D while g is 3-D) receives the sum over the
    // batch of the per-matrix gradients.
    const bool shared_a = g.ndim() == 3 && ad.ndim() == 2;
    const bool shared_b = g.ndim() == 3 && bd.ndim() == 2;
    Tensor ga, gb;
    if (need[0]) {
      ga = ta ? matmul(bd, g, tb, true) : matmul(g, bd, false, !tb);
      if (shared_a) ga = sum(ga, {0});
    }
    if (need[1]) {
      if (shared_b && !ta) {
        // sum_i a_i^T g_i = A^T G with the batch's rows stacked: one GEMM, no [B, K, N] temporary.
        Tensor a2 = as_rows(ad), g2 = as_rows(g);
        gb = tb ? matmul(g2, a2, true, false) : matmul(a2, g2, true, false);
      } else {
        gb = tb ? matmul(g, ad, true, ta) : matmul(ad, g, !ta, false);
        if (shared_b) gb = sum(gb, {0});
      }
    }
    return std::vector<Tensor>{ga, gb};
  });
  return out;
}

// y = x W^T + b over x's rows:  dx = G W,  dW = G^T x,  db = sum over rows of G.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const char* op = "linear";
  check_operands(op, x, "x", weight, "weight");
  DDPM_CHECK(weight.ndim() == 2,
             "linear: 'weight' must be a matrix [out, in], got shape " << shape_str(weight.shape()));
  DDPM_CHECK(x.ndim() >= 1, "linear: 'x' must have a feature axis [..., in], got a scalar");
  const std::int64_t in = weight.dim(1), out_features = weight.dim(0);
  DDPM_CHECK(x.dim(-1) == in, "linear: 'x' " << shape_str(x.shape()) << " has " << x.dim(-1)
                                            << " features in its last axis but 'weight' " << shape_str(weight.shape())
                                            << " [out, in] expects in=" << in);
  if (bias.defined()) {
    check_operands(op, x, "x", bias, "bias");
    ops::check_shape(op, bias, "bias", {out_features});
  }
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Shape lead = x.shape();
  lead.pop_back();

  // y [rows, out] = x [rows, in] . W^T, W stored [out, in]: the transposed-B product.
  GemmShape s;
  s.tb = true;
  s.M = shape_numel(lead);
  s.N = out_features;
  s.K = in;
  s.lda = std::max<std::int64_t>(1, in);
  s.ldb = std::max<std::int64_t>(1, in);
  s.ldc = std::max<std::int64_t>(1, out_features);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  double beta = 0.0;
  OpScope scope("linear", cost::gemm_flops(s.M, s.N, s.K) + static_cast<double>(bias.defined() ? y.numel() : 0),
                cost::bytes(x.numel() + weight.numel() + (bias.defined() ? bias.numel() : 0) + y.numel(), x.dtype()),
                x.device());
  if (bias.defined()) {
    // Bias first, then the product accumulates onto it (beta = 1): one pass over y.
    if (y.device().is_cuda()) {
      DDPM_ON_CUDA(op, cuda::fill_rows(y.data<float>(), bias.data<float>(), s.M, s.N, s.ldc, cuda::stream()));
    } else {
      ops::cpu_dispatch(op, y.dtype(), [&](auto t) {
        using T = decltype(t);
        cpu::fill_rows<T>(y.data<T>(), bias.data<T>(), s.M, s.N, s.ldc);
      });
    }
    beta = 1.0;
  }
  run_gemm(op, s, x, weight, beta, y);

  Tensor xd = x.detach(), wd = weight.detach();
  record(y, "linear", {x, weight, bias}, [xd, wd](const Tensor& g, const std::vector<bool>& need) {
    // dx = G W and dW = G^T x are GEMMs of the forward's size; db reads G once.
    OpScope scope("linear.backward",
                  (int(need[0]) + int(need[1])) * cost::gemm_flops(g.numel() / wd.dim(0), wd.dim(0), wd.dim(1)) +
                      static_cast<double>(g.numel()),
                  cost::bytes(g.numel() + 2 * (xd.numel() + wd.numel()) + wd.dim(0), g.dtype()), g.device());
    Tensor g2 = as_rows(g);  // [rows, out]
    Tensor gx, gw, gb;
    if (need[0]) gx = matmul(g2, wd).reshape(xd.shape());   // [rows, out] x [out, in]
    if (need[1]) gw = matmul(g2, as_rows(xd), true, false);  // [out, rows] x [rows, in]
    if (need.size() > 2 && need[2]) gb = sum(g2, {0});       // [out]
    return std::vector<Tensor>{gx, gw, gb};
  });
  return y;
}

}  // namespace ddpm
