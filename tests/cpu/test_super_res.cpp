// Super-resolution models (models/diffusion/super_res.h, unet.h concat_channels): the
// degradation maps against independent computations (the engine's 2x average pool, the
// closed form of bilinear interpolation of a linear ramp, PyTorch's published 2x2 -> 4x4
// result), the conditioned closure under classifier-free guidance's doubled batch, and the
// UNet's config, JSON and diffusers export of a super-resolution model.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/resample.h"
#include "engine/rng.h"
#include "models/diffusion/sampler.h"
#include "models/diffusion/super_res.h"
#include "models/unet/model_io.h"
#include "support/tiny_unet.h"

namespace ddpm::diffusion {
namespace {

TEST(SuperRes, AreaDownsampleOfConstantBlocksIsTheBlockValue) {
  // 6x6 image of 3x3 blocks with values b(i, j, c) = 10 i + j + 0.5 c -> 2x2.
  std::vector<double> v;
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x)
      for (int c = 0; c < 2; ++c) v.push_back(10.0 * (y / 3) + (x / 3) + 0.5 * c);
  const Tensor low = area_downsample(Tensor::from_vector(v, {1, 6, 6, 2}), 2);
  ASSERT_EQ(low.shape(), (Shape{1, 2, 2, 2}));
  const std::vector<double> got = low.to_double_vector();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int c = 0; c < 2; ++c) EXPECT_DOUBLE_EQ(got[(i * 2 + j) * 2 + c], 10.0 * i + j + 0.5 * c);
}

TEST(SuperRes, AreaDownsampleByFourEqualsTwoTwoByTwoAveragePools) {
  Generator g(3);
  const Tensor x = randn({2, 16, 16, 3}, g, Device::cpu(), DType::f64);
  const std::vector<double> a = area_downsample(x, 4).to_double_vector();
  const std::vector<double> b = avg_pool2x(avg_pool2x(x)).to_double_vector();  // the engine's op
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-14);
  EXPECT_EQ(area_downsample(x.to(DType::f32), 4).dtype(), DType::f32);
}

TEST(SuperRes, BilinearUpsampleMatchesPyTorchOnTwoByTwo) {
  // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4),
  // mode="bilinear", align_corners=False), written out: source coordinates -0.25 (clamped
  // to 0), 0.25, 0.75, 1.25 (last tap clamped to pixel 1).
  const Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {1, 2, 2, 1});
  const std::vector<double> want{1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5,
                                 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0};
  const std::vector<double> got = bilinear_upsample(x, 4).to_double_vector();
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_DOUBLE_EQ(got[i], want[i]) << "element " << i;
}

TEST(SuperRes, BilinearUpsampleOfALinearRampIsTheRampAtTheClampedSourceCoordinate) {
  // x[i, j] = a i + b j + c on a 5x5 grid, upsampled to 15 (ratio 3) and 10 (ratio 2):
  // bilinear interpolation is exact on affine functions, so the output is the ramp at the
  // source coordinate s = (d + 1/2) L / S - 1/2 clamped to [0, L - 1] (edge replication).
  const int L = 5;
  const double a = 0.3, b = -0.7, c = 0.1;
  std::vector<double> v;
  for (int i = 0; i < L; ++i)
    for (int j = 0; j < L; ++j) v.push_back(a * i + b * j + c);
  for (int S : {10, 15}) {
    const std::vector<double> got = bilinear_upsample(Tensor::from_vector(v, {1, L, L, 1}), S).to_double_vector();
    auto src = [&](int d) { return std::min(double(L - 1), std::max(0.0, (d + 0.5) * L / S - 0.5)); };
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x)
        EXPECT_NEAR(got[static_cast<std::size_t>(y * S + x)], a * src(y) + b * src(x) + c, 1e-12)
            << "S " << S << " at " << y << "," << x;
  }
}

TEST(SuperRes, DegradationRejectsSizesThatDoNotFit) {
  const Tensor x = Tensor::zeros({1, 12, 12, 1});
  EXPECT_THROW(area_downsample(x, 5), ValueError);   // 5 does not divide 12
  EXPECT_THROW(area_downsample(x, 24), ValueError);  // larger
  EXPECT_THROW(area_downsample(Tensor::zeros({1, 12, 8, 1}), 4), ValueError);  // not square
  EXPECT_EQ(super_res_condition(x, 3).shape(), x.shape());
}

