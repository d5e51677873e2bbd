// ControlNet (models/unet/controlnet.h; Zhang et al. 2023 sec. 3.1-3.2): zero convolutions
// make base + ControlNet equal the base exactly at initialisation, yet the first step's
// gradient reaches the zero convs and the next reaches every ControlNet parameter; the frozen
// base gets none; the residual-add path against finite differences in double; the copy's
// encoder equals the base's; the config's JSON round trip; the edges hint by hand.
#include <cmath>
#include <map>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/data/hints.h"
#include "models/unet/controlnet.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_unet.h"

namespace ddpm::unet {
namespace {

// A UNet whose protected encoder is reachable, to compare the copy's encode with the base's.
struct ProbeUNet : UNet {
  using UNet::UNet;
  Tensor encode_base(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels,
                     std::vector<Tensor>* skips) const {
    return encode(x, embed(Tensor::from_vector(t, {x.dim(0)}, x.dtype(), x.device()), labels), nn::Context{}, skips);
  }
};

UNetConfig tiny_base_config(int image_size = 8) {
  UNetConfig c = testing::tiny_unet_config(image_size, 1);
  c.num_classes = 3;
  c.attention_resolutions = {image_size / 2};  // attention in the copy too
  return c;
}

// A "trained" base: every weight perturbed (a fresh UNet's conv_out is zero, which would make
// every output 0 and the equivalence test empty).
std::unique_ptr<ProbeUNet> trained_base(const UNetConfig& c, std::uint64_t seed = 7) {
  Generator g(seed);
  auto net = std::make_unique<ProbeUNet>(c, g, Device::cpu());
  for (const auto& [name, t] : net->named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
    Tensor(t).set_requires_grad(false);  // frozen (the handle shares the impl)
  }
  return net;
}

std::unique_ptr<ControlNet> control_for(const UNet& base, std::uint64_t seed = 11) {
  ControlNetConfig cc;
  cc.base = base.config();
  cc.conditioning_channels = 1;
  Generator g(seed);
  auto cn = std::make_unique<ControlNet>(cc, g, Device::cpu());
  cn->copy_encoder_from(base);
  return cn;
}

bool any_nonzero(const Tensor& t) {
  for (double v : t.to_double_vector())
    if (v != 0) return true;
  return false;
}

TEST(ControlNet, AtInitialisationBasePlusControlNetIsTheBaseExactly) {
  const auto base = trained_base(tiny_base_config());
  const auto cn = control_for(*base);
  const Tensor x = testing::random_tensor({3, 8, 8, 1}, 1, DType::f32);
  const Tensor hint = testing::random_tensor({3, 8, 8, 1}, 2, DType::f32);
  const std::vector<double> t = {0, 17.5, 99};
  const std::vector<std::int64_t> y = {0, 2, 3};  // 3 is the null label
  const Tensor plain = base->forward(x, t, y, nn::Context{});
  ASSERT_TRUE(any_nonzero(plain));
  for (double scale : {1.0, 2.5}) {
    const Tensor controlled = controlled_forward(*base, *cn, x, t, y, hint, nn::Context{}, scale);
    EXPECT_TRUE(testing::same_bits(controlled, plain)) << "scale " << scale;
  }
  // Every residual is exactly zero, and the base's own path (no residuals) is unchanged.
  const ControlResiduals r = cn->forward(x, t, y, hint, nn::Context{});
  for (const Tensor& d : r.down) EXPECT_FALSE(any_nonzero(d));
  EXPECT_FALSE(any_nonzero(r.mid));
  EXPECT_TRUE(testing::same_bits(base->forward(x, t, y, nn::Context{}, nullptr), plain));
}

TEST(ControlNet, TheCopysEncoderEqualsTheBasesBeforeTraining) {
  const auto base = trained_base(tiny_base_config());
  ControlNetConfig cc;
  cc.base = base->config();
  Generator g(99);
  ControlNet cn(cc, g, Device::cpu());
  const Tensor x = testing::random_tensor({2, 8, 8, 1}, 3, DType::f32);
  const std::vector<double> t = {5, 60};
  const std::vector<std::int64_t> y = {1, 0};
  std::vector<Tensor> base_skips, copy_skips;
  const Tensor base_mid = base->encode_base(x, t, y, &base_skips);
  // Freshly drawn weights differ ...
  EXPECT_FALSE(testing::same_bits(cn.encode_copy(x, t, y, &copy_skips), base_mid));
  // ... and after the copy every skip and the middle output are the base's, bit for bit.
  cn.copy_encoder_from(*base);
  copy_skips.clear();
  EXPECT_TRUE(testing::same_bits(cn.encode_copy(x, t, y, &copy_skips), base_mid));
  ASSERT_EQ(copy_skips.size(), base_skips.size());
  for (std::size_t k = 0; k < base_skips.size(); ++k) EXPECT_TRUE(testing::same_bits(copy_skips[k], base_skips[k]));
  // The names of the copied parameters are the base's; the rest are the ControlNet's own.
  std::map<std::string, Shape> base_names;
  for (const auto& [name, p] : base->named_parameters()) base_names[name] = p.shape();
  int own = 0;
  for (const auto& [name, p] : cn.named_parameters()) {
    if (name.rfind("controlnet_", 0) == 0) {
      ++own;
      continue;
    }
    ASSERT_TRUE(base_names.count(name)) << name;
    EXPECT_EQ(base_names[name], p.shape()) << name;
  }
  // conv_in, 1 resnet and a downsampler at level 0, 1 resnet at level 1: 4 skips; plus the
  // middle block's zero conv and the hint embedding's conv_in, 2 blocks and conv_out (each
  // weight and bias).
  EXPECT_EQ(own, 2 * (4 + 1 + 4));
  // A base of another config is refused.
  UNetConfig other = base->config();
  other.num_classes = 0;
  Generator g2(1);
  UNet other_net(other, g2, Device::cpu());
  EXPECT_THROW(cn.copy_encoder_from(other_net), ValueError);
}

TEST(ControlNet, GradientsReachEveryControlNetParameterAsTheZeroConvsMoveAndNoneTheBase) {
  const auto base = trained_base(tiny_base_config());
  const auto cn = control_for(*base);
  const Tensor x = testing::random_tensor({3, 8, 8, 1}, 4, DType::f32);
  const Tensor hint = testing::random_tensor({3, 8, 8, 1}, 5, DType::f32);
  const Tensor w = testing::random_tensor({3, 8, 8, 1}, 6, DType::f32);
  const std::vector<double> t = {3, 40, 80};
  const std::vector<std::int64_t> y = {0, 1, 2};
  auto backward = [&] {
    for (const auto& [name, p] : cn->named_parameters()) Tensor(p).set_grad(Tensor());
    sum(mul(controlled_forward(*base, *cn, x, t, y, hint, nn::Context{}), w)).backward();
  };
  auto sgd = [&] {  // p -= 0.1 dL/dp
    for (const auto& [name, p] : cn->named_parameters())
      if (p.grad().defined()) Tensor(p).copy_from(sub(p.detach(), scale(p.grad(), 0.1)));
  };
  auto has_gradient = [](const Tensor& p) { return p.grad().defined() && any_nonzero(p.grad()); };
  auto starts_with = [](const std::string& name, const char* prefix) { return name.rfind(prefix, 0) == 0; };
  // Sec. 3.1: at initialisation only the output zero convs get a gradient (dL/dW = dL/dy x^T
  // with x the copy's non-zero features); everything behind them gets exactly zero, since
  // every path out of the copy passes a zero weight.
  backward();
  for (const auto& [name, p] : cn->named_parameters()) {
    const bool output_zero_conv =
        starts_with(name, "controlnet_down_blocks.") || starts_with(name, "controlnet_mid_block.");
    EXPECT_EQ(has_gradient(p), output_zero_conv) << name;
  }
  for (const auto& [name, p] : base->named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
  // One step moves them; then the copy and the hint embedding's own zero conv (conv_out, in
  // series behind them) get gradients, while the hint convs behind conv_out still get none.
  sgd();
  backward();
  for (const auto& [name, p] : cn->named_parameters()) {
    const bool behind_conv_out = starts_with(name, "controlnet_cond_embedding.") &&
                                 !starts_with(name, "controlnet_cond_embedding.conv_out.");
    EXPECT_EQ(has_gradient(p), !behind_conv_out) << name;
  }
  // After the second step, every ControlNet parameter has a gradient; the base still none.
  sgd();
  backward();
  for (const auto& [name, p] : cn->named_parameters()) EXPECT_TRUE(has_gradient(p)) << name;
  for (const auto& [name, p] : base->named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

TEST(ControlNet, GradientDescentOnTheControlNetAloneLowersTheDenoisingLoss) {
  // A fixed batch: the target eps is a function of the hint (eps = 0.5 hint), which the frozen
  // base cannot know; only the ControlNet sees the hint, so only it can lower the loss.
  const auto base = trained_base(tiny_base_config());
  const auto cn = control_for(*base);
  const Tensor x = testing::random_tensor({4, 8, 8, 1}, 31, DType::f32);
  const Tensor hint = testing::random_tensor({4, 8, 8, 1}, 32, DType::f32);
  const Tensor target = scale(hint, 0.5);
  const std::vector<double> t = {10, 30, 50, 70};
  const std::vector<std::int64_t> y = {0, 1, 2, 0};
  auto loss = [&] {
    const Tensor d = sub(controlled_forward(*base, *cn, x, t, y, hint, nn::Context{}), target);
    return mean(mul(d, d));
  };
  const double start = loss().item();
  for (int step = 0; step < 30; ++step) {
    for (const auto& [name, p] : cn->named_parameters()) Tensor(p).set_grad(Tensor());
    loss().backward();
    for (const auto& [name, p] : cn->named_parameters())
      if (p.grad().defined()) Tensor(p).copy_from(sub(p.detach(), scale(p.grad(), 0.3)));
  }
  const double end = loss().item();
  EXPECT_LT(end, 0.8 * start) << "start " << start << ", after 30 steps " << end;
  for (const auto& [name, p] : base->named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

TEST(ControlNet, ResidualAddPathMatchesFiniteDifferencesInDouble) {
  UNetConfig c = testing::tiny_unet_config(4, 1);
  c.num_classes = 2;
  Generator g(3);
  UNet base(c, g, Device::cpu());
  for (const auto& [name, t] : base.named_parameters()) {  // perturbed, then f64
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
  // A ControlNet on it (its own weights perturbed so the zero convs pass a gradient), copied
  // while both are f32, then both cast to f64.
  ControlNetConfig cc;
  cc.base = c;
  cc.conditioning_embedding_out_channels = {2, 3};
  Generator g2(5);
  ControlNet cn(cc, g2, Device::cpu());
  cn.copy_encoder_from(base);
  for (const auto& [name, p] : cn.named_parameters()) {
    if (name.rfind("controlnet_", 0) != 0) continue;
    const std::vector<float> noise = randn(p.shape(), g2).to_vector();
    float* d = p.data<float>();
    for (std::int64_t i = 0; i < p.numel(); ++i) d[i] += 0.2f * noise[static_cast<std::size_t>(i)];
  }
  testing::parameters_to_f64(base);
  testing::parameters_to_f64(cn);
  const Tensor x = testing::random_tensor({2, 4, 4, 1}, 8);
  const std::vector<double> t = {4, 30};
  const std::vector<std::int64_t> y = {1, 2};
  // The residuals as leaves of their skip shapes (skips at 4x4: conv_in 8, resnet 8, down 8;
  // at 2x2: resnet 16; mid 16 at 2x2).
  std::vector<Tensor> inputs;
  const std::vector<Shape> shapes = {{2, 4, 4, 8}, {2, 4, 4, 8}, {2, 2, 2, 8}, {2, 2, 2, 16}, {2, 2, 2, 16}};
  for (std::size_t k = 0; k < shapes.size(); ++k)
    inputs.push_back(testing::param(testing::random_tensor(shapes[k], 20 + k, DType::f64, 0.3)));
  auto f = [&](const std::vector<Tensor>& in) {
    ControlResiduals r;
    r.down.assign(in.begin(), in.begin() + 4);
    r.mid = in[4];
    return base.forward(x, t, y, nn::Context{}, &r);
  };
  EXPECT_TRUE(testing::gradcheck(f, inputs, 1e-6, 1e-7, 1e-5));
  // A residual of the wrong shape or count is refused with the skip named.
  ControlResiduals bad;
  bad.down.assign(inputs.begin(), inputs.begin() + 3);
  bad.mid = inputs[4];
  EXPECT_THROW(base.forward(x, t, y, nn::Context{}, &bad), ValueError);
  bad.down.push_back(inputs[2]);
  EXPECT_THROW(base.forward(x, t, y, nn::Context{}, &bad), ValueError);

  // The whole controlled network, differentiated w.r.t. the hint and ControlNet weights: the
  // hint embedding and two of the zero convs.
  std::vector<Tensor> leaves{testing::param(testing::random_tensor({2, 4, 4, 1}, 40))};
  std::vector<std::string> names;
  for (const auto& [name, p] : cn.named_parameters())
    if (name.rfind("controlnet_cond_embedding.", 0) == 0 || name == "controlnet_mid_block.weight" ||
        name == "controlnet_down_blocks.0.weight") {
      Tensor leaf = p;
      leaf.set_requires_grad(true);
      leaves.push_back(leaf);
    }
  auto g_full = [&](const std::vector<Tensor>& in) {
    return controlled_forward(base, cn, x, t, y, in[0], nn::Context{}, 0.7);
  };
  EXPECT_TRUE(testing::gradcheck(g_full, leaves, 1e-6, 1e-7, 1e-5));
}

TEST(ControlNet, ConfigJsonRoundTripsAndIsReadStrictly) {
  ControlNetConfig c;
  c.base = tiny_base_config();
  c.base.learn_sigma = true;
  c.conditioning_channels = 3;
  c.conditioning_embedding_out_channels = {8, 16, 24};
  const nlohmann::json j = controlnet_config_to_json(c);
  const ControlNetConfig back = controlnet_config_from_json(j);
  EXPECT_EQ(controlnet_config_to_json(back), j);
  EXPECT_EQ(back.conditioning_channels, 3);
  EXPECT_EQ(back.conditioning_embedding_out_channels, (std::vector<int>{8, 16, 24}));
  EXPECT_TRUE(back.base.learn_sigma);
  nlohmann::json extra = j;
  extra["stride"] = 2;
  EXPECT_THROW(controlnet_config_from_json(extra), IoError);
  nlohmann::json missing = j;
  missing.erase("conditioning_channels");
  EXPECT_THROW(controlnet_config_from_json(missing), IoError);
  // A super-resolution base is refused.
  ControlNetConfig sr = c;
  sr.base.concat_channels = sr.base.in_channels;
  sr.base.low_res_size = 4;
  EXPECT_THROW(sr.validate(), ValueError);
  ControlNetConfig none = c;
  none.conditioning_embedding_out_channels.clear();
  EXPECT_THROW(none.validate(), ValueError);
}

TEST(ControlHints, EdgesMatchAHandComputedSobel) {
  // A vertical black-to-white step (columns 0 0 1 1 in [0, 1]): a full-contrast edge where the
  // 3x3 window straddles it (G_x = 1 + 2 + 1 = 4, hint +1), flat (-1) where it does not
  // (borders replicated).
  const std::vector<float> step_img = {-1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1};  // [1, 3, 4, 1]
  const std::vector<float> e = data::compute_hint(data::parse_hint("edges"), Tensor::from_vector(step_img, {1, 3, 4, 1}))
                                   .to_vector();
  ASSERT_EQ(e.size(), 12u);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(e[r * 4 + 0], -1.0f);
    EXPECT_EQ(e[r * 4 + 1], 1.0f);
    EXPECT_EQ(e[r * 4 + 2], 1.0f);
    EXPECT_EQ(e[r * 4 + 3], -1.0f);
  }
  // One pixel of luminance 0.5 in the centre of a black 3x3 image: at the corner (0, 0) the
  // replicated window sees it once in G_x's and once in G_y's +1 tap, so G = (0.5, 0.5),
  // |G| = sqrt(0.5) and the hint 2 sqrt(0.5) / 4 - 1; at the centre both are 0 (hint -1); at
  // (0, 1) G_x = 0.5 - 0.5 = 0 and G_y = 2 * 0.5 = 1, hint 2 * 1 / 4 - 1 = -0.5.
  std::vector<float> dot(9, -1.0f);
  dot[4] = 0.0f;  // (0 + 1) / 2 = 0.5
  const std::vector<float> d = data::compute_hint(data::parse_hint("edges"), Tensor::from_vector(dot, {1, 3, 3, 1}))
                                   .to_vector();
  EXPECT_NEAR(d[0], 2 * std::sqrt(0.5) / 4 - 1, 1e-6);
  EXPECT_NEAR(d[4], -1.0, 1e-7);
  EXPECT_NEAR(d[1], -0.5, 1e-6);
  // RGB: the luminance is BT.601's; a red-only step gives G_x = 4 * 0.299.
  std::vector<float> rgb;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) rgb.insert(rgb.end(), {c == 0 ? -1.0f : 1.0f, -1.0f, -1.0f});
  const Tensor er = data::compute_hint(data::parse_hint("edges"), Tensor::from_vector(rgb, {1, 3, 3, 3}));
  EXPECT_EQ(er.shape(), (Shape{1, 3, 3, 1}));
  EXPECT_NEAR(er.to_vector()[4], 2 * (4 * 0.299) / 4 - 1, 1e-6);
}

TEST(ControlHints, RegistryParsesKnownHintsAndRefusesOthers) {
  EXPECT_EQ(data::hint_string(data::parse_hint("edges")), "edges");
  const data::HintSpec low = data::parse_hint("lowres:4");
  EXPECT_EQ(low.arg, 4);
  EXPECT_EQ(data::hint_string(low), "lowres:4");
  EXPECT_EQ(data::hint_channels(low, 3), 3);
  EXPECT_EQ(data::hint_channels(data::parse_hint("edges"), 3), 1);
  for (const char* bad : {"canny", "edges:2", "lowres", "lowres:", "lowres:0", "lowres:x", ""})
    EXPECT_THROW(data::parse_hint(bad), ValueError) << bad;
  EXPECT_THROW(data::check_hint_fits(data::parse_hint("lowres:3"), 8), ValueError);
  EXPECT_THROW(data::check_hint_fits(data::parse_hint("lowres:8"), 8), ValueError);
  // lowres:K is the super-resolution condition: an image constant on K x K blocks survives.
  std::vector<float> blocks(16);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) blocks[r * 4 + c] = (r / 2 + c / 2) % 2 ? 0.5f : -0.5f;
  const std::vector<float> lr =
      data::compute_hint(data::parse_hint("lowres:2"), Tensor::from_vector(blocks, {1, 4, 4, 1})).to_vector();
  const std::vector<float> area = {-0.5f, 0.5f, 0.5f, -0.5f};  // the 2x2 block means
  EXPECT_NEAR(lr[0], area[0], 1e-6);   // corners keep their block's mean (bilinear, align_corners=False)
  EXPECT_NEAR(lr[15], area[3], 1e-6);
}

}  // namespace
}  // namespace ddpm::unet
