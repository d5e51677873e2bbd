// tests/support/recompute_step.h: one training step of a tiny UNet with and without
// activation checkpointing (engine/recompute.h), on either device, for the CPU and GPU
// recompute tests: the gradient slab, the tensor bytes at the step's peak above what was
// live before it, and where the dropout generator ended.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops/reduce.h"
#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/storage.h"
#include "models/unet/unet.h"
#include "support/tiny_unet.h"

namespace ddpm::testing {

// The tiny UNet with everything recomputation touches: dropout, attention, AdaGN.
inline unet::UNetConfig recompute_test_config() {
  unet::UNetConfig cfg = tiny_unet_config(8);
  cfg.attention_resolutions = {4};
  cfg.dropout = 0.3;
  cfg.use_scale_shift_norm = true;
  cfg.num_res_blocks = 2;
  return cfg;
}

struct StepResult {
  std::vector<float> grads;
  std::size_t peak_bytes = 0;     // above the bytes live before the forward
  std::size_t leaked_bytes = 0;   // live after the step's tensors died, minus before
  std::uint64_t offset_after = 0;  // the dropout generator's, after the forward
};

inline StepResult unet_training_step(Device device, bool with_recompute) {
  Generator init(5);
  unet::UNet net(recompute_test_config(), init, Device::cpu());
  ParameterSlab slab(net.named_parameters());
  // Away from the zero-initialized outputs (conv2, to_out, conv_out), so gradients reach
  // every layer.
  {
    const std::vector<float> noise = randn({slab.slab_numel()}, init).to_vector();
    float* v = slab.values().data<float>();
    for (std::int64_t i = 0; i < slab.slab_numel(); ++i) v[i] += 0.1f * noise[static_cast<std::size_t>(i)];
  }
  slab.to(device);
  const Tensor x = randn({4, 8, 8, 3}, init).to(device);
  const Tensor target = randn({4, 8, 8, 3}, init).to(device);
  Generator drop(9);
  StepResult r;
  const std::size_t before = memory_stats(device.type).live;
  reset_peak_memory(device.type);
  {
    const Tensor out = net.forward(x, {10.0, 200.0, 500.0, 999.0}, {}, nn::Context{true, &drop, with_recompute});
    r.offset_after = drop.offset();
    mse_loss(out, target).backward();
  }
  r.peak_bytes = memory_stats(device.type).peak - before;
  r.leaked_bytes = memory_stats(device.type).live - before;
  r.grads = slab.grads().to_vector();
  return r;
}

}  // namespace ddpm::testing
