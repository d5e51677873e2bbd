// models/diffusion/reconstruction_guidance.cpp: see reconstruction_guidance.h.
#include "models/diffusion/reconstruction_guidance.h"

#include <cmath>
#include <memory>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/rng.h"

namespace ddpm::diffusion {

namespace {

// One value per sample as [N, 1, 1, 1, 1], to scale clips [N, F, H, W, C].
Tensor per_clip(const std::vector<double>& v, const Tensor& like) {
  return Tensor::from_vector(v, {static_cast<std::int64_t>(v.size()), 1, 1, 1, 1}, like.dtype(), like.device());
}

}  // namespace

DenoiseFn reconstruction_guided(const DenoiseFn& net, const DiffusionSchedule& s, const ReconstructionGuidance& g) {
  DDPM_CHECK(g.known.defined() && g.known.ndim() == 5 && g.known.dim(1) >= 1,
             "reconstruction guidance: the known frames must be [N, K, H, W, C], got "
                 << (g.known.defined() ? shape_str(g.known.shape()) : std::string("none")));
  DDPM_CHECK(std::isfinite(g.weight) && g.weight >= 0,
             "reconstruction guidance: the weight w_r must be >= 0, got " << g.weight);
  auto gen = std::make_shared<Generator>(g.seed);
  return [net, &s, g, gen](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels) {
    const std::int64_t n = x.dim(0), K = g.known.dim(1);
    DDPM_CHECK(x.ndim() == 5 && g.known.dim(0) == n && K < x.dim(1) && g.known.dim(2) == x.dim(2) &&
                   g.known.dim(3) == x.dim(3) && g.known.dim(4) == x.dim(4),
               "reconstruction guidance: known frames " << shape_str(g.known.shape()) << " do not lead clips "
                                                        << shape_str(x.shape()));
    const std::int64_t F = x.dim(1);
    Timesteps ti;
    std::vector<double> alpha(static_cast<std::size_t>(n)), sigma(alpha.size());
    for (std::size_t i = 0; i < t.size(); ++i) {
      const auto k = static_cast<std::int64_t>(std::llround(t[i]));
      DDPM_CHECK(static_cast<double>(k) == t[i] && k >= 0 && k < s.num_timesteps(),
                 "reconstruction guidance: timestep " << t[i] << " is not a whole step of the schedule");
      ti.push_back(k);
      alpha[i] = s.sqrt_alphas_cumprod[static_cast<std::size_t>(k)];
      sigma[i] = s.sqrt_one_minus_alphas_cumprod[static_cast<std::size_t>(k)];
      DDPM_CHECK(alpha[i] > 0 && sigma[i] > 0, "reconstruction guidance: step " << k
                                                   << " has alpha_t or sigma_t = 0 (zero terminal SNR); no x_0 estimate");
    }
    // Replacement: the known frames noised to this step lead the clip the network sees.
    const Tensor noised = q_sample(s, g.known, ti, randn(g.known.shape(), *gen, x.device(), x.dtype()));
    const Tensor z = concat({noised, slice(x, 1, K, F - K)}, 1);

    // The network's x_0 estimate on the tape from a fresh leaf, and grad_z ||x^a - x^^a||^2.
    Tensor out, x0_hat, grad;
    {
      EnableGradGuard grad_on;
      Tensor leaf = z.detach().clone();
      leaf.set_requires_grad(true);
      out = net(leaf, t, labels);
      const Tensor pred = g.learned_sigma ? split_learned_variance(out).first : out;
      x0_hat = x0_from_prediction(s, g.mean_type, pred, leaf, ti);
      if (g.weight > 0) {
        sum(square(sub(slice(x0_hat, 1, 0, K), g.known))).backward();
        grad = leaf.grad();
        DDPM_CHECK(grad.defined(), "reconstruction guidance: backward did not reach x_t (the network's output does "
                                   "not depend on its input on the tape)");
      }
    }
    Tensor x0_tilde = x0_hat.detach();
    if (g.weight > 0) {  // eq. 7, on the new frames only
      std::vector<double> step(alpha.size());
      for (std::size_t i = 0; i < step.size(); ++i) step[i] = g.weight * alpha[i] / 2;
      const Tensor grad_b = concat({Tensor::zeros(g.known.shape(), x.dtype(), x.device()),
                                    slice(grad.detach(), 1, K, F - K)}, 1);
      x0_tilde = sub(x0_tilde, mul(grad_b, per_clip(step, x)));
    }
    // eps~ = (z_t - alpha_t x~_0) / sigma_t, then the model's own parameterisation of (x~_0, eps~).
    std::vector<double> inv_sigma(sigma.size());
    for (std::size_t i = 0; i < sigma.size(); ++i) inv_sigma[i] = 1.0 / sigma[i];
    const Tensor eps_tilde = mul(sub(z, mul(x0_tilde, per_clip(alpha, x))), per_clip(inv_sigma, x));
    const Tensor guided = mean_type_target(s, g.mean_type, x0_tilde, eps_tilde, ti);
    if (!g.learned_sigma) return guided;
    return concat({guided, split_learned_variance(out.detach()).second}, -1);
  };
}

}  // namespace ddpm::diffusion
