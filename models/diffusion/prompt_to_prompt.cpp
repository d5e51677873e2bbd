// models/diffusion/prompt_to_prompt.cpp: see prompt_to_prompt.h.
#include "models/diffusion/prompt_to_prompt.h"

#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"

namespace ddpm::diffusion {

std::int64_t replace_steps(double fraction, std::int64_t num_steps, const char* what) {
  DDPM_CHECK(std::isfinite(fraction) && fraction >= 0.0 && fraction <= 1.0,
             what << " must lie in [0, 1] (the fraction of the sampling steps, from the first, whose maps the edit "
                     "takes from the source), got "
                  << fraction);
  return static_cast<std::int64_t>(std::floor(fraction * static_cast<double>(num_steps)));
}

PromptToPromptController::PromptToPromptController(const PromptToPromptConfig& config, std::int64_t pairs,
                                                   std::int64_t num_steps)
    : config_(config), pairs_(pairs), num_steps_(num_steps) {
  DDPM_CHECK(pairs >= 1 && num_steps >= 1, "Prompt-to-Prompt: needs at least one pair and one step, got "
                                               << pairs << " pairs and " << num_steps << " steps");
  cross_steps_ = replace_steps(config.cross_replace, num_steps, "--cross-replace");
  self_steps_ = replace_steps(config.self_replace, num_steps, "--self-replace");
  DDPM_CHECK(std::isfinite(config.reweight_scale) && config.reweight_scale >= 0.0,
             "--reweight: the scale must be a number >= 0, got " << config.reweight_scale);
}

void PromptToPromptController::set_step(std::int64_t step) {
  DDPM_CHECK(step >= 0 && step < num_steps_,
             "Prompt-to-Prompt: step " << step << " is outside the controller's " << num_steps_ << " steps");
  step_ = step;
}

Tensor PromptToPromptController::edit(const Tensor& probs, const unet::AttentionSite& site) {
  const std::int64_t B = probs.dim(0), n = pairs_;
  DDPM_CHECK(B == 2 * n || B == 4 * n, "Prompt-to-Prompt at " << site.name << ": a batch of " << B
                                                               << " rows is not [source " << n << "; edit " << n
                                                               << "] (plus as many unconditional rows)");
  const bool replace = site.cross ? replaces_cross() : replaces_self();
  const bool reweight = site.cross && config_.reweight_token >= 0 && config_.reweight_scale != 1.0;
  Tensor out = probs;
  if (replace || reweight) {
    const Tensor source = slice(probs, 0, 0, n);                  // M   [n, heads, Sq, Sk]
    Tensor edited = replace ? source : slice(probs, 0, n, n);     // M*
    if (reweight) {
      const std::int64_t Sk = probs.dim(3);
      DDPM_CHECK(config_.reweight_token < Sk, "Prompt-to-Prompt at " << site.name << ": re-weighted token "
                                                                      << config_.reweight_token << " is outside the "
                                                                      << Sk << " context tokens");
      // The equalizer: 1 for every token but j*, w for j*; broadcast over [n, heads, Sq, .].
      std::vector<double> w(static_cast<std::size_t>(Sk), 1.0);
      w[static_cast<std::size_t>(config_.reweight_token)] = config_.reweight_scale;
      edited = mul(edited, Tensor::from_vector(w, {Sk}, probs.dtype()).to(probs.device()));
    }
    std::vector<Tensor> parts = {source, edited};
    if (B > 2 * n) parts.push_back(slice(probs, 0, 2 * n, B - 2 * n));  // unconditional rows, untouched
    out = concat(parts, 0);
  }
  if (recording_) {
    given_[site.name] = probs;
    edited_[site.name] = out;
  }
  return out;
}

Tensor prompt_to_prompt_sample(const DiffusionSchedule& base, const DenoiseFn& net, const nn::Module& model,
                               const Shape& shape, const SamplerConfig& config, PromptToPromptController* controller,
                               Generator& gen, Device device) {
  DDPM_CHECK(config.kind != SamplerConfig::Kind::heun,
             "Prompt-to-Prompt samples with ddim or ddpm; the Heun family is not supported");
  DDPM_CHECK(config.corrector_steps == 0, "Prompt-to-Prompt does not run the Langevin corrector");
  DDPM_CHECK(!shape.empty() && shape[0] >= 1, "Prompt-to-Prompt: the shape needs a batch axis of at least 1");
  NoGradGuard no_grad;
  const std::int64_t n = shape[0];
  const RespacedSchedule rs = sampling_process(base, config.respacing);
  const DiffusionSchedule& s = rs.schedule;
  const std::int64_t K = s.num_timesteps();
  const VarianceType variance = resolve_variance(config, K < base.num_timesteps());
  DDPM_CHECK(variance != VarianceType::analytic, "Prompt-to-Prompt does not support the analytic variance");
  // Labels: 0 (the source prompt) for the first n rows, 1 (the edit prompt) for the rest.
  std::vector<std::int64_t> labels(static_cast<std::size_t>(2 * n), 0);
  std::fill(labels.begin() + n, labels.end(), 1);
  Shape pair_shape = shape;
  pair_shape[0] = 2 * n;
  check_sample_request(net, pair_shape, labels, config);

  std::unique_ptr<unet::ScopedAttentionController> hook;
  if (controller != nullptr) hook = std::make_unique<unet::ScopedAttentionController>(model, *controller);
  DDPM_CHECK(controller == nullptr || hook->sites() > 0,
             "Prompt-to-Prompt: the model has no cross-attention (transformer) blocks whose maps could be edited");

  const Tensor x_T = randn(shape, gen, device, config.dtype);  // one x_T for both prompts
  Tensor x_src = x_T, x_edit = x_T;
  for (std::int64_t i = K - 1; i >= 0; --i) {
    if (controller != nullptr) controller->set_step(K - 1 - i);  // j = 0 at t = T
    const Denoised d = denoise(rs, net, config, concat({x_src, x_edit}, 0), i, labels);
    auto half = [&d, n](std::int64_t begin) {
      return Denoised{slice(d.pred_x0, 0, begin, n),
                      d.var_values.defined() ? slice(d.var_values, 0, begin, n) : Tensor()};
    };
    Generator edit_gen = gen;  // the edit half draws the same z as the source half
    if (config.kind == SamplerConfig::Kind::ddpm) {
      x_src = ddpm_ancestral_step(s, variance, x_src, half(0), i, gen);
      x_edit = ddpm_ancestral_step(s, variance, x_edit, half(n), i, edit_gen);
    } else {
      x_src = ddim_step(s, config.eta, x_src, half(0), i, gen);
      x_edit = ddim_step(s, config.eta, x_edit, half(n), i, edit_gen);
    }
  }
  return concat({x_src, x_edit}, 0);
}

}  // namespace ddpm::diffusion
