// models/eval/bpd_eval.cpp: bits/dim over a dataset (see bpd_eval.h).
#include "models/eval/bpd_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/rng.h"
#include "models/eval/classifier.h"

namespace ddpm::eval {

using namespace diffusion;

MeanWithError mean_with_standard_error(const std::vector<double>& values) {
  MeanWithError r;
  if (values.empty()) return r;
  const double n = static_cast<double>(values.size());
  for (double v : values) r.mean += v;
  r.mean /= n;
  double var = 0;
  for (double v : values) var += (v - r.mean) * (v - r.mean);
  r.standard_error = values.size() > 1 ? std::sqrt(var / (n - 1) / n) : 0.0;
  return r;
}

ModelStepFn model_step(const DiffusionSchedule& s, const DenoiseFn& net, const BpdEvalOptions& o,
                       const std::vector<std::int64_t>& labels) {
  const bool analytic = !o.learned_sigma && o.variance == VarianceType::analytic;
  DDPM_CHECK(!analytic || o.analytic_gamma, "bpd: the analytic variance needs a Gamma estimate (--analytic-gamma FILE)");
  DDPM_CHECK(!o.learned_sigma || o.variance != VarianceType::analytic,
             "bpd: the model learned its variance; the analytic variance is for models without one");
  // Analytic-DPM's sigma*^2 per timestep (the decoder's at t = 0 is fixed_small's).
  std::vector<double> table, log_table;
  if (analytic) {
    table = analytic_likelihood_variances(s, *o.analytic_gamma, o.analytic_gamma_file);
    for (double v : table) log_table.push_back(std::log(v));
  }
  return [&s, net, o, labels, analytic, table, log_table](const Tensor& xt, const Timesteps& t) {
    const std::vector<double> t_orig(t.begin(), t.end());
    const Tensor out = net(xt, t_orig, labels);
    Tensor pred = out, var_values;
    if (o.learned_sigma) std::tie(pred, var_values) = split_learned_variance(out);
    // From x_0 directly: also defined at alpha_bar = 0 (a zero-terminal-SNR v- or x0-model).
    const Tensor x0 = x0_from_prediction(s, o.mean_type, pred, xt, t);
    const VarianceType type = o.learned_sigma ? VarianceType::learned_range
                              : analytic      ? VarianceType::fixed_small  // the mean is DDPM's posterior mean
                                              : o.variance;
    ModelStep r;
    r.p = p_mean_variance_from_x0(s, type, x0, var_values, xt, t, o.clip_x0);
    if (analytic) {
      r.p.variance = extract(table, t, xt);  // [N, 1, ..., 1]
      r.p.log_variance = extract(log_table, t, xt);
    }
    r.pred_x0 = o.clip_x0 ? clamp(x0, -1.0, 1.0) : x0;  // the x_0 the mean above was built from
    return r;
  };
}

ModelGaussianFn model_gaussian(const DiffusionSchedule& s, const DenoiseFn& net, const BpdEvalOptions& o,
                               const std::vector<std::int64_t>& labels) {
  const ModelStepFn step = model_step(s, net, o, labels);
  return [step](const Tensor& xt, const Timesteps& t) { return step(xt, t).p; };
}

std::int64_t bpd_image_count(const Dataset& ds, const BpdEvalOptions& o, const char* what) {
  DDPM_CHECK(o.batch_size >= 1, what << ": batch size must be positive, got " << o.batch_size);
  DDPM_CHECK(o.limit >= 0, what << ": --limit must be non-negative, got " << o.limit);
  DDPM_CHECK(o.num_classes == 0 || ds.has_labels(),
             what << ": the model is class-conditional but " << ds.name << " has no labels");
  const std::int64_t n = o.limit > 0 ? std::min(o.limit, ds.n) : ds.n;
  DDPM_CHECK(n > 0, what << ": " << ds.name << " holds no images");
  return n;
}

namespace {

// One batch's bound per image, in bits/dim: the total and its prior, decoder and remaining
// (diffusion) parts.
struct ImageBounds {
  std::vector<double> total, prior, decoder, terms;
};
using BatchBound =
    std::function<ImageBounds(const Tensor& x0, const std::vector<std::int64_t>& labels, Generator& gen)>;

// The driver both bounds share: the first n images (bpd_image_count) in batches, each with
// its labels for a class-conditional model, every draw from one generator seeded o.seed;
// the running mean logged per batch; the report's means and the total's standard error.
BpdEvalReport evaluate_bound(const Dataset& ds, const BpdEvalOptions& o, std::int64_t timesteps,
                             const BatchBound& bound, const std::function<void(const std::string&)>& log) {
  const std::int64_t n = bpd_image_count(ds, o, "bpd");
  const auto t0 = std::chrono::steady_clock::now();
  NoGradGuard no_grad;
  Generator gen(o.seed);
  BpdEvalReport r;
  r.n = n;
  r.timesteps = timesteps;
  std::vector<double> totals;
  for (std::int64_t b = 0; b < n; b += o.batch_size) {
    const std::int64_t count = std::min(o.batch_size, n - b);
    const Tensor x0 = image_batch(ds, b, count, o.device);  // [B, H, W, C] in [-1, 1]
    std::vector<std::int64_t> labels;
    if (o.num_classes > 0)
      for (std::int64_t i = b; i < b + count; ++i) labels.push_back(ds.labels[static_cast<std::size_t>(i)]);
    const ImageBounds ib = bound(x0, labels, gen);
    for (std::size_t i = 0; i < static_cast<std::size_t>(count); ++i) {
      totals.push_back(ib.total[i]);
      r.prior_bpd += ib.prior[i];
      r.decoder_bpd += ib.decoder[i];
      r.terms_bpd += ib.terms[i];
    }
    if (log) {
      double mean = 0;
      for (double v : totals) mean += v;
      std::ostringstream line;
      line << "images " << totals.size() << "/" << n << "  running bpd " << mean / static_cast<double>(totals.size());
      log(line.str());
    }
  }
  const double nn = static_cast<double>(n);
  const MeanWithError total = mean_with_standard_error(totals);
  r.bpd = total.mean;
  r.bpd_stderr = total.standard_error;
  r.prior_bpd /= nn;
  r.decoder_bpd /= nn;
  r.terms_bpd /= nn;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace

BpdEvalReport evaluate_bpd(const DiffusionSchedule& s, const DenoiseFn& net, const Dataset& ds,
                           const BpdEvalOptions& o, const std::function<void(const std::string&)>& log) {
  // Every timestep of the discrete bound (likelihood.h calc_bpd_loop); terms[0] is the decoder.
  const BatchBound bound = [&](const Tensor& x0, const std::vector<std::int64_t>& labels, Generator& gen) {
    const BpdResult res = calc_bpd_loop(s, model_gaussian(s, net, o, labels), x0, gen);
    ImageBounds ib;
    for (std::int64_t i = 0; i < x0.dim(0); ++i) {
      double terms = 0;
      for (std::size_t t = 1; t < res.terms_bpd.size(); ++t) terms += res.terms_bpd[t][i];
      ib.total.push_back(res.total_bpd[i]);
      ib.prior.push_back(res.prior_bpd[i]);
      ib.decoder.push_back(res.terms_bpd[0][i]);
      ib.terms.push_back(terms);
    }
    return ib;
  };
  return evaluate_bound(ds, o, s.num_timesteps(), bound, log);
}

BpdEvalReport evaluate_vdm_bpd(const diffusion::GammaCurve& g, const DenoiseFn& net, const Dataset& ds,
                               const BpdEvalOptions& o, const std::function<void(const std::string&)>& log) {
  // One draw of t per image (vdm.h): the prior and decoder exactly, the diffusion term by
  // one Monte Carlo sample, which the standard error then includes.
  const BatchBound bound = [&](const Tensor& x, const std::vector<std::int64_t>& labels, Generator& gen) {
    const std::int64_t count = x.dim(0), dims = x.numel() / count;
    const std::vector<double> t = diffusion::sample_vdm_times(count, g.config().steps, gen);
    const Tensor eps = randn(x.shape(), gen, x.device(), x.dtype());
    const Tensor eps0 = randn(x.shape(), gen, x.device(), x.dtype());
    const std::vector<double> diff = diffusion::vdm_diffusion_nats(net, g, x, t, eps, labels).to_double_vector();
    const std::vector<double> prior = diffusion::vdm_prior_nats(g, x);
    const std::vector<double> recon = diffusion::vdm_reconstruction_nats(g, x, eps0);
    ImageBounds ib;
    for (std::size_t i = 0; i < static_cast<std::size_t>(count); ++i) {
      ib.prior.push_back(diffusion::vdm_bits_per_dim(prior[i], dims));
      ib.terms.push_back(diffusion::vdm_bits_per_dim(diff[i], dims));
      ib.decoder.push_back(diffusion::vdm_bits_per_dim(recon[i], dims));
      ib.total.push_back(ib.prior.back() + ib.terms.back() + ib.decoder.back());
    }
    return ib;
  };
  return evaluate_bound(ds, o, 1, bound, log);
}

}  // namespace ddpm::eval
