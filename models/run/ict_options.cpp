// models/run/ict_options.cpp: see ict_options.h.
#include "models/run/ict_options.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "models/diffusion/edm.h"
#include "models/run/data_spec.h"
#include "models/run/int_list.h"
#include "models/run/sample_run.h"

namespace ddpm::run {
namespace {

bool given(const TrainOptions& o, const char* flag) {
  return std::find(o.objective_flags_given.begin(), o.objective_flags_given.end(), flag) !=
         o.objective_flags_given.end();
}

// The same bounds as iCT's constants (consistency_training.h); fixed, not flags.
const diffusion::IctConfig kIctDefaults{};

}  // namespace

const std::vector<const char*>& ict_flag_names() {
  static const std::vector<const char*> names = {"--ict-discretization", "--consistency-loss"};
  return names;
}

void add_ict_flags(CLI::App& app, TrainOptions& o, const char* group) {
  app.add_option("--ict-discretization", o.ict_discretization,
                 "ict: S0,S1, the curriculum's initial and final number of discretisation steps (iCT: 10,1280)")
      ->capture_default_str()
      ->group(group);
  app.add_option("--consistency-loss", o.consistency_loss, "ict: the distance d, pseudo-huber (iCT) or l2")
      ->capture_default_str()
      ->group(group);
}

bool is_ict(const TrainOptions& o) { return o.objective == "ict"; }

diffusion::IctConfig ict_config(const TrainOptions& o) {
  diffusion::IctConfig c;
  const diffusion::EdmConfig edm_defaults{};  // TrainOptions' p_mean / p_std defaults are EDM's
  c.sigma_data = o.sigma_data;
  // EDM's defaults in TrainOptions are not iCT's: a value not given (and left at EDM's default) is iCT's.
  c.p_mean = given(o, "--p-mean") || o.p_mean != edm_defaults.p_mean ? o.p_mean : kIctDefaults.p_mean;
  c.p_std = given(o, "--p-std") || o.p_std != edm_defaults.p_std ? o.p_std : kIctDefaults.p_std;
  const std::vector<int> s = parse_int_list("--ict-discretization", o.ict_discretization);
  DDPM_CHECK(s.size() == 2,
             "--ict-discretization takes two numbers S0,S1 (iCT: 10,1280), got \"" << o.ict_discretization << "\"");
  c.s0 = s[0];
  c.s1 = s[1];
  c.distance = diffusion::parse_consistency_distance(o.consistency_loss);
  return c;
}

void validate_ict_options(const TrainOptions& o) {
  if (!is_ict(o)) {
    for (const char* flag : ict_flag_names())
      DDPM_CHECK(!given(o, flag), flag << " applies to --objective ict only (got --objective " << o.objective << ")");
    return;
  }
  diffusion::check_ict_config(ict_config(o));  // names --ict-discretization, --sigma-data, --p-mean, --p-std
  const std::string m = "--objective ict";
  for (const auto& [flag, value] : {std::pair<const char*, double>{"--snr-gamma", o.snr_gamma},
                                    {"--noise-offset", o.noise_offset},
                                    {"--input-perturbation", o.input_perturbation}})
    DDPM_CHECK(value == 0, flag << " is a DDPM training recipe; " << m
                                << " draws its own level pairs and weights its loss by 1 / (sigma_{i+1} - sigma_i)");
  DDPM_CHECK(!o.zero_terminal_snr, "--zero-terminal-snr rescales the discrete DDPM schedule; " << m << " has none");
  DDPM_CHECK(o.super_res == 0, "--super-res is not supported with " << m
                                                                    << " (a consistency function of the low-res "
                                                                       "condition is not implemented)");
  DDPM_CHECK(!parse_data_spec(o.data).is_moving(),
             "--data " << o.data << " holds clips; " << m << " trains image models only");
  DDPM_CHECK(o.joint_images == 0, "--joint-images supports the DDPM objective only, not " << m);
  DDPM_CHECK(!o.text.enabled, "--text-cond is not supported with " << m << " (use --class-cond)");
  DDPM_CHECK(o.init_from.empty(), "--init-from is not supported with " << m << ": iCT trains from scratch");
  DDPM_CHECK(o.lora_rank == 0, "--lora-rank is not supported with " << m << ": iCT trains from scratch");
  DDPM_CHECK(o.guidance_scale == 1.0, "--guidance-scale " << o.guidance_scale << " does not apply to " << m
                                                          << ": its sampler has no classifier-free guidance");
}

nlohmann::json ict_section_json(const diffusion::IctConfig& c) {
  return {{"objective", "ict"},
          {"sigma_min", c.sigma_min},
          {"sigma_max", c.sigma_max},
          {"rho", c.rho},
          {"sigma_data", c.sigma_data},
          {"p_mean", c.p_mean},
          {"p_std", c.p_std},
          {"s0", c.s0},
          {"s1", c.s1},
          {"consistency_loss", diffusion::consistency_distance_name(c.distance)},
          {"learn_sigma", false}};
}

nlohmann::json ict_diffusion_section(const TrainOptions& o) { return ict_section_json(ict_config(o)); }

diffusion::IctConfig ict_config_from_json(const nlohmann::json& j) {
  diffusion::IctConfig c;
  for (const char* key : {"sigma_min", "sigma_max", "rho", "sigma_data", "p_mean", "p_std"})
    DDPM_CHECK(j.contains(key) && j.at(key).is_number(), "iCT diffusion settings need a number \"" << key << "\"");
  for (const char* key : {"s0", "s1"})
    DDPM_CHECK(j.contains(key) && j.at(key).is_number_integer(),
               "iCT diffusion settings need an integer \"" << key << "\"");
  c.sigma_min = j.at("sigma_min").get<double>();
  c.sigma_max = j.at("sigma_max").get<double>();
  c.rho = j.at("rho").get<double>();
  c.sigma_data = j.at("sigma_data").get<double>();
  c.p_mean = j.at("p_mean").get<double>();
  c.p_std = j.at("p_std").get<double>();
  c.s0 = j.at("s0").get<std::int64_t>();
  c.s1 = j.at("s1").get<std::int64_t>();
  if (j.contains("consistency_loss"))
    c.distance = diffusion::parse_consistency_distance(j.at("consistency_loss").get<std::string>());
  DDPM_CHECK(!j.value("learn_sigma", false), "an iCT model has no learned variance, but \"learn_sigma\" is set");
  diffusion::check_ict_config(c);
  return c;
}

std::vector<double> ict_sample_sigmas(const SampleOptions& o, const diffusion::IctConfig& c) {
  if (!o.consistency_sigmas.empty()) {
    const std::vector<double> taus = parse_number_list("--consistency-sigmas", o.consistency_sigmas);
    DDPM_CHECK(o.sampling_steps <= 0 || o.sampling_steps == static_cast<int>(taus.size()),
               "--sampling-steps " << o.sampling_steps << " disagrees with the " << taus.size()
                                   << " levels of --consistency-sigmas (give one of them)");
    diffusion::check_ict_sampling_sigmas(c, taus);
    return taus;
  }
  return diffusion::ict_sampling_sigmas(c, std::max(1, o.sampling_steps));
}

}  // namespace ddpm::run
