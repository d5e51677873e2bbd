// The UNet builder: the DDPM CIFAR-10 parameter count, diffusers-style names, the
// improved-DDPM / ADM options, zero-initialized outputs, and config errors.
#include <cmath>
#include <map>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/tiny_unet.h"

namespace ddpm::unet {
namespace {

std::map<std::string, Shape> shapes_of(const UNet& net) {
  std::map<std::string, Shape> m;
  for (const auto& [name, t] : net.named_parameters()) m[name] = t.shape();
  return m;
}

// Independent count of the DDPM CIFAR-10 network from the layer formulas (Ho et al. 2020,
// App. B): conv k x k: k*k*in*out + out; linear: in*out + out; group norm: 2C.
std::int64_t ddpm_cifar10_count() {
  auto conv = [](std::int64_t in, std::int64_t out, std::int64_t k) { return k * k * in * out + out; };
  auto lin = [](std::int64_t in, std::int64_t out) { return in * out + out; };
  auto gn = [](std::int64_t c) { return 2 * c; };
  const std::int64_t emb = 512;
  auto res = [&](std::int64_t in, std::int64_t out) {
    return gn(in) + conv(in, out, 3) + lin(emb, out) + gn(out) + conv(out, out, 3) + (in != out ? conv(in, out, 1) : 0);
  };
  auto attn = [&](std::int64_t c) { return gn(c) + 4 * lin(c, c); };
  std::int64_t n = conv(3, 128, 3) + lin(128, emb) + lin(emb, emb);
  // down: 128 (32x32), 256 (16x16, attention), 256 (8x8), 256 (4x4)
  n += res(128, 128) * 2 + conv(128, 128, 3);
  n += res(128, 256) + res(256, 256) + 2 * attn(256) + conv(256, 256, 3);
  n += 2 * res(256, 256) + conv(256, 256, 3);
  n += 2 * res(256, 256);
  n += 2 * res(256, 256) + attn(256);  // middle
  // up (skip channels in brackets): 4x4: 256+[256,256,256]; 8x8: 256+[256,256,256];
  // 16x16: 256+[256,256,128] with attention; 32x32: 256+[128], 128+[128,128]
  n += 3 * res(512, 256) + conv(256, 256, 3);
  n += 3 * res(512, 256) + conv(256, 256, 3);
  n += 2 * res(512, 256) + res(384, 256) + 3 * attn(256) + conv(256, 256, 3);
  n += res(384, 128) + 2 * res(256, 128);
  n += gn(128) + conv(128, 3, 3);
  return n;
}

TEST(UNet, DdpmCifar10HasThePapersParameterCount) {
  Generator gen(0);
  UNet net(UNetConfig::ddpm_cifar10(), gen, Device::cpu());
  std::int64_t n = net.num_parameters();
  EXPECT_EQ(n, ddpm_cifar10_count());
  // diffusers 0.42.1's UNet2DModel in this layout (scripts/bench_pytorch_unet.py builds it)
  // counts 35,746,307 parameters.
  EXPECT_EQ(n, 35746307);
  EXPECT_GT(n, 35650000);  // "35.7M" (Ho et al. 2020, Table 3 footnote / App. B)
  EXPECT_LT(n, 35750000);
}

TEST(UNet, ParameterNamesFollowDiffusersUNet2DModel) {
  Generator gen(0);
  UNet net(UNetConfig::ddpm_cifar10(), gen, Device::cpu());
  auto s = shapes_of(net);
  const std::pair<const char*, Shape> expected[] = {
      {"conv_in.weight", {128, 3, 3, 3}},
      {"time_embedding.linear_1.weight", {512, 128}},
      {"time_embedding.linear_2.bias", {512}},
      {"down_blocks.0.resnets.0.norm1.weight", {128}},
      {"down_blocks.0.resnets.0.time_emb_proj.weight", {128, 512}},
      {"down_blocks.0.downsamplers.0.conv.weight", {128, 3, 3, 128}},
      {"down_blocks.1.resnets.0.conv_shortcut.weight", {256, 1, 1, 128}},
      {"down_blocks.1.attentions.1.to_q.weight", {256, 256}},
      {"down_blocks.1.attentions.0.to_out.0.bias", {256}},
      {"down_blocks.1.attentions.0.group_norm.weight", {256}},
      {"mid_block.attentions.0.to_k.weight", {256, 256}},
      {"mid_block.resnets.1.conv2.weight", {256, 3, 3, 256}},
      {"up_blocks.0.resnets.2.conv1.weight", {256, 3, 3, 512}},
      {"up_blocks.0.upsamplers.0.conv.weight", {256, 3, 3, 256}},
      {"up_blocks.2.attentions.2.to_v.bias", {256}},
      {"up_blocks.3.resnets.0.conv_shortcut.weight", {128, 1, 1, 384}},
      {"conv_norm_out.bias", {128}},
      {"conv_out.weight", {3, 3, 3, 128}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(s.count(name)) << "missing " << name;
    EXPECT_EQ(s[name], shape) << name;
  }
  EXPECT_FALSE(s.count("up_blocks.3.upsamplers.0.conv.weight"));
  EXPECT_FALSE(s.count("down_blocks.3.downsamplers.0.conv.weight"));
}

TEST(UNet, OutputLayersAreZeroInitialized) {
  Generator gen(1);
  UNetConfig cfg;
  cfg.model_channels = 32;
  cfg.channel_mult = {1, 2};
  cfg.num_res_blocks = 1;
  cfg.attention_resolutions = {16};
  cfg.image_size = 16;
  UNet net(cfg, gen, Device::cpu());
  for (const auto& [name, t] : net.named_parameters()) {
    bool zero_init = name.find("conv2.") != std::string::npos || name.find("to_out.0.") != std::string::npos ||
                     name.rfind("conv_out.", 0) == 0;
    double max_abs = 0;
    for (double v : t.to_double_vector()) max_abs = std::max(max_abs, std::fabs(v));
    if (zero_init)
      EXPECT_EQ(max_abs, 0.0) << name;
    else if (name.find("norm") == std::string::npos)
      EXPECT_GT(max_abs, 0.0) << name;
  }
  // So a fresh network outputs exactly zero.
  Generator data(2);
  Tensor x = randn({2, 16, 16, 3}, data);
  Tensor y = net.forward(x, {10, 500}, {}, nn::Context{});
  EXPECT_EQ(y.shape(), (Shape{2, 16, 16, 3}));
  for (float v : y.to_vector()) ASSERT_EQ(v, 0.f);
}

UNetConfig small_config() {
  UNetConfig cfg = testing::tiny_unet_config(8, 1);
  cfg.attention_resolutions = {4};
  cfg.num_heads = 2;
  return cfg;
}

// Makes every parameter non-zero so every path carries gradient.
void perturb(UNet& net, std::uint64_t seed) {
  Generator g(seed);
  for (auto& [name, t] : net.named_parameters()) {
    Tensor noise = randn(t.shape(), g);
    float* p = t.data<float>();
    std::vector<float> nv = noise.to_vector();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * nv[static_cast<std::size_t>(i)];
  }
}

TEST(UNet, ImprovedAndAdmOptionsBuildAndRun) {
  UNetConfig cfg = small_config();
  cfg.learn_sigma = true;
  cfg.use_scale_shift_norm = true;
  cfg.resblock_updown = true;
  cfg.rescale_residual = true;
  cfg.num_head_channels = 4;
  cfg.num_classes = 3;
  cfg.time_embedding = TimestepEmbeddingStyle::improved;
  Generator gen(3);
  UNet net(cfg, gen, Device::cpu());
  auto s = shapes_of(net);
  EXPECT_EQ(s["down_blocks.0.resnets.0.time_emb_proj.weight"], (Shape{16, 32}));  // 2C = 16 for scale-shift
  EXPECT_TRUE(s.count("down_blocks.0.downsamplers.0.conv1.weight"));  // a resampling residual block
  EXPECT_TRUE(s.count("up_blocks.0.upsamplers.0.norm2.weight"));
  EXPECT_EQ(s["class_embedding.weight"], (Shape{4, 32}));  // 3 classes + the null label
  EXPECT_EQ(s["conv_out.weight"], (Shape{2, 3, 3, 8}));     // learned sigma: 2C outputs
  perturb(net, 4);
  Generator data(5);
  Tensor x = randn({2, 8, 8, 1}, data);
  Tensor y = net.forward(x, {0, 999}, {0, 3}, nn::Context{});
  EXPECT_EQ(y.shape(), (Shape{2, 8, 8, 2}));
  // Labels change the output; so does t.
  Tensor y2 = net.forward(x, {0, 999}, {1, 3}, nn::Context{});
  EXPECT_NE(y.to_vector(), y2.to_vector());
}

TEST(UNet, EveryParameterReceivesAGradient) {
  UNetConfig cfg = small_config();
  cfg.use_scale_shift_norm = true;
  cfg.num_classes = 2;
  Generator gen(6);
  UNet net(cfg, gen, Device::cpu());
  perturb(net, 7);
  Generator data(8);
  Tensor x = randn({2, 8, 8, 1}, data);
  sum(square(net.forward(x, {3, 700}, {0, 2}, nn::Context{}))).backward();
  for (const auto& [name, t] : net.named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name;
    double g2 = 0;
    for (double v : t.grad().to_double_vector()) g2 += v * v;
    EXPECT_GT(g2, 0.0) << name;
  }
}

TEST(UNet, TwentyEightPixelImagesRunWithThreeLevels) {
  // Fashion-MNIST's 28x28: 28 -> 14 -> 7, attention at 14 (or pad to 32 and use four levels).
  UNetConfig cfg = small_config();
  cfg.image_size = 28;
  cfg.channel_mult = {1, 2, 2};
  cfg.attention_resolutions = {14};
  Generator gen(9);
  UNet net(cfg, gen, Device::cpu());
  perturb(net, 10);
  Generator data(11);
  Tensor x = randn({2, 28, 28, 1}, data);
  Tensor y = net.forward(x, {5, 900}, {}, nn::Context{});
  EXPECT_EQ(y.shape(), (Shape{2, 28, 28, 1}));
  sum(square(y)).backward();
  EXPECT_TRUE(net.named_parameters().front().second.grad().defined());
}

TEST(UNet, ConfigErrorsAreClear) {
  Generator gen(0);
  UNetConfig cfg = small_config();
  cfg.image_size = 28;
  cfg.channel_mult = {1, 2, 2};  // 28 -> 14 -> 7: three levels are fine
  cfg.attention_resolutions = {14};
  EXPECT_NO_THROW(UNet(cfg, gen, Device::cpu()));
  cfg.channel_mult = {1, 2, 2, 2};  // 7 cannot be halved
  EXPECT_THROW(UNet(cfg, gen, Device::cpu()), ValueError);
  cfg = small_config();
  cfg.model_channels = 6;  // not divisible by 4 groups
  EXPECT_THROW(UNet(cfg, gen, Device::cpu()), ValueError);
  cfg = small_config();
  cfg.attention_resolutions = {5};
  EXPECT_THROW(UNet(cfg, gen, Device::cpu()), ValueError);
  cfg = small_config();
  cfg.num_heads = 3;
  EXPECT_THROW(UNet(cfg, gen, Device::cpu()), ValueError);
  UNet net(small_config(), gen, Device::cpu());
  EXPECT_THROW(net.forward(Tensor::zeros({2, 8, 8, 3}), {1, 2}, {}, nn::Context{}), ValueError);
  EXPECT_THROW(net.forward(Tensor::zeros({2, 8, 8, 1}), {1}, {}, nn::Context{}), ValueError);
  EXPECT_THROW(net.forward(Tensor::zeros({2, 8, 8, 1}), {1, 2}, {0, 1}, nn::Context{}), ValueError);
}

}  // namespace
}  // namespace ddpm::unet
