// Relative frame positions in the temporal attention (models/unet/temporal.h, UNetConfig::
// temporal_position "relative"; Ho et al. 2022 sec. 3, the bias form of Shaw et al. 2018 /
// T5). What is checked: the bias table gather B[clip(j - i, -R, R) + R, h] against a loop
// (with clipping) and its gradient by finite differences; the block's parameter and its
// gradient by finite differences in double; with B = 0 the block is permutation
// equivariant over the frames (to_out and every other weight perturbed), with B != 0 it is
// not; a relative video UNet: the same weights as the sinusoid one plus the zero tables,
// a fresh model equal to the image model frame by frame, forward and backward reaching
// every table, one-frame clips; config.json round trip and the errors.
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/unet/model_io.h"
#include "models/unet/temporal.h"
#include "models/unet/unet.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::unet {
namespace {

using testing::param;
using testing::random_tensor;

void perturb(const nn::Module& m, std::uint64_t seed, bool keep_relative_bias) {
  for (auto [name, p] : m.named_parameters()) {
    if (keep_relative_bias && name.find("relative_bias") != std::string::npos) continue;
    p.copy_from(random_tensor(p.shape(), seed++, p.dtype(), 0.3));
  }
}

Tensor relative_bias_of(const nn::Module& m) {
  for (const auto& [name, p] : m.named_parameters())
    if (name == "relative_bias") return p;
  return Tensor();
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
  EXPECT_EQ(av.size(), bv.size());
  double m = 0;
  for (std::size_t i = 0; i < av.size() && i < bv.size(); ++i) m = std::max(m, std::fabs(av[i] - bv[i]));
  return m;
}

TEST(RelativePosition, BiasTableGatherMatchesALoopWithClipping) {
  const std::int64_t R = 2, heads = 3;
  const Tensor table = random_tensor({2 * R + 1, heads}, 1);
  const std::vector<double> t = table.to_double_vector();
  for (std::int64_t F : {1, 3, 5}) {  // F = 5: distances up to 4 clip to R = 2
    SCOPED_TRACE("frames " + std::to_string(F));
    const Tensor bias = relative_position_bias(table, F);
    ASSERT_EQ(bias.shape(), (Shape{heads, F, F}));
    const std::vector<double> got = bias.to_double_vector();
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < F; ++i)
        for (std::int64_t j = 0; j < F; ++j) {
          std::int64_t dist = j - i;
          if (dist > R) dist = R;
          if (dist < -R) dist = -R;
          EXPECT_EQ(got[(h * F + i) * F + j], t[(dist + R) * heads + h]) << h << " " << i << " " << j;
        }
  }
  // The gather's backward sums the pairs sharing a distance (and the clipped ones).
  EXPECT_TRUE(testing::gradcheck([](const std::vector<Tensor>& in) { return relative_position_bias(in[0], 5); },
                                 {param(random_tensor({5, 2}, 2))}));
  testing::expect_value_error([] { relative_position_bias(Tensor::zeros({4, 2}, DType::f64), 3); },
                              "the table must be [2R+1, heads]");
}

TEST(RelativePosition, BlockHasAZeroTableAndStartsAsTheIdentity) {
  Generator gen(3);
  TemporalAttention block(8, 2, 4, 1e-5, gen, Device::cpu(), /*max_distance=*/2);
  EXPECT_TRUE(block.relative());
  const Tensor b = relative_bias_of(block);
  ASSERT_TRUE(b.defined());
  EXPECT_EQ(b.shape(), (Shape{5, 2}));
  for (double x : b.to_double_vector()) EXPECT_EQ(x, 0.0);
  const Tensor x = random_tensor({6, 2, 3, 8}, 5, DType::f32);  // 2 clips of 3 frames
  EXPECT_TRUE(testing::same_bits(block.forward(x, 3), x));
  // The other weights are drawn as for a sinusoid block (the table takes no draws).
  Generator gen2(3);
  TemporalAttention plain(8, 2, 4, 1e-5, gen2, Device::cpu());
  EXPECT_FALSE(plain.relative());
  std::vector<nn::NamedTensor> pr;  // the relative block's parameters but the table
  for (const auto& named : block.named_parameters())
    if (named.first != "relative_bias") pr.push_back(named);
  const auto pp = plain.named_parameters();
  ASSERT_EQ(pr.size(), pp.size());
  ASSERT_EQ(block.named_parameters().size(), pp.size() + 1);
  for (std::size_t i = 0; i < pp.size(); ++i) {
    EXPECT_EQ(pr[i].first, pp[i].first);
    EXPECT_TRUE(testing::same_bits(pr[i].second, pp[i].second)) << pp[i].first;
  }
  testing::expect_value_error([&] { TemporalAttention(8, 2, 4, 1e-5, gen, Device::cpu(), -1); },
                              "max_distance must be 0");
}

