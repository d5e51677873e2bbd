// The parameter slab, AdamW, gradient-norm clipping and EMA on CUDA against the CPU
// reference (f32 on both), on a slab of about a million parameters shaped like UNet weights.
// AdamW and EMA use explicitly rounded (unfused) arithmetic on the device, so they agree with
// the CPU loops to the last bit in practice; the tolerances below still leave an ulp or two.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::all_close;
using testing::random_tensor;

// ~1.04M parameters: conv weights (KRSC), a linear layer, norms and biases of odd sizes.
NamedTensors unet_like_params(std::uint64_t seed) {
  return {{"conv_in.weight", random_tensor({128, 3, 3, 3}, seed, DType::f32, 0.1)},
          {"conv_in.bias", random_tensor({128}, seed + 1, DType::f32, 0.1)},
          {"down.0.conv1.weight", random_tensor({256, 3, 3, 128}, seed + 2, DType::f32, 0.05)},
          {"down.0.norm1.weight", random_tensor({256}, seed + 3, DType::f32)},
          {"time_emb.linear.weight", random_tensor({512, 1000}, seed + 4, DType::f32, 0.05)},
          {"time_emb.linear.bias", random_tensor({1000}, seed + 5, DType::f32)},
          {"out.bias", random_tensor({3}, seed + 6, DType::f32)}};
}

// The same parameters twice: one slab on the CPU, one moved to CUDA.
struct Pair {
  ParameterSlab cpu, gpu;
  Pair() : cpu(unet_like_params(1)), gpu(unet_like_params(1)) { gpu.to(Device::cuda()); }
};

// Same random gradients in both slabs (random_tensor is Philox: the same on every run).
void set_gradients(Pair& s, std::uint64_t seed, double scale = 1.0) {
  Tensor g = random_tensor({s.cpu.slab_numel()}, seed, DType::f32, scale);
  Tensor gc = s.cpu.grads(), gg = s.gpu.grads();
  gc.copy_from(g);
  gg.copy_from(g);
}

TEST(ParameterSlabGpu, MovesToCudaAndBackwardLandsInTheSlab) {
  DDPM_REQUIRE_CUDA();
  Pair s;
  EXPECT_GT(s.cpu.numel(), 800000);  // 811,755: many blocks per kernel
  EXPECT_TRUE(s.gpu.values().device().is_cuda());
  EXPECT_TRUE(all_close(s.gpu.values(), s.cpu.values(), 0, 0));
  const std::int64_t n_entries = static_cast<std::int64_t>(s.gpu.size());
  for (std::int64_t i = 0; i < n_entries; ++i) {
    const SlabEntry& e = s.gpu.entry(static_cast<std::size_t>(i));
    EXPECT_TRUE(e.value.device().is_cuda()) << e.name;  // the model's handles followed the slab
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(e.value.raw_data()) % ParameterSlab::kAlignBytes, 0u) << e.name;
    EXPECT_EQ(e.value.grad().raw_data(), e.grad.raw_data()) << e.name;
  }
  // L = sum(w * x) + sum(b * b) on both devices: dL/dw = x, dL/db = 2 b.
  Tensor x = random_tensor({512, 1000}, 7, DType::f32);
  for (ParameterSlab* slab : {&s.cpu, &s.gpu}) {
    const Device d = slab->device();
    Tensor w = slab->at("time_emb.linear.weight"), b = slab->at("time_emb.linear.bias");
    add(sum(mul(w, x.to(d))), sum(mul(b, b))).backward();
  }
  EXPECT_TRUE(all_close(s.gpu.grads(), s.cpu.grads(), 0, 0));
  EXPECT_TRUE(all_close(s.gpu.at("time_emb.linear.weight").grad(), x, 0, 0));
  s.gpu.zero_grad();
  EXPECT_EQ(grad_norm(s.gpu), 0.0);
  // And back to the CPU.
  s.gpu.to(Device::cpu());
  EXPECT_TRUE(all_close(s.gpu.values(), s.cpu.values(), 0, 0));
  EXPECT_TRUE(s.gpu.at("out.bias").device().is_cpu());
}