TEST(SuperRes, ConcatConditionRepeatsTheConditionForTheGuidanceBatch) {
  const std::int64_t M = 3, S = 4;
  Generator g(5);
  const Tensor cond = randn({M, S, S, 1}, g, Device::cpu(), DType::f64);
  const std::vector<double> cv = cond.to_double_vector();
  int calls = 0;
  std::int64_t max_rows = 0;
  DenoiseFn spy = [&](const Tensor& in, const std::vector<double>&, const std::vector<std::int64_t>&) {
    ++calls;
    EXPECT_EQ(in.dim(3), 2);  // x_t and the condition
    const std::int64_t n = in.dim(0);
    max_rows = std::max(max_rows, n);
    const std::vector<double> iv = in.to_double_vector();
    for (std::int64_t r = 0; r < n; ++r)  // row r carries the condition of image r mod M
      for (std::int64_t p = 0; p < S * S; ++p)
        EXPECT_EQ(iv[static_cast<std::size_t>((r * S * S + p) * 2 + 1)], cv[static_cast<std::size_t>((r % M) * S * S + p)]);
    return slice(in, -1, 0, 1);  // "predict" x_t itself as eps
  };
  DenoiseFn net = concat_condition(spy, cond);
  EXPECT_THROW(net(Tensor::zeros({4, S, S, 1}, DType::f64), std::vector<double>(4, 0.0), {}), ValueError);

  // Classifier-free guidance evaluates [x; x] with labels [y; null]: 2M rows per call.
  const DiffusionSchedule s(linear_betas(30));
  SamplerConfig sc;
  sc.respacing = "ddim5";
  sc.kind = SamplerConfig::Kind::ddim;
  sc.num_classes = 2;
  sc.guidance_scale = 3.0;
  Generator sg(1);
  const Tensor x = sample(s, net, {M, S, S, 1}, {0, 1, 0}, sc, sg, Device::cpu());
  EXPECT_EQ(x.shape(), (Shape{M, S, S, 1}));
  EXPECT_EQ(calls, 5);  // one doubled batch per step; the rejected call above never reached the net
  EXPECT_EQ(max_rows, 2 * M);
}

TEST(SuperRes, UNetTakesTheConditionChannelsAndRoundTripsItsConfig) {
  unet::UNetConfig cfg = testing::tiny_unet_config(8, 1);
  cfg.concat_channels = 1;
  cfg.low_res_size = 4;
  Generator g(0);
  unet::UNet net(cfg, g, Device::cpu());
  for (const auto& [name, p] : net.named_parameters())
    if (name == "conv_in.weight") EXPECT_EQ(p.shape(), (Shape{8, 3, 3, 2}));  // KRSC, I = 1 + 1
  const Tensor out = net.forward(Tensor::zeros({2, 8, 8, 2}), {1.0, 5.0}, {}, nn::Context{});
  EXPECT_EQ(out.shape(), (Shape{2, 8, 8, 1}));
  try {
    net.forward(Tensor::zeros({2, 8, 8, 1}), {1.0, 5.0}, {}, nn::Context{});
    ADD_FAILURE() << "x_t without its condition was accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("super-resolution"), std::string::npos) << e.what();
  }

  const nlohmann::json j = unet::config_to_json(cfg);
  EXPECT_EQ(j.at("super_res").at("low_res_size"), 4);
  const unet::UNetConfig back = unet::config_from_json(j);
  EXPECT_EQ(back.concat_channels, 1);
  EXPECT_EQ(back.low_res_size, 4);
  EXPECT_FALSE(unet::config_to_json(testing::tiny_unet_config(8, 1)).contains("super_res"));  // plain configs unchanged
  nlohmann::json partial = j;
  partial["super_res"].erase("concat_channels");
  EXPECT_THROW(unet::config_from_json(partial), IoError);

  // diffusers: UNet2DModel in_channels = C + concat, out_channels = C (2C with learned sigma).
  cfg.learn_sigma = true;
  nlohmann::json d = unet::config_to_diffusers(cfg);
  EXPECT_EQ(d.at("in_channels"), 2);
  EXPECT_EQ(d.at("out_channels"), 2);
  const unet::UNetConfig imported = unet::config_from_diffusers(d);
  EXPECT_EQ(imported.in_channels, 1);
  EXPECT_EQ(imported.concat_channels, 1);
  EXPECT_EQ(imported.low_res_size, 4);
  EXPECT_TRUE(imported.learn_sigma);
  // Without our key a C + C -> C UNet would silently lose its condition: refused.
  cfg.learn_sigma = false;
  d = unet::config_to_diffusers(cfg);
  EXPECT_EQ(d.at("out_channels"), 1);
  d.erase("_ddpm_super_res");
  EXPECT_THROW(unet::config_from_diffusers(d), ValueError);
}

TEST(SuperRes, UNetConfigValidationNamesTheProblem) {
  auto bad = [](int concat, int low) {
    unet::UNetConfig c = testing::tiny_unet_config(8, 3);
    c.concat_channels = concat;
    c.low_res_size = low;
    EXPECT_THROW(c.validate(), ValueError) << concat << " " << low;
  };
  bad(3, 0);   // a condition without its size
  bad(0, 4);   // a size without the condition
  bad(1, 4);   // the low-res image has 3 channels
  bad(3, 3);   // does not divide 8
  bad(3, 8);   // not smaller
  bad(-3, 4);
  unet::UNetConfig ok = testing::tiny_unet_config(8, 3);
  ok.concat_channels = 3;
  ok.low_res_size = 2;
  EXPECT_NO_THROW(ok.validate());
}

}  // namespace
}  // namespace ddpm::diffusion
