// tests/support/autoencoder_recompute_step.h: one training step of a small KL autoencoder
// (models/autoencoder/autoencoder.h) with and without activation checkpointing
// (engine/recompute.h), on either device and in f32 or f64 (f64 on the CPU only), for the
// CPU and GPU recompute tests: the loss, the gradient slab, the tensor bytes at the step's
// peak above what was live before it, and what the step left alive.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/autograd.h"
#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/storage.h"
#include "models/autoencoder/autoencoder.h"

namespace ddpm::testing {

// Three levels (f = 4) with two residual blocks per encoder level (three per decoder
// level), a channel change (shortcut conv) at each level step, and the middle attention.
inline autoencoder::AutoencoderConfig autoencoder_recompute_config() {
  autoencoder::AutoencoderConfig c;
  c.in_channels = 3;
  c.base_channels = 8;
  c.channel_mult = {1, 2, 2};
  c.num_res_blocks = 2;
  c.z_channels = 4;
  c.norm_groups = 4;
  return c;
}

struct AutoencoderStep {
  double loss = 0;
  std::vector<double> grads;       // the gradient slab, every parameter
  std::size_t peak_bytes = 0;      // above the bytes live before the forward
  std::size_t leaked_bytes = 0;    // live after the step's tensors died, minus before
};

// batch images of size x size, l1 reconstruction plus a visible KL term (weight 0.1, so
// the encoder's log-variance half gets a gradient of its own).
inline AutoencoderStep autoencoder_training_step(Device device, DType dtype, bool with_recompute,
                                                 std::int64_t batch = 4, std::int64_t size = 16,
                                                 const autoencoder::AutoencoderConfig& cfg = autoencoder_recompute_config()) {
  Generator init(13);
  autoencoder::Autoencoder ae(cfg, init, Device::cpu());
  // Away from the zero-initialized attention output, so gradients reach every layer.
  for (const auto& [name, t] : ae.named_parameters()) {
    const std::vector<float> noise = randn(t.shape(), init).to_vector();
    float* p = t.data<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
  if (dtype == DType::f64) {
    for (const auto& [name, p] : ae.named_parameters()) *p.impl() = *p.to(DType::f64).impl();
  }
  ParameterSlab slab(ae.named_parameters());
  slab.to(device);
  const int f = cfg.downsampling_factor();
  const Tensor x = randn({batch, size, size, cfg.in_channels}, init, Device::cpu(), dtype).to(device);
  const Tensor eps = randn({batch, size / f, size / f, cfg.z_channels}, init, Device::cpu(), dtype).to(device);
  AutoencoderStep r;
  const std::size_t before = memory_stats(device.type).live;
  reset_peak_memory(device.type);
  {
    const autoencoder::AutoencoderLossTerms l = autoencoder::autoencoder_loss(
        ae, x, eps, autoencoder::ReconstructionLoss::l1, 0.1, nn::Context{true, nullptr, with_recompute});
    r.loss = l.total.item();
    l.total.backward();
  }
  r.peak_bytes = memory_stats(device.type).peak - before;
  r.leaked_bytes = memory_stats(device.type).live - before;
  r.grads = slab.grads().to_double_vector();
  return r;
}

}  // namespace ddpm::testing
