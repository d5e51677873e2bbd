#include "models/unet/model_io.h"

#include <algorithm>
#include <climits>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm::unet {

using nlohmann::json;

// --- our config.json ---------------------------------------------------------------------

namespace {

// {"low_res_size": L, "concat_channels": C}: the super-resolution section of our config and
// the private "_ddpm_super_res" key of a diffusers export (diffusers drops "_" keys).
// A conditioning-augmented model adds "cond_augment": MAX (absent when 0, so the section of
// every model without it is unchanged).
json super_res_json(const UNetConfig& c) {
  json j{{"low_res_size", c.low_res_size}, {"concat_channels", c.concat_channels}};
  if (c.cond_augmented()) j["cond_augment"] = c.cond_augment;
  return j;
}
void read_super_res(const json& j, UNetConfig& c, const char* what) {
  DDPM_CHECK_AS(j.is_object(), IoError, what << ": expected an object {\"low_res_size\", \"concat_channels\"}");
  json reference = super_res_json(UNetConfig{});
  if (j.contains("cond_augment")) reference["cond_augment"] = nullptr;  // optional
  check_config_keys(j, reference, what);
  for (const char* key : {"low_res_size", "concat_channels"}) require_json_ints(j.at(key), std::string(what) + ": " + key);
  c.low_res_size = j.at("low_res_size").get<int>();
  c.concat_channels = j.at("concat_channels").get<int>();
  if (j.contains("cond_augment")) {
    DDPM_CHECK_AS(j.at("cond_augment").is_number(), IoError,
                  what << ": cond_augment must be a number, got " << j.at("cond_augment").dump());
    c.cond_augment = j.at("cond_augment").get<double>();
  }
}

}  // namespace

json config_to_json(const UNetConfig& c) {
  json j = level_config_to_json(c);
  j["learn_sigma"] = c.learn_sigma;
  j["rescale_residual"] = c.rescale_residual;
  j["num_classes"] = c.num_classes;
  // Only a super-resolution model has the key, so every other config reads as before.
  if (c.super_res()) j["super_res"] = super_res_json(c);
  // Likewise only a guidance-distilled model (unet.h guidance_embedding) has this key.
  if (c.guidance_embedding) j["guidance_embedding"] = true;
  // And only a cross-attention model (unet.h context_dim) has these two.
  if (c.cross_attention()) {
    j["context_dim"] = c.context_dim;
    j["transformer_depth"] = c.transformer_depth;
  }
  // And only a model with a pooled context (unet.h context_pool_heads) has this one.
  if (c.context_pooled()) j["context_pool_heads"] = c.context_pool_heads;
  // And only a video model (unet.h num_frames) has these; a file without them is an image model.
  if (c.video()) j["num_frames"] = c.num_frames;
  if (c.first_frame_condition) j["first_frame_condition"] = true;
  // condition_frames K only when > 1: a first-frame model's file (K = 1) reads as before.
  if (c.condition_frames > 1) j["condition_frames"] = c.condition_frames;
  if (c.temporal_conv) j["temporal_conv"] = true;  // only when on: older files read as false
  // Relative frame positions only (temporal.h); without the key a video model is "sinusoid".
  if (c.temporal_position != "sinusoid") j["temporal_position"] = c.temporal_position;
  // R only when set (unet.h): without the key relative positions have R = num_frames - 1.
  if (c.temporal_max_distance > 0) j["temporal_max_distance"] = c.temporal_max_distance;
  // VDM's Fourier features of x_t (fourier_features.h) only when set: [n_min, n_max].
  if (c.fourier()) j["fourier_features"] = c.fourier_features;
  return j;
}

void check_config_keys(const json& j, const json& reference, const char* what) {
  for (auto it = j.begin(); it != j.end(); ++it)
    DDPM_CHECK_AS(reference.contains(it.key()), IoError, what << ": unknown key '" << it.key() << "'");
  for (auto it = reference.begin(); it != reference.end(); ++it)
    DDPM_CHECK_AS(j.contains(it.key()), IoError, what << ": missing key '" << it.key() << "'");
}


