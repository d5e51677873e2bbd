#include "models/run/presets.h"

#include <algorithm>

#include "engine/error.h"

namespace ddpm::run {

std::vector<std::string> preset_names() { return {"auto", "cpu-small", "gpu-medium", "gpu-cifar", "none"}; }

namespace {
[[noreturn]] void throw_unknown_preset(const std::string& name) {
  std::string expected;
  for (const std::string& n : preset_names()) expected += (expected.empty() ? "" : ", ") + n;
  DDPM_THROW(ValueError, "--preset '" << name << "' is not a preset; expected one of " << expected);
}
}  // namespace

std::string resolve_preset(const std::string& name, Device device) {
  if (name == "auto") return device.is_cuda() ? "gpu-medium" : "cpu-small";
  for (const std::string& n : preset_names())
    if (n == name) return name;
  throw_unknown_preset(name);
}

namespace {
void set_preset_fields(const std::string& name, TrainOptions& o) {
  if (name == "none") return;
  if (name == "cpu-small") {
    // 28x28 images unpadded (3 levels: 28 -> 14 -> 7 with 16, 32, 64 channels), no
    // attention, 1 residual block per level, 8 GroupNorm groups, T = 1000 linear, batch 32.
    // Measured with ddpm-train --steps 20 (plus the final 16-image, 50-step DDIM grid) on
    // the 2-core build machine while it was shared (load average 8-19), Release, OpenBLAS:
    //   32 ch, mult 1,2,2, 1 block:  11.7 img/s under load, 42.7 CPU-s (20 steps + grid)
    //   32 ch, mult 1,2,2, 2 blocks: 0.6 img/s (load 19, not comparable)
    //   16 ch, mult 1,2,2, 1 block:  1.8 img/s (load 19, not comparable)
    //   16 ch, mult 1,2,4, 1 block:  23.3 img/s under load 8, 27.5 CPU-s (20 steps + grid)
    // The last is the preset: about 1 CPU-s per step at batch 32, so 1000 steps take some
    // 8-10 minutes on two idle cores (longer on a loaded machine), ~32k images seen: blurry
    // but recognisable garment silhouettes are what to expect, not finished samples.
    o.num_channels = 16;
    o.channel_mult = "1,2,4";
    o.num_res_blocks = 1;
    o.attention_resolutions = "";
    o.norm_groups = 8;
    o.dropout = 0.0;
    o.pad_to_32 = false;
    o.batch_size = 32;
    o.lr = 2e-3;
    o.warmup_steps = 100;
    o.grad_clip = 1.0;
    o.ema_rate = 0.995;
    o.steps = 1000;
    o.save_every = 500;
    o.sample_every = 500;
    o.log_every = 25;
    o.num_samples = 16;
    o.sample_steps = 50;
    return;
  }
  if (name == "gpu-medium") {
    o.num_channels = 64;
    o.channel_mult = "1,2,2,2";
    o.num_res_blocks = 2;
    o.attention_resolutions = "16";
    o.norm_groups = 32;
    o.dropout = 0.1;
    o.pad_to_32 = true;
    o.batch_size = 128;
    o.lr = 2e-4;
    o.warmup_steps = 500;
    o.ema_rate = 0.9995;
    o.steps = 20000;
    o.save_every = 5000;
    o.sample_every = 2000;
    o.log_every = 100;
    o.num_samples = 64;
    return;
  }
  if (name == "gpu-cifar") {
    // DDPM (Ho et al. 2020, appendix B): 128 channels, multipliers 1,2,2,2, 2 blocks,
    // attention at 16x16, dropout 0.1, lr 2e-4 with 5000 warm-up steps, batch 128, EMA
    // 0.9999, random flips, 800k steps.
    o.num_channels = 128;
    o.channel_mult = "1,2,2,2";
    o.num_res_blocks = 2;
    o.attention_resolutions = "16";
    o.norm_groups = 32;
    o.dropout = 0.1;
    o.pad_to_32 = true;
    o.random_flip = true;
    o.batch_size = 128;
    o.lr = 2e-4;
    o.warmup_steps = 5000;
    o.ema_rate = 0.9999;
    o.steps = 800000;
    o.save_every = 10000;
    o.sample_every = 10000;
    o.log_every = 100;
    o.num_samples = 64;
    return;
  }
  throw_unknown_preset(name);
}

}  // namespace

void apply_preset(const std::string& name, TrainOptions& o) {
  set_preset_fields(name, o);
  if (o.text.enabled) o.lr = std::min(o.lr, kTextPresetMaxLr);
}

}  // namespace ddpm::run
