// The cross-attention UNet with a pooled context added to its timestep embedding (unet.h
// context_pool_heads, context_pool.h) against diffusers' UNet2DConditionModel with
// addition_embed_type = "text" (TextTimeEmbedding over AttentionPooling; fixture
// tests/data/reference/cross_attn_pool from scripts/make_reference.py): the config import and
// export, the add_embedding.* weights under diffusers' names, the output, the loss and every
// gradient, in float32 and to roundoff in float64 (a wrong head split, eps, missing bias or
// a pooled token in the wrong place shows up far above it).
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "models/unet/model_io.h"
#include "support/cross_attn_reference.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"  // testing::parameters_to_f64

namespace ddpm::unet {
namespace {

const char* const kModel = "cross_attn_pool";

// The key bias of the attention pooling adds q . b_k to every score of the one query, a
// shift the softmax does not see: its gradient is exactly zero in exact arithmetic.
const std::set<std::string> kZeroGradient = {"add_embedding.pool.k_proj.bias"};

TEST(ReferenceCrossAttnPoolUNet, ConfigImportsTheTextPooling) {
  const UNetConfig c = config_from_diffusers(testing::reference_config(kModel));
  EXPECT_EQ(c.context_dim, 8);
  EXPECT_EQ(c.context_pool_heads, 2);  // addition_embed_type_num_heads
  EXPECT_EQ(c.num_heads, 2);
  EXPECT_EQ(c.model_channels, 4);
  EXPECT_EQ(c.channel_mult, (std::vector<int>{1, 1}));
  EXPECT_EQ(c.attention_resolutions, (std::vector<int>{4}));
}

TEST(ReferenceCrossAttnPoolUNet, Float32MatchesDiffusers) {
  testing::CrossAttnReference r = testing::load_cross_attn_reference(kModel);
  Tensor out = r.net->forward(r.io.get("x_nhwc"), r.t, {}, r.io.get("encoder_hidden_states"), nn::Context{});
  EXPECT_TRUE(testing::close_scaled(out, r.io.get("out_nhwc"), 2e-5, 1e-6));
  testing::check_against_diffusers(r, DType::f32, 2e-5, 1e-5, 2e-5, kZeroGradient, 1e-6);
}

TEST(ReferenceCrossAttnPoolUNet, Float64MatchesDiffusersToRoundoff) {
  testing::CrossAttnReference r = testing::load_cross_attn_reference(kModel);
  testing::parameters_to_f64(*r.net);
  for (const auto& [name, p] : r.net->named_parameters()) testing::param(p);
  testing::check_against_diffusers(r, DType::f64, 1e-11, 1e-11, 1e-6, kZeroGradient, 1e-12);
}

TEST(ReferenceCrossAttnPoolUNet, TheOutputNeedsThePooledEmbedding) {
  // Without add_embedding (the same weights otherwise) the output is far from diffusers':
  // the fixture does test the pooling, not only the cross-attention around it.
  testing::CrossAttnReference r = testing::load_cross_attn_reference(kModel);
  UNetConfig plain = r.net->config();
  plain.context_pool_heads = 0;
  Generator gen(0);
  UNet without(plain, gen, Device::cpu());
  std::vector<std::pair<std::string, Tensor>> weights;
  for (auto& [name, t] : export_state_dict(*r.net))
    if (name.rfind("add_embedding.", 0) != 0) weights.emplace_back(name, t);
  load_state_dict(without, weights);
  const Tensor out = without.forward(r.io.get("x_nhwc"), r.t, {}, r.io.get("encoder_hidden_states"), nn::Context{});
  EXPECT_FALSE(testing::close_scaled(out, r.io.get("out_nhwc"), 1e-2, 0));
}

TEST(ReferenceCrossAttnPoolUNetConfig, ExportWritesWhatDiffusersWrote) {
  const nlohmann::json theirs = testing::reference_config(kModel);
  const UNetConfig c = config_from_diffusers(theirs);
  const nlohmann::json ours = config_to_diffusers_conditional(c);
  EXPECT_EQ(ours.at("addition_embed_type"), "text");
  EXPECT_EQ(ours.at("addition_embed_type_num_heads"), 2);
  for (auto it = ours.begin(); it != ours.end(); ++it) {
    ASSERT_TRUE(theirs.contains(it.key())) << it.key();
    EXPECT_EQ(theirs.at(it.key()), it.value()) << it.key();
  }
  EXPECT_EQ(config_to_json(config_from_diffusers(ours)), config_to_json(c));
  // Without the pooling the export has no head count and a null type (diffusers' default).
  UNetConfig plain = c;
  plain.context_pool_heads = 0;
  const nlohmann::json p = config_to_diffusers_conditional(plain);
  EXPECT_TRUE(p.at("addition_embed_type").is_null());
  EXPECT_FALSE(p.contains("addition_embed_type_num_heads"));
}

TEST(ReferenceCrossAttnPoolUNetConfig, ExportedWeightsAreDiffusersCheckpoint) {
  testing::CrossAttnReference r = testing::load_cross_attn_reference(kModel);
  const SafetensorsFile theirs = load_safetensors(testing::reference_dir(kModel) + "/diffusion_pytorch_model.safetensors");
  const auto ours = export_state_dict(*r.net);
  ASSERT_EQ(ours.size(), theirs.tensors.size());
  int pooled = 0;
  for (const auto& [name, t] : ours) {
    ASSERT_TRUE(theirs.contains(name)) << name;
    EXPECT_EQ(t.shape(), theirs.get(name).shape()) << name;
    EXPECT_EQ(t.to_vector(), theirs.get(name).to_vector()) << name;
    pooled += name.rfind("add_embedding.", 0) == 0 ? 1 : 0;
  }
  // norm1 (2), pool.positional_embedding (1), pool.{k,q,v}_proj (6), proj (2), norm2 (2).
  EXPECT_EQ(pooled, 13);
  EXPECT_EQ(theirs.get("add_embedding.pool.positional_embedding").shape(), (Shape{1, 8}));
}

TEST(ReferenceCrossAttnPoolUNetConfig, OnlyTextPoolingIsAccepted) {
  const nlohmann::json base = testing::reference_config(kModel);
  for (const char* other : {"text_time", "text_image", "image"}) {
    nlohmann::json j = base;
    j["addition_embed_type"] = other;
    try {
      config_from_diffusers(j);
      ADD_FAILURE() << "accepted addition_embed_type " << other;
    } catch (const ValueError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("addition_embed_type"), std::string::npos) << what;
      EXPECT_NE(what.find(other), std::string::npos) << what;
      EXPECT_NE(what.find("UNet2DConditionModel"), std::string::npos) << what;
    }
  }
  nlohmann::json j = base;
  j["addition_embed_type_num_heads"] = 3;  // 3 heads cannot split 8 channels
  try {
    config_from_diffusers(j);
    ADD_FAILURE() << "accepted 3 pooling heads for 8 channels";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("addition_embed_type_num_heads 3 does not divide"), std::string::npos)
        << e.what();
  }
  j = base;
  j.erase("addition_embed_type_num_heads");  // diffusers' default, 64 heads, cannot split 8 either
  EXPECT_THROW(config_from_diffusers(j), ValueError);
  j = base;
  j["addition_embed_type"] = nullptr;  // a null type ignores the head count, as diffusers does
  EXPECT_EQ(config_from_diffusers(j).context_pool_heads, 0);
}

}  // namespace
}  // namespace ddpm::unet
