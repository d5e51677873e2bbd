// models/diffusion/analytic_variance.cpp: see analytic_variance.h for the equations.
#include "models/diffusion/analytic_variance.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

namespace ddpm::diffusion {

namespace {

constexpr const char* kFormat = "ddpm-analytic-gamma";

bool close_rel(double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(std::abs(a), std::abs(b)); }

}  // namespace

double AnalyticGamma::at(std::int64_t t, const std::string& file) const {
  const auto it = std::lower_bound(timesteps.begin(), timesteps.end(), t);
  DDPM_CHECK(it != timesteps.end() && *it == t,
             "the Gamma file " << file << " has no estimate at timestep " << t << " (it covers " << timesteps.size()
                               << " of the " << diffusion_steps
                               << " timesteps); estimate it at the sampling trajectory's timesteps: ddpm-eval "
                                  "analytic-gamma --timesteps with the same respacing, or without --timesteps for all");
  return gamma[static_cast<std::size_t>(it - timesteps.begin())];
}

void check_gamma_fits(const AnalyticGamma& g, const DiffusionSchedule& base, const std::string& file) {
  const std::int64_t T = base.num_timesteps();
  DDPM_CHECK(g.diffusion_steps == T, "the Gamma file " << file << " was estimated for a model with " << g.diffusion_steps
                                                       << " diffusion steps; this model has " << T);
  DDPM_CHECK(close_rel(g.alpha_bar_first, base.alphas_cumprod.front()) &&
                 close_rel(g.alpha_bar_last, base.alphas_cumprod.back()),
             "the Gamma file " << file << " was estimated for another noise schedule (" << g.noise_schedule
                               << ", alpha_bar " << g.alpha_bar_first << " ... " << g.alpha_bar_last
                               << "); this model's alpha_bar runs " << base.alphas_cumprod.front() << " ... "
                               << base.alphas_cumprod.back());
}

void write_analytic_gamma(const AnalyticGamma& g, const std::string& path) {
  nlohmann::json j = {{"format", kFormat},
                      {"version", 1},
                      {"model", g.model},
                      {"mean_type", g.mean_type},
                      {"diffusion_steps", g.diffusion_steps},
                      {"noise_schedule", g.noise_schedule},
                      {"alpha_bar_first", g.alpha_bar_first},
                      {"alpha_bar_last", g.alpha_bar_last},
                      {"data", g.data},
                      {"num_images", g.num_images},
                      {"seed", g.seed},
                      {"timesteps", g.timesteps},
                      {"gamma", g.gamma}};
  write_file_atomic(path, j.dump(1) + "\n");  // nlohmann writes doubles round-trip exact
}

AnalyticGamma read_analytic_gamma(const std::string& path) {
  const std::string text = read_file(path);  // IoError naming the file when missing
  AnalyticGamma g;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    DDPM_CHECK(j.is_object() && j.value("format", std::string()) == kFormat,
               "--analytic-gamma " << path << " is not a Gamma file of ddpm-eval analytic-gamma (no \"format\": \""
                                   << kFormat << "\")");
    DDPM_CHECK(j.value("version", 0) == 1,
               "--analytic-gamma " << path << " has version " << j.value("version", 0) << "; this build reads 1");
    g.model = j.value("model", std::string());
    g.mean_type = j.value("mean_type", std::string("eps"));
    g.diffusion_steps = j.at("diffusion_steps").get<std::int64_t>();
    g.noise_schedule = j.value("noise_schedule", std::string());
    g.alpha_bar_first = j.at("alpha_bar_first").get<double>();
    g.alpha_bar_last = j.at("alpha_bar_last").get<double>();
    g.data = j.value("data", std::string());
    g.num_images = j.value("num_images", std::int64_t{0});
    g.seed = j.value("seed", std::uint64_t{0});
    g.timesteps = j.at("timesteps").get<Timesteps>();
    g.gamma = j.at("gamma").get<std::vector<double>>();
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(ValueError, "--analytic-gamma " << path << " cannot be read as a Gamma file: " << e.what());
  }
  DDPM_CHECK(!g.timesteps.empty() && g.timesteps.size() == g.gamma.size(),
             "--analytic-gamma " << path << " has " << g.timesteps.size() << " timesteps and " << g.gamma.size()
                                 << " Gamma values; it needs one value per timestep, at least one");
  for (std::size_t i = 0; i < g.timesteps.size(); ++i) {
    DDPM_CHECK(g.timesteps[i] >= 0 && g.timesteps[i] < g.diffusion_steps && (i == 0 || g.timesteps[i] > g.timesteps[i - 1]),
               "--analytic-gamma " << path << ": its timesteps must rise strictly within [0, " << g.diffusion_steps
                                   << "); entry " << i << " is " << g.timesteps[i]);
    DDPM_CHECK(std::isfinite(g.gamma[i]) && g.gamma[i] >= 0,
               "--analytic-gamma " << path << ": Gamma at timestep " << g.timesteps[i]
                                   << " must be a finite number >= 0 (a mean square), got " << g.gamma[i]);
  }
  return g;
}

