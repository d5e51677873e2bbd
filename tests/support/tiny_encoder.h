// tests/support/tiny_encoder.h: the smallest noisy classifier (models/unet/encoder.h) the
// tests build, two levels of 8 and 16 channels, with every weight perturbed by
// 0.1 N(0, 1) (a fresh one has a zero head and outputs constant logits, which would hide
// wiring mistakes), optionally in f64 for finite-difference checks.
#pragma once

#include <memory>
#include <vector>

#include "engine/rng.h"
#include "models/unet/encoder.h"

namespace ddpm::testing {

inline unet::EncoderConfig tiny_encoder_config(int image_size = 8, int in_channels = 3, int num_classes = 3) {
  unet::EncoderConfig c;
  c.image_size = image_size;
  c.in_channels = in_channels;
  c.model_channels = 8;
  c.channel_mult = {1, 2};
  c.num_res_blocks = 1;
  c.attention_resolutions = {};
  c.norm_groups = 4;
  c.num_classes = num_classes;
  return c;
}

// Rewrites every parameter as an f64 copy in place (the modules hold the same impls). The
// copy's impl is a fresh tensor's, so the parameter's requires_grad is set again: without it
// a gradient check would silently skip every parameter.
inline void parameters_to_f64(const nn::Module& m) {
  for (auto [name, p] : m.named_parameters()) {
    const bool requires_grad = p.requires_grad();
    const Tensor d = p.to(DType::f64);
    *p.impl() = *d.impl();
    p.set_requires_grad(requires_grad);
  }
}

inline std::unique_ptr<unet::NoisyClassifier> tiny_encoder(const unet::EncoderConfig& cfg, bool f64,
                                                           std::uint64_t seed = 5) {
  Generator g(seed);
  auto net = std::make_unique<unet::NoisyClassifier>(cfg, g, Device::cpu());
  for (const auto& [name, t] : net->named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), g).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
  if (f64) parameters_to_f64(*net);
  return net;
}

}  // namespace ddpm::testing
