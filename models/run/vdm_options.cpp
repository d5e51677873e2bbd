// models/run/vdm_options.cpp: see vdm_options.h.
#include "models/run/vdm_options.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>

#include "engine/error.h"
#include "engine/io/safetensors.h"

namespace ddpm::run {
namespace {

// The flags of the discrete process that VDM replaces (edm_options.cpp notes them too).
const char* const kDdpmOnlyFlags[] = {"--diffusion-steps", "--noise-schedule", "--predict",
                                      "--loss",            "--learn-sigma",    "--schedule-sampler"};

bool given(const TrainOptions& o, const char* flag) {
  return std::find(o.objective_flags_given.begin(), o.objective_flags_given.end(), flag) !=
         o.objective_flags_given.end();
}

}  // namespace

const std::vector<const char*>& vdm_flag_names() {
  static const std::vector<const char*> names = {"--vdm-schedule", "--gamma-min",           "--gamma-max",
                                                 "--vdm-steps",    "--vdm-learn-endpoints", "--vdm-fourier-features"};
  return names;
}

void add_vdm_flags(CLI::App& app, TrainOptions& o) {
  const char* D = "Diffusion";
  app.add_option("--vdm-schedule", o.vdm_schedule,
                 "vdm: fixed (linear gamma = -log SNR) | learned (monotone network, variance-minimised)")
      ->capture_default_str()->group(D);
  app.add_option("--gamma-min", o.gamma_min, "vdm: gamma(0) = -log SNR at t = 0")->capture_default_str()->group(D);
  app.add_option("--gamma-max", o.gamma_max, "vdm: gamma(1) = -log SNR at t = 1")->capture_default_str()->group(D);
  app.add_option("--vdm-steps", o.vdm_steps, "vdm: 0 = continuous-time loss, T = the discrete T-step loss")
      ->capture_default_str()->group(D);
  app.add_flag("--vdm-learn-endpoints", o.vdm_learn_endpoints,
               "vdm, learned schedule: train gamma(0) and gamma(1) on the bound (start at --gamma-min/--gamma-max)")
      ->group(D);
  app.add_option("--vdm-fourier-features", o.vdm_fourier_features,
                 "vdm: N_MIN,N_MAX appends sin/cos(2 pi 2^n z_t), n = N_MIN..N_MAX, to the UNet input (code: 6,7)")
      ->group(D);
}

bool is_vdm(const TrainOptions& o) { return o.objective == "vdm"; }

diffusion::VdmConfig vdm_config(const TrainOptions& o) {
  diffusion::VdmConfig c;
  c.schedule = diffusion::parse_vdm_schedule_kind(o.vdm_schedule);
  c.gamma_min = o.gamma_min;
  c.gamma_max = o.gamma_max;
  c.steps = o.vdm_steps;
  c.learn_endpoints = o.vdm_learn_endpoints;
  return c;
}

std::vector<int> vdm_fourier_range(const TrainOptions& o) {
  const std::string& v = o.vdm_fourier_features;
  if (v.empty()) return {};
  // Two integers around one comma, nothing else.
  auto integer = [](const std::string& s, int& out) {
    std::size_t used = 0;
    try {
      out = std::stoi(s, &used);
    } catch (const std::exception&) {
      return false;
    }
    return !s.empty() && used == s.size();
  };
  const std::size_t comma = v.find(',');
  int lo = 0, hi = 0;
  DDPM_CHECK(comma != std::string::npos && integer(v.substr(0, comma), lo) && integer(v.substr(comma + 1), hi),
             "--vdm-fourier-features must be N_MIN,N_MAX (two integers, e.g. 6,7), got '" << v << "'");
  DDPM_CHECK(lo <= hi && lo >= -16 && hi <= 16,
             "--vdm-fourier-features " << v << ": need -16 <= N_MIN <= N_MAX <= 16 (the authors' code uses 6,7)");
  return {lo, hi};
}

void validate_vdm_options(const TrainOptions& o) {
  if (!is_vdm(o)) {
    for (const char* flag : vdm_flag_names())
      DDPM_CHECK(!given(o, flag), flag << " applies to --objective vdm only (got --objective " << o.objective << ")");
    return;
  }
  for (const char* flag : kDdpmOnlyFlags)
    DDPM_CHECK(!given(o, flag), flag << " applies to --objective ddpm only: VDM trains an eps network on the "
                                        "continuous variational bound of gamma(t) = -log SNR (set --vdm-schedule, "
                                        "--gamma-min, --gamma-max, --vdm-steps instead)");
  DDPM_CHECK(!o.learn_sigma, "--learn-sigma does not apply to --objective vdm: its reverse variances follow from gamma");
  DDPM_CHECK(o.predict == "eps", "--predict " << o.predict << " does not apply to --objective vdm: it trains eps");
  DDPM_CHECK(o.schedule_sampler == "uniform",
             "--schedule-sampler " << o.schedule_sampler << " does not apply to --objective vdm (t is drawn by its "
                                   << "antithetic sampler)");
  for (const auto& [flag, value] : {std::pair<const char*, double>{"--snr-gamma", o.snr_gamma},
                                    {"--noise-offset", o.noise_offset},
                                    {"--input-perturbation", o.input_perturbation}})
    DDPM_CHECK(value == 0, flag << " is a DDPM training recipe; --objective vdm trains on the variational bound "
                                   "with its own weights");
  DDPM_CHECK(!o.zero_terminal_snr, "--zero-terminal-snr rescales the discrete DDPM schedule; with --objective vdm "
                                   "set --gamma-max instead");
  DDPM_CHECK(o.autoencoder.empty(), "--autoencoder does not apply to --objective vdm: its reconstruction term is the "
                                    "likelihood of the 8-bit pixels themselves");
  DDPM_CHECK(o.super_res == 0, "--super-res does not apply to --objective vdm (its bound is of an unconditional or "
                               "class-conditional image model)");
  DDPM_CHECK(o.vdm_schedule == "fixed" || o.vdm_schedule == "learned",
             "--vdm-schedule must be fixed or learned, got '" << o.vdm_schedule << "'");
  DDPM_CHECK(std::isfinite(o.gamma_min) && std::isfinite(o.gamma_max) && o.gamma_min < o.gamma_max,
             "--gamma-min (" << o.gamma_min << ") must be below --gamma-max (" << o.gamma_max << "), both finite");
  DDPM_CHECK(o.vdm_steps >= 0, "--vdm-steps must be >= 0 (0 = continuous time), got " << o.vdm_steps);
  DDPM_CHECK(!o.vdm_learn_endpoints || o.vdm_schedule == "learned",
             "--vdm-learn-endpoints trains the endpoints of the learned schedule; add --vdm-schedule learned (got "
                 << o.vdm_schedule << ")");
  DDPM_CHECK(!o.vdm_learn_endpoints || o.weight_decay == 0,
             "--weight-decay " << o.weight_decay << " would pull the learned endpoints (--vdm-learn-endpoints) towards "
                               << "gamma = 0 (AdamW decays every parameter of the slab); train them without it");
  vdm_fourier_range(o);  // ValueError naming the flag
}

nlohmann::json vdm_diffusion_section(const TrainOptions& o) { return vdm_section_json(vdm_config(o)); }

nlohmann::json vdm_section_json(const diffusion::VdmConfig& c) {
  nlohmann::json j = {{"objective", "vdm"},
          {"vdm_schedule", diffusion::vdm_schedule_kind_name(c.schedule)},
          {"gamma_min", c.gamma_min},
          {"gamma_max", c.gamma_max},
          {"vdm_steps", c.steps},
          {"vdm_features", c.features},
          {"predict", "eps"},
          {"learn_sigma", false}};
  if (c.learn_endpoints) j["vdm_learn_endpoints"] = true;  // only when set: older configs read as fixed
  return j;
}

diffusion::VdmConfig vdm_config_from_json(const nlohmann::json& d) {
  diffusion::VdmConfig c;
  try {
    c.schedule = diffusion::parse_vdm_schedule_kind(d.at("vdm_schedule").get<std::string>());
    c.gamma_min = d.at("gamma_min").get<double>();
    c.gamma_max = d.at("gamma_max").get<double>();
    c.steps = d.at("vdm_steps").get<std::int64_t>();
    c.features = d.value("vdm_features", c.features);
    c.learn_endpoints = d.value("vdm_learn_endpoints", false);
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(ValueError, "config.json \"diffusion\" of a vdm run needs vdm_schedule, gamma_min, gamma_max and "
                           "vdm_steps: " << e.what());
  }
  diffusion::check_vdm_config(c);
  return c;
}

namespace {
constexpr const char* kSchedulePrefix = "vdm_gamma.";
bool is_schedule_tensor(const std::string& name) { return name.rfind(kSchedulePrefix, 0) == 0; }
}  // namespace

void drop_vdm_schedule_tensors(std::vector<std::pair<std::string, Tensor>>& tensors) {
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [](const auto& p) { return is_schedule_tensor(p.first); }),
                tensors.end());
}

