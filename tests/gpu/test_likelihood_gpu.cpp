// The elementwise ops added for the diffusion math (tanh, sigmoid, clamp, masks) and the
// diffusion formulas built on them (q_sample, KL, the discretized decoder, the hybrid
// loss) on CUDA against the CPU reference in f32, forward and backward, at UNet shapes.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/likelihood.h"
#include "support/gradcheck.h"

namespace ddpm::diffusion {
namespace {

using testing::all_close;
using testing::check_against_cpu;
using testing::CudaCheck;
using testing::random_tensor;

// Forward and the gradients of the inputs flagged in `needs_grad`, all within (atol, rtol);
// the output gradient is drawn from seed 78.
CudaCheck tolerance(double atol, double rtol, std::vector<bool> needs_grad) {
  CudaCheck check{{atol, rtol}};
  check.needs_grad = std::move(needs_grad);
  check.grad_seed = 78;
  return check;
}

const Shape kImg{8, 32, 32, 3};

TEST(DiffusionGpu, NewUnaryOps) {
  DDPM_REQUIRE_CUDA();
  Tensor x = random_tensor({2, 8, 8, 256}, 1, DType::f64, 3.0);
  // tanh/exp-based: CUDA's fp32 math functions are within a few ulp of glibc's.
  check_against_cpu([](const auto& in) { return tanh(in[0]); }, {x}, tolerance(1e-6, 1e-5, {true}));
  check_against_cpu([](const auto& in) { return sigmoid(in[0]); }, {x}, tolerance(1e-6, 1e-5, {true}));
  check_against_cpu([](const auto& in) { return clamp(in[0], -1.0, 1.0); }, {x}, tolerance(0, 0, {true}));
  check_against_cpu([](const auto& in) { return clamp_min(in[0], 0.5); }, {x}, tolerance(0, 0, {true}));
  check_against_cpu([](const auto& in) { return clamp_max(in[0], -0.5); }, {x}, tolerance(0, 0, {true}));
  check_against_cpu([](const auto& in) { return greater_than(in[0], 0.3); }, {x}, tolerance(0, 0, {false}));
  check_against_cpu([](const auto& in) { return less_than(in[0], -0.3); }, {x}, tolerance(0, 0, {false}));
}

TEST(DiffusionGpu, QSampleAndPosterior) {
  DDPM_REQUIRE_CUDA();
  DiffusionSchedule s(linear_betas(1000));
  const Timesteps t{0, 1, 10, 100, 400, 700, 998, 999};
  Tensor x0 = random_tensor(kImg, 2), eps = random_tensor(kImg, 3);
  check_against_cpu([&](const auto& in) { return q_sample(s, in[0], t, in[1]); }, {x0, eps},
                    tolerance(1e-6, 1e-5, {true, true}));
  check_against_cpu([&](const auto& in) { return q_posterior_mean_variance(s, in[0], in[1], t).mean; }, {x0, eps},
                    tolerance(1e-6, 1e-5, {true, true}));
  // x0 from eps multiplies by 1/sqrt(alpha_bar) ~ 160 at t = 999.
  check_against_cpu([&](const auto& in) { return predict_x0_from_eps(s, in[0], t, in[1]); }, {x0, eps},
                    tolerance(1e-4, 1e-5, {true, true}));
}

TEST(DiffusionGpu, KlAndDecoder) {
  DDPM_REQUIRE_CUDA();
  Tensor m1 = random_tensor(kImg, 4), m2 = random_tensor(kImg, 5);
  Tensor lv1 = random_tensor(kImg, 6, DType::f64, 0.5), lv2 = random_tensor({8, 1, 1, 1}, 7, DType::f64, 0.5);
  check_against_cpu([](const auto& in) { return normal_kl(in[0], in[1], in[2], in[3]); }, {m1, lv1, m2, lv2},
                    tolerance(1e-4, 1e-4, {true, true, true, true}));
  // Data on the 256 bin centres (including both edges), means near them.
  Tensor x = clamp(scale(random_tensor(kImg, 8), 0.6), -1.0, 1.0);
  std::vector<double> xv = x.to_double_vector();
  for (double& v : xv) v = -1.0 + 2.0 * std::round((v + 1.0) * 127.5) / 255.0;
  Tensor xb = Tensor::from_vector(xv, kImg);
  Tensor means = add(xb, scale(random_tensor(kImg, 9), 0.05));
  Tensor ls = add_scalar(scale(random_tensor(kImg, 10), 0.3), -3.0);
  // Log-probabilities and their gradients involve 1/p near the floor: a looser tolerance.
  check_against_cpu([&](const auto& in) { return discretized_gaussian_log_likelihood(in[0], in[1], in[2]); },
                    {xb, means, ls}, tolerance(1e-3, 1e-3, {false, true, true}));
}

TEST(DiffusionGpu, HybridLoss) {
  DDPM_REQUIRE_CUDA();
  DiffusionSchedule s(cosine_betas(1000));
  const Timesteps t{0, 3, 50, 200, 500, 800, 990, 999};
  Tensor x0 = clamp(random_tensor(kImg, 11, DType::f64, 0.5), -1.0, 1.0), noise = random_tensor(kImg, 12);
  Tensor x0c = x0.to(DType::f32), noisec = noise.to(DType::f32);
  Tensor xt = q_sample(s, x0c, t, noisec);
  Tensor x0g = x0c.to(Device::cuda()), ng = noisec.to(Device::cuda()), xtg = xt.to(Device::cuda());
  Tensor eps = random_tensor(kImg, 13), vv = scale(random_tensor(kImg, 14), 0.3);
  check_against_cpu(
      [&](const auto& in) {
        bool gpu = in[0].device().is_cuda();
        return hybrid_loss(s, in[0], in[1], gpu ? x0g : x0c, gpu ? xtg : xt, t, gpu ? ng : noisec);
      },
      {eps, vv}, tolerance(1e-3, 1e-3, {true, true}));
}

}  // namespace
}  // namespace ddpm::diffusion
