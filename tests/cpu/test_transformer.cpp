// The spatial transformer (models/unet/transformer.h) and nn::LayerNorm: finite differences
// in double through a tiny block (input, context, parameters), the zero-initialised
// proj_out making a fresh block the identity, diffusers' parameter names, activation
// checkpointing, and the context checks.
#include <cmath>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/unet/transformer.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/value_error.h"

namespace ddpm::unet {
namespace {

// Every parameter moved off its initial value (so proj_out and the norms carry gradient).
void perturb(const nn::Module& m, std::uint64_t seed, float amount = 0.2f) {
  Generator g(seed);
  for (const auto& [name, t] : m.named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += amount * noise[static_cast<std::size_t>(i)];
  }
}

// f64 parameters that still require grad (the cast makes fresh, untracked tensors).
void parameters_to_f64_leaves(const nn::Module& m) {
  testing::parameters_to_f64(m);
  for (const auto& [name, t] : m.named_parameters()) {
    Tensor leaf = t;
    leaf.set_requires_grad(true);
  }
}

Tensor param_named(const nn::Module& m, const std::string& name) {
  for (const auto& [n, t] : m.named_parameters())
    if (n == name) return t;
  ADD_FAILURE() << "no parameter " << name;
  return Tensor();
}

TEST(LayerNormModule, StartsAsThePlainNormalisationOverTheLastAxis) {
  nn::LayerNorm norm(4, Device::cpu());
  const auto params = norm.named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[1].first, "bias");
  for (double w : norm.weight.to_double_vector()) EXPECT_EQ(w, 1.0);
  for (double b : norm.bias.to_double_vector()) EXPECT_EQ(b, 0.0);
  // Rows [1, 2, 3, 4] and [-2, 0, 0, 2]: (x - mean) / sqrt(var + eps), var the biased variance.
  const Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, -2, 0, 0, 2}, {2, 4});
  testing::parameters_to_f64(norm);
  const std::vector<double> y = norm.forward(x).to_double_vector();
  const double r1 = 1.0 / std::sqrt(1.25 + 1e-5), r2 = 1.0 / std::sqrt(2.0 + 1e-5);
  const double expected[] = {-1.5 * r1, -0.5 * r1, 0.5 * r1, 1.5 * r1, -2 * r2, 0, 0, 2 * r2};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(y[static_cast<std::size_t>(i)], expected[i], 1e-12) << i;
}

TEST(SpatialTransformer, ParameterNamesAreDiffusersTransformer2DModels) {
  Generator g(1);
  SpatialTransformer st(8, 6, 2, /*depth=*/2, /*norm_groups=*/4, g, Device::cpu());
  std::map<std::string, Shape> s;
  for (const auto& [name, t] : st.named_parameters()) s[name] = t.shape();
  const std::pair<const char*, Shape> expected[] = {
      {"norm.weight", {8}},
      {"proj_in.weight", {8, 1, 1, 8}},
      {"proj_in.bias", {8}},
      {"transformer_blocks.0.norm1.weight", {8}},
      {"transformer_blocks.0.attn1.to_q.weight", {8, 8}},
      {"transformer_blocks.0.attn1.to_out.0.bias", {8}},
      {"transformer_blocks.0.norm2.bias", {8}},
      {"transformer_blocks.0.attn2.to_q.weight", {8, 8}},
      {"transformer_blocks.0.attn2.to_k.weight", {8, 6}},   // context_dim -> C
      {"transformer_blocks.0.attn2.to_v.weight", {8, 6}},
      {"transformer_blocks.1.norm3.weight", {8}},
      {"transformer_blocks.1.ff.net.0.proj.weight", {64, 8}},  // C -> 2 x 4C (GEGLU)
      {"transformer_blocks.1.ff.net.0.proj.bias", {64}},
      {"transformer_blocks.1.ff.net.2.weight", {8, 32}},
      {"proj_out.weight", {8, 1, 1, 8}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(s.count(name)) << "missing " << name;
    EXPECT_EQ(s[name], shape) << name;
  }
  // No bias on q, k, v (attention_bias = False): norm + proj_in, per block 3 norms x 2 +
  // 2 attentions x (q, k, v, out weight, out bias) + ff 2 x 2, then proj_out.
  EXPECT_FALSE(s.count("transformer_blocks.0.attn1.to_q.bias"));
  EXPECT_FALSE(s.count("transformer_blocks.0.attn2.to_k.bias"));
  EXPECT_EQ(s.size(), 4u + 2u * (6u + 10u + 4u) + 2u);
}

TEST(SpatialTransformer, AFreshBlockReturnsItsInputExactly) {
  Generator g(2);
  SpatialTransformer st(8, 5, 2, 1, 4, g, Device::cpu());
  for (double v : param_named(st, "proj_out.weight").to_double_vector()) ASSERT_EQ(v, 0.0);
  for (double v : param_named(st, "proj_out.bias").to_double_vector()) ASSERT_EQ(v, 0.0);
  const Tensor x = randn({2, 3, 3, 8}, g);
  const Tensor c = randn({2, 4, 5}, g);
  const std::vector<float> y = st.forward(x, c).to_vector(), xv = x.to_vector();
  ASSERT_EQ(y.size(), xv.size());
  for (std::size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], xv[i]) << i;
}

