// tests/support/tiny_autoencoder.h: the smallest autoencoder folder the latent-diffusion tests
// train (two steps on the toy data, f = 4: 16x16 images -> 4x4x3 latents), for runs made with
// tiny_run(...).autoencoder = tiny_autoencoder(...) and an empty attention_resolutions (a 4x4
// latent UNet). `seed` gives another autoencoder of the same shape (other weights).
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

#include "models/run/autoencoder_run.h"
#include "models/run/train_run.h"
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

// A trained latent teacher for the distillation tests: tiny_run on tiny_autoencoder(ae_name),
// a 4x4 latent UNet predicting v, no dropout, 2 steps with a checkpoint at the end. Returns
// the run folder.
inline std::string tiny_latent_v_teacher(const std::string& run_name, const std::string& ae_name) {
  run::TrainOptions t = tiny_run(temp_run(run_name));
  t.autoencoder = tiny_autoencoder(ae_name);
  t.attention_resolutions = "";  // a 4x4 latent UNet
  t.predict = "v";
  t.dropout = 0;
  t.steps = 2;
  t.save_every = 2;
  run::train_run(t);
  return t.out;
}

}  // namespace ddpm::testing
