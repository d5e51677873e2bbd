// RePaint inpainting (models/diffusion/inpaint.h) on CUDA against the CPU reference: the
// same seed draws the same Philox numbers on both devices, so the two runs follow the same
// chain, and the only differences are f32 rounding in the ops (tanh, exp) of a denoiser
// built from engine ops. The known pixels are the image exactly on both devices.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "engine/ops/elementwise.h"
#include "models/diffusion/inpaint.h"
#include "support/gradcheck.h"

namespace ddpm::diffusion {
namespace {

TEST(InpaintGpu, MatchesTheCpuWithTheSameSeed) {
  DDPM_REQUIRE_CUDA();
  const DiffusionSchedule base(cosine_betas(100));
  // An eps "network" from engine ops, so it runs on either device: eps = 0.5 tanh(x) + 0.1.
  const DenoiseFn net = [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
    return add_scalar(scale(tanh(x), 0.5), 0.1);
  };
  const std::int64_t H = 8, W = 8, C = 3, N = 4;
  std::vector<double> image(static_cast<std::size_t>(H * W * C)), mask(static_cast<std::size_t>(H * W));
  for (std::size_t i = 0; i < image.size(); ++i) image[i] = std::sin(0.37 * double(i));
  for (std::int64_t y = 0; y < H; ++y)
    for (std::int64_t x = 0; x < W; ++x) mask[static_cast<std::size_t>(y * W + x)] = x < W / 2 ? 1.0 : 0.0;
  const Tensor known = Tensor::from_vector(image, {1, H, W, C});
  const Tensor m = Tensor::from_vector(mask, {1, H, W, 1});
  SamplerConfig cfg;
  cfg.respacing = "10";
  const RepaintConfig rp{2, 3};

  Generator g_cpu(17), g_gpu(17);
  const std::vector<double> a = inpaint(base, net, known, m, N, {}, cfg, rp, g_cpu, Device::cpu()).to_double_vector();
  const std::vector<double> b =
      inpaint(base, net, known, m, N, {}, cfg, rp, g_gpu, Device::cuda()).to(Device::cpu()).to_double_vector();
  EXPECT_EQ(g_cpu.offset(), g_gpu.offset());
  ASSERT_EQ(a.size(), b.size());
  double max_err = 0;
  for (std::size_t i = 0; i < a.size(); ++i) max_err = std::max(max_err, std::abs(a[i] - b[i]));
  // 26 network calls through x_0 clipping; f32 tanh/exp differ by a few ulp per op.
  EXPECT_LT(max_err, 1e-4) << "max |cpu - cuda| = " << max_err;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t p = 0; p < H * W; ++p) {
      if (mask[static_cast<std::size_t>(p)] == 0) continue;
      for (std::int64_t c = 0; c < C; ++c) {
        const std::size_t i = static_cast<std::size_t>((n * H * W + p) * C + c);
        ASSERT_EQ(b[i], static_cast<double>(static_cast<float>(image[static_cast<std::size_t>(p * C + c)])));
      }
    }
}

}  // namespace
}  // namespace ddpm::diffusion