UNetConfig config_from_json(const json& j) {
  DDPM_CHECK_AS(j.is_object(), IoError, "model config: expected a JSON object");
  json reference = config_to_json(UNetConfig{});
  if (j.contains("super_res")) reference["super_res"] = nullptr;  // optional: super-resolution models only
  if (j.contains("guidance_embedding")) reference["guidance_embedding"] = nullptr;  // optional: guided distillation
  if (j.contains("context_dim") || j.contains("transformer_depth")) {  // optional, as a pair: cross-attention
    reference["context_dim"] = nullptr;
    reference["transformer_depth"] = nullptr;
  }
  if (j.contains("context_pool_heads")) reference["context_pool_heads"] = nullptr;  // optional: pooled context
  if (j.contains("num_frames")) reference["num_frames"] = nullptr;                  // optional: video models
  if (j.contains("first_frame_condition")) reference["first_frame_condition"] = nullptr;  // optional: Emu Video
  if (j.contains("condition_frames")) reference["condition_frames"] = nullptr;  // optional: K > 1 known frames
  if (j.contains("temporal_conv")) reference["temporal_conv"] = nullptr;  // optional: temporal convolutions
  if (j.contains("temporal_position")) reference["temporal_position"] = nullptr;  // optional: "relative"
  if (j.contains("temporal_max_distance")) reference["temporal_max_distance"] = nullptr;  // optional: R
  if (j.contains("fourier_features")) reference["fourier_features"] = nullptr;  // optional: VDM's input features
  check_config_keys(j, reference, "model config");
  for (const char* key : {"context_dim", "transformer_depth", "context_pool_heads", "num_frames", "condition_frames",
                          "temporal_max_distance"})
    if (j.contains(key)) require_json_ints(j.at(key), std::string("model config: ") + key);
  require_json_ints(j.at("num_classes"), "model config: num_classes");  // the shared keys: read_level_config
  UNetConfig c;
  try {
    if (j.contains("super_res")) read_super_res(j.at("super_res"), c, "model config super_res");
    read_level_config(j, c, "model config");
    c.learn_sigma = j.at("learn_sigma").get<bool>();
    c.rescale_residual = j.at("rescale_residual").get<bool>();
    c.num_classes = j.at("num_classes").get<int>();
    if (j.contains("guidance_embedding")) {
      DDPM_CHECK_AS(j.at("guidance_embedding").is_boolean(), IoError,
                    "model config: guidance_embedding must be true or false, got "
                        << j.at("guidance_embedding").dump());
      c.guidance_embedding = j.at("guidance_embedding").get<bool>();
    }
    if (j.contains("context_dim")) {
      c.context_dim = j.at("context_dim").get<int>();
      c.transformer_depth = j.at("transformer_depth").get<int>();
      DDPM_CHECK_AS(c.context_dim > 0, IoError,
                    "model config: context_dim is " << c.context_dim
                                                    << "; a model without cross-attention has no context_dim key");
    }
    if (j.contains("context_pool_heads")) {
      c.context_pool_heads = j.at("context_pool_heads").get<int>();
      DDPM_CHECK_AS(c.context_pool_heads > 0, IoError,
                    "model config: context_pool_heads is " << c.context_pool_heads
                                                           << "; a model without a pooled context has no such key");
    }
    if (j.contains("num_frames")) {
      c.num_frames = j.at("num_frames").get<int>();
      DDPM_CHECK_AS(c.num_frames > 0, IoError,
                    "model config: num_frames is " << c.num_frames << "; an image model has no num_frames key");
    }
    if (j.contains("first_frame_condition")) {
      DDPM_CHECK_AS(j.at("first_frame_condition").is_boolean(), IoError,
                    "model config: first_frame_condition must be true or false, got "
                        << j.at("first_frame_condition").dump());
      c.first_frame_condition = j.at("first_frame_condition").get<bool>();
    }
    // Without the key a frame-conditioned model conditions on one frame (unet.h condition_frames).
    if (c.first_frame_condition) c.condition_frames = 1;
    if (j.contains("condition_frames")) {
      c.condition_frames = j.at("condition_frames").get<int>();
      DDPM_CHECK_AS(c.condition_frames > 1, IoError,
                    "model config: condition_frames is " << c.condition_frames
                                                         << "; the key is written only for more than one known frame");
    }
    if (j.contains("temporal_conv")) {
      DDPM_CHECK_AS(j.at("temporal_conv").is_boolean(), IoError,
                    "model config: temporal_conv must be true or false, got " << j.at("temporal_conv").dump());
      c.temporal_conv = j.at("temporal_conv").get<bool>();
    }
    if (j.contains("temporal_position")) {
      DDPM_CHECK_AS(j.at("temporal_position").is_string(), IoError,
                    "model config: temporal_position must be a string (\"relative\"), got "
                        << j.at("temporal_position").dump());
      c.temporal_position = j.at("temporal_position").get<std::string>();
    }
    if (j.contains("temporal_max_distance")) {
      c.temporal_max_distance = j.at("temporal_max_distance").get<int>();
      DDPM_CHECK_AS(c.temporal_max_distance > 0, IoError,
                    "model config: temporal_max_distance is " << c.temporal_max_distance
                                                              << "; the key is written only for R >= 1");
    }
    if (j.contains("fourier_features")) {
      const json& f = j.at("fourier_features");
      DDPM_CHECK_AS(f.is_array() && f.size() == 2 && f[0].is_number_integer() && f[1].is_number_integer(), IoError,
                    "model config: fourier_features must be [n_min, n_max] (two integers), got " << f.dump());
      c.fourier_features = f.get<std::vector<int>>();
    }
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, "model config: a value has the wrong type: " << e.what());
  }
  c.validate();
  return c;
}

// --- diffusers' UNet2DModel and UNet2DConditionModel configs --------------------------------

namespace {

const char* const kPlain = "UNet2DModel";
const char* const kConditional = "UNet2DConditionModel";  // the cross-attention UNet

template <class T>
T get_or(const json& j, const char* key, T fallback) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  if constexpr (std::is_same_v<T, int>) require_json_ints(j.at(key), std::string("diffusers config: ") + key);
  return j.at(key).get<T>();
}

