// The context encoder tau_theta (models/text/text_encoder.h): CLIPTextModel's parameter
// names, the initialisation scales, finite differences in double w.r.t. its parameters,
// non-causal attention, the config JSON and the errors.
#include <cmath>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/text/text_encoder.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"
#include "support/value_error.h"

namespace ddpm::text {
namespace {

TextEncoderConfig tiny_config() {
  TextEncoderConfig c;
  c.vocab_size = 7;
  c.context_length = 3;
  c.width = 4;
  c.layers = 2;
  c.heads = 2;
  return c;
}

Tensor param_named(const nn::Module& m, const std::string& name) {
  for (const auto& [n, t] : m.named_parameters())
    if (n == name) return t;
  ADD_FAILURE() << "no parameter " << name;
  return Tensor();
}

double rms(const Tensor& t) {
  double s = 0;
  const std::vector<double> v = t.to_double_vector();
  for (double x : v) s += x * x;
  return std::sqrt(s / static_cast<double>(v.size()));
}

TEST(TextEncoder, ParameterNamesAreClipTextModels) {
  TextEncoderConfig c = tiny_config();
  Generator g(1);
  TextEncoder enc(c, g, Device::cpu());
  std::map<std::string, Shape> s;
  for (const auto& [name, t] : enc.named_parameters()) s[name] = t.shape();
  const std::pair<const char*, Shape> expected[] = {
      {"text_model.embeddings.token_embedding.weight", {7, 4}},
      {"text_model.embeddings.position_embedding.weight", {3, 4}},
      {"text_model.encoder.layers.0.self_attn.q_proj.weight", {4, 4}},
      {"text_model.encoder.layers.0.self_attn.k_proj.bias", {4}},
      {"text_model.encoder.layers.1.self_attn.out_proj.weight", {4, 4}},
      {"text_model.encoder.layers.1.layer_norm1.weight", {4}},
      {"text_model.encoder.layers.0.mlp.fc1.weight", {16, 4}},
      {"text_model.encoder.layers.0.mlp.fc2.weight", {4, 16}},
      {"text_model.encoder.layers.1.layer_norm2.bias", {4}},
      {"text_model.final_layer_norm.weight", {4}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(s.count(name)) << "missing " << name;
    EXPECT_EQ(s[name], shape) << name;
  }
  // 2 embeddings + 2 layers x (4 attention linears + 2 mlp linears + 2 norms) x 2 + final norm.
  EXPECT_EQ(s.size(), 2u + 2u * 16u + 2u);
  EXPECT_FALSE(s.count("text_model.encoder.layers.2.mlp.fc1.weight"));
}

TEST(TextEncoder, EmbeddingsStartAtClipsScales) {
  TextEncoderConfig c = tiny_config();
  c.vocab_size = 500;
  c.context_length = 64;
  c.width = 32;
  Generator g(2);
  TextEncoder enc(c, g, Device::cpu());
  // N(0, 0.02^2) over 16000 values and N(0, 0.01^2) over 2048: the RMS within a few percent.
  EXPECT_NEAR(rms(param_named(enc, "text_model.embeddings.token_embedding.weight")), 0.02, 0.001);
  EXPECT_NEAR(rms(param_named(enc, "text_model.embeddings.position_embedding.weight")), 0.01, 0.0008);
  EXPECT_TRUE(param_named(enc, "text_model.embeddings.token_embedding.weight").requires_grad());
}

TEST(TextEncoder, MatchesFiniteDifferencesInDouble) {
  Generator g(3);
  TextEncoder enc(tiny_config(), g, Device::cpu());
  {  // the LayerNorms off their ones and zeros, so their gradients are generic
    Generator p(4);
    for (const auto& [name, t] : enc.named_parameters()) {
      const std::vector<float> noise = randn(t.shape(), p).to_vector();
      float* d = t.data<float>();
      for (std::int64_t i = 0; i < t.numel(); ++i) d[i] += 0.2f * noise[static_cast<std::size_t>(i)];
    }
  }
  testing::parameters_to_f64(enc);  // the casts are fresh tensors: the leaves checked below require grad again
  // Two rows of three; token 2 in both, so its embedding row sums two contributions.
  const std::vector<std::int64_t> ids = {2, 5, 3, 2, 1, 0};
  std::vector<Tensor> leaves;
  for (const char* name :
       {"text_model.embeddings.token_embedding.weight", "text_model.embeddings.position_embedding.weight",
        "text_model.encoder.layers.0.self_attn.q_proj.weight", "text_model.encoder.layers.0.layer_norm1.weight",
        "text_model.encoder.layers.1.mlp.fc1.bias", "text_model.final_layer_norm.bias"})
    leaves.push_back(testing::param(param_named(enc, name)));
  auto f = [&](const std::vector<Tensor>&) { return enc.forward(ids, 2, nn::Context{}); };
  EXPECT_TRUE(testing::gradcheck(f, leaves, 1e-6, 1e-7, 1e-5));
}

TEST(TextEncoder, EveryTokenSeesEveryOtherToken) {
  Generator g(5);
  TextEncoder enc(tiny_config(), g, Device::cpu());
  const Tensor a = enc.forward({1, 2, 3}, 1, nn::Context{});
  const Tensor b = enc.forward({1, 2, 4}, 1, nn::Context{});  // only the LAST token differs
  EXPECT_EQ(a.shape(), (Shape{1, 3, 4}));
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  // Position 0 changes too: no causal mask (CLIP's text tower would keep it fixed).
  double diff0 = 0;
  for (int k = 0; k < 4; ++k) diff0 += std::fabs(va[static_cast<std::size_t>(k)] - vb[static_cast<std::size_t>(k)]);
  EXPECT_GT(diff0, 1e-6);
  // The same ids give the same context; rows are independent of each other.
  const std::vector<float> batch = enc.forward({1, 2, 4, 1, 2, 3}, 2, nn::Context{}).to_vector();
  for (std::size_t k = 0; k < 12; ++k) {
    EXPECT_NEAR(batch[k], vb[k], 1e-5) << k;
    EXPECT_NEAR(batch[12 + k], va[k], 1e-5) << k;
  }
}

TEST(TextEncoder, ConfigJsonRoundTripsAndIsReadStrictly) {
  TextEncoderConfig c = tiny_config();
  c.layers = 3;
  const nlohmann::json j = text_encoder_config_to_json(c);
  const TextEncoderConfig back = text_encoder_config_from_json(j);
  EXPECT_EQ(text_encoder_config_to_json(back), j);
  EXPECT_EQ(back.vocab_size, 7);
  EXPECT_EQ(back.layers, 3);
  nlohmann::json extra = j;
  extra["causal"] = true;
  EXPECT_THROW(text_encoder_config_from_json(extra), IoError);
  nlohmann::json missing = j;
  missing.erase("heads");
  EXPECT_THROW(text_encoder_config_from_json(missing), IoError);
  nlohmann::json fractional = j;
  fractional["width"] = 4.5;
  EXPECT_THROW(text_encoder_config_from_json(fractional), IoError);
  nlohmann::json bad_heads = j;
  bad_heads["heads"] = 3;
  testing::expect_value_error([&] { text_encoder_config_from_json(bad_heads); }, "3 heads do not divide width 4");
}

TEST(TextEncoder, ErrorsNameTheBadInput) {
  TextEncoderConfig c = tiny_config();
  c.vocab_size = 0;
  Generator g(6);
  testing::expect_value_error([&] { TextEncoder e(c, g, Device::cpu()); }, "vocab_size must be positive");
  TextEncoder enc(tiny_config(), g, Device::cpu());
  testing::expect_value_error([&] { enc.forward({1, 2, 3, 4}, 1, nn::Context{}); },
                              "4 token ids for 1 rows of context_length 3");
  testing::expect_value_error([&] { enc.forward({1, 2, 3, 1, 7, 0}, 2, nn::Context{}); },
                              "token id 7 at row 1, position 1 is outside the vocabulary [0, 7)");
  testing::expect_value_error([&] { enc.forward({1, -1, 3}, 1, nn::Context{}); }, "token id -1");
}

}  // namespace
}  // namespace ddpm::text
