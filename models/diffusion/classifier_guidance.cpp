// models/diffusion/classifier_guidance.cpp: see classifier_guidance.h for the equations.
#include "models/diffusion/classifier_guidance.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

namespace ddpm::diffusion {

std::vector<std::int64_t> guidance_labels(const ClassifierGuidance& guidance,
                                          const std::vector<std::int64_t>& sampler_labels, std::int64_t n) {
  const std::vector<std::int64_t>& y = guidance.labels.empty() ? sampler_labels : guidance.labels;
  DDPM_CHECK(static_cast<std::int64_t>(y.size()) == n,
             "classifier guidance needs one target class per sample: "
                 << y.size() << " for " << n << " samples"
                 << (guidance.labels.empty() ? " (no guidance labels were given, and the sampler's labels are used: "
                                               "an unconditional model has none)"
                                             : ""));
  return y;
}

Tensor selected_log_probs(const Tensor& logits, const std::vector<std::int64_t>& labels) {
  DDPM_CHECK(logits.ndim() == 2, "classifier guidance: the classifier must return logits [N, K], got "
                                     << shape_str(logits.shape()));
  const std::int64_t n = logits.dim(0), k = logits.dim(1);
  DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
             "classifier guidance: " << labels.size() << " labels for logits " << shape_str(logits.shape()));
  // log softmax(z)[y] = z_y - m - log sum_k exp(z_k - m), m = max_k z_k: a constant per row
  // (host-built, off the tape; it cancels in the gradient) that keeps exp from overflowing.
  const std::vector<double> z = logits.detach().to_double_vector();
  std::vector<double> row_max(static_cast<std::size_t>(n)), onehot(static_cast<std::size_t>(n * k), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t y = labels[static_cast<std::size_t>(i)];
    DDPM_CHECK(y >= 0 && y < k, "classifier guidance: target class " << y << " of sample " << i
                                                                     << " is outside the classifier's [0, " << k
                                                                     << ")");
    row_max[static_cast<std::size_t>(i)] = *std::max_element(z.begin() + i * k, z.begin() + (i + 1) * k);
    onehot[static_cast<std::size_t>(i * k + y)] = 1.0;
  }
  const Tensor m = Tensor::from_vector(row_max, {n, 1}, logits.dtype(), logits.device());
  const Tensor onehot_t = Tensor::from_vector(onehot, {n, k}, logits.dtype(), logits.device());
  const Tensor shifted = sub(logits, m);                               // [N, K]
  const Tensor lse = log(sum(exp(shifted), {1}, /*keepdim=*/true));   // [N, 1]
  return sum(mul(sub(shifted, lse), onehot_t), {1});                  // [N]
}

Tensor classifier_log_prob_gradient(const ClassifierFn& classifier, const Tensor& x, double t,
                                    const std::vector<std::int64_t>& labels) {
  DDPM_CHECK(static_cast<bool>(classifier), "classifier guidance: no classifier was given");
  EnableGradGuard grad_on;  // the sampler runs under a NoGradGuard; this one gradient needs the tape
  const std::int64_t n = x.dim(0);
  // A fresh leaf with x's values: the tape starts here and never reaches the caller's x.
  Tensor leaf = x.detach().clone();
  leaf.set_requires_grad(true);
  const Tensor logits = classifier(leaf, std::vector<double>(static_cast<std::size_t>(n), t));
  DDPM_CHECK(logits.defined() && logits.ndim() == 2 && logits.dim(0) == n,
             "classifier guidance: the classifier returned "
                 << (logits.defined() ? shape_str(logits.shape()) : std::string("nothing")) << " for " << n
                 << " samples; expected logits [" << n << ", K]");
  const Tensor total = sum(selected_log_probs(logits, labels));  // scalar: sum_i log p(y_i | x_i)
  DDPM_CHECK(total.requires_grad(),
             "classifier guidance: the classifier's output does not depend on its input on the tape");
  total.backward();
  Tensor g = leaf.grad();
  DDPM_CHECK(g.defined(), "classifier guidance: backward did not reach x_t");
  return g.detach();
}

}  // namespace ddpm::diffusion
