// models/eval/nll_eval.cpp: exact bits/dim through the probability-flow ODE (see nll_eval.h).
#include "models/eval/nll_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/error.h"
#include "engine/rng.h"
#include "models/diffusion/edm.h"
#include "models/diffusion/karras.h"
#include "models/eval/bpd_eval.h"
#include "models/eval/caption_condition.h"
#include "models/eval/eval_run.h"
#include "models/run/latent_run.h"
#include "models/run/super_res_run.h"
#include "models/run/model_source.h"

namespace ddpm::eval {

using namespace diffusion;

NllEvalReport evaluate_nll(const DenoiserForLabels& make_denoiser, const Dataset& ds, const NllEvalOptions& o,
                           const std::function<void(const std::string&)>& log) {
  check_ode_likelihood_config(o.ode);
  DDPM_CHECK(static_cast<bool>(make_denoiser), "nll: no model was given");
  DDPM_CHECK(o.batch_size >= 1, "nll: batch size must be positive, got " << o.batch_size);
  DDPM_CHECK(o.limit >= 0, "nll: --limit must be non-negative, got " << o.limit);
  DDPM_CHECK(o.num_classes == 0 || o.null_label || ds.has_labels(),
             "nll: the model is class-conditional but " << ds.name
                                                        << " has no labels (use the null label if the run was "
                                                           "trained with label dropout)");
  const std::int64_t n = o.limit > 0 ? std::min(o.limit, ds.n) : ds.n;
  DDPM_CHECK(n > 0, "nll: " << ds.name << " holds no images");
  const auto t0 = std::chrono::steady_clock::now();
  Generator gen(o.seed);
  NllEvalReport r;
  r.n = n;
  std::vector<double> totals;
  const std::size_t per = ds.image_bytes();
  for (std::int64_t b = 0; b < n; b += o.batch_size) {
    const std::int64_t count = std::min(o.batch_size, n - b);
    const std::vector<std::uint8_t> bytes(ds.image(b), ds.image(b) + static_cast<std::size_t>(count) * per);
    // Random numbers per batch: the dequantization U first, then the Hutchinson probes.
    const Tensor u = dequantize_uniform(bytes, {count, ds.height, ds.width, ds.channels}, gen, o.device);
    std::vector<std::int64_t> labels;
    if (o.num_classes > 0) {
      if (o.null_label)
        labels.assign(static_cast<std::size_t>(count), o.num_classes);
      else
        labels.assign(ds.labels.begin() + b, ds.labels.begin() + b + count);
    }
    const OdeLikelihood res = ode_log_likelihood(make_denoiser(labels), u, o.ode, gen);
    r.dim = res.dim;
    r.evaluations = res.evaluations;
    const double bits = static_cast<double>(res.dim) * std::log(2.0);
    for (std::size_t i = 0; i < static_cast<std::size_t>(count); ++i) {
      totals.push_back(dequantized_bits_per_dim(res.log_likelihood[i], res.dim));
      r.prior_bpd += dequantized_bits_per_dim(res.prior_log_density[i], res.dim);
      r.divergence_bpd += -res.divergence_integral[i] / bits;
    }
    if (log) {
      double mean = 0;
      for (double v : totals) mean += v;
      std::ostringstream line;
      line << "images " << totals.size() << "/" << n << "  running bits/dim "
           << mean / static_cast<double>(totals.size());
      log(line.str());
    }
  }
  const double nn = static_cast<double>(n);
  const MeanWithError total = mean_with_standard_error(totals);
  r.bpd = total.mean;
  r.bpd_stderr = total.standard_error;
  r.prior_bpd /= nn;
  r.divergence_bpd /= nn;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

NllEvalReport run_nll(const NllArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.checkpoint.empty(), "nll needs --checkpoint RUN|CHECKPOINT_DIR");
  DivergenceEstimator estimator{};
  DDPM_CHECK(parse_divergence_estimator(a.hutchinson, estimator),
             "nll: --hutchinson must be rademacher, gaussian or exact, got \"" << a.hutchinson << "\"");
  OdeSolver solver{};
  DDPM_CHECK(parse_ode_solver(a.ode_solver, solver),
             "nll: --ode-solver must be heun or rk45, got \"" << a.ode_solver << "\"");
  DDPM_CHECK(a.ode_steps >= 1, "nll: --ode-steps must be at least 1, got " << a.ode_steps);
  run::refuse_latent_model(a.checkpoint, "ddpm-eval nll (bits/dim of pixels)");
  run::ModelSource src = run::open_model(a.checkpoint, a.device, a.ema);
  run::refuse_video_model(src, a.checkpoint, "ddpm-eval nll");
  DDPM_CHECK(!src.diffusion.ict, "nll: " << a.checkpoint << " was trained with --objective ict (a consistency "
                                            "function, models/diffusion/consistency_training.h): it defines no "
                                            "probability-flow ODE whose likelihood could be computed");
  DDPM_CHECK(!src.diffusion.vdm, "nll: " << a.checkpoint
                                         << " was trained with the VDM objective (continuous t, models/diffusion/"
                                            "vdm.h); use ddpm-eval bpd, its own variational bound");
  run::refuse_super_res_model(src.net->config(), a.checkpoint, "ddpm-eval nll");  // super_res_run.h
  run::freeze_weights(src);  // only the input gradient is wanted
  const run::DiffusionSettings& d = src.diffusion;
  const unet::UNet& net = *src.net;
  DenoiseFn fn = [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };
  Dataset data = load_eval_images(a.data, a.split, a.data_dir, net.config().image_size);
  int num_classes = net.config().num_classes;
  std::string condition;
  if (src.text) {  // -log p(x | caption), or with --null-label the empty caption's
    const CaptionCondition c = condition_on_captions(*src.text, data, "nll");
    fn = c.fn;
    num_classes = static_cast<int>(c.table.size());
    condition = a.null_label ? ", the empty caption" : ", each image's caption (" + c.source + ")";
  } else if (num_classes > 0) {
    condition = a.null_label ? ", null label" : ", each image's label";
  }

  NllEvalOptions o;
  o.ode.solver = solver;
  o.ode.steps = a.ode_steps;
  o.ode.rtol = a.rtol;
  o.ode.atol = a.atol;
  o.ode.divergence = estimator;
  o.num_classes = num_classes;
  o.null_label = a.null_label;
  o.batch_size = a.batch_size;
  o.limit = a.limit;
  o.seed = a.seed;
  o.device = a.device;
  SamplerConfig sc;  // the network call: no guidance, no clipping (the flow must stay smooth)
  sc.clip_x0 = false;
  sc.num_classes = o.num_classes;
  sc.sigma_min = a.sigma_min;
  sc.sigma_max = a.sigma_max;
  std::string model;
  DenoiserForLabels make;
  std::unique_ptr<DiffusionSchedule> schedule;
  if (d.edm) {
    const EdmConfig edm = *d.edm;
    std::tie(o.ode.sigma_min, o.ode.sigma_max) = resolve_edm_sigma_range(sc);
    o.ode.data_std = edm.sigma_data;
    model = "EDM-preconditioned (sigma_data " + std::to_string(edm.sigma_data) + ")";
    make = [fn, edm, sc](const std::vector<std::int64_t>& labels) -> SigmaDenoiser {
      return [fn, edm, sc, labels](const Tensor& x, double sigma) {
        return SigmaDenoised{edm_denoise(fn, edm, sc, x, sigma, labels), -1.0};
      };
    };
  } else {
    schedule = std::make_unique<DiffusionSchedule>(run::diffusion_betas(d));
    std::tie(o.ode.sigma_min, o.ode.sigma_max) = resolve_sigma_range(*schedule, sc);
    o.ode.data_std = 0.5;
    sc.mean_type = d.predict;
    sc.learned_sigma = net.config().learn_sigma;
    model = "DDPM, T=" + std::to_string(d.diffusion_steps) + " " + noise_schedule_name(d.noise_schedule) +
            ", predicts " + model_mean_type_name(d.predict) + (sc.learned_sigma ? " (learned sigma: mean half)" : "") +
            ", through the VP adapter";
    const std::vector<double> train = vp_sigmas(*schedule);
    make = [fn, train, sc](const std::vector<std::int64_t>& labels) {
      return vp_sigma_denoiser(train, fn, sc, labels);
    };
  }
  out << "model: " << src.weights_path << " (" << src.kind << (src.ema ? ", EMA" : "") << "), " << model << "\n"
      << "data: " << data.describe() << (a.limit > 0 ? ", first " + std::to_string(a.limit) + " images" : "")
      << ", uniformly dequantized; bits/dim on the [0, 256) scale\n"
      << std::setprecision(6) << "ODE: "
      << (solver == OdeSolver::heun
              ? std::to_string(a.ode_steps) + " Heun steps on Karras levels (rho 7)"
              : "adaptive RK45 in ln sigma (rtol " + std::to_string(a.rtol) + ", atol " + std::to_string(a.atol) + ")")
      << " from sigma " << o.ode.sigma_min << " to " << o.ode.sigma_max << ", prior N(0, (sigma_max^2 + "
      << o.ode.data_std << "^2) I), divergence " << divergence_estimator_name(estimator)
      << condition << std::endl;
  const NllEvalReport r =
      evaluate_nll(make, data, o, [&](const std::string& line) { out << "  " << line << std::endl; });
  out << std::fixed << std::setprecision(4) << "bits/dim " << r.bpd << " +- " << r.bpd_stderr << " (n=" << r.n
      << "; prior " << r.prior_bpd << ", divergence " << r.divergence_bpd << "; " << r.evaluations
      << " network evaluations + VJPs per image) in " << std::setprecision(1) << r.seconds << " s\n";
  nlohmann::json j;
  j["mode"] = "nll";
  j["checkpoint"] = a.checkpoint;
  j["objective"] = d.edm ? "edm" : "ddpm";
  j["data"] = data.name;
  j["condition"] = condition.empty() ? nlohmann::json(nullptr) : nlohmann::json(condition.substr(2));
  j["n"] = r.n;
  j["dim"] = r.dim;
  j["bpd"] = r.bpd;
  j["bpd_stderr"] = r.bpd_stderr;
  j["prior_bpd"] = r.prior_bpd;
  j["divergence_bpd"] = r.divergence_bpd;
  j["ode_solver"] = ode_solver_name(solver);
  if (solver == OdeSolver::heun) {
    j["ode_steps"] = a.ode_steps;
  } else {
    j["rtol"] = a.rtol;
    j["atol"] = a.atol;
  }
  j["sigma_min"] = o.ode.sigma_min;
  j["sigma_max"] = o.ode.sigma_max;
  j["prior_data_std"] = o.ode.data_std;
  j["divergence"] = divergence_estimator_name(estimator);
  j["network_evaluations_per_image"] = r.evaluations;
  j["ema"] = src.ema;
  j["seed"] = a.seed;
  j["seconds"] = r.seconds;
  out << j.dump() << "\n";
  return r;
}

}  // namespace ddpm::eval
