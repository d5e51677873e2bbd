// models/run/edit_process.cpp: see edit_process.h.
#include "models/run/edit_process.h"

#include <cmath>
#include <sstream>

#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/ddim_inversion.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/sdedit.h"
#include "models/diffusion/sigma_edit.h"
#include "models/nn/module.h"
#include "models/run/sample_run.h"

namespace ddpm::run {

namespace {

using diffusion::KarrasSolver;

KarrasSolver solver_of(const std::string& sampler) {
  return sampler == "euler" ? KarrasSolver::euler : KarrasSolver::heun;
}

}  // namespace

EditProcess::EditProcess(const EditOptions& o, const ModelSource& model, bool latent) : o_(o), model_(model) {
  const bool edm = sigma_space();
  const bool own_sampler = o.command == "img2img" || o.command == "prompt2prompt";  // --sampler applies
  sampler_ = own_sampler && o.sampler != "auto" ? o.sampler : (edm ? "heun" : "ddim");
  if (edm)
    DDPM_CHECK(sampler_ == "heun" || sampler_ == "euler",
               "--sampler " << sampler_ << " does not apply to " << o.checkpoint
                            << ": it was trained with the EDM objective and is edited in sigma; use heun or euler");
  else
    DDPM_CHECK(sampler_ == "ddpm" || sampler_ == "ddim",
               "--sampler " << sampler_ << " does not apply to " << o.checkpoint
                            << ": it is a DDPM run, whose SDEdit runs the ddpm or ddim steps; heun and euler are "
                               "for EDM runs");
  SampleOptions so;
  so.checkpoint = o.checkpoint;
  so.sampler = sampler_;
  so.sampling_steps = o.sampling_steps;
  so.class_label = o.class_label;
  so.guidance_scale = o.guidance_scale;
  so.prompts = o.prompts;
  if (o.command == "prompt2prompt") so.prompts.push_back(o.edit_prompt);  // label 1: the edit prompt
  so.negative_prompt = o.negative_prompt;
  sc_ = make_sampler_config(so, model, latent);  // respacing or levels, classes (prompts), guidance, channels
  if (model.text) {
    net_fn_ = model.text->denoiser(so.prompts, o.negative_prompt, {});  // every prompt encoded (checked) here
  } else {
    const unet::UNet& net = *model.net;
    net_fn_ = [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
      return net.forward(x, t, y, nn::Context{});
    };
  }
  if (edm) {
    const auto [smin, smax] = diffusion::resolve_edm_sigma_range(sc_);
    levels_ = diffusion::karras_sigmas(sc_.heun_steps, smin, smax, sc_.rho);
  } else {
    base_.emplace(diffusion_betas(model.diffusion));
    kept_ = diffusion::sampling_process(*base_, sc_.respacing).timestep_map;
  }
}

std::int64_t EditProcess::steps() const {
  return static_cast<std::int64_t>(sigma_space() ? levels_.size() - 1 : kept_.size());
}

Shape EditProcess::shape(std::int64_t n) const {
  const unet::UNetConfig& cfg = model_.net->config();
  return {n, cfg.image_size, cfg.image_size, cfg.in_channels};
}

// Every image's label for invert and decode: prompt 0 of a text model, or --class.
std::vector<std::int64_t> EditProcess::labels(std::int64_t n) const {
  if (model_.text) return std::vector<std::int64_t>(static_cast<std::size_t>(n), 0);
  return model_.net->config().num_classes > 0 ? std::vector<std::int64_t>(static_cast<std::size_t>(n), o_.class_label)
                                              : std::vector<std::int64_t>{};
}

// D(x; sigma) of the EDM-preconditioned network (edm.h) for a batch of n under `config`
// (clamped to [-1, 1] when resolve_clip_x0(config); the ODE paths pass an unclipped config).
diffusion::SigmaDenoiser EditProcess::edm_denoiser(const std::vector<std::int64_t>& labels,
                                                   const diffusion::SamplerConfig& config) const {
  return [this, y = labels, config](const Tensor& x, double sigma) {
    return diffusion::SigmaDenoised{diffusion::edm_denoise(net_fn_, *model_.diffusion.edm, config, x, sigma, y), -1.0};
  };
}

// The config of inversion and decoding: never clipped (a clamp is not invertible).
diffusion::SamplerConfig EditProcess::ode_config() const {
  diffusion::SamplerConfig c = sc_;
  c.clip_x0 = false;
  return c;
}

Tensor EditProcess::invert(const Tensor& x) const {
  const std::int64_t n = x.dim(0);
  if (sigma_space()) {
    const diffusion::SamplerConfig c = ode_config();
    return diffusion::sigma_ode_invert(edm_denoiser(labels(n), c), x, levels_, c, o_.device, KarrasSolver::heun);
  }
  return diffusion::ddim_invert(*base_, net_fn_, x, labels(n), sc_, o_.device);
}

Tensor EditProcess::decode(const Tensor& x_top) const {
  const std::int64_t n = x_top.dim(0);
  if (sigma_space()) {
    const diffusion::SamplerConfig c = ode_config();
    return diffusion::sigma_ode_decode(edm_denoiser(labels(n), c), x_top, levels_, c, o_.device, KarrasSolver::heun);
  }
  return diffusion::ddim_decode(*base_, net_fn_, x_top, labels(n), sc_, o_.device);
}

Tensor EditProcess::img2img(const Tensor& guide, const std::vector<std::int64_t>& labels, Generator& gen) const {
  if (sigma_space())
    return diffusion::sigma_sdedit(edm_denoiser(labels, sc_), guide, o_.strength, levels_, sc_, gen, o_.device,
                                   solver_of(sampler_));
  return diffusion::sdedit(*base_, net_fn_, guide, o_.strength, labels, sc_, gen, o_.device);
}

Tensor EditProcess::prior(Generator& gen) const {
  const Tensor z = randn(shape(1), gen, o_.device, sc_.dtype);
  return sigma_space() ? scale(z, levels_.front()) : z;  // sigma_max z, or x_T ~ N(0, I)
}

nlohmann::json EditProcess::info() const {
  nlohmann::json j = {{"sampler", sampler_}, {"sampling_steps", steps()}};
  if (sigma_space()) {
    j["objective"] = "edm";
    j["sigmas"] = levels_;
    j["rho"] = sc_.rho;
  } else {
    j["respacing"] = sc_.respacing;
    j["timesteps"] = kept_;
  }
  return j;
}

std::int64_t EditProcess::invert_calls() const {
  return sigma_space() ? diffusion::karras_network_evaluations(KarrasSolver::heun, steps()) : steps();
}

nlohmann::json EditProcess::img2img_info() const {
  nlohmann::json j = {{"strength", o_.strength}, {"guidance_scale", o_.guidance_scale},
                      {"clip_x0", diffusion::resolve_clip_x0(sc_)}};
  if (sigma_space()) {
    const std::int64_t i0 = diffusion::sigma_sdedit_start_index(steps(), o_.strength);
    j["start_index"] = i0;
    j["start_sigma"] = levels_[static_cast<std::size_t>(i0)];
    j["steps_run"] = steps() - i0;
    j["network_calls_per_result"] = diffusion::karras_network_evaluations(solver_of(sampler_), steps() - i0);
    return j;
  }
  const std::int64_t i0 = diffusion::sdedit_start_index(kept_, base_->num_timesteps(), o_.strength);
  j["t0"] = o_.strength * static_cast<double>(base_->num_timesteps());
  j["start_index"] = i0;
  j["start_timestep"] = kept_[static_cast<std::size_t>(i0)];
  j["network_calls_per_result"] = i0 + 1;
  j["eta"] = sc_.eta;
  j["variance"] = sc_.kind == diffusion::SamplerConfig::Kind::ddpm
                      ? diffusion::variance_type_name(diffusion::resolve_variance(sc_, !sc_.respacing.empty()))
                      : "none (DDIM eta 0)";
  return j;
}

std::string EditProcess::img2img_start() const {
  const nlohmann::json j = img2img_info();
  std::ostringstream s;
  if (sigma_space())
    s << "runs the last " << j["steps_run"].get<std::int64_t>() << " of " << steps() << " levels from sigma "
      << j["start_sigma"].get<double>();
  else
    s << "starts at step " << j["start_index"].get<std::int64_t>() + 1 << " of " << steps() << " (timestep "
      << j["start_timestep"].get<std::int64_t>() << ")";
  return s.str();
}

NpyView EditProcess::schedule_array() const {
  if (sigma_space()) return npy_view("sigmas", {static_cast<std::int64_t>(levels_.size())}, levels_);
  return npy_view("timesteps", {steps()}, kept_);
}

}  // namespace ddpm::run
