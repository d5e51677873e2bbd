// models/unet/level_config.h: the configuration every network built from the UNet's
// resolution levels shares: the denoising UNet (unet.h) and the noisy classifier, its down
// half (encoder.h).
//
// A level is one feature-map size. Level i works at image_size / 2^i pixels with
// model_channels * channel_mult[i] channels, runs num_res_blocks residual blocks (each
// followed by self-attention when its size is in attention_resolutions), and halves the size
// before the next level (Ho et al. 2020, App. B; the ADM options of Dhariwal & Nichol 2021).
// Both networks condition on the timestep through the same sinusoidal embedding and MLP of
// width 4 * model_channels.
//
// UNetConfig and EncoderConfig derive from LevelConfig, so their fields read cfg.model_channels
// as before; each sets its own defaults in its constructor (the DDPM CIFAR-10 network for the
// UNet, a small ADM-style classifier for the encoder). This file also reads and writes the
// shared keys of their config.json, so both files spell a field the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/ops/embedding.h"

namespace ddpm::unet {

struct LevelConfig {
  int image_size = 32;                      // H = W; must halve (levels - 1) times
  int in_channels = 3;
  int model_channels = 0;                   // channels of the first level
  std::vector<int> channel_mult;            // one entry per level
  int num_res_blocks = 0;                   // residual blocks per level on the way down
  std::vector<int> attention_resolutions;   // feature-map sizes (pixels) that get attention
  int num_heads = 1;                        // heads per attention block ...
  int num_head_channels = -1;               // ... or, when > 0, channels per head
  int norm_groups = 0;                      // GroupNorm groups
  double norm_eps = 1e-5;                   // GroupNorm epsilon
  double dropout = 0.0;
  bool use_scale_shift_norm = false;        // AdaGN in the residual blocks
  bool resblock_updown = false;             // BigGAN-style resampling residual blocks
  TimestepEmbeddingStyle time_embedding = TimestepEmbeddingStyle::ddpm;

  int levels() const { return static_cast<int>(channel_mult.size()); }
  // model_channels * channel_mult[level]: the channels of every block of that level.
  std::int64_t level_channels(int level) const;
  int time_embed_dim() const { return 4 * model_channels; }
  // The heads of an attention block over `channels` channels: num_heads, or
  // channels / num_head_channels when channels per head are given (improved DDPM, sec. 3.4).
  int heads_for(std::int64_t channels) const;
  // Whether level `level` (feature maps of image_size >> level pixels) has attention.
  bool wants_attention(int level) const;

  // The checks every network built from these levels makes: positive sizes, an image size
  // that halves once per level, whole GroupNorm groups and heads in every level's channels,
  // attention only at level sizes. ValueError starting with `what` ("UNet config").
  void validate_levels(const char* what) const;

 protected:
  LevelConfig() = default;  // only as part of a network's config, which sets the defaults
};

// The shared fields under their names (the keys both config.json files have).
nlohmann::json level_config_to_json(const LevelConfig& c);
// Reads those keys into c; a missing key or a wrong type throws nlohmann::json's exception,
// which the caller turns into its IoError (it knows which file it reads). The integer keys
// are checked first with require_json_ints (IoError starting with `what`).
void read_level_config(const nlohmann::json& j, LevelConfig& c, const char* what);

// An integer field (or each element of a list of them) must be a JSON integer within int's
// range: nlohmann's get<int>() converts a double such as 1e300 with an undefined cast and
// wraps a 64-bit integer (found by tests/fuzz/fuzz_model_config). IoError naming `where`.
void require_json_ints(const nlohmann::json& v, const std::string& where);

}  // namespace ddpm::unet
