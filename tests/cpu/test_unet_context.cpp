// A text-conditioned UNet (UNetConfig::context_dim > 0): spatial transformers where the
// attention blocks were, under diffusers' names; the output depends on the context and
// matches finite differences w.r.t. it in double; an ordinary model is untouched; the
// config JSON; the errors; and a few joint training steps with the text encoder.
#include <cmath>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "models/text/text_encoder.h"
#include "models/unet/controlnet.h"
#include "models/unet/model_io.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::unet {
namespace {

// Two levels (8x8 with 8 channels, 4x4 with 16), attention at 4x4 and in the middle.
UNetConfig context_config(int context_dim = 6, int depth = 1) {
  UNetConfig c = testing::tiny_unet_config(8, 1);
  c.attention_resolutions = {4};
  c.num_heads = 2;
  c.context_dim = context_dim;
  c.transformer_depth = depth;
  return c;
}

void perturb(const nn::Module& m, std::uint64_t seed) {
  Generator g(seed);
  for (const auto& [name, t] : m.named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
}

std::map<std::string, Shape> shapes_of(const nn::Module& net) {
  std::map<std::string, Shape> m;
  for (const auto& [name, t] : net.named_parameters()) m[name] = t.shape();
  return m;
}

TEST(UNetContext, TransformersSitWhereTheAttentionBlocksSat) {
  Generator g(1);
  UNet net(context_config(6, 2), g, Device::cpu());
  auto s = shapes_of(net);
  const std::pair<const char*, Shape> expected[] = {
      {"down_blocks.1.attentions.0.norm.weight", {16}},
      {"down_blocks.1.attentions.0.proj_in.weight", {16, 1, 1, 16}},
      {"down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight", {16, 6}},
      {"down_blocks.1.attentions.0.transformer_blocks.1.ff.net.0.proj.weight", {128, 16}},
      {"mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight", {16, 16}},
      {"mid_block.attentions.0.proj_out.bias", {16}},
      {"up_blocks.0.attentions.1.transformer_blocks.1.norm3.weight", {16}},
      {"up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.weight", {16, 16}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(s.count(name)) << "missing " << name;
    EXPECT_EQ(s[name], shape) << name;
  }
  // No self-attention blocks' own names remain, and the 8x8 level has no attention.
  EXPECT_FALSE(s.count("mid_block.attentions.0.group_norm.weight"));
  EXPECT_FALSE(s.count("down_blocks.1.attentions.0.to_q.weight"));
  EXPECT_FALSE(s.count("down_blocks.0.attentions.0.norm.weight"));
  EXPECT_TRUE(s.count("up_blocks.0.attentions.1.norm.weight"));  // one per up resnet (num_res_blocks + 1)
  EXPECT_FALSE(s.count("up_blocks.0.attentions.2.norm.weight"));
}

TEST(UNetContext, AnOrdinaryModelIsUnchanged) {
  UNetConfig plain = context_config(0);
  // Built before and after a context model from the same seed: the same parameters, the
  // same output, and no transformer anywhere.
  Generator g1(2);
  UNet before(plain, g1, Device::cpu());
  Generator g2(2);
  UNet with_context(context_config(6), g2, Device::cpu());
  Generator g3(2);
  UNet after(plain, g3, Device::cpu());
  const auto pb = before.named_parameters(), pa = after.named_parameters();
  ASSERT_EQ(pb.size(), pa.size());
  for (std::size_t k = 0; k < pb.size(); ++k) {
    EXPECT_EQ(pb[k].first, pa[k].first);
    EXPECT_EQ(pb[k].second.to_vector(), pa[k].second.to_vector()) << pb[k].first;
    EXPECT_EQ(pb[k].first.find("transformer"), std::string::npos) << pb[k].first;
  }
  EXPECT_TRUE(shapes_of(before).count("mid_block.attentions.0.to_q.weight"));
  // The context model draws conv_in and the first level's resnets exactly as the plain one.
  const auto pc = with_context.named_parameters();
  EXPECT_EQ(pc.front().first, "conv_in.weight");
  EXPECT_EQ(pc.front().second.to_vector(), pb.front().second.to_vector());
  perturb(before, 3);
  perturb(after, 3);
  Generator data(4);
  const Tensor x = randn({2, 8, 8, 1}, data);
  EXPECT_EQ(before.forward(x, {3, 500}, {}, nn::Context{}).to_vector(),
            after.forward(x, {3, 500}, {}, nn::Context{}).to_vector());
  // Its config.json has no cross-attention keys (so it reads and writes as before).
  const nlohmann::json j = config_to_json(plain);
  EXPECT_FALSE(j.contains("context_dim"));
  EXPECT_FALSE(j.contains("transformer_depth"));
  testing::expect_value_error([&] { before.forward(x, {3, 500}, {}, randn({2, 3, 6}, data), nn::Context{}); },
                              "no cross-attention");
}

TEST(UNetContext, TheOutputDependsOnTheContext) {
  Generator g(5);
  UNet net(context_config(), g, Device::cpu());
  perturb(net, 6);  // proj_out and conv_out off zero
  Generator data(7);
  const Tensor x = randn({2, 8, 8, 1}, data);
  const Tensor c1 = randn({2, 3, 6}, data), c2 = randn({2, 3, 6}, data);
  const std::vector<float> y1 = net.forward(x, {10, 600}, {}, c1, nn::Context{}).to_vector();
  const std::vector<float> y1again = net.forward(x, {10, 600}, {}, c1, nn::Context{}).to_vector();
  const std::vector<float> y2 = net.forward(x, {10, 600}, {}, c2, nn::Context{}).to_vector();
  EXPECT_EQ(y1, y1again);
  double diff = 0;
  for (std::size_t i = 0; i < y1.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(y1[i] - y2[i])));
  EXPECT_GT(diff, 1e-4);
  // Any number of context tokens: L = 1 and L = 5 both run.
  EXPECT_EQ(net.forward(x, {1, 2}, {}, randn({2, 1, 6}, data), nn::Context{}).shape(), (Shape{2, 8, 8, 1}));
  EXPECT_EQ(net.forward(x, {1, 2}, {}, randn({2, 5, 6}, data), nn::Context{}).shape(), (Shape{2, 8, 8, 1}));
}

TEST(UNetContext, EveryParameterReceivesAGradient) {
  Generator g(13);
  UNet net(context_config(6, 2), g, Device::cpu());
  perturb(net, 14);
  Generator data(15);
  Tensor context = randn({2, 3, 6}, data).set_requires_grad(true);
  sum(square(net.forward(randn({2, 8, 8, 1}, data), {3, 700}, {}, context, nn::Context{}))).backward();
  for (const auto& [name, t] : net.named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name;
    double g2 = 0;
    for (double v : t.grad().to_double_vector()) g2 += v * v;
    EXPECT_GT(g2, 0.0) << name;
  }
  ASSERT_TRUE(context.grad().defined());
}

TEST(UNetContext, RecomputationGivesTheSameGradients) {
  // Activation checkpointing covers the spatial transformers: the gradients of every
  // parameter and of the context are those without it (to rounding across segments).
  auto run = [](bool with_recompute) {
    Generator g(16);
    UNet net(context_config(6, 2), g, Device::cpu());
    perturb(net, 17);
    testing::parameters_to_f64(net);
    for (const auto& [name, t] : net.named_parameters()) testing::param(t);
    Tensor context = testing::param(testing::random_tensor({2, 3, 6}, 40));
    const Tensor x = testing::random_tensor({2, 8, 8, 1}, 41);
    nn::Context ctx;
    ctx.recompute = with_recompute;
    sum(square(net.forward(x, {3, 700}, {}, context, ctx))).backward();
    std::vector<Tensor> grads = {context.grad()};
    for (const auto& [name, t] : net.named_parameters()) grads.push_back(t.grad());
    return grads;
  };
  const std::vector<Tensor> plain = run(false), checkpointed = run(true);
  ASSERT_EQ(plain.size(), checkpointed.size());
  for (std::size_t k = 0; k < plain.size(); ++k)
    EXPECT_TRUE(testing::all_close(checkpointed[k], plain[k], 1e-12, 1e-10)) << "gradient " << k;
}

TEST(UNetContext, ContextGradientMatchesFiniteDifferencesInDouble) {
  UNetConfig c = context_config(3);
  c.image_size = 4;
  c.attention_resolutions = {};  // the middle block's transformer only: keeps the check small
  Generator g(8);
  UNet net(c, g, Device::cpu());
  perturb(net, 9);
  testing::parameters_to_f64(net);
  const Tensor x = testing::random_tensor({2, 4, 4, 1}, 30);
  const std::vector<double> t = {4, 70};
  std::vector<Tensor> inputs = {testing::param(testing::random_tensor({2, 2, 3}, 31))};
  for (const auto& [name, p] : net.named_parameters())
    if (name == "mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight") inputs.push_back(testing::param(p));
  ASSERT_EQ(inputs.size(), 2u);
  auto f = [&](const std::vector<Tensor>& in) { return net.forward(x, t, {}, in[0], nn::Context{}); };
  EXPECT_TRUE(testing::gradcheck(f, inputs, 1e-6, 1e-7, 1e-5));
}

TEST(UNetContext, ConfigJsonRoundTripsAndOldConfigsStillLoad) {
  const UNetConfig c = context_config(6, 2);
  const nlohmann::json j = config_to_json(c);
  EXPECT_EQ(j.at("context_dim"), 6);
  EXPECT_EQ(j.at("transformer_depth"), 2);
  const UNetConfig back = config_from_json(j);
  EXPECT_EQ(back.context_dim, 6);
  EXPECT_EQ(back.transformer_depth, 2);
  EXPECT_EQ(config_to_json(back), j);
  // A config written before the fields existed: no keys, context_dim 0.
  nlohmann::json old = j;
  old.erase("context_dim");
  old.erase("transformer_depth");
  EXPECT_EQ(config_from_json(old).context_dim, 0);
  EXPECT_EQ(config_from_json(old).transformer_depth, 1);
  nlohmann::json half = j;
  half.erase("transformer_depth");
  EXPECT_THROW(config_from_json(half), IoError);
  nlohmann::json zero = j;
  zero["context_dim"] = 0;
  EXPECT_THROW(config_from_json(zero), IoError);
  nlohmann::json fractional = j;
  fractional["transformer_depth"] = 1.5;
  EXPECT_THROW(config_from_json(fractional), IoError);
  // diffusers' UNet2DModel has no cross-attention: the export is refused.
  testing::expect_value_error([&] { config_to_diffusers(c); }, "no cross-attention");
}

TEST(UNetContext, ErrorsAreClear) {
  Generator g(10);
  UNetConfig c = context_config();
  c.transformer_depth = 0;
  testing::expect_value_error([&] { UNet net(c, g, Device::cpu()); }, "transformer_depth must be at least 1");
  c = context_config(0);
  c.transformer_depth = 2;
  testing::expect_value_error([&] { UNet net(c, g, Device::cpu()); }, "needs a cross-attention model");
  c = context_config(-4);
  testing::expect_value_error([&] { UNet net(c, g, Device::cpu()); }, "context_dim");
  ControlNetConfig cc;
  cc.base = context_config();
  testing::expect_value_error([&] { cc.validate(); }, "ControlNet of a text-conditioned UNet is not supported");

  UNet net(context_config(), g, Device::cpu());
  const Tensor x = randn({2, 8, 8, 1}, g);
  testing::expect_value_error([&] { net.forward(x, {1, 2}, {}, nn::Context{}); }, "needs a context");
  testing::expect_value_error([&] { net.forward(x, {1, 2}, {}, nn::Context{}, nullptr); }, "needs a context");
  testing::expect_value_error([&] { net.forward(x, {1, 2}, {}, Tensor(), nn::Context{}); }, "needs a context");
  testing::expect_value_error([&] { net.forward(x, {1, 2}, {}, randn({2, 3, 5}, g), nn::Context{}); },
                              "context [2, 3, 5] does not match the model's [2, L, 6]");
  testing::expect_value_error([&] { net.forward(x, {1, 2}, {}, randn({1, 3, 6}, g), nn::Context{}); },
                              "does not match");
  testing::expect_value_error([&] { net.forward(x, {1, 2}, {}, randn({2, 6}, g), nn::Context{}); }, "does not match");
}

TEST(UNetContext, TrainsJointlyWithTheTextEncoder) {
  text::TextEncoderConfig tc;
  tc.vocab_size = 9;
  tc.context_length = 4;
  tc.width = 8;
  tc.layers = 1;
  tc.heads = 2;
  Generator g(11);
  text::TextEncoder encoder(tc, g, Device::cpu());
  UNet net(context_config(tc.width), g, Device::cpu());
  NamedTensors params = net.named_parameters();
  for (const auto& [name, t] : encoder.named_parameters()) params.emplace_back("text_encoder." + name, t);
  ParameterSlab slab(params);
  AdamWConfig oc;
  oc.lr = 1e-3;
  AdamW opt(slab, oc);
  Generator data(12);
  const std::vector<std::int64_t> ids = {2, 4, 3, 0, 2, 5, 8, 3};  // two captions of four tokens
  const Tensor token_grad = encoder.named_parameters().front().second;
  nn::Context ctx;
  ctx.training = true;
  ctx.gen = &data;
  ctx.recompute = true;  // checkpointing covers the transformers and the encoder's layers
  for (int step = 0; step < 4; ++step) {
    const Tensor x0 = randn({2, 8, 8, 1}, data), eps = randn({2, 8, 8, 1}, data);
    const double ab = 0.6;  // x_t = sqrt(ab) x0 + sqrt(1 - ab) eps at one alpha-bar
    const Tensor xt = add(scale(x0, std::sqrt(ab)), scale(eps, std::sqrt(1 - ab)));
    slab.zero_grad();
    const Tensor context = encoder.forward(ids, 2, ctx);
    const Tensor loss = mse_loss(net.forward(xt, {300, 300}, {}, context, ctx), eps);
    loss.backward();
    ASSERT_TRUE(std::isfinite(loss.item())) << "step " << step;
    opt.step();
  }
  // By the 4th step conv_out and proj_out have left zero, so the caption's tokens get a
  // gradient through the cross-attention: the encoder trains with the UNet.
  double g2 = 0;
  for (double v : token_grad.grad().to_double_vector()) g2 += v * v;
  EXPECT_GT(g2, 0.0);
}

}  // namespace
}  // namespace ddpm::unet
