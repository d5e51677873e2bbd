// tests/support/tiny_unet.h: the smallest UNet the tests build (two levels of 8 and 16
// channels, one residual block each, 4 GroupNorm groups, no dropout), so a forward pass
// costs milliseconds. Tests set what they exercise on top (attention, heads, classes).
#pragma once

#include "models/unet/unet.h"

namespace ddpm::testing {

inline unet::UNetConfig tiny_unet_config(int image_size = 8, int in_channels = 3) {
  unet::UNetConfig cfg;
  cfg.image_size = image_size;
  cfg.in_channels = in_channels;
  cfg.model_channels = 8;
  cfg.channel_mult = {1, 2};
  cfg.num_res_blocks = 1;
  cfg.attention_resolutions = {};
  cfg.norm_groups = 4;
  cfg.num_heads = 1;
  cfg.dropout = 0;
  return cfg;
}

}  // namespace ddpm::testing