[[noreturn]] void unsupported(const std::string& cls, const std::string& what) {
  DDPM_THROW(ValueError, "this diffusers " << cls << " is not supported: " << what);
}

bool is_null_or_absent(const json& j, const char* key) { return !j.contains(key) || j.at(key).is_null(); }

// A UNet2DConditionModel field given either once for every block or as a list with one entry
// per down block (diffusers broadcasts the single value); returned with one entry per block.
std::vector<int> per_block_ints(const json& j, const char* key, int fallback, std::size_t blocks) {
  if (is_null_or_absent(j, key)) return std::vector<int>(blocks, fallback);
  const json& v = j.at(key);
  require_json_ints(v, std::string("diffusers config: ") + key);
  if (!v.is_array()) return std::vector<int>(blocks, v.get<int>());
  if (v.size() != blocks)
    unsupported(kConditional, std::string(key) + " has " + std::to_string(v.size()) + " entries for " +
                                  std::to_string(blocks) + " down blocks");
  return v.get<std::vector<int>>();
}

// The one value a per-block field takes at the blocks that have a spatial transformer
// (`used`: the attention levels and the deepest level, whose index the middle block reads);
// the engine builds every transformer alike, so the values must agree.
int same_at(const std::vector<int>& values, const std::vector<std::size_t>& used, const char* key) {
  const int first = values[used.front()];
  for (std::size_t i : used)
    if (values[i] != first)
      unsupported(kConditional, std::string(key) + " differs between the cross-attention blocks (" +
                                    std::to_string(first) + " and " + std::to_string(values[i]) +
                                    "); the engine builds every spatial transformer alike");
  return first;
}

// UNet2DConditionModel's options that have no counterpart in the engine must keep their
// defaults (SD 1.x uses all of these defaults).
void check_conditional_defaults(const json& j) {
  for (const char* key : {"encoder_hid_dim", "encoder_hid_dim_type", "time_cond_proj_dim",
                          "time_embedding_act_fn", "timestep_post_act", "cross_attention_norm",
                          "reverse_transformer_layers_per_block", "projection_class_embeddings_input_dim"})
    if (!is_null_or_absent(j, key)) unsupported(kConditional, std::string(key) + " must be null, got " + j.at(key).dump());
  // diffusers itself refuses num_attention_heads (its "naming issue": heads come from
  // attention_head_dim, see below).
  if (!is_null_or_absent(j, "num_attention_heads"))
    unsupported(kConditional, "num_attention_heads must be null (the head count is attention_head_dim)");
  for (const char* key : {"dual_cross_attention", "use_linear_projection", "class_embeddings_concat",
                          "resnet_skip_time_act", "mid_block_only_cross_attention"})
    if (get_or<bool>(j, key, false)) unsupported(kConditional, std::string(key) + " must be false");
  // only_cross_attention: false, or one false per block (true drops the self-attention).
  if (!is_null_or_absent(j, "only_cross_attention")) {
    const json& v = j.at("only_cross_attention");
    bool any = v.is_array() ? std::any_of(v.begin(), v.end(), [](const json& e) { return e.get<bool>(); }) : v.get<bool>();
    if (any) unsupported(kConditional, "only_cross_attention must be false (every transformer block self-attends)");
  }
  if (get_or<std::string>(j, "attention_type", "default") != "default") unsupported(kConditional, "attention_type must be default");
  if (get_or<int>(j, "conv_in_kernel", 3) != 3 || get_or<int>(j, "conv_out_kernel", 3) != 3)
    unsupported(kConditional, "conv_in_kernel and conv_out_kernel must be 3");
  if (get_or<double>(j, "resnet_out_scale_factor", 1.0) != 1.0) unsupported(kConditional, "resnet_out_scale_factor must be 1");
  if (get_or<std::string>(j, "mid_block_type", "UNetMidBlock2DCrossAttn") != "UNetMidBlock2DCrossAttn")
    unsupported(kConditional, "mid_block_type must be UNetMidBlock2DCrossAttn (resnet, transformer, resnet)");
  if (j.contains("norm_num_groups") && j.at("norm_num_groups").is_null())
    unsupported(kConditional, "norm_num_groups must be set (null drops the output GroupNorm)");
  if (is_null_or_absent(j, "sample_size")) unsupported(kConditional, "sample_size must be set (the image size)");
  // addition_embed_type: null, or "text" (a pooled context, read by read_cross_attention).
  // "text_time" (SDXL), "text_image", "image" and "image_hint" need inputs we do not have.
  if (!is_null_or_absent(j, "addition_embed_type") && j.at("addition_embed_type") != "text")
    unsupported(kConditional, "addition_embed_type must be null or \"text\" (a pooled text embedding), got " +
                                  j.at("addition_embed_type").dump());
  // upcast_attention is accepted either way: it only computes the scores in fp32 under fp16,
  // which the engine's attention always does.
}

