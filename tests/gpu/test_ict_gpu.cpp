// Improved consistency training (models/diffusion/consistency_training.h) on CUDA against the
// CPU reference: the pair loss of one training step (target without gradient, student on the
// tape) and its gradient with respect to the network's weight, and CM's multistep sampler.
// The same seed draws the same Philox numbers on both devices; the network is built from
// engine ops, so the only differences are f32 rounding.
#include <vector>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/consistency_training.h"
#include "support/gradcheck.h"

namespace ddpm::diffusion {
namespace {

// F(x_in; t) = tanh(x_in a) + 0.1 t with a weight a [1, 1, 1, C] (the "parameters").
DenoiseFn weighted_net(const Tensor& a) {
  return [a](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    Shape shape(static_cast<std::size_t>(x.ndim()), 1);
    shape[0] = static_cast<std::int64_t>(t.size());
    const Tensor tt = Tensor::from_vector(t, shape, x.dtype(), x.device());
    return add(tanh(mul(x, a)), scale(tt, 0.1));
  };
}

TEST(IctGpu, PairLossAndItsGradientMatchCpu) {
  DDPM_REQUIRE_CUDA();
  const IctConfig c;
  const std::vector<double> lo{0.002, 0.05, 0.6, 3.0, 40.0}, hi{0.01, 0.1, 0.9, 6.0, 80.0};
  const Tensor x0 = testing::random_tensor({5, 8, 8, 3}, 11, DType::f64, 0.5);
  const Tensor z = testing::random_tensor({5, 8, 8, 3}, 12);
  const Tensor a = testing::random_tensor({1, 1, 1, 3}, 13);
  for (ConsistencyDistance d : {ConsistencyDistance::pseudo_huber, ConsistencyDistance::l2}) {
    SCOPED_TRACE(consistency_distance_name(d));
    testing::CudaCheck check;
    check.forward = {1e-5, 1e-4};
    check.needs_grad = {false, false, true};
    check.names = {"x0", "z", "a"};
    testing::check_against_cpu(
        [&](const auto& in) {
          Tensor target;
          {
            NoGradGuard no_grad;  // theta^- = theta, no gradient (iCT)
            target = ict_consistency_function(weighted_net(in[2]), c, ict_noised(in[0], in[1], lo), lo, {});
          }
          const Tensor f = ict_consistency_function(weighted_net(in[2]), c, ict_noised(in[0], in[1], hi), hi, {});
          return ict_pair_loss(f, target, lo, hi, d);
        },
        {x0, z, a}, check);
  }
}

TEST(IctGpu, MultistepSamplingMatchesCpu) {
  DDPM_REQUIRE_CUDA();
  const IctConfig c;
  const Tensor a_cpu = testing::random_tensor({1, 1, 1, 3}, 14, DType::f32);
  const Tensor a_gpu = a_cpu.to(Device::cuda());
  const std::vector<double> taus = ict_sampling_sigmas(c, 3);
  Generator g_cpu(9), g_gpu(9);
  const Tensor x = ict_sample(weighted_net(a_cpu), c, {3, 8, 8, 3}, {}, taus, true, g_cpu, Device::cpu());
  const Tensor y = ict_sample(weighted_net(a_gpu), c, {3, 8, 8, 3}, {}, taus, true, g_gpu, Device::cuda());
  EXPECT_EQ(g_cpu.offset(), g_gpu.offset());
  EXPECT_LT(testing::relative_gap(x.to_double_vector(), y.to(Device::cpu()).to_double_vector()), 1e-4);
}

}  // namespace
}  // namespace ddpm::diffusion
