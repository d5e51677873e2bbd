// models/unet/attention_control.cpp: see attention_control.h.
#include "models/unet/attention_control.h"

#include <cmath>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "engine/ops/reduce.h"
#include "engine/ops/transpose.h"
#include "models/unet/transformer.h"

namespace ddpm::unet {

namespace {

// [B, S, C] -> [B * heads, S, d]: head h of batch element b is matrix b * heads + h.
Tensor split_heads(const Tensor& x, int heads) {
  const std::int64_t B = x.dim(0), S = x.dim(1), C = x.dim(2), d = C / heads;
  return transpose(x.reshape({B, S, heads, d}), 1, 2).reshape({B * heads, S, d});
}

// The maximum over the last axis, kept as an axis of size 1: a pairwise tree of
// max(a, b) = b + max(a - b, 0) over halves (the engine has no max reduction), exact up to
// the rounding of b + (a - b). Only the softmax's shift m uses it, and softmax(s) =
// exp(s - m) / sum exp(s - m) for any m, so rounding in m changes nothing beyond rounding.
Tensor last_axis_max(Tensor x) {
  const int last = x.ndim() - 1;
  while (x.dim(last) > 1) {
    const std::int64_t n = x.dim(last), half = n / 2;
    const Tensor a = slice(x, last, 0, half), b = slice(x, last, half, half);
    Tensor m = add(b, clamp_min(sub(a, b), 0.0));
    if (n % 2 == 1) m = concat({m, slice(x, last, n - 1, 1)}, last);  // the odd one out waits a round
    x = m;
  }
  return x;
}

}  // namespace

Tensor attention_probabilities(const Tensor& q, const Tensor& k, int heads) {
  DDPM_CHECK(q.ndim() == 3 && k.ndim() == 3 && q.dim(0) == k.dim(0) && q.dim(2) == k.dim(2),
             "attention_probabilities: q " << shape_str(q.shape()) << " and k " << shape_str(k.shape())
                                           << " are not [B, Sq, C] and [B, Sk, C]");
  DDPM_CHECK(heads > 0 && q.dim(2) % heads == 0,
             "attention_probabilities: " << heads << " heads do not divide " << q.dim(2) << " channels");
  const std::int64_t B = q.dim(0), Sq = q.dim(1), Sk = k.dim(1), d = q.dim(2) / heads;
  // q and k each scaled by d^(-1/4), as the fused op does (attention.h).
  const double a = std::pow(static_cast<double>(d), -0.25);
  const Tensor scores = matmul(scale(split_heads(q, heads), a), scale(split_heads(k, heads), a),
                               /*transpose_a=*/false, /*transpose_b=*/true);  // [B heads, Sq, Sk]
  const Tensor e = exp(sub(scores, last_axis_max(scores)));                   // every value in (0, 1]
  return div(e, sum(e, {2}, /*keepdim=*/true)).reshape({B, heads, Sq, Sk});
}

Tensor apply_attention_probabilities(const Tensor& probs, const Tensor& v, int heads) {
  DDPM_CHECK(probs.ndim() == 4 && v.ndim() == 3 && probs.dim(0) == v.dim(0) && probs.dim(1) == heads &&
                 probs.dim(3) == v.dim(1) && v.dim(2) % heads == 0,
             "apply_attention_probabilities: probs " << shape_str(probs.shape()) << " and v " << shape_str(v.shape())
                                                     << " are not [B, " << heads << ", Sq, Sk] and [B, Sk, C]");
  const std::int64_t B = probs.dim(0), Sq = probs.dim(2), Sk = probs.dim(3), C = v.dim(2), d = C / heads;
  const Tensor out = matmul(probs.reshape({B * heads, Sq, Sk}), split_heads(v, heads));  // [B heads, Sq, d]
  return transpose(out.reshape({B, heads, Sq, d}), 1, 2).reshape({B, Sq, C});
}

int set_attention_controller(const nn::Module& root, AttentionController* controller) {
  int n = 0;
  // named_modules() leaves out the root itself: a CrossAttention given directly is set too.
  if (const auto* self = dynamic_cast<const CrossAttention*>(&root)) {
    self->set_controller(controller, "");
    ++n;
  }
  for (const auto& [name, m] : root.named_modules()) {
    if (auto* attn = dynamic_cast<CrossAttention*>(m)) {
      attn->set_controller(controller, name);
      ++n;
    }
  }
  return n;
}

ScopedAttentionController::ScopedAttentionController(const nn::Module& root, AttentionController& controller)
    : root_(root), sites_(set_attention_controller(root, &controller)) {}

ScopedAttentionController::~ScopedAttentionController() { set_attention_controller(root_, nullptr); }

}  // namespace ddpm::unet