// The cross-attention fields of a UNet2DConditionModel: context_dim from
// cross_attention_dim, transformer_depth from transformer_layers_per_block, heads from
// attention_head_dim. Down block i, the up block that mirrors it and (for the last i) the
// middle block all read entry i of these per-block lists (diffusers reverses them for the up
// path and reverses the blocks too).
//
// diffusers' naming issue (UNet2DConditionModel.__init__: `num_attention_heads =
// num_attention_heads or attention_head_dim`; each Transformer2DModel then gets
// (heads, channels // heads)): in this class attention_head_dim is the NUMBER OF HEADS per
// block, not their width. SD 1.x's attention_head_dim = 8 is 8 heads of 40..160 channels.
void read_cross_attention(const json& j, const std::vector<int>& blocks, const std::vector<std::size_t>& attn_levels,
                          UNetConfig& c) {
  const std::size_t n = blocks.size();
  std::vector<std::size_t> used = attn_levels;
  if (std::find(used.begin(), used.end(), n - 1) == used.end()) used.push_back(n - 1);  // the middle block
  c.context_dim = same_at(per_block_ints(j, "cross_attention_dim", 1280, n), used, "cross_attention_dim");
  if (c.context_dim <= 0) unsupported(kConditional, "cross_attention_dim must be positive, got " + std::to_string(c.context_dim));
  c.transformer_depth =
      same_at(per_block_ints(j, "transformer_layers_per_block", 1, n), used, "transformer_layers_per_block");
  const std::vector<int> heads = per_block_ints(j, "attention_head_dim", 8, n);
  for (std::size_t i : used)
    if (heads[i] <= 0 || blocks[i] % heads[i] != 0)
      unsupported(kConditional, "attention_head_dim (the head count) " + std::to_string(heads[i]) +
                                    " does not divide the " + std::to_string(blocks[i]) + " channels of block " +
                                    std::to_string(i));
  bool same_heads = true, same_width = true;
  for (std::size_t i : used) {
    same_heads = same_heads && heads[i] == heads[used.front()];
    same_width = same_width && blocks[i] / heads[i] == blocks[used.front()] / heads[used.front()];
  }
  if (same_heads) {  // a head count (num_heads), as SD 1.x
    c.num_heads = heads[used.front()];
    c.num_head_channels = -1;
  } else if (same_width) {  // different counts of equally wide heads: channels per head
    c.num_head_channels = blocks[used.front()] / heads[used.front()];
  } else {
    unsupported(kConditional, "attention_head_dim gives neither one head count nor one head width to every "
                              "cross-attention block");
  }
  // addition_embed_type "text": TextTimeEmbedding(cross_attention_dim, time_embed_dim,
  // addition_embed_type_num_heads), our add_embedding (context_pool.h). diffusers' default
  // head count is 64.
  if (!is_null_or_absent(j, "addition_embed_type")) {
    c.context_pool_heads = get_or<int>(j, "addition_embed_type_num_heads", 64);
    if (c.context_pool_heads <= 0 || c.context_dim % c.context_pool_heads != 0)
      unsupported(kConditional, "addition_embed_type_num_heads " + std::to_string(c.context_pool_heads) +
                                    " does not divide cross_attention_dim " + std::to_string(c.context_dim) +
                                    " (the heads of the text pooling)");
  }
}

}  // namespace