std::vector<AnalyticStep> analytic_steps(const DiffusionSchedule& p, const std::vector<double>& gamma, double eta) {
  const std::size_t K = static_cast<std::size_t>(p.num_timesteps());
  DDPM_CHECK(std::isfinite(eta) && eta >= 0, "analytic variance: eta must be >= 0, got " << eta);
  DDPM_CHECK(gamma.size() == K, "analytic variance: " << gamma.size() << " Gamma values for a process of " << K
                                                      << " steps");
  std::vector<AnalyticStep> steps(K);
  for (std::size_t i = 0; i < K; ++i) {
    const double abar = p.alphas_cumprod[i], abar_prev = p.alphas_cumprod_prev[i];  // abar_prev = 1 at i = 0
    DDPM_CHECK(abar > 0.0, "analytic variance: alpha_bar is 0 at step " << i
                                                                        << " (a zero-terminal-SNR schedule); the "
                                                                           "optimal variance divides by it");
    DDPM_CHECK(std::isfinite(gamma[i]) && gamma[i] >= 0,
               "analytic variance: Gamma at step " << i << " must be >= 0, got " << gamma[i]);
    const double bbar = 1.0 - abar, bbar_prev = 1.0 - abar_prev;
    const double alpha_ts = abar / abar_prev;                          // alpha_{t|s}
    const double beta_tilde = bbar_prev / bbar * (1.0 - alpha_ts);     // DDPM's posterior variance
    AnalyticStep& st = steps[i];
    st.lambda2 = eta * eta * beta_tilde;
    const double keep = std::sqrt(std::max(0.0, bbar_prev - st.lambda2));  // sqrt(bbar_{k-1} - lambda^2)
    const double bracket = std::sqrt(bbar / alpha_ts) - keep;             // Theorem 1
    st.optimal = st.lambda2 + bracket * bracket * (1.0 - gamma[i]);
    const double c = std::sqrt(abar_prev) - keep * std::sqrt(abar / bbar);  // Theorem 2, coefficient of x_0
    st.lower = st.lambda2;
    st.upper = st.lambda2 + c * c;  // ((b - a)/2)^2 = 1 for data in [-1, 1]
    st.variance = std::clamp(st.optimal, st.lower, st.upper);
  }
  return steps;
}

std::vector<double> gamma_for_process(const AnalyticGamma& g, const RespacedSchedule& rs, const std::string& file) {
  std::vector<double> out;
  out.reserve(rs.timestep_map.size());
  for (std::int64_t t : rs.timestep_map) out.push_back(g.at(t, file));
  return out;
}

std::vector<double> analytic_sampling_variances(const RespacedSchedule& rs, const AnalyticGamma& g, double eta,
                                                double clip_bins, const std::string& file) {
  const std::vector<AnalyticStep> steps = analytic_steps(rs.schedule, gamma_for_process(g, rs, file), eta);
  if (clip_bins <= 0) clip_bins = g.noise_schedule == "cosine" ? 1.0 : 2.0;  // official run_cifar10.py
  const double bin = 2.0 / 255.0;
  const double max_second = std::pow(clip_bins * bin * std::sqrt(M_PI / 2.0), 2);  // E|sigma eps| <= clip_bins bins
  std::vector<double> var(steps.size(), 0.0);  // index 0 adds no noise
  for (std::size_t i = 1; i < steps.size(); ++i) var[i] = steps[i].variance;
  if (var.size() > 1) var[1] = std::min(var[1], max_second);
  return var;
}