TEST(RelativePosition, BlockGradientIncludingTheTableMatchesFiniteDifferences) {
  Generator gen(4);
  TemporalAttention block(4, 2, 2, 1e-5, gen, Device::cpu(), 2);
  testing::parameters_to_f64(block);
  perturb(block, 100, false);  // the table too: non-zero, so every distance matters
  std::vector<Tensor> inputs = {param(random_tensor({6, 2, 1, 4}, 6))};  // 2 clips x 3 frames of 2x1, C = 4
  for (const auto& [name, p] : block.named_parameters())
    if (name == "relative_bias" || name == "to_q.weight" || name == "to_out.0.weight") inputs.push_back(param(p));
  ASSERT_EQ(inputs.size(), 4u);
  EXPECT_TRUE(testing::gradcheck([&](const std::vector<Tensor>& in) { return block.forward(in[0], 3); }, inputs));
}

// x [N*F, H, W, C] of one clip (N = 1) with its frames in the order `perm`.
Tensor permute_frames(const Tensor& x, const std::vector<std::int64_t>& perm) {
  std::vector<Tensor> frames;
  for (std::int64_t f : perm) frames.push_back(slice(x, 0, f, 1));
  return concat(frames, 0);
}

TEST(RelativePosition, ZeroTableIsPermutationEquivariantANonZeroOneIsNot) {
  Generator gen(5);
  TemporalAttention block(4, 2, 2, 1e-5, gen, Device::cpu(), 3);
  testing::parameters_to_f64(block);
  perturb(block, 200, /*keep_relative_bias=*/true);  // to_out and all else non-zero, B = 0
  const Tensor x = random_tensor({4, 2, 2, 4}, 7);     // one clip of 4 frames
  const std::vector<std::int64_t> perm{2, 0, 3, 1};
  const Tensor y = block.forward(x, 4);
  ASSERT_GT(max_abs_diff(y, x), 1e-3);  // the block does something
  const Tensor y_perm = block.forward(permute_frames(x, perm), 4);
  EXPECT_LT(max_abs_diff(y_perm, permute_frames(y, perm)), 1e-12);
  // B != 0: the frames now know their order, and permuting them changes more than the order.
  relative_bias_of(block).copy_from(random_tensor({7, 2}, 8));
  const Tensor z = block.forward(x, 4), z_perm = block.forward(permute_frames(x, perm), 4);
  EXPECT_GT(max_abs_diff(z_perm, permute_frames(z, perm)), 1e-4);
}

// Two levels (8x8 and 4x4, attention at 4x4), 3 frames, relative positions.
UNetConfig relative_config(const std::string& position = "relative") {
  UNetConfig c = testing::tiny_unet_config(8, 3);
  c.attention_resolutions = {4};
  c.num_frames = 3;
  c.temporal_position = position;
  return c;
}

