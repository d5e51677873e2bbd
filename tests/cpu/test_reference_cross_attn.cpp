// The cross-attention UNet (unet.h context_dim > 0, transformer.h) against diffusers'
// UNet2DConditionModel in the Stable Diffusion 1.x layout (fixture tests/data/reference/
// cross_attn from scripts/make_reference.py, see docs/REFERENCE.md): the config import
// (attention_head_dim is that class's head COUNT), the weights, the forward output given a
// context [N, L, D], the L_simple loss and the gradient of every parameter, of the input x
// and of the context, in float32 (diffusers' own numbers) and in float64 (tight: a
// difference in a norm's eps, the head split, the GEGLU halves or a scale shows up here far
// above roundoff). The config export to UNet2DConditionModel is checked against the file
// diffusers wrote.
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "models/unet/model_io.h"
#include "support/cross_attn_reference.h"
#include "support/gradcheck.h"
#include "support/tiny_encoder.h"  // testing::parameters_to_f64

namespace ddpm::unet {
namespace {

const char* const kModel = "cross_attn";

std::string fixture_dir() { return testing::reference_dir(kModel); }

nlohmann::json fixture_config() { return testing::reference_config(kModel); }

using Reference = testing::CrossAttnReference;
using testing::check_against_diffusers;
using testing::close_scaled;

Reference load() { return testing::load_cross_attn_reference(kModel); }

TEST(ReferenceCrossAttnUNet, ConfigImportsAsAContextModel) {
  const UNetConfig c = config_from_diffusers(fixture_config());
  EXPECT_EQ(c.context_dim, 8);        // cross_attention_dim
  EXPECT_EQ(c.transformer_depth, 1);  // transformer_layers_per_block
  EXPECT_EQ(c.num_heads, 4);          // attention_head_dim = 4 means 4 heads (of 16 / 4 = 4 channels)
  EXPECT_EQ(c.num_head_channels, -1);
  EXPECT_EQ(c.model_channels, 8);
  EXPECT_EQ(c.channel_mult, (std::vector<int>{1, 2}));
  EXPECT_EQ(c.attention_resolutions, (std::vector<int>{8}));  // CrossAttnDownBlock2D at 8x8
  EXPECT_EQ(c.norm_groups, 4);
  EXPECT_EQ(c.time_embedding, TimestepEmbeddingStyle::improved);
  EXPECT_FALSE(c.learn_sigma);
  EXPECT_EQ(c.num_classes, 0);
}

TEST(ReferenceCrossAttnUNet, Float32MatchesDiffusers) {
  Reference r = load();
  // Our fp32 network against diffusers' float64 run (tolerances of test_reference_unet.cpp),
  // and against diffusers' own float32 output.
  Tensor out = r.net->forward(r.io.get("x_nhwc"), r.t, {}, r.io.get("encoder_hidden_states"), nn::Context{});
  EXPECT_TRUE(close_scaled(out, r.io.get("out_nhwc"), 2e-5, 1e-6));
  check_against_diffusers(r, DType::f32, 2e-5, 1e-5, 2e-5);
}

TEST(ReferenceCrossAttnUNet, Float64MatchesDiffusersToRoundoff) {
  Reference r = load();
  testing::parameters_to_f64(*r.net);
  for (const auto& [name, p] : r.net->named_parameters()) testing::param(p);
  // The same weights (float32 values, exact in float64) as diffusers' float64 run, whose
  // timestep sinusoid was evaluated in float64 too (t_proj_f64). Output and loss to ~1e-15;
  // the gradients are stored as float32, hence 1e-6 of each tensor's largest entry.
  check_against_diffusers(r, DType::f64, 1e-11, 1e-11, 1e-6);
}

TEST(ReferenceCrossAttnUNetConfig, ExportWritesWhatDiffusersWrote) {
  const nlohmann::json theirs = fixture_config();
  const UNetConfig c = config_from_diffusers(theirs);
  const nlohmann::json ours = config_to_diffusers_conditional(c);
  // Every key we write has diffusers' value (the rest are diffusers' defaults and
  // bookkeeping such as _diffusers_version).
  for (auto it = ours.begin(); it != ours.end(); ++it) {
    ASSERT_TRUE(theirs.contains(it.key())) << it.key();
    EXPECT_EQ(theirs.at(it.key()), it.value()) << it.key();
  }
  EXPECT_EQ(config_to_json(config_from_diffusers(ours)), config_to_json(c));
  // UNet2DModel has no cross-attention: that export still refuses the model.
  EXPECT_THROW(config_to_diffusers(c), ValueError);
  // And a model without cross-attention is not a UNet2DConditionModel.
  UNetConfig plain = c;
  plain.context_dim = 0;
  EXPECT_THROW(config_to_diffusers_conditional(plain), ValueError);
}

TEST(ReferenceCrossAttnUNetConfig, ExportedWeightsAreDiffusersCheckpoint) {
  // The context model's state dict under diffusers' names and layouts (OIHW convolutions):
  // exactly the tensors diffusers saved, so config_to_diffusers_conditional plus
  // export_state_dict is a loadable UNet2DConditionModel folder.
  Reference r = load();
  const SafetensorsFile theirs = load_safetensors(fixture_dir() + "/diffusion_pytorch_model.safetensors");
  const auto ours = export_state_dict(*r.net);
  ASSERT_EQ(ours.size(), theirs.tensors.size());
  for (const auto& [name, t] : ours) {
    ASSERT_TRUE(theirs.contains(name)) << name;
    EXPECT_EQ(t.shape(), theirs.get(name).shape()) << name;
    EXPECT_EQ(t.to_vector(), theirs.get(name).to_vector()) << name;
  }
}

// Two cross-attention levels of 8 and 16 channels: per-block head counts.
nlohmann::json two_level_config() {
  nlohmann::json j = fixture_config();
  j["down_block_types"] = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D"};
  j["up_block_types"] = {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
  return j;
}

TEST(ReferenceCrossAttnUNetConfig, PerBlockHeadCountsMapToHeadsOrHeadWidth) {
  nlohmann::json j = two_level_config();
  j["attention_head_dim"] = {2, 2};  // the same count everywhere: num_heads
  UNetConfig same = config_from_diffusers(j);
  EXPECT_EQ(same.num_heads, 2);
  EXPECT_EQ(same.num_head_channels, -1);
  EXPECT_EQ(same.attention_resolutions, (std::vector<int>{16, 8}));
  j["attention_head_dim"] = {2, 4};  // 8 / 2 = 16 / 4 = 4 channels per head
  UNetConfig width = config_from_diffusers(j);
  EXPECT_EQ(width.num_head_channels, 4);
  EXPECT_EQ(config_to_diffusers_conditional(width).at("attention_head_dim"), nlohmann::json({2, 4}));
  EXPECT_EQ(config_to_json(config_from_diffusers(config_to_diffusers_conditional(width))), config_to_json(width));
  EXPECT_EQ(config_to_json(config_from_diffusers(config_to_diffusers_conditional(same))), config_to_json(same));
}

TEST(ReferenceCrossAttnUNetConfig, UnsupportedConditionalFieldsAreNamed) {
  auto expect_error = [](const nlohmann::json& j, const std::string& needle) {
    try {
      config_from_diffusers(j);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("UNet2DConditionModel"), std::string::npos) << e.what();
    }
  };
  const nlohmann::json base = fixture_config();
  const std::vector<std::pair<std::string, nlohmann::json>> refused = {
      {"use_linear_projection", true},
      {"only_cross_attention", true},
      {"dual_cross_attention", true},
      {"num_attention_heads", 4},
      {"addition_embed_type", "text_time"},  // SDXL's; "text" is a pooled context (cross_attn_pool)
      {"encoder_hid_dim", 8},
      {"time_cond_proj_dim", 4},
      {"mid_block_type", "UNetMidBlock2DSimpleCrossAttn"},
      {"conv_in_kernel", 1},
      {"class_embeddings_concat", true},
      {"reverse_transformer_layers_per_block", {{1}, {1}}},
      {"sample_size", nullptr},
      {"norm_num_groups", nullptr},
      {"attention_type", "gated"},
  };
  for (const auto& [key, value] : refused) {
    nlohmann::json j = base;
    j[key] = value;
    expect_error(j, key);
  }
  nlohmann::json j = base;
  j["attention_head_dim"] = 3;  // 3 heads cannot split 16 channels
  expect_error(j, "does not divide");
  j = base;
  j["up_block_types"] = {"AttnUpBlock2D", "UpBlock2D"};
  expect_error(j, "do not mirror");
  j = base;
  j["down_block_types"] = {"DownBlock2D", "AttnDownBlock2D"};
  expect_error(j, "down block type AttnDownBlock2D");
  j = base;
  j["attention_head_dim"] = {2, 4, 8};
  expect_error(j, "3 entries for 2 down blocks");
  // Per-block values must agree at every cross-attention block.
  j = two_level_config();
  j["cross_attention_dim"] = {8, 16};
  expect_error(j, "cross_attention_dim differs");
  j = two_level_config();
  j["transformer_layers_per_block"] = {1, 2};
  expect_error(j, "transformer_layers_per_block differs");
  j = two_level_config();
  j["attention_head_dim"] = {1, 4};  // widths 8 and 4
  expect_error(j, "neither one head count nor one head width");
  // A block without cross-attention may carry any value (diffusers ignores it there).
  j = base;
  j["cross_attention_dim"] = {99, 8};
  EXPECT_EQ(config_from_diffusers(j).context_dim, 8);
}

}  // namespace
}  // namespace ddpm::unet