TEST(AdamWGpu, MatchesCpuOverSeveralSteps) {
  DDPM_REQUIRE_CUDA();
  Pair s;
  AdamWConfig cfg{2e-4, 0.9, 0.999, 1e-8, 0.01};
  AdamW opt_c(s.cpu, cfg), opt_g(s.gpu, cfg);
  for (int step = 0; step < 5; ++step) {
    set_gradients(s, 100 + step, 0.01 * (step + 1));
    const double lr = 2e-4 * (step + 1) / 5.0;  // warm-up ramp
    opt_c.set_lr(lr);
    opt_g.set_lr(lr);
    opt_c.step();
    opt_g.step();
  }
  EXPECT_EQ(opt_g.step_count(), 5);
  EXPECT_TRUE(all_close(s.gpu.values(), s.cpu.values(), 1e-7, 1e-6)) << "parameters";
  EXPECT_TRUE(all_close(opt_g.exp_avg(), opt_c.exp_avg(), 1e-9, 1e-6)) << "m";
  EXPECT_TRUE(all_close(opt_g.exp_avg_sq(), opt_c.exp_avg_sq(), 1e-12, 1e-6)) << "v";
}

TEST(ClipGradNormGpu, MatchesCpuWithAndWithoutClipping) {
  DDPM_REQUIRE_CUDA();
  Pair s;
  set_gradients(s, 200);
  // sum of ~1M float squares in double: the two summation orders agree to ~1e-15.
  const double norm_c = grad_norm(s.cpu), norm_g = grad_norm(s.gpu);
  EXPECT_NEAR(norm_g, norm_c, 1e-12 * norm_c);
  EXPECT_NEAR(norm_c, std::sqrt(static_cast<double>(s.cpu.numel())), 0.01 * norm_c);  // N(0,1) entries
  // No clipping: the gradients are untouched.
  EXPECT_NEAR(clip_grad_norm(s.gpu, 2 * norm_c), norm_c, 1e-12 * norm_c);
  EXPECT_TRUE(all_close(s.gpu.grads(), s.cpu.grads(), 0, 0));
  // Clipping to 1.
  const double before_c = clip_grad_norm(s.cpu, 1.0), before_g = clip_grad_norm(s.gpu, 1.0);
  EXPECT_NEAR(before_g, before_c, 1e-12 * before_c);
  EXPECT_TRUE(all_close(s.gpu.grads(), s.cpu.grads(), 1e-12, 1e-6));
  EXPECT_NEAR(grad_norm(s.gpu), 1.0, 1e-5);
  // A NaN gradient makes the norm NaN and leaves the gradients alone.
  Tensor g = s.gpu.at("out.bias").grad();
  g.copy_from(Tensor::from_vector(std::vector<float>{1.f, std::numeric_limits<float>::quiet_NaN(), 0.f}, {3}));
  EXPECT_TRUE(std::isnan(clip_grad_norm(s.gpu, 1.0)));
}

TEST(EmaGpu, MatchesCpuThroughWarmupAndSwap) {
  DDPM_REQUIRE_CUDA();
  Pair s;
  Ema ema_c(s.cpu, 0.9999), ema_g(s.gpu, 0.9999);
  for (int n = 0; n < 5; ++n) {
    Tensor p = random_tensor({s.cpu.slab_numel()}, 300 + n, DType::f32);
    Tensor vc = s.cpu.values(), vg = s.gpu.values();
    vc.copy_from(p);
    vg.copy_from(p);
    EXPECT_EQ(ema_c.update(s.cpu, n), ema_g.update(s.gpu, n));
  }
  EXPECT_TRUE(all_close(ema_g.values(), ema_c.values(), 1e-7, 1e-6));
  ema_c.swap(s.cpu);
  ema_g.swap(s.gpu);
  EXPECT_TRUE(all_close(s.gpu.values(), s.cpu.values(), 1e-7, 1e-6));
  ema_g.copy_to(s.gpu);
  EXPECT_TRUE(all_close(s.gpu.values(), ema_g.values(), 0, 0));
}

}  // namespace
}  // namespace ddpm