UNetConfig config_from_diffusers(const json& j) {
  try {
    const std::string cls = get_or<std::string>(j, "_class_name", kPlain);
    const bool conditional = cls == kConditional;
    if (!conditional && cls != kPlain)
      unsupported(kPlain, "_class_name is " + cls + ", only UNet2DModel and UNet2DConditionModel are");
    if (get_or<std::string>(j, "time_embedding_type", "positional") != "positional")
      unsupported(cls, "time_embedding_type must be positional");
    if (get_or<std::string>(j, "act_fn", "silu") != "silu") unsupported(cls, "act_fn must be silu");
    if (get_or<bool>(j, "center_input_sample", false)) unsupported(cls, "center_input_sample must be false");
    if (!get_or<bool>(j, "add_attention", true)) unsupported(cls, "add_attention must be true (the middle block has attention)");
    if (get_or<double>(j, "mid_block_scale_factor", 1.0) != 1.0) unsupported(cls, "mid_block_scale_factor must be 1");
    if (get_or<std::string>(j, "class_embed_type", "") != "") unsupported(cls, "class_embed_type must be null");
    if (j.contains("time_embedding_dim") && !j.at("time_embedding_dim").is_null())
      unsupported(cls, "time_embedding_dim must be null (4 x the first block's channels)");
    if (conditional)
      check_conditional_defaults(j);
    else if (get_or<std::string>(j, "mid_block_type", "UNetMidBlock2D") != "UNetMidBlock2D")
      unsupported(cls, "mid_block_type must be UNetMidBlock2D");

    UNetConfig c;
    c.image_size = get_or<int>(j, "sample_size", 32);
    // diffusers' defaults where a key is absent: 3 channels for UNet2DModel, 4 (SD's latents)
    // for UNet2DConditionModel.
    c.in_channels = get_or<int>(j, "in_channels", conditional ? 4 : 3);
    // A super-resolution UNet2DModel takes in_channels = C + concat (x_t and the upsampled
    // low-res image) and outputs C or 2C: our export records the split and the low-res size
    // in "_ddpm_super_res". Without it the low-res size is unknown, so a folder whose
    // in_channels is twice its out_channels is refused rather than read as a plain model.
    if (j.contains("_ddpm_super_res")) {
      read_super_res(j.at("_ddpm_super_res"), c, "diffusers config _ddpm_super_res");
      c.in_channels -= c.concat_channels;
    }
    int out_channels = get_or<int>(j, "out_channels", c.in_channels);
    if (!c.super_res() && out_channels > 0 && c.in_channels == 2 * out_channels)
      unsupported(cls, "in_channels " + std::to_string(c.in_channels) + " is twice out_channels " +
                           std::to_string(out_channels) +
                           ": a super-resolution UNet (x_t concatenated with a low-res image) whose low-res size is "
                           "not recorded (no \"_ddpm_super_res\" key); only our own super-resolution exports can be "
                           "imported");
    if (out_channels == 2 * c.in_channels)
      c.learn_sigma = true;
    else if (out_channels != c.in_channels)
      unsupported(cls, "out_channels must equal in_channels (or twice it, for learned variance)");

    if (j.contains("block_out_channels")) require_json_ints(j.at("block_out_channels"), "diffusers config: block_out_channels");
    auto blocks = j.at("block_out_channels").get<std::vector<int>>();
    if (blocks.empty()) unsupported(cls, "block_out_channels is empty");
    // Checked before dividing by the first (a 0 there was a division by zero, found by
    // tests/fuzz/fuzz_model_config).
    for (int b : blocks)
      DDPM_CHECK(b > 0, "diffusers config: block_out_channels must be positive, got " << b);
    c.model_channels = blocks[0];
    c.channel_mult.clear();
    for (int b : blocks) {
      if (b % c.model_channels != 0) unsupported(cls, "block_out_channels must be multiples of the first");
      c.channel_mult.push_back(b / c.model_channels);
    }
    c.num_res_blocks = get_or<int>(j, "layers_per_block", 2);
    auto down = j.at("down_block_types").get<std::vector<std::string>>();
    auto up = j.at("up_block_types").get<std::vector<std::string>>();
    if (down.size() != blocks.size() || up.size() != blocks.size())
      unsupported(cls, "down_block_types and up_block_types need one entry per block_out_channels entry");
    // The attention block types of the class (self-attention, or a spatial transformer).
    const std::string attn_down = conditional ? "CrossAttnDownBlock2D" : "AttnDownBlock2D";
    const std::string attn_up = conditional ? "CrossAttnUpBlock2D" : "AttnUpBlock2D";
    c.attention_resolutions.clear();
    std::vector<std::size_t> attn_levels;
    for (std::size_t i = 0; i < down.size(); ++i) {
      bool attn = down[i] == attn_down;
      if (!attn && down[i] != "DownBlock2D")
        unsupported(cls, "down block type " + down[i] + " (" + cls + " takes DownBlock2D and " + attn_down + ")");
      std::string mirror = up[down.size() - 1 - i];
      if (mirror != (attn ? attn_up : "UpBlock2D"))
        unsupported(cls, "up_block_types do not mirror down_block_types (" + mirror + " against " + down[i] + ")");
      // (a shift by 32 or more is undefined; so many levels fail validate() below anyway)
      if (attn) c.attention_resolutions.push_back(i < 31 ? c.image_size >> i : 0);
      if (attn) attn_levels.push_back(i);
    }
    // UNet2DConditionModel has no such keys: its down/up sampling is always the conv kind.
    std::string down_type = get_or<std::string>(j, "downsample_type", "conv");
    std::string up_type = get_or<std::string>(j, "upsample_type", "conv");
    if (down_type != up_type || (down_type != "conv" && down_type != "resnet"))
      unsupported(cls, "downsample_type/upsample_type must both be conv or both resnet");
    c.resblock_updown = down_type == "resnet";
    if (get_or<int>(j, "downsample_padding", 1) != 1) unsupported(cls, "downsample_padding must be 1");

    c.norm_groups = get_or<int>(j, "norm_num_groups", 32);
    if (conditional) {
      read_cross_attention(j, blocks, attn_levels, c);
    } else if (j.contains("attention_head_dim") && !j.at("attention_head_dim").is_null()) {
      // UNet2DModel means what the name says: channels per head.
      require_json_ints(j.at("attention_head_dim"), "diffusers config: attention_head_dim");
      c.num_head_channels = j.at("attention_head_dim").get<int>();
    } else {
      c.num_heads = 1;
      c.num_head_channels = -1;
    }
    if (get_or<int>(j, "attn_norm_num_groups", c.norm_groups) != c.norm_groups)
      unsupported(cls, "attn_norm_num_groups must be null or equal to norm_num_groups");
    c.norm_eps = get_or<double>(j, "norm_eps", 1e-5);
    c.dropout = get_or<double>(j, "dropout", 0.0);
    std::string shift = get_or<std::string>(j, "resnet_time_scale_shift", "default");
    if (shift != "default" && shift != "scale_shift") unsupported(cls, "resnet_time_scale_shift " + shift);
    c.use_scale_shift_norm = shift == "scale_shift";
    bool flip = get_or<bool>(j, "flip_sin_to_cos", true);
    int freq_shift = get_or<int>(j, "freq_shift", 0);
    if (!flip && freq_shift == 1)
      c.time_embedding = TimestepEmbeddingStyle::ddpm;
    else if (flip && freq_shift == 0)
      c.time_embedding = TimestepEmbeddingStyle::improved;
    else
      unsupported(cls, "flip_sin_to_cos/freq_shift must be false/1 (DDPM) or true/0 (improved DDPM)");
    int class_embeds = get_or<int>(j, "num_class_embeds", 0);
    if (class_embeds == 1) unsupported(cls, "num_class_embeds must be at least 2 (classes + the null label)");
    c.num_classes = class_embeds > 0 ? class_embeds - 1 : 0;
    c.validate();
    return c;
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, "diffusers config: a required key is missing or has the wrong type: " << e.what());
  }
}

