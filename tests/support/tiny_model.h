// tests/support/tiny_model.h: a ready-to-sample model for the ddpm-sample tests: the tiny
// UNet of tiny_unet.h (optionally class-conditional) with every weight perturbed by 0.05 N(0, 1)
// (a freshly built UNet outputs exactly 0, which would hide wiring mistakes) and T = 40.
#pragma once

#include <memory>
#include <vector>

#include "engine/rng.h"
#include "models/nn/module.h"
#include "models/run/model_source.h"
#include "support/tiny_unet.h"

namespace ddpm::testing {

// Adds 0.05 N(0, 1) from g to every parameter of an f32 CPU network, in named_parameters order.
inline void perturb_weights(const nn::Module& net, Generator& g) {
  for (auto& [name, t] : net.named_parameters()) {
    std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.05f * noise[static_cast<std::size_t>(i)];
  }
}

inline run::ModelSource tiny_model_source(int num_classes = 0) {
  run::ModelSource m;
  Generator g(11);
  unet::UNetConfig cfg = tiny_unet_config();
  cfg.num_classes = num_classes;
  m.net = std::make_unique<unet::UNet>(cfg, g, Device::cpu());
  perturb_weights(*m.net, g);
  m.diffusion.diffusion_steps = 40;
  m.kind = "test";
  return m;
}

}  // namespace ddpm::testing