TEST(SpatialTransformer, MatchesFiniteDifferencesInDouble) {
  Generator g(3);
  SpatialTransformer st(4, 3, 2, /*depth=*/2, /*norm_groups=*/2, g, Device::cpu());
  perturb(st, 4);
  parameters_to_f64_leaves(st);
  // x [2, 2, 3, 4] (6 tokens), context [2, 5, 3]: Sq = 6 queries over Sk = 5 keys.
  std::vector<Tensor> inputs = {testing::param(testing::random_tensor({2, 2, 3, 4}, 10)),
                                testing::param(testing::random_tensor({2, 5, 3}, 11))};
  for (const char* name : {"transformer_blocks.0.attn2.to_k.weight", "transformer_blocks.1.ff.net.0.proj.weight",
                           "transformer_blocks.0.norm2.weight", "proj_in.weight", "proj_out.bias"}) {
    Tensor p = param_named(st, name);
    inputs.push_back(p);
  }
  auto f = [&](const std::vector<Tensor>& in) { return st.forward(in[0], in[1]); };
  EXPECT_TRUE(testing::gradcheck(f, inputs, 1e-6, 1e-7, 1e-5));
}

TEST(SpatialTransformer, RecomputationGivesTheSameGradients) {
  auto run = [](bool with_recompute) {
    Generator g(5);
    SpatialTransformer st(4, 3, 1, 1, 2, g, Device::cpu());
    perturb(st, 6);
    parameters_to_f64_leaves(st);
    Tensor x = testing::param(testing::random_tensor({1, 2, 2, 4}, 12));
    Tensor c = testing::param(testing::random_tensor({1, 3, 3}, 13));
    const Tensor w = testing::random_tensor({1, 2, 2, 4}, 14);
    nn::Context ctx;
    ctx.recompute = with_recompute;
    sum(mul(st.forward(x, c, ctx), w)).backward();
    std::vector<std::vector<double>> grads = {x.grad().to_double_vector(), c.grad().to_double_vector()};
    for (const auto& [name, p] : st.named_parameters()) grads.push_back(p.grad().to_double_vector());
    return grads;
  };
  const auto plain = run(false), checkpointed = run(true);
  ASSERT_EQ(plain.size(), checkpointed.size());
  for (std::size_t k = 0; k < plain.size(); ++k) EXPECT_EQ(plain[k], checkpointed[k]) << "gradient " << k;
}

TEST(SpatialTransformer, RefusesAMissingOrMisshapenContext) {
  Generator g(7);
  SpatialTransformer st(4, 3, 1, 1, 2, g, Device::cpu());
  const Tensor x = randn({2, 2, 2, 4}, g);
  testing::expect_value_error([&] { st.forward(x, Tensor()); }, "needs a context");
  testing::expect_value_error([&] { st.forward(x, randn({2, 4, 5}, g)); }, "does not match [2, L, 3]");
  testing::expect_value_error([&] { st.forward(x, randn({1, 4, 3}, g)); }, "does not match");
  testing::expect_value_error([&] { SpatialTransformer bad(4, 3, 1, 0, 2, g, Device::cpu()); }, "depth");
  testing::expect_value_error([&] { SpatialTransformer bad(4, 3, 3, 1, 2, g, Device::cpu()); }, "3 heads");
}

}  // namespace
}  // namespace ddpm::unet
