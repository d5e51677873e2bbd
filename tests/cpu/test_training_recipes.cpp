// The training recipes' pieces (models/diffusion/training_recipes.h): Min-SNR-gamma weights
// and offset noise. The trainer's use of them is checked in test_trainer.cpp.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/diffusion/training_recipes.h"

namespace ddpm::diffusion {
namespace {

// All three mean types must give the SAME weight in x_0 space, min(SNR_t, gamma): eps's
// loss is SNR ||x_0 - x_0^||^2 and v's (SNR + 1) ||x_0 - x_0^||^2.
TEST(MinSnr, EveryMeanTypeWeighsTheX0ErrorByTheClampedSnr) {
  const DiffusionSchedule s(linear_betas(1000));
  const Timesteps t{0, 10, 100, 300, 600, 999};
  const double gamma = 5.0;
  const std::vector<double> eps = min_snr_weights(s, ModelMeanType::eps, t, gamma);
  const std::vector<double> v = min_snr_weights(s, ModelMeanType::v, t, gamma);
  const std::vector<double> x0 = min_snr_weights(s, ModelMeanType::x0, t, gamma);
  for (std::size_t i = 0; i < t.size(); ++i) {
    const double ab = s.alphas_cumprod[static_cast<std::size_t>(t[i])], snr = ab / (1 - ab);
    const double want = std::min(snr, gamma);
    EXPECT_NEAR(eps[i] * snr, want, 1e-9 * want) << t[i];
    EXPECT_NEAR(v[i] * (snr + 1), want, 1e-9 * want) << t[i];
    EXPECT_NEAR(x0[i], want, 1e-12) << t[i];
  }
  // Low noise (SNR > gamma) is damped for eps; high noise (SNR < gamma) keeps weight 1.
  EXPECT_LT(eps[0], 1e-3);
  EXPECT_DOUBLE_EQ(eps[5], 1.0);
  EXPECT_THROW(min_snr_weights(s, ModelMeanType::eps, t, 0.0), ValueError);
}

TEST(OffsetNoise, AddsOneConstantPerSampleAndChannel) {
  Generator data(1);
  const Tensor n = randn({3, 4, 5, 2}, data, Device::cpu(), DType::f64);
  Generator off(2);
  EXPECT_EQ(offset_noise(n, 0.0, off).to_double_vector(), n.to_double_vector());
  EXPECT_EQ(off.offset(), 0u) << "no draw when off";

  Generator gen(3), copy = gen;
  const std::vector<double> got = offset_noise(n, 0.1, gen).to_double_vector();
  const std::vector<double> c = randn({3, 1, 1, 2}, copy, Device::cpu(), DType::f64).to_double_vector();
  const std::vector<double> nv = n.to_double_vector();
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t p = 0; p < 20; ++p)
      for (std::size_t ch = 0; ch < 2; ++ch) {
        const std::size_t j = (i * 20 + p) * 2 + ch;
        EXPECT_NEAR(got[j] - nv[j], 0.1 * c[i * 2 + ch], 1e-15);
      }
  EXPECT_EQ(gen.offset(), copy.offset());
}

}  // namespace
}  // namespace ddpm::diffusion