std::shared_ptr<const diffusion::GammaCurve> read_vdm_curve(const diffusion::VdmConfig& c,
                                                            const std::string& weights_path) {
  if (c.schedule == diffusion::VdmScheduleKind::fixed) return std::make_shared<const diffusion::GammaCurve>(c);
  const SafetensorsFile file = load_safetensors(weights_path);
  auto values = [&](const char* name) { return file.get(std::string(kSchedulePrefix) + name).to_double_vector(); };
  const std::vector<double> w1 = values("l1.weight");
  DDPM_CHECK(w1.size() == 1, weights_path << ": vdm_gamma.l1.weight must hold one value, got " << w1.size());
  double g0 = c.gamma_min, g1 = c.gamma_max;
  if (c.learn_endpoints) {  // the learned endpoints (vdm.h), one value each
    const std::vector<double> e0 = values("gamma_0"), e1 = values("gamma_1");
    DDPM_CHECK(e0.size() == 1 && e1.size() == 1, weights_path << ": vdm_gamma.gamma_0 and vdm_gamma.gamma_1 must "
                                                                 "hold one value each, got "
                                                              << e0.size() << " and " << e1.size());
    g0 = e0[0], g1 = e1[0];
  }
  return std::make_shared<const diffusion::GammaCurve>(c, w1[0], values("l2.weight"), values("l2.bias"),
                                                       values("l3.weight"), g0, g1);
}

}  // namespace ddpm::run
