// models/run/edm_options.cpp: see edm_options.h.
#include "models/run/edm_options.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/error.h"
#include "models/diffusion/karras.h"
#include "models/run/consistency_run.h"
#include "models/run/ict_options.h"
#include "models/run/vdm_options.h"
#include "models/train/trainer.h"

namespace ddpm::run {
namespace {

// The flags of the discrete process, meaningless for EDM, and EDM's own.
const char* const kDdpmOnlyFlags[] = {"--diffusion-steps", "--noise-schedule", "--predict",
                                      "--loss",            "--learn-sigma",    "--schedule-sampler"};
const char* const kEdmOnlyFlags[] = {"--sigma-data", "--p-mean", "--p-std"};

bool given(const TrainOptions& o, const char* flag) {
  return std::find(o.objective_flags_given.begin(), o.objective_flags_given.end(), flag) !=
         o.objective_flags_given.end();
}

}  // namespace

bool is_edm(const TrainOptions& o) { return o.objective == "edm"; }

diffusion::EdmConfig edm_config(const TrainOptions& o) { return {o.sigma_data, o.p_mean, o.p_std}; }

void note_objective_flags(const CLI::App& app, TrainOptions& o) {
  o.objective_flags_given.clear();
  for (const char* flag : kDdpmOnlyFlags)
    if (app.count(flag) > 0) o.objective_flags_given.push_back(flag);
  for (const char* flag : kEdmOnlyFlags)
    if (app.count(flag) > 0) o.objective_flags_given.push_back(flag);
  for (const char* flag : vdm_flag_names())
    if (app.count(flag) > 0) o.objective_flags_given.push_back(flag);
  for (const char* flag : ict_flag_names())
    if (app.count(flag) > 0) o.objective_flags_given.push_back(flag);
}

bool default_sigma_data_for_latents(TrainOptions& o) {
  if (!(is_edm(o) || is_ict(o)) || given(o, "--sigma-data") || o.sigma_data != TrainOptions{}.sigma_data) return false;
  o.sigma_data = 1.0;
  return true;
}

void validate_objective_options(const TrainOptions& o) {
  train::parse_objective(o.objective);  // ValueError listing the choices
  validate_ict_options(o);              // the ict flags and what ict refuses (ict_options.h)
  if (!is_edm(o) && !is_ict(o)) {
    for (const char* flag : kEdmOnlyFlags)
      DDPM_CHECK(!given(o, flag), flag << " applies to --objective edm only (or ict; got --objective " << o.objective
                                       << ")");
    return;
  }
  // EDM and iCT both work at a continuous sigma of the VE process x = x_0 + sigma n.
  const std::string name = "--objective " + o.objective;
  for (const char* flag : kDdpmOnlyFlags)
    DDPM_CHECK(!given(o, flag), flag << " applies to --objective ddpm only: " << name
                                     << " trains at a continuous sigma (set --sigma-data, --p-mean, --p-std instead)");
  DDPM_CHECK(!o.learn_sigma, "--learn-sigma does not apply to " << name << ": the network has no variance to learn");
  DDPM_CHECK(o.schedule_sampler == "uniform",
             "--schedule-sampler " << o.schedule_sampler << " does not apply to " << name
                                   << " (sigma is drawn from its own log-normal distribution)");
  DDPM_CHECK(std::isfinite(o.sigma_data) && o.sigma_data > 0, "--sigma-data must be positive, got " << o.sigma_data);
  DDPM_CHECK(std::isfinite(o.p_mean), "--p-mean must be a finite number, got " << o.p_mean);
  DDPM_CHECK(std::isfinite(o.p_std) && o.p_std > 0, "--p-std must be positive, got " << o.p_std);
}

nlohmann::json diffusion_section(const TrainOptions& o) {
  if (is_ict(o)) return ict_diffusion_section(o);
  if (is_edm(o))
    return {{"objective", "edm"}, {"sigma_data", o.sigma_data}, {"p_mean", o.p_mean},
            {"p_std", o.p_std},   {"learn_sigma", false}};
  nlohmann::json j = {{"objective", "ddpm"},  {"diffusion_steps", o.diffusion_steps},
                      {"noise_schedule", o.noise_schedule}, {"predict", o.predict},
                      {"loss", o.loss},           {"learn_sigma", o.learn_sigma},
                      {"schedule_sampler", o.schedule_sampler}};
  // Only when set: a run from before the flag (no key) resumes with identical config sections.
  if (o.zero_terminal_snr) j["zero_terminal_snr"] = true;
  return j;
}

bool is_karras_sampler(const std::string& sampler) {
  diffusion::KarrasSolver unused;
  return diffusion::parse_karras_solver(sampler, unused);
}

namespace {
diffusion::KarrasSolver karras_solver_of(const std::string& sampler) {
  diffusion::KarrasSolver solver = diffusion::KarrasSolver::heun;
  DDPM_CHECK(diffusion::parse_karras_solver(sampler, solver), "--sampler " << sampler << " is not a Karras-level solver");
  return solver;
}
}  // namespace

SampleOptions resolve_sampler_for_model(const SampleOptions& o, const ModelSource& model) {
  SampleOptions r = o;
  if (model.diffusion.edm) {
    if (o.sampler_defaulted) r.sampler = "heun";
    DDPM_CHECK(is_karras_sampler(r.sampler),
               "--sampler " << r.sampler << " does not apply to " << o.checkpoint
                            << ", which was trained with the EDM objective (continuous sigma, no discrete process): "
                               "use --sampler heun (the default for it), euler, dpm++2m, euler-ancestral, unipc or dpm++2m-sde");
  }
  // A consistency model (consistency_run.h, or an ict run) samples with its own sampler only:
  // the default for it, as heun is for an EDM model, instead of a refusal of the default ddpm.
  else if (model.diffusion.ict) {
    if (o.sampler_defaulted) r.sampler = "consistency";
    DDPM_CHECK(r.sampler == "consistency",
               "--sampler " << r.sampler << " does not apply to " << o.checkpoint
                            << ", which was trained with --objective ict (a consistency function f(x, sigma), not a "
                               "denoiser any other sampler could step): use --sampler consistency (the default for it) "
                               "with --sampling-steps K or --consistency-sigmas");
  } else if (o.sampler_defaulted && read_consistency_grid(o.checkpoint, model.diffusion.diffusion_steps))
    r.sampler = "consistency";
  r.sampler_defaulted = false;
  return r;
}

Tensor sample_karras(const ModelSource& model, const diffusion::DiffusionSchedule& base,
                     const diffusion::DenoiseFn& net, const Shape& shape, const std::vector<std::int64_t>& labels,
                     const diffusion::SamplerConfig& sc, const std::string& sampler, Generator& gen, Device device,
                     const diffusion::StepCallback& callback) {
  const diffusion::KarrasSolver solver = karras_solver_of(sampler);
  if (model.diffusion.edm)
    return diffusion::edm_sample(net, *model.diffusion.edm, shape, labels, sc, gen, device, callback, solver);
  return diffusion::karras_sample(base, net, shape, labels, sc, gen, device, callback, solver);
}

nlohmann::json karras_sample_info(const SampleOptions& o, const ModelSource& model,
                                  const diffusion::DiffusionSchedule& base, const diffusion::SamplerConfig& sc) {
  const bool edm = model.diffusion.edm.has_value();
  const auto range = edm ? diffusion::resolve_edm_sigma_range(sc) : diffusion::resolve_sigma_range(base, sc);
  const std::vector<double> train = edm ? std::vector<double>{} : diffusion::vp_sigmas(base);
  const char* from_default = edm ? "edm default" : "schedule";
  const diffusion::KarrasSolver solver = karras_solver_of(o.sampler);
  nlohmann::json info = {
      {"solver", diffusion::karras_solver_name(solver)},
      {"sigma_min", range.first},  // the levels used: the flags, or the defaults
      {"sigma_max", range.second},
      {"sigma_min_from", o.sigma_min > 0 ? "--sigma-min" : from_default},
      {"sigma_max_from", o.sigma_max > 0 ? "--sigma-max" : from_default},
      {"rho", sc.rho},
      {"training_sigma_range", edm ? nlohmann::json(nullptr) : nlohmann::json({train.front(), train.back()})},
      {"network_evaluations_per_sample", diffusion::karras_network_evaluations(solver, sc.heun_steps)}};
  if (solver == diffusion::KarrasSolver::unipc) info["solver_order"] = sc.solver_order;
  // EDM algorithm 2's churn; s_tmax null = no bound (JSON has no infinity).
  const std::vector<double> levels = diffusion::karras_sigmas(sc.heun_steps, range.first, range.second, sc.rho);
  const std::vector<double> hat = edm ? diffusion::churned_sigmas(levels, std::numeric_limits<double>::infinity(), sc)
                                      : diffusion::churned_sigmas(levels, train, sc);
  std::int64_t churned = 0;
  for (std::size_t i = 0; i < hat.size(); ++i) churned += hat[i] > levels[i] ? 1 : 0;
  info["s_churn"] = sc.s_churn;
  info["s_tmin"] = sc.s_tmin;
  info["s_tmax"] = std::isinf(sc.s_tmax) ? nlohmann::json(nullptr) : nlohmann::json(sc.s_tmax);
  info["s_noise"] = sc.s_noise;
  info["churned_levels"] = churned;  // each draws one noise tensor per batch
  return info;
}

}  // namespace ddpm::run