TEST(RelativePositionUNet, SameWeightsAsSinusoidPlusZeroTablesAndFreshIsPerFrameImage) {
  Generator g1(11), g2(11), g3(11);
  UNet rel(relative_config(), g1, Device::cpu());
  UNet sin(relative_config("sinusoid"), g2, Device::cpu());
  UNetConfig ic = relative_config("sinusoid");
  ic.num_frames = 0;
  UNet image(ic, g3, Device::cpu());
  std::map<std::string, Tensor> sin_params;
  for (const auto& [name, p] : sin.named_parameters()) sin_params[name] = p;
  int tables = 0;
  for (const auto& [name, p] : rel.named_parameters()) {
    if (name.find("relative_bias") != std::string::npos) {
      ASSERT_NE(name.find("temp_attentions."), std::string::npos) << name;  // --train-only temporal covers it
      EXPECT_EQ(p.dim(0), 2 * 3 - 1) << name;                                // R = num_frames - 1
      for (double x : p.to_double_vector()) EXPECT_EQ(x, 0.0);
      ++tables;
      continue;
    }
    ASSERT_TRUE(sin_params.count(name)) << name;
    EXPECT_TRUE(testing::same_bits(p, sin_params.at(name))) << name;
  }
  EXPECT_EQ(static_cast<std::size_t>(tables) + sin_params.size(), rel.named_parameters().size());
  EXPECT_GT(tables, 0);
  // Fresh: every temporal block is the identity, so the clip is the image model per frame.
  const Tensor x = random_tensor({1, 3, 8, 8, 3}, 12, DType::f32);
  const Tensor y = rel.forward(x, {100}, {}, nn::Context{});
  const Tensor yi = image.forward(x.reshape({3, 8, 8, 3}), {100, 100, 100}, {}, nn::Context{});
  EXPECT_TRUE(testing::same_bits(y.reshape({3, 8, 8, 3}), yi));
}

TEST(RelativePositionUNet, ForwardBackwardReachEveryTableAndOneFrameClipsRun) {
  Generator g(13);
  UNet net(relative_config(), g, Device::cpu());
  perturb(net, 500, /*keep_relative_bias=*/true);
  for (const auto& [name, p] : net.named_parameters()) param(p);
  const Tensor x = random_tensor({2, 3, 8, 8, 3}, 14, DType::f32);
  nn::Context ctx;
  ctx.recompute = true;  // the block under activation checkpointing
  sum(square(net.forward(x, {30, 600}, {}, ctx))).backward();
  int tables = 0;
  for (const auto& [name, p] : net.named_parameters())
    if (name.find("relative_bias") != std::string::npos) {
      ++tables;
      ASSERT_TRUE(p.grad().defined()) << name;
      EXPECT_GT(max_abs_diff(p.grad(), Tensor::zeros(p.shape())), 0.0) << name << ": B = 0 gets a gradient";
    }
  EXPECT_GT(tables, 0);
  // Joint training's stills: one-frame clips take the table's distance-0 row only.
  const Tensor stills = random_tensor({2, 1, 8, 8, 3}, 15, DType::f32);
  EXPECT_EQ(net.forward(stills, {30, 600}, {}, nn::Context{}).shape(), (Shape{2, 1, 8, 8, 3}));
}

TEST(RelativePositionUNet, ConfigJsonRoundTripAndErrors) {
  const nlohmann::json j = config_to_json(relative_config());
  EXPECT_EQ(j.at("temporal_position"), "relative");
  const UNetConfig back = config_from_json(j);
  EXPECT_EQ(back.temporal_position, "relative");
  EXPECT_EQ(config_to_json(back), j);
  // The default is not written, and a file without the key (every older run) is sinusoid.
  const nlohmann::json js = config_to_json(relative_config("sinusoid"));
  EXPECT_FALSE(js.contains("temporal_position"));
  EXPECT_EQ(config_from_json(js).temporal_position, "sinusoid");
  nlohmann::json bad = j;
  bad["temporal_position"] = "absolute";
  testing::expect_value_error([&] { config_from_json(bad); },
                              "temporal_position must be \"sinusoid\" or \"relative\", got \"absolute\"");
  bad["temporal_position"] = 3;
  EXPECT_NE(testing::io_error_message([&] { config_from_json(bad); }).find("temporal_position must be a string"),
            std::string::npos);
  UNetConfig image = relative_config();
  image.num_frames = 0;
  testing::expect_value_error([&] { image.validate(); }, "positions the frames of a video model");
}

}  // namespace
}  // namespace ddpm::unet