namespace {

// The block lists both classes share: channels per level and which levels attend.
struct DiffusersBlocks {
  std::vector<int> channels;
  std::vector<bool> attention;
  std::vector<std::string> down, up;
};

DiffusersBlocks diffusers_blocks(const UNetConfig& c, const std::string& attn_down, const std::string& attn_up) {
  DiffusersBlocks b;
  const int levels = static_cast<int>(c.channel_mult.size());
  for (int i = 0; i < levels; ++i) {
    b.channels.push_back(c.model_channels * c.channel_mult[static_cast<std::size_t>(i)]);
    b.attention.push_back(c.wants_attention(i));
    b.down.push_back(b.attention.back() ? attn_down : "DownBlock2D");
  }
  for (int i = levels - 1; i >= 0; --i) b.up.push_back(b.attention[static_cast<std::size_t>(i)] ? attn_up : "UpBlock2D");
  return b;
}

}  // namespace

json config_to_diffusers(const UNetConfig& c) {
  c.validate();
  DDPM_CHECK(!c.video(), "export to diffusers: this is a video model (num_frames "
                             << c.num_frames << "); its temporal attention layers have no UNet2DModel slot");
  DDPM_CHECK(!c.rescale_residual, "export to diffusers: rescale_residual (1/sqrt 2) has no UNet2DModel equivalent");
  DDPM_CHECK(!c.fourier(), "export to diffusers: this model appends Fourier features to its input (fourier_features, "
                          "VDM); UNet2DModel has no such input transform");
  // UNet2DModel's only extra embedding slot is class_embedding: class_embed_type="timestep"
  // has the same sinusoid + MLP shape as our aug_embedding, but it is fed through
  // class_labels and taken by a class-conditional model's labels; this exporter does not
  // rename one into the other, so such a model is refused rather than exported without it.
  DDPM_CHECK(!c.cond_augmented(),
             "export to diffusers: this super-resolution model was trained with conditioning augmentation "
             "(cond_augment "
                 << c.cond_augment
                 << "), and its augmentation-level embedding (aug_embedding) has no slot in UNet2DModel; "
                    "export a model trained without --cond-augment");
  DDPM_CHECK(!c.guidance_embedding,
             "export to diffusers: this model is guidance-distilled (ddpm-distill --guided): it takes the guidance "
             "weight through its guidance_embedding, an input UNet2DModel does not have; export its teacher, or a "
             "model distilled without --guided");
  DDPM_CHECK(!c.cross_attention(),
             "export to diffusers: this model cross-attends to a context (context_dim "
                 << c.context_dim
                 << "); UNet2DModel has no cross-attention (that is UNet2DConditionModel, which this exporter "
                    "does not write)");
  const DiffusersBlocks b = diffusers_blocks(c, "AttnDownBlock2D", "AttnUpBlock2D");
  std::set<int> attention_channels;
  for (std::size_t i = 0; i < b.channels.size(); ++i)
    if (b.attention[i]) attention_channels.insert(b.channels[i]);
  attention_channels.insert(b.channels.back());  // the middle block
  json head_dim = nullptr;
  if (c.num_head_channels > 0) {
    head_dim = c.num_head_channels;
  } else if (c.num_heads != 1) {
    DDPM_CHECK(attention_channels.size() == 1,
               "export to diffusers: a fixed head count over attention blocks of different widths has no "
               "UNet2DModel equivalent (it takes channels per head)");
    head_dim = *attention_channels.begin() / c.num_heads;
  }
  json j{{"_class_name", kPlain},
              {"sample_size", c.image_size},
              {"in_channels", c.input_channels()},  // C + concat for a super-resolution model
              {"out_channels", c.out_channels()},
              {"center_input_sample", false},
              {"time_embedding_type", "positional"},
              {"flip_sin_to_cos", c.time_embedding == TimestepEmbeddingStyle::improved},
              {"freq_shift", c.time_embedding == TimestepEmbeddingStyle::improved ? 0 : 1},
              {"down_block_types", b.down},
              {"up_block_types", b.up},
              {"block_out_channels", b.channels},
              {"layers_per_block", c.num_res_blocks},
              {"mid_block_scale_factor", 1},
              {"downsample_padding", 1},
              {"downsample_type", c.resblock_updown ? "resnet" : "conv"},
              {"upsample_type", c.resblock_updown ? "resnet" : "conv"},
              {"dropout", c.dropout},
              {"act_fn", "silu"},
              {"attention_head_dim", head_dim},
              {"norm_num_groups", c.norm_groups},
              {"attn_norm_num_groups", c.norm_groups},
              {"norm_eps", c.norm_eps},
              {"resnet_time_scale_shift", c.use_scale_shift_norm ? "scale_shift" : "default"},
              {"add_attention", true},
              {"class_embed_type", nullptr},
              {"num_class_embeds", c.num_classes > 0 ? json(c.num_classes + 1) : json(nullptr)}};
  if (c.super_res()) j["_ddpm_super_res"] = super_res_json(c);
  return j;
}

