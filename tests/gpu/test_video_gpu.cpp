// The video UNet's pieces on CUDA against the CPU reference (f32): the transpose op (a pure
// copy, so exact), and a whole video UNet (models/unet/unet.h num_frames, with temporal
// attention after every resnet) forward and backward, the output and every parameter's
// gradient. All parameters are overwritten with the same random values on both devices (the
// temporal to_out layers and conv_out start at zero and would hide most of the network).
// Both sides are fp32 with TF32 off; the tolerances are those of the UNet block tests
// (test_resnet_block_gpu.cpp): max |error| <= 1e-3 of the reference's largest value, NMSE
// <= 1e-8, while a missing temporal layer or a wrong frame order gives O(0.1). The second
// case adds the optional temporal layers (temporal convolutions, relative frame positions).
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/math_mode.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/transpose.h"
#include "engine/rng.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::check_against_cpu;
using testing::CudaCheck;
using testing::random_tensor;
using testing::within_scale;

const CudaCheck kExact = [] {
  CudaCheck c{{0, 0}};
  c.expect_cuda_output = true;
  return c;
}();

TEST(VideoGpu, TransposeMatchesCpuExactly) {
  DDPM_REQUIRE_CUDA();
  // The temporal attention's swap [N, F, H*W, C] <-> [N, H*W, F, C] (float4 path, C % 4 == 0).
  Tensor x = random_tensor({2, 4, 256, 64}, 1);
  check_against_cpu([](const auto& in) { return transpose(in[0], 1, 2); }, {x}, kExact);
  // Odd innermost size (scalar path), negative axes, adjacent and outermost axes.
  Tensor odd = random_tensor({3, 5, 7, 3}, 2);
  check_against_cpu([](const auto& in) { return transpose(in[0], -1, 0); }, {odd}, kExact);
  check_against_cpu([](const auto& in) { return transpose(in[0], 1, 2); }, {odd}, kExact);
  Tensor five = random_tensor({2, 3, 4, 5, 8}, 3);
  check_against_cpu([](const auto& in) { return transpose(in[0], 1, 3); }, {five}, kExact);
}

unet::UNetConfig video_config() {
  unet::UNetConfig cfg;
  cfg.image_size = 16;
  cfg.in_channels = 3;
  cfg.model_channels = 16;
  cfg.channel_mult = {1, 2};
  cfg.num_res_blocks = 1;
  cfg.attention_resolutions = {8};
  cfg.norm_groups = 4;
  cfg.num_heads = 2;
  cfg.dropout = 0;
  cfg.num_classes = 3;
  cfg.num_frames = 4;
  return cfg;
}

// One forward and backward of the video UNet `cfg` on both devices, every weight random, on
// clips of `frames` frames (the trained num_frames or another length, unet.h forward).
void expect_video_unet_matches_cpu(const unet::UNetConfig& cfg, std::int64_t frames = 4) {
  MathModeScope restore;
  set_allow_tf32(false);
  Generator g1(1), g2(1);
  unet::UNet cpu_net(cfg, g1, Device::cpu()), gpu_net(cfg, g2, Device::cuda());
  auto cpu_params = cpu_net.named_parameters(), gpu_params = gpu_net.named_parameters();
  ASSERT_EQ(cpu_params.size(), gpu_params.size());
  std::uint64_t seed = 5000;
  for (std::size_t i = 0; i < cpu_params.size(); ++i) {
    ASSERT_EQ(cpu_params[i].first, gpu_params[i].first);
    const Tensor v = random_tensor(cpu_params[i].second.shape(), ++seed, DType::f32, 0.1);
    cpu_params[i].second.copy_from(v);
    gpu_params[i].second.copy_from(v);
    cpu_params[i].second.set_requires_grad(true);
    gpu_params[i].second.set_requires_grad(true);
  }
  const Tensor x = random_tensor({2, frames, 16, 16, 3}, ++seed, DType::f32);
  const Tensor w = random_tensor({2, frames, 16, 16, 3}, ++seed, DType::f32);  // loss = sum(output * w)
  const std::vector<double> t = {17, 640};
  const std::vector<std::int64_t> labels = {2, 0};
  nn::Context ctx;
  const Tensor yc = cpu_net.forward(x, t, labels, ctx);
  const Tensor yg = gpu_net.forward(x.to(Device::cuda()), t, labels, ctx);
  ASSERT_EQ(yc.shape(), yg.shape());
  ASSERT_TRUE(yg.device().is_cuda());
  sum(mul(yc, w)).backward();
  sum(mul(yg, w.to(Device::cuda()))).backward();
  const double rel = 1e-3, nmse = 1e-8;
  EXPECT_TRUE(within_scale(yg.cpu(), yc, rel, nmse)) << "output";
  for (std::size_t i = 0; i < cpu_params.size(); ++i) {
    const Tensor gc = cpu_params[i].second.grad(), gg = gpu_params[i].second.grad();
    ASSERT_TRUE(gc.defined() && gg.defined()) << cpu_params[i].first;
    EXPECT_TRUE(within_scale(gg.cpu(), gc, rel, nmse)) << "gradient of " << cpu_params[i].first;
  }
}

TEST(VideoGpu, VideoUNetForwardAndBackwardMatchCpu) {
  DDPM_REQUIRE_CUDA();
  expect_video_unet_matches_cpu(video_config());
}

// The optional temporal layers: a TemporalConv after every resnet (temporal_conv.h: slice,
// concat and linear on the frame axis) and relative frame positions (temporal.h: the logit
// bias gathered by the embedding op and added inside the attention softmax).
TEST(VideoGpu, TemporalConvAndRelativePositionsMatchCpu) {
  DDPM_REQUIRE_CUDA();
  unet::UNetConfig cfg = video_config();
  cfg.temporal_conv = true;
  cfg.temporal_position = "relative";
  expect_video_unet_matches_cpu(cfg);
}

// Clips longer than trained (6 frames for num_frames 4) with R = 2: the bias gathers the
// clipped edge rows for the pairs 3 to 5 frames apart (test_video_length.cpp on the CPU).
TEST(VideoGpu, LongerClipsWithClippedRelativePositionsMatchCpu) {
  DDPM_REQUIRE_CUDA();
  unet::UNetConfig cfg = video_config();
  cfg.temporal_conv = true;
  cfg.temporal_position = "relative";
  cfg.temporal_max_distance = 2;
  expect_video_unet_matches_cpu(cfg, 6);
}

}  // namespace
}  // namespace ddpm
