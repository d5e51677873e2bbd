// models/unet/level_config.cpp: see level_config.h.
#include "models/unet/level_config.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <sstream>
#include <string>

#include "engine/error.h"

namespace ddpm::unet {

std::int64_t LevelConfig::level_channels(int level) const {
  return static_cast<std::int64_t>(model_channels) * channel_mult.at(static_cast<std::size_t>(level));
}

int LevelConfig::heads_for(std::int64_t channels) const {
  return num_head_channels > 0 ? static_cast<int>(channels / num_head_channels) : num_heads;
}

bool LevelConfig::wants_attention(int level) const {
  const int res = image_size >> level;
  return std::find(attention_resolutions.begin(), attention_resolutions.end(), res) != attention_resolutions.end();
}

void LevelConfig::validate_levels(const char* what) const {
  const int n = levels();
  DDPM_CHECK(n >= 1, what << ": channel_mult is empty");
  DDPM_CHECK(image_size > 0 && in_channels > 0 && model_channels > 0,
             what << ": image_size, in_channels and model_channels must be positive, got " << image_size << ", "
                  << in_channels << " and " << model_channels);
  DDPM_CHECK(image_size % (1 << (n - 1)) == 0,
             what << ": image size " << image_size << " cannot be halved " << n - 1 << " times for " << n
                  << " levels; pad the images (28 -> 32) or use fewer levels");
  DDPM_CHECK(num_res_blocks >= 1, what << ": num_res_blocks must be at least 1, got " << num_res_blocks);
  DDPM_CHECK(dropout >= 0 && dropout < 1, what << ": dropout must be in [0, 1), got " << dropout);
  DDPM_CHECK(norm_groups > 0, what << ": norm_groups must be positive, got " << norm_groups);
  DDPM_CHECK(norm_eps > 0, what << ": norm_eps must be positive, got " << norm_eps);
  for (int m : channel_mult) {
    const std::int64_t ch = static_cast<std::int64_t>(model_channels) * m;
    DDPM_CHECK(m > 0 && ch % norm_groups == 0, what << ": level channels " << ch << " (model_channels "
                                                    << model_channels << " x " << m << ") are not divisible by "
                                                    << norm_groups << " groups");
    if (num_head_channels > 0)
      DDPM_CHECK(ch % num_head_channels == 0,
                 what << ": " << num_head_channels << " channels per head do not divide " << ch << " channels");
    else
      DDPM_CHECK(num_heads > 0 && ch % num_heads == 0,
                 what << ": " << num_heads << " heads do not divide " << ch << " channels");
  }
  for (int r : attention_resolutions) {
    bool found = false;
    std::ostringstream sizes;
    for (int i = 0; i < n; ++i) {
      found = found || (image_size >> i) == r;
      sizes << (i ? ", " : "") << (image_size >> i);
    }
    DDPM_CHECK(found, what << ": attention resolution " << r << " is not a level size (" << sizes.str() << ")");
  }
}

nlohmann::json level_config_to_json(const LevelConfig& c) {
  return nlohmann::json{{"image_size", c.image_size},
                        {"in_channels", c.in_channels},
                        {"model_channels", c.model_channels},
                        {"channel_mult", c.channel_mult},
                        {"num_res_blocks", c.num_res_blocks},
                        {"attention_resolutions", c.attention_resolutions},
                        {"num_heads", c.num_heads},
                        {"num_head_channels", c.num_head_channels},
                        {"norm_groups", c.norm_groups},
                        {"norm_eps", c.norm_eps},
                        {"dropout", c.dropout},
                        {"use_scale_shift_norm", c.use_scale_shift_norm},
                        {"resblock_updown", c.resblock_updown},
                        {"time_embedding", timestep_embedding_style_name(c.time_embedding)}};
}

void require_json_ints(const nlohmann::json& v, const std::string& where) {
  auto one = [&](const nlohmann::json& x) {
    const bool fits = x.is_number_unsigned()  ? x.get<std::uint64_t>() <= INT_MAX
                      : x.is_number_integer() ? x.get<std::int64_t>() >= INT_MIN && x.get<std::int64_t>() <= INT_MAX
                                              : false;
    DDPM_CHECK_AS(fits, IoError, where << " must be an integer in [" << INT_MIN << ", " << INT_MAX << "], got "
                                       << x.dump());
  };
  if (v.is_array())
    for (const nlohmann::json& x : v) one(x);
  else
    one(v);
}

void read_level_config(const nlohmann::json& j, LevelConfig& c, const char* what) {
  for (const char* key : {"image_size", "in_channels", "model_channels", "channel_mult", "num_res_blocks",
                          "attention_resolutions", "num_heads", "num_head_channels", "norm_groups"})
    if (j.contains(key)) require_json_ints(j.at(key), std::string(what) + ": " + key);
  c.image_size = j.at("image_size").get<int>();
  c.in_channels = j.at("in_channels").get<int>();
  c.model_channels = j.at("model_channels").get<int>();
  c.channel_mult = j.at("channel_mult").get<std::vector<int>>();
  c.num_res_blocks = j.at("num_res_blocks").get<int>();
  c.attention_resolutions = j.at("attention_resolutions").get<std::vector<int>>();
  c.num_heads = j.at("num_heads").get<int>();
  c.num_head_channels = j.at("num_head_channels").get<int>();
  c.norm_groups = j.at("norm_groups").get<int>();
  c.norm_eps = j.at("norm_eps").get<double>();
  c.dropout = j.at("dropout").get<double>();
  c.use_scale_shift_norm = j.at("use_scale_shift_norm").get<bool>();
  c.resblock_updown = j.at("resblock_updown").get<bool>();
  c.time_embedding = parse_timestep_embedding_style(j.at("time_embedding").get<std::string>());
}

}  // namespace ddpm::unet
