// tests/support/tiny_autoencoder.h: the smallest autoencoder folder the latent-diffusion tests
// train (two steps on the toy data, f = 4: 16x16 images -> 4x4x3 latents), for runs made with
// tiny_run(...).autoencoder = tiny_autoencoder(...) and an empty attention_resolutions (a 4x4
// latent UNet). `seed` gives another autoencoder of the same shape (other weights).
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

#include "models/run/autoencoder_run.h"
#include "support/tiny_run.h"

namespace ddpm::testing {

inline std::string tiny_autoencoder(const std::string& name, std::uint64_t seed = 0) {
  run::AutoencoderTrainArgs a;
  a.data = "toy";
  a.steps = 2;
  a.batch_size = 4;
  a.lr = 1e-3;
  a.base_channels = 8;
  a.channel_mult = "1,2,2";
  a.norm_groups = 4;
  a.z_channels = 3;
  a.scale_images = 16;
  a.log_every = 0;
  a.seed = seed;
  a.out = temp_run(name);
  std::ostringstream log;
  run::run_autoencoder_train(a, log);
  return a.out;
}

}  // namespace ddpm::testing
