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

std::vector<std::int64_t> refinement_token_map(const std::vector<std::string>& source,
                                               const std::vector<std::string>& edit) {
  // Columns: 0 <bos>, 1 + i word i, 1 + size <eos> (models/text/tokenizer.h).
  const auto m = static_cast<std::int64_t>(source.size()), k = static_cast<std::int64_t>(edit.size());
  std::vector<std::int64_t> map(static_cast<std::size_t>(k + 2), -1);
  map[0] = 0;
  std::int64_t i = 0;  // the next source word to place
  for (std::int64_t j = 0; j < k; ++j)
    if (i < m && edit[static_cast<std::size_t>(j)] == source[static_cast<std::size_t>(i)]) map[1 + j] = 1 + i++;
  if (i < m) return {};  // source word i is not found (in order) in the edit
  map[static_cast<std::size_t>(k + 1)] = m + 1;  // <eos>
  return map;
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
  DDPM_CHECK(config.self_replace_max_tokens >= 0, "--self-replace-max-tokens must be >= 0 (0 = every layer), got "
                                                      << config.self_replace_max_tokens);
  for (std::int64_t a : config.token_map)
    DDPM_CHECK(a >= -1, "Prompt-to-Prompt: a refinement token map entry is " << a << " (a column >= 0, or -1)");
}

Tensor PromptToPromptController::replaced_cross(const Tensor& source, const Tensor& own,
                                                const std::string& site) const {
  if (config_.token_map.empty()) return source;  // word swap: M* <- M
  const std::int64_t Sk = source.dim(3);
  // Refinement, M*[:, :, j] <- M[:, :, A(j)] or kept, gathered in runs of consecutive columns
  // taken from one tensor at consecutive offsets (one slice per run).
  auto from = [&](std::int64_t j) {
    return j < static_cast<std::int64_t>(config_.token_map.size()) ? config_.token_map[static_cast<std::size_t>(j)]
                                                                   : j;
  };
  std::vector<Tensor> runs;
  for (std::int64_t j = 0; j < Sk;) {
    const std::int64_t a = from(j);
    DDPM_CHECK(a < Sk, "Prompt-to-Prompt at " << site << ": the refinement maps the edit's token " << j
                                              << " to the source's token " << a << ", outside the " << Sk
                                              << " context tokens");
    std::int64_t len = 1;
    while (j + len < Sk && (a < 0 ? from(j + len) < 0 : from(j + len) == a + len)) ++len;
    runs.push_back(a < 0 ? slice(own, 3, j, len) : slice(source, 3, a, len));
    j += len;
  }
  return runs.size() == 1 ? runs.front() : concat(runs, 3);
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
  const bool replace = site.cross ? replaces_cross() : replaces_self() && injects_self_at(probs.dim(2));
  const bool reweight = site.cross && config_.reweight_token >= 0 && config_.reweight_scale != 1.0;
  Tensor out = probs;
  if (replace || reweight) {
    const Tensor source = slice(probs, 0, 0, n);  // M   [n, heads, Sq, Sk]
    Tensor edited = slice(probs, 0, n, n);        // M*
    if (replace) edited = site.cross ? replaced_cross(source, edited, site.name) : source;
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
