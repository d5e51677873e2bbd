// engine/ops/attention.cpp: checks, dispatch and the tape node of the attention core.
// The equations, layout and saved-tensor trade-off are in attention.h.
#include "engine/ops/attention.h"

#include "engine/ops/common.h"
#include "engine/profiler.h"
#include "kernels/cpu/attention.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/attention.h"
#endif

namespace ddpm {

int attention_heads(std::int64_t channels, int num_heads, int num_head_channels) {
  if (num_head_channels > 0) {
    DDPM_CHECK(channels % num_head_channels == 0, "attention: " << channels
                                                                << " channels do not split into heads of "
                                                                << num_head_channels << " channels");
    return static_cast<int>(channels / num_head_channels);
  }
  DDPM_CHECK(num_heads >= 1, "attention: the number of heads must be at least 1, got " << num_heads);
  DDPM_CHECK(channels % num_heads == 0,
             "attention: " << channels << " channels do not split into " << num_heads << " heads");
  return num_heads;
}

namespace {

// Both overloads: `bias` undefined is the plain op (no bias pointer reaches the kernels).
Tensor attention_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, int num_heads,
                      bool cross) {
  const char* op = cross ? "cross_attention" : "attention";
  const char* op_backward = cross ? "cross_attention.backward" : "attention.backward";
  ops::check_float(op, q, "q");
  ops::check_float(op, k, "k");
  ops::check_float(op, v, "v");
  ops::check_same_device(op, q, "q", k, "k");
  ops::check_same_device(op, q, "q", v, "v");
  ops::check_same_dtype(op, q, "q", k, "k");
  ops::check_same_dtype(op, q, "q", v, "v");
  DDPM_CHECK(q.ndim() == 3, "attention: 'q' must be [B, Sq, C] (query tokens, e.g. Sq = H*W), got shape "
                                 << shape_str(q.shape()));
  DDPM_CHECK(k.ndim() == 3 && k.dim(0) == q.dim(0) && k.dim(2) == q.dim(2),
             "attention: 'k' must be [B, Sk, C] with the B = " << q.dim(0) << " and C = " << q.dim(2)
                                                               << " of 'q' " << shape_str(q.shape()) << ", got shape "
                                                               << shape_str(k.shape()));
  DDPM_CHECK(v.shape() == k.shape(), "attention: 'v' must have the shape of 'k' " << shape_str(k.shape())
                                                                                  << " (one value per key), got "
                                                                                  << shape_str(v.shape()));
  const std::int64_t B = q.dim(0), Sq = q.dim(1), Sk = k.dim(1), C = q.dim(2);
  DDPM_CHECK(Sq >= 1 && C >= 1, "attention: 'q' needs at least one token and one channel, got shape "
                                    << shape_str(q.shape()));
  DDPM_CHECK(Sk >= 1, "attention: 'k' and 'v' need at least one token, got shape " << shape_str(k.shape()));
  DDPM_CHECK(num_heads >= 1, "attention: num_heads must be at least 1, got " << num_heads);
  DDPM_CHECK(C % num_heads == 0, "attention: num_heads " << num_heads << " does not divide the " << C
                                                         << " channels of 'q' (shape " << shape_str(q.shape())
                                                         << ")");
  const std::int64_t H = num_heads;
  const bool biased = bias.defined();
  if (biased) {
    ops::check_float(op, bias, "bias");
    ops::check_same_device(op, q, "q", bias, "bias");
    ops::check_same_dtype(op, q, "q", bias, "bias");
    DDPM_CHECK(bias.ndim() == 3 && bias.dim(0) == H && bias.dim(1) == Sq && bias.dim(2) == Sk,
               "attention: the logit 'bias' must be [heads, Sq, Sk] = [" << H << ", " << Sq << ", " << Sk
                                                                      << "] (one score per head, query and key), got "
                                                                      << shape_str(bias.shape()));
  }

  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty({B, H, Sq}, q.dtype(), q.device());  // log-sum-exp of each score row
  // Scores Q K^T and the product P V: 2 B Sq Sk C each; ideal traffic is that of a fused kernel.
  OpScope scope(op,
                4.0 * static_cast<double>(B) * static_cast<double>(Sq) * static_cast<double>(Sk) *
                    static_cast<double>(C),
                cost::bytes(2 * q.numel() + 2 * k.numel() + lse.numel() + (biased ? bias.numel() : 0), q.dtype()),
                q.device());
  if (q.device().is_cuda()) {
    DDPM_ON_CUDA(op, cuda::attention_forward(q.data<float>(), k.data<float>(), v.data<float>(), out.data<float>(),
                                             lse.data<float>(), B, Sq, Sk, C, H, cuda::cublas(), cuda::stream(),
                                             biased ? bias.data<float>() : nullptr));
  } else {
    ops::cpu_dispatch(op, q.dtype(), [&](auto t) {
      using T = decltype(t);
      cpu::attention_forward(q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(), lse.data<T>(), B, Sq, Sk, C, H,
                             biased ? bias.data<T>() : nullptr);
    });
  }

  Tensor qd = q.detach(), kd = k.detach(), vd = v.detach();
  Tensor bd = biased ? bias.detach() : Tensor();
  std::vector<Tensor> inputs{q, k, v};
  if (biased) inputs.push_back(bias);
  record(out, op, inputs, [qd, kd, vd, bd, lse, H, op_backward](const Tensor& g, const std::vector<bool>&) {
    const std::int64_t B = qd.dim(0), Sq = qd.dim(1), Sk = kd.dim(1), C = qd.dim(2);
    // Recomputed scores, dV, dP, dQ, dK: five products of 2 B Sq Sk C each.
    OpScope scope(op_backward,
                  10.0 * static_cast<double>(B) * static_cast<double>(Sq) * static_cast<double>(Sk) *
                      static_cast<double>(C),
                  cost::bytes(4 * qd.numel() + 4 * kd.numel() + lse.numel() + (bd.defined() ? 2 * bd.numel() : 0),
                              qd.dtype()),
                  qd.device());
    // One pass produces all three gradients; computing fewer would save little.
    Tensor dq = Tensor::empty(qd.shape(), qd.dtype(), qd.device());
    Tensor dk = Tensor::empty(kd.shape(), kd.dtype(), kd.device());
    Tensor dv = Tensor::empty(kd.shape(), kd.dtype(), kd.device());
    const bool biased = bd.defined();
    Tensor dbias = biased ? Tensor::empty(bd.shape(), bd.dtype(), bd.device()) : Tensor();  // [heads, Sq, Sk]
    if (qd.device().is_cuda()) {
      DDPM_ON_CUDA("attention backward",
                   cuda::attention_backward(qd.data<float>(), kd.data<float>(), vd.data<float>(), lse.data<float>(),
                                            g.data<float>(), dq.data<float>(), dk.data<float>(), dv.data<float>(), B,
                                            Sq, Sk, C, H, cuda::cublas(), cuda::stream(),
                                            biased ? bd.data<float>() : nullptr,
                                            biased ? dbias.data<float>() : nullptr));
    } else {
      ops::cpu_dispatch("attention backward", qd.dtype(), [&](auto t) {
        using T = decltype(t);
        cpu::attention_backward(qd.data<T>(), kd.data<T>(), vd.data<T>(), lse.data<T>(), g.data<T>(), dq.data<T>(),
                                dk.data<T>(), dv.data<T>(), B, Sq, Sk, C, H, biased ? bd.data<T>() : nullptr,
                                biased ? dbias.data<T>() : nullptr);
      });
    }
    if (biased) return std::vector<Tensor>{dq, dk, dv, dbias};
    return std::vector<Tensor>{dq, dk, dv};
  });
  return out;
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int num_heads, bool cross) {
  return attention_impl(q, k, v, Tensor(), num_heads, cross);
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, int num_heads, bool cross) {
  DDPM_CHECK(bias.defined(), "attention: the logit 'bias' is an undefined tensor; call attention without it");
  return attention_impl(q, k, v, bias, num_heads, cross);
}

}  // namespace ddpm