std::vector<double> analytic_likelihood_variances(const DiffusionSchedule& s, const AnalyticGamma& g,
                                                  const std::string& file) {
  check_gamma_fits(g, s, file);
  std::vector<double> gamma(static_cast<std::size_t>(s.num_timesteps()));
  for (std::int64_t t = 0; t < s.num_timesteps(); ++t) gamma[static_cast<std::size_t>(t)] = g.at(t, file);
  const std::vector<AnalyticStep> steps = analytic_steps(s, gamma, 1.0);
  std::vector<double> var(steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i) var[i] = steps[i].variance;
  var[0] = std::exp(s.posterior_log_variance_clipped[0]);  // the decoder: beta~ of t = 1, as fixed_small
  return var;
}

AnalyticGamma estimate_gamma(const DiffusionSchedule& s, const GammaNetwork& network, const Tensor& x0,
                             const std::vector<std::int64_t>& labels, const Timesteps& timesteps,
                             std::int64_t batch_size, Generator& gen,
                             const std::function<void(const std::string&)>& log) {
  DDPM_CHECK(network.net, "analytic-gamma: no network was given");
  DDPM_CHECK(!network.learned_sigma,
             "analytic-gamma: the model learned its variance (learn_sigma, improved DDPM); Analytic-DPM is for "
             "models trained without one, and this model's own variance is already fitted to the bound");
  DDPM_CHECK(!s.zero_terminal_snr(), "analytic-gamma: the schedule has zero terminal SNR (alpha_bar = 0 at the last "
                                     "timestep), where the analytic variance divides by alpha_bar");
  DDPM_CHECK(x0.defined() && x0.ndim() >= 2 && x0.dim(0) > 0, "analytic-gamma: no images were given");
  const std::int64_t M = x0.dim(0);
  DDPM_CHECK(labels.empty() || static_cast<std::int64_t>(labels.size()) == M,
             "analytic-gamma: " << labels.size() << " labels for " << M << " images");
  DDPM_CHECK(batch_size >= 1, "analytic-gamma: batch size must be positive, got " << batch_size);
  DDPM_CHECK(!timesteps.empty(), "analytic-gamma: no timesteps to estimate at");
  for (std::size_t i = 0; i < timesteps.size(); ++i)
    DDPM_CHECK(timesteps[i] >= 0 && timesteps[i] < s.num_timesteps() && (i == 0 || timesteps[i] > timesteps[i - 1]),
               "analytic-gamma: timesteps must rise strictly within [0, " << s.num_timesteps() << "); entry " << i
                                                                          << " is " << timesteps[i]);
  NoGradGuard no_grad;
  AnalyticGamma g;
  g.diffusion_steps = s.num_timesteps();
  g.alpha_bar_first = s.alphas_cumprod.front();
  g.alpha_bar_last = s.alphas_cumprod.back();
  g.mean_type = model_mean_type_name(network.mean_type);
  g.num_images = M;
  g.timesteps = timesteps;
  const double d = static_cast<double>(x0.numel() / M);
  for (std::int64_t t : timesteps) {
    double total = 0;  // sum over images of ||eps_theta||^2
    for (std::int64_t b = 0; b < M; b += batch_size) {
      const std::int64_t n = std::min(batch_size, M - b);
      const Tensor xb = batch_rows(x0, b, n);
      const Timesteps tb(static_cast<std::size_t>(n), t);
      const Tensor noise = randn(xb.shape(), gen, xb.device(), xb.dtype());
      const Tensor xt = q_sample(s, xb, tb, noise);
      std::vector<std::int64_t> yb;
      if (!labels.empty()) yb.assign(labels.begin() + b, labels.begin() + b + n);
      const Tensor out = network.net(xt, std::vector<double>(static_cast<std::size_t>(n), static_cast<double>(t)), yb);
      DDPM_CHECK(out.shape() == xt.shape(), "analytic-gamma: the network returned " << shape_str(out.shape())
                                                                                   << " for x_t of "
                                                                                   << shape_str(xt.shape()));
      const Tensor eps = eps_from_prediction(s, network.mean_type, out, xt, tb);
      total += sum(square(eps)).item();
    }
    g.gamma.push_back(total / (static_cast<double>(M) * d));
    if (log) {
      std::ostringstream line;
      line << "t " << t << "  Gamma " << g.gamma.back();
      log(line.str());
    }
  }
  return g;
}

}  // namespace ddpm::diffusion
