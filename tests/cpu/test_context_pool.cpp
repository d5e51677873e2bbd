// The pooled context added to the timestep embedding (models/unet/context_pool.h, unet.h
// context_pool_heads): TextTimeEmbedding's shape, its finite-difference gradients in double
// w.r.t. the context and every parameter, its invariance to the order of the context
// tokens; the UNet's add_embedding (built last, so a model without it is drawn exactly as
// before), the config checks and JSON; and the --text-pooling flags of ddpm-train.
#include <algorithm>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "models/run/text_flags.h"
#include "models/run/train_run.h"
#include "models/unet/context_pool.h"
#include "models/unet/model_io.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::unet {
namespace {

// Every parameter moved off its initial value (LayerNorms off 1 and 0).
void perturb(const nn::Module& m, std::uint64_t seed) {
  Generator g(seed);
  for (const auto& [name, t] : m.named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.2f * noise[static_cast<std::size_t>(i)];
  }
}

TEST(TextTimeEmbedding, ParametersAreDiffusersAndTheOutputIsOneVectorPerSample) {
  Generator g(1);
  TextTimeEmbedding emb(8, 12, 2, g, Device::cpu());
  std::map<std::string, Shape> s;
  for (const auto& [name, t] : emb.named_parameters()) s[name] = t.shape();
  const std::map<std::string, Shape> expected = {
      {"norm1.weight", {8}},          {"norm1.bias", {8}},          {"pool.positional_embedding", {1, 8}},
      {"pool.k_proj.weight", {8, 8}}, {"pool.k_proj.bias", {8}},    {"pool.q_proj.weight", {8, 8}},
      {"pool.q_proj.bias", {8}},      {"pool.v_proj.weight", {8, 8}}, {"pool.v_proj.bias", {8}},
      {"proj.weight", {12, 8}},       {"proj.bias", {12}},          {"norm2.weight", {12}},
      {"norm2.bias", {12}}};
  EXPECT_EQ(s, expected);
  Generator data(2);
  const Tensor out = emb.forward(randn({3, 5, 8}, data));
  EXPECT_EQ(out.shape(), (Shape{3, 12}));
  // norm2 at its initial weight 1, bias 0: every row has mean 0 and variance ~1.
  const std::vector<float> v = out.to_vector();
  for (int n = 0; n < 3; ++n) {
    double m = 0, q = 0;
    for (int k = 0; k < 12; ++k) m += v[static_cast<std::size_t>(n * 12 + k)] / 12.0;
    for (int k = 0; k < 12; ++k) q += std::pow(v[static_cast<std::size_t>(n * 12 + k)] - m, 2) / 12.0;
    EXPECT_NEAR(m, 0.0, 1e-5);
    EXPECT_NEAR(q, 1.0, 1e-3);
  }
  EXPECT_EQ(emb.forward(randn({2, 1, 8}, data)).shape(), (Shape{2, 12}));  // a single token
  testing::expect_value_error([&] { emb.forward(randn({2, 5, 6}, data)); }, "is not [N, L, 8]");
  testing::expect_value_error([&] { TextTimeEmbedding bad(8, 12, 3, g, Device::cpu()); }, "3 heads do not divide");
}

TEST(TextTimeEmbedding, GradientsMatchFiniteDifferencesInDouble) {
  Generator g(3);
  TextTimeEmbedding emb(4, 6, 2, g, Device::cpu());
  perturb(emb, 4);
  testing::parameters_to_f64(emb);
  std::vector<Tensor> inputs = {testing::param(testing::random_tensor({2, 3, 4}, 40))};  // the context
  for (const auto& [name, p] : emb.named_parameters()) inputs.push_back(testing::param(p));
  ASSERT_EQ(inputs.size(), 14u);
  auto f = [&](const std::vector<Tensor>& in) { return emb.forward(in[0]); };
  EXPECT_TRUE(testing::gradcheck(f, inputs, 1e-6, 1e-7, 1e-5));
}

TEST(TextTimeEmbedding, IsInvariantToTheOrderOfTheContextTokens) {
  // mean over L, a key/value set and one softmax-weighted sum: no token position anywhere.
  Generator g(5);
  TextTimeEmbedding emb(6, 8, 3, g, Device::cpu());
  perturb(emb, 6);
  testing::parameters_to_f64(emb);
  const Tensor c = testing::random_tensor({2, 4, 6}, 50);  // [N, L = 4, D]
  const std::vector<Tensor> tok = split(c, {1, 1, 1, 1}, 1);
  const Tensor permuted = concat({tok[2], tok[0], tok[3], tok[1]}, 1);
  const Tensor a = emb.forward(c), b = emb.forward(permuted);
  EXPECT_TRUE(testing::all_close(b, a, 1e-13, 1e-12));
  // ... while a different token does change it (the check above is not vacuous).
  const Tensor other = concat({tok[2], tok[0], tok[3], tok[3]}, 1);
  EXPECT_FALSE(testing::all_close(emb.forward(other), a, 1e-6, 1e-6));
}

UNetConfig pooled_config(int heads) {
  UNetConfig c = testing::tiny_unet_config(8, 1);
  c.attention_resolutions = {4};
  c.num_heads = 2;
  c.context_dim = 6;
  c.context_pool_heads = heads;
  return c;
}

TEST(UNetContextPool, WithoutPoolingTheNetworkIsDrawnAsBeforeAndWithItOnlyAddEmbeddingIsNew) {
  Generator g0(7), g1(7);
  UNet plain(pooled_config(0), g0, Device::cpu());
  UNet pooled(pooled_config(3), g1, Device::cpu());
  const auto pp = plain.named_parameters(), pq = pooled.named_parameters();
  ASSERT_GT(pq.size(), pp.size());
  // The same names and values in the same order, then add_embedding.* only.
  for (std::size_t k = 0; k < pp.size(); ++k) {
    EXPECT_EQ(pq[k].first, pp[k].first);
    EXPECT_EQ(pq[k].second.to_vector(), pp[k].second.to_vector()) << pp[k].first;
    EXPECT_EQ(pp[k].first.find("add_embedding"), std::string::npos) << pp[k].first;
  }
  std::vector<std::string> added;
  for (std::size_t k = pp.size(); k < pq.size(); ++k) added.push_back(pq[k].first);
  const std::vector<std::string> expected = {
      "add_embedding.norm1.weight",        "add_embedding.norm1.bias",         "add_embedding.pool.positional_embedding",
      "add_embedding.pool.k_proj.weight",  "add_embedding.pool.k_proj.bias",   "add_embedding.pool.q_proj.weight",
      "add_embedding.pool.q_proj.bias",    "add_embedding.pool.v_proj.weight", "add_embedding.pool.v_proj.bias",
      "add_embedding.proj.weight",         "add_embedding.proj.bias",          "add_embedding.norm2.weight",
      "add_embedding.norm2.bias"};
  EXPECT_EQ(added, expected);
  EXPECT_EQ(pq[pp.size() + 9].second.shape(), (Shape{32, 6}));  // proj: context_dim -> time_embed_dim

  // The pooled vector reaches the output: with the same shared weights, the two networks
  // differ, and a pooled network's output changes with the context even with every spatial
  // transformer's proj_out at zero (its fresh state: the cross-attention adds nothing).
  perturb(plain, 8);
  perturb(pooled, 8);
  Generator data(9);
  const Tensor x = randn({2, 8, 8, 1}, data), c1 = randn({2, 3, 6}, data), c2 = randn({2, 3, 6}, data);
  EXPECT_FALSE(testing::all_close(pooled.forward(x, {5, 900}, {}, c1, nn::Context{}),
                                  plain.forward(x, {5, 900}, {}, c1, nn::Context{}), 1e-4, 1e-4));
  for (const auto& [name, p] : pooled.named_parameters())
    if (name.find("proj_out") != std::string::npos) Tensor(p).zero_();
  EXPECT_FALSE(testing::all_close(pooled.forward(x, {5, 900}, {}, c1, nn::Context{}),
                                  pooled.forward(x, {5, 900}, {}, c2, nn::Context{}), 1e-4, 1e-4));
}

TEST(UNetContextPool, ConfigErrorsAreClear) {
  Generator g(10);
  UNetConfig c = pooled_config(4);  // 4 heads do not divide 6 channels
  testing::expect_value_error([&] { c.validate(); }, "context_pool_heads 4 does not divide context_dim 6");
  c = pooled_config(-1);
  testing::expect_value_error([&] { c.validate(); },
                              "context_pool_heads (the heads of the pooled text embedding) must be >= 0, got -1");
  c = pooled_config(2);
  c.context_dim = 0;
  testing::expect_value_error([&] { UNet net(c, g, Device::cpu()); }, "needs a cross-attention model");
}

TEST(UNetContextPool, ConfigJsonRoundTripsAndOldConfigsStillLoad) {
  const UNetConfig c = pooled_config(2);
  const nlohmann::json j = config_to_json(c);
  EXPECT_EQ(j.at("context_pool_heads"), 2);
  EXPECT_EQ(config_from_json(j).context_pool_heads, 2);
  EXPECT_EQ(config_to_json(config_from_json(j)), j);
  // Without pooling there is no key; a config without the key (every earlier one) reads as 0.
  EXPECT_FALSE(config_to_json(pooled_config(0)).contains("context_pool_heads"));
  nlohmann::json old = j;
  old.erase("context_pool_heads");
  EXPECT_EQ(config_from_json(old).context_pool_heads, 0);
  nlohmann::json zero = j;
  zero["context_pool_heads"] = 0;
  EXPECT_THROW(config_from_json(zero), IoError);
  nlohmann::json fractional = j;
  fractional["context_pool_heads"] = 1.5;
  EXPECT_THROW(config_from_json(fractional), IoError);
  nlohmann::json no_context = config_to_json(testing::tiny_unet_config(8, 1));
  no_context["context_pool_heads"] = 2;
  testing::expect_value_error([&] { config_from_json(no_context); }, "needs a cross-attention model");
}

// --- flags -----------------------------------------------------------------------------------

run::TextCondFlags parse_text_flags(std::vector<const char*> argv) {
  run::TextCondFlags f;
  CLI::App app{"test"};
  run::add_text_cond_flags(app, f, "text", "");
  argv.insert(argv.begin(), "test");
  app.parse(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
  return f;
}

TEST(TextPoolingFlags, OffByDefaultOnWithTextPoolingAndRefusedWithoutTextCond) {
  EXPECT_EQ(parse_text_flags({"--text-cond"}).context_pool_heads(), 0);  // off by default
  const run::TextCondFlags on =
      parse_text_flags({"--text-cond", "--text-pooling", "--text-heads", "2", "--text-width", "8"});
  EXPECT_TRUE(on.pooling);
  EXPECT_EQ(on.context_pool_heads(), 2);  // the --text-heads
  EXPECT_EQ(parse_text_flags({"--text-cond", "--text-pooling"}).context_pool_heads(), 4);
  const run::TextCondFlags off = parse_text_flags({"--text-cond", "--no-text-pooling"});
  EXPECT_FALSE(off.pooling);
  EXPECT_EQ(off.context_pool_heads(), 0);
  run::check_text_cond_flags(off, false, false);  // accepted
  EXPECT_EQ(parse_text_flags({}).context_pool_heads(), 0);  // no text model at all
  testing::expect_value_error([] { run::check_text_cond_flags(parse_text_flags({"--text-pooling"}), false, false); },
                              "--text-pooling sets up the text encoder of a text-conditioned model: add --text-cond");
  testing::expect_value_error(
      [] { run::check_text_cond_flags(parse_text_flags({"--no-text-pooling"}), false, false); },
      "--no-text-pooling sets up");
}

TEST(TextPoolingFlags, TheTrainingConfigGetsThePooling) {
  run::TrainOptions o;
  o.text.enabled = true;
  o.text.width = 8;
  o.text.heads = 2;
  o.text.pooling = true;  // --text-pooling
  o.attention_resolutions = "16";
  UNetConfig c = run::make_unet_config(o, 32, 1, 0);
  EXPECT_EQ(c.context_dim, 8);
  EXPECT_EQ(c.context_pool_heads, 2);
  o.text.pooling = false;  // --no-text-pooling: session 12's network
  c = run::make_unet_config(o, 32, 1, 0);
  EXPECT_EQ(c.context_dim, 8);
  EXPECT_EQ(c.context_pool_heads, 0);
  EXPECT_FALSE(config_to_json(c).contains("context_pool_heads"));
}

}  // namespace
}  // namespace ddpm::unet