json config_to_diffusers_conditional(const UNetConfig& c) {
  c.validate();
  DDPM_CHECK(!c.video(), "export to diffusers: this is a video model (num_frames "
                             << c.num_frames << "); its temporal attention layers have no UNet2DConditionModel slot");
  DDPM_CHECK(c.cross_attention(),
             "export to diffusers' UNet2DConditionModel: this model has no cross-attention (context_dim 0); "
             "write it as a UNet2DModel (config_to_diffusers)");
  DDPM_CHECK(!c.rescale_residual,
             "export to diffusers: rescale_residual (1/sqrt 2) has no UNet2DConditionModel equivalent");
  DDPM_CHECK(!c.resblock_updown,
             "export to diffusers: residual down/up-sampling blocks (resblock_updown) have no UNet2DConditionModel "
             "equivalent among its CrossAttnDownBlock2D/DownBlock2D blocks");
  DDPM_CHECK(!c.cond_augmented() && !c.guidance_embedding && !c.super_res(),
             "export to diffusers: a super-resolution, conditioning-augmented or guidance-distilled model has no "
             "UNet2DConditionModel equivalent here");
  const DiffusersBlocks b = diffusers_blocks(c, "CrossAttnDownBlock2D", "CrossAttnUpBlock2D");
  // attention_head_dim is UNet2DConditionModel's HEAD COUNT (see read_cross_attention): one
  // number for a fixed count, else the count of each block (channels / channels per head).
  json heads = c.num_heads;
  if (c.num_head_channels > 0) {
    heads = json::array();
    for (int ch : b.channels) heads.push_back(ch / c.num_head_channels);
  }
  json j{{"_class_name", kConditional},
         {"sample_size", c.image_size},
         {"in_channels", c.in_channels},
         {"out_channels", c.out_channels()},
         {"center_input_sample", false},
         {"flip_sin_to_cos", c.time_embedding == TimestepEmbeddingStyle::improved},
         {"freq_shift", c.time_embedding == TimestepEmbeddingStyle::improved ? 0 : 1},
         {"down_block_types", b.down},
         {"mid_block_type", "UNetMidBlock2DCrossAttn"},
         {"up_block_types", b.up},
         {"only_cross_attention", false},
         {"block_out_channels", b.channels},
         {"layers_per_block", c.num_res_blocks},
         {"downsample_padding", 1},
         {"mid_block_scale_factor", 1},
         {"dropout", c.dropout},
         {"act_fn", "silu"},
         {"norm_num_groups", c.norm_groups},
         {"norm_eps", c.norm_eps},
         {"cross_attention_dim", c.context_dim},
         {"transformer_layers_per_block", c.transformer_depth},
         {"attention_head_dim", heads},
         {"num_attention_heads", nullptr},
         {"dual_cross_attention", false},
         {"use_linear_projection", false},  // proj_in/proj_out are 1x1 convolutions
         {"class_embed_type", nullptr},
         {"num_class_embeds", c.num_classes > 0 ? json(c.num_classes + 1) : json(nullptr)},
         {"upcast_attention", false},
         {"resnet_time_scale_shift", c.use_scale_shift_norm ? "scale_shift" : "default"},
         {"time_embedding_type", "positional"},
         {"conv_in_kernel", 3},
         {"conv_out_kernel", 3},
         {"attention_type", "default"},
         // The pooled context (unet.h context_pool_heads): diffusers' TextTimeEmbedding.
         {"addition_embed_type", c.context_pooled() ? json("text") : json(nullptr)}};
  if (c.context_pooled()) j["addition_embed_type_num_heads"] = c.context_pool_heads;
  return j;
}

// --- state dicts ----------------------------------------------------------------------------

