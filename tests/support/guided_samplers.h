// tests/support/guided_samplers.h: what the guidance tests (test_guidance_interval.cpp,
// test_autoguidance.cpp) share: a smooth stub network that depends on x, t and the label,
// and one run of each sampler family that forms guided predictions (guidance.h), so a
// property can be checked on every one of them.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/plms.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion::testing {

// out = amp tanh(0.7 x + 0.002 t + 0.3 (y + 1)) per element, y = -1 without labels; a
// different amp / offset gives a "different model". Row-wise, so a sample's output does not
// depend on the rest of its batch. Every call is counted with its batch size.
struct StubNet {
  double amp = 0.8, offset = 0.0;
  std::vector<std::int64_t> batches;  // the batch size of each call
  DenoiseFn fn() {
    return [this](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
      batches.push_back(x.dim(0));
      std::vector<double> v = x.to_double_vector();
      const std::size_t row = v.size() / t.size();
      for (std::size_t i = 0; i < v.size(); ++i) {
        const std::size_t r = i / row;
        const double label = y.empty() ? -1.0 : static_cast<double>(y[r]);
        v[i] = amp * std::tanh(0.7 * v[i] + 0.002 * t[r] + 0.3 * (label + 1.0) + offset);
      }
      return Tensor::from_vector(v, x.shape(), x.dtype());
    };
  }
};

// The sampler families with their own call site of network_output.
inline const std::vector<std::string>& guided_sampler_names() {
  static const std::vector<std::string> names = {"ddpm", "ddim", "plms", "heun", "dpm++2m", "unipc", "edm-heun"};
  return names;
}

// n = 3 samples of shape [3, 2] with `sampler`, few steps, seed 7; config's guidance fields
// are used as given.
inline Tensor run_guided_sampler(const std::string& sampler, const DenoiseFn& net, SamplerConfig cfg,
                                 const std::vector<std::int64_t>& labels) {
  const DiffusionSchedule base(linear_betas(40));
  const Shape shape{3, 2};
  Generator gen(7);
  cfg.clip_x0 = false;
  if (sampler == "ddpm") {
    cfg.kind = SamplerConfig::Kind::ddpm;
    cfg.respacing = "8";
    return sample(base, net, shape, labels, cfg, gen);
  }
  if (sampler == "ddim" || sampler == "plms") {
    cfg.kind = SamplerConfig::Kind::ddim;
    cfg.respacing = "ddim8";
    return sampler == "plms" ? plms_sample(base, net, shape, labels, cfg, gen) : sample(base, net, shape, labels, cfg, gen);
  }
  cfg.kind = SamplerConfig::Kind::heun;
  cfg.heun_steps = 6;
  if (sampler == "edm-heun") return edm_sample(net, EdmConfig{}, shape, labels, cfg, gen);
  KarrasSolver solver{};
  parse_karras_solver(sampler, solver);
  return karras_sample(base, net, shape, labels, cfg, gen, Device::cpu(), {}, solver);
}

}  // namespace ddpm::diffusion::testing
