// models/eval/analytic_gamma_eval.h: `ddpm-eval analytic-gamma`, the Monte Carlo estimate of
// Analytic-DPM's Gamma_t = E ||eps_theta(x_t, t)||^2 / d for a trained run (the math is in
// models/diffusion/analytic_variance.h), written as the JSON file that `ddpm-sample --variance
// analytic --analytic-gamma FILE` and `ddpm-eval bpd --variance analytic --analytic-gamma FILE`
// read.
//
//   ddpm-eval analytic-gamma --checkpoint RUN --data fashion-mnist --num-images 256 --out gamma.json
//   ddpm-eval analytic-gamma --checkpoint RUN --data fashion-mnist --timesteps 100 --out gamma100.json
//
// The images are the first M of the split (train by default: the paper estimates on the
// training data), the model sees each image's label when class-conditional. Cost: one network
// call per timestep and batch, so T * ceil(M / batch) calls; --timesteps (respace.h's forms,
// the same string sampling uses: "100", "ddim50", "10,15,20") estimates only a trajectory's
// steps, which is all its sampling needs (bits/dim needs every timestep).
// Refused (ValueError, before any work and with nothing written): a model with learned
// variance, an EDM, latent, super-resolution or text-conditioned run, an existing --out
// without --overwrite, more images than the split holds.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "engine/device.h"
#include "models/diffusion/analytic_variance.h"

namespace ddpm::eval {

struct AnalyticGammaArgs {
  std::string checkpoint, data = "fashion-mnist", data_dir, split = "train";
  std::string out;                // the JSON file
  std::string timesteps;          // "" = all T, else a respacing string (respace.h)
  std::int64_t num_images = 256;  // M
  std::int64_t batch_size = 64;
  bool ema = true;
  bool overwrite = false;
  std::uint64_t seed = 0;         // of the eps draws
  Device device = Device::cpu();
};

diffusion::AnalyticGamma run_analytic_gamma(const AnalyticGammaArgs& a, std::ostream& out);

}  // namespace ddpm::eval