namespace {

// out[o, a, b, c] = in[o, perm...]: a 4-D axis permutation of a host tensor, where
// `out_of_in[i]` names the input axis that becomes output axis i.
template <class T>
Tensor permute4(const Tensor& in, const int out_of_in[4]) {
  const Shape& s = in.shape();
  Shape os{s[out_of_in[0]], s[out_of_in[1]], s[out_of_in[2]], s[out_of_in[3]]};
  Tensor out = Tensor::empty(os, in.dtype());
  std::int64_t in_stride[4] = {s[1] * s[2] * s[3], s[2] * s[3], s[3], 1};
  const T* src = in.data<T>();
  T* dst = out.data<T>();
  std::int64_t i = 0;
  for (std::int64_t a = 0; a < os[0]; ++a)
    for (std::int64_t b = 0; b < os[1]; ++b)
      for (std::int64_t c = 0; c < os[2]; ++c)
        for (std::int64_t d = 0; d < os[3]; ++d)
          dst[i++] = src[a * in_stride[out_of_in[0]] + b * in_stride[out_of_in[1]] + c * in_stride[out_of_in[2]] +
                         d * in_stride[out_of_in[3]]];
  return out;
}

Tensor permute4(const Tensor& w, const int out_of_in[4]) {
  DDPM_CHECK(w.ndim() == 4, "layout conversion needs a 4-D tensor, got " << w.describe());
  Tensor h = w.cpu();
  if (h.dtype() == DType::f64) return permute4<double>(h, out_of_in);
  DDPM_CHECK(h.dtype() == DType::f32, "layout conversion supports f32 and f64, got " << h.describe());
  return permute4<float>(h, out_of_in);
}

}  // namespace

Tensor krsc_to_oihw(const Tensor& w) {
  static const int perm[4] = {0, 3, 1, 2};  // [O, kh, kw, I] -> [O, I, kh, kw]
  return permute4(w, perm);
}

Tensor oihw_to_krsc(const Tensor& w) {
  static const int perm[4] = {0, 2, 3, 1};  // [O, I, kh, kw] -> [O, kh, kw, I]
  return permute4(w, perm);
}

std::vector<std::pair<std::string, Tensor>> export_state_dict(const nn::Module& net) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, t] : net.named_parameters())
    out.emplace_back(name, t.ndim() == 4 ? krsc_to_oihw(t.cpu()) : t.cpu().clone());
  return out;
}

void load_state_dict(nn::Module& net, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& source) {
  std::map<std::string, Tensor> given;
  for (const auto& [name, t] : tensors) given[name] = t;
  std::vector<std::string> missing, mismatched;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (parameter, value in our layout)
  for (const auto& [name, p] : net.named_parameters()) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
      continue;
    }
    Tensor v = it->second;
    given.erase(it);
    if (v.dtype() != DType::f32 && v.dtype() != DType::f64) {
      mismatched.push_back(name + " (dtype " + dtype_name(v.dtype()) + ")");
      continue;
    }
    if (v.ndim() == 4) v = oihw_to_krsc(v);
    if (v.shape() != p.shape()) {
      mismatched.push_back(name + " (file " + shape_str(v.shape()) + ", model " + shape_str(p.shape()) + ")");
      continue;
    }
    copies.emplace_back(p, v);
  }
  if (!missing.empty() || !given.empty() || !mismatched.empty()) {
    std::ostringstream os;
    os << source << " does not match the model:";
    auto list = [&os](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      os << "\n  " << what << " (" << names.size() << "):";
      for (std::size_t i = 0; i < names.size() && i < 10; ++i) os << " " << names[i];
      if (names.size() > 10) os << " ...";
    };
    std::vector<std::string> unexpected;
    for (const auto& kv : given) unexpected.push_back(kv.first);
    list("missing", missing);
    list("unexpected", unexpected);
    list("mismatched", mismatched);
    DDPM_THROW(ValueError, os.str());
  }
  for (auto& [p, v] : copies) {
    Tensor p_mut = p;
    p_mut.copy_from(v.to(p.dtype()).to(p.device()));
  }
}

void save_diffusers_folder(const UNet& net, const std::string& dir) {
  json cfg = config_to_diffusers(net.config());
  auto tensors = export_state_dict(net);
  publish_directory(dir, [&](const std::string& tmp) {
    write_file_atomic(tmp + "/config.json", cfg.dump(2) + "\n");
    save_safetensors(tmp + "/diffusion_pytorch_model.safetensors", tensors, {{"format", "pt"}});
  });
}

std::unique_ptr<UNet> load_diffusers_folder(const std::string& dir, Device device) {
  json cfg;
  const std::string cfg_path = dir + "/config.json";
  try {
    cfg = json::parse(read_file(cfg_path));
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, cfg_path << " is not valid JSON: " << e.what());
  }
  UNetConfig c = config_from_diffusers(cfg);
  Generator gen(0);
  auto net = std::make_unique<UNet>(c, gen, device);
  const std::string weights = dir + "/diffusion_pytorch_model.safetensors";
  load_state_dict(*net, load_safetensors(weights).tensors, weights);
  return net;
}

}  // namespace ddpm::unet
