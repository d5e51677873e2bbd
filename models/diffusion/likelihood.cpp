// models/diffusion/likelihood.cpp: KL, the discretized decoder, bits/dim and the losses
// built on them (see likelihood.h). Every formula is a composition of engine ops, so its
// gradient comes from the ops' own backward rules.
#include "models/diffusion/likelihood.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

namespace ddpm::diffusion {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kLn2 = 0.69314718055994530942;

// A per-sample {N} mask of 1 where t == 0 (host timesteps), with like's dtype and device.
Tensor first_step_mask(const Timesteps& t, const Tensor& like) {
  std::vector<double> m(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) m[i] = t[i] == 0 ? 1.0 : 0.0;
  return Tensor::from_vector(m, {static_cast<std::int64_t>(t.size())}, like.dtype(), like.device());
}

}  // namespace

Tensor normal_kl(const Tensor& mean1, const Tensor& logvar1, const Tensor& mean2, const Tensor& logvar2) {
  Tensor d = sub(mean1, mean2);
  Tensor terms = add(sub(logvar2, logvar1), exp(sub(logvar1, logvar2)));
  terms = add(terms, mul(square(d), exp(neg(logvar2))));
  return scale(add_scalar(terms, -1.0), 0.5);
}

Tensor approx_standard_normal_cdf(const Tensor& x) {
  // a = sqrt(2/pi) (x + 0.044715 x^3). Evaluated as sigmoid(2a), which equals
  // 0.5 (1 + tanh a) exactly but keeps full relative precision in the lower tail, where
  // 1 + tanh a cancels (about 1e-7 in f32 already at x = -3).
  Tensor inner = scale(add(x, scale(mul(square(x), x), 0.044715)), std::sqrt(2.0 / kPi));
  return sigmoid(scale(inner, 2.0));
}

Tensor discretized_gaussian_log_likelihood(const Tensor& x, const Tensor& means, const Tensor& log_scales) {
  DDPM_CHECK(x.shape() == means.shape(), "discretized_gaussian_log_likelihood: x " << shape_str(x.shape())
                                             << " and means " << shape_str(means.shape()) << " differ in shape");
  Tensor xd = x.detach();
  Tensor centered = sub(xd, means);
  Tensor inv_stdv = exp(neg(log_scales));
  const double half_bin = 1.0 / 255.0;  // bins have width 2/255
  Tensor z_plus = mul(inv_stdv, add_scalar(centered, half_bin));   // upper edge of x's bin
  Tensor z_min = mul(inv_stdv, add_scalar(centered, -half_bin));   // lower edge
  Tensor cdf_plus = approx_standard_normal_cdf(z_plus), cdf_min = approx_standard_normal_cdf(z_min);
  // 1 - Phi(z) = Phi(-z) for this approximation too (tanh is odd): the upper tail without
  // the cancellation of 1 - Phi(z) when Phi(z) is near 1.
  Tensor sf_plus = approx_standard_normal_cdf(neg(z_plus)), sf_min = approx_standard_normal_cdf(neg(z_min));
  const double floor = 1e-12;
  Tensor log_cdf_plus = log(clamp_min(cdf_plus, floor));        // bin k = 0: (-inf, -1 + 1/255]
  Tensor log_one_minus_cdf_min = log(clamp_min(sf_min, floor)); // bin 255: [1 - 1/255, inf)
  // Interior bins: Phi(z+) - Phi(z-), computed as sf(z-) - sf(z+) when the bin lies above
  // the mean (z- > 0), so neither tail subtracts two numbers near 1. Same value either way.
  Tensor above = greater_than(z_min, 0.0);
  Tensor delta = add(mul(above, sub(sf_min, sf_plus)), mul(add_scalar(neg(above), 1.0), sub(cdf_plus, cdf_min)));
  Tensor log_cdf_delta = log(clamp_min(delta, floor));
  // Select per element with 0/1 masks; every branch is finite thanks to the clamp, so the
  // products with 0 are exact zeros (no NaN from inf * 0).
  Tensor lo = less_than(xd, -0.999), hi = greater_than(xd, 0.999);
  Tensor mid = add_scalar(neg(add(lo, hi)), 1.0);
  Tensor out = add(mul(lo, log_cdf_plus), mul(hi, log_one_minus_cdf_min));
  return add(out, mul(mid, log_cdf_delta));
}

Tensor mean_flat(const Tensor& x) {
  DDPM_CHECK(x.defined() && x.ndim() >= 1, "mean_flat: the tensor needs a batch axis");
  if (x.ndim() == 1) return x;
  std::vector<int> axes;
  for (int a = 1; a < x.ndim(); ++a) axes.push_back(a);
  return mean(x, axes);
}

Tensor bits_per_dim(const Tensor& nats) { return scale(mean_flat(nats), 1.0 / kLn2); }

double nats_to_bits_per_dim(double nats, std::int64_t dims) {
  DDPM_CHECK(dims > 0, "nats_to_bits_per_dim: the number of dimensions must be positive, got " << dims);
  return nats / (kLn2 * static_cast<double>(dims));
}

Tensor prior_bpd(const DiffusionSchedule& s, const Tensor& x0) {
  Timesteps last(static_cast<std::size_t>(x0.dim(0)), s.num_timesteps() - 1);
  Gaussian q = q_mean_variance(s, x0, last);
  Tensor zero = Tensor::zeros({}, x0.dtype(), x0.device());
  return bits_per_dim(normal_kl(q.mean, q.log_variance, zero, zero));
}

Tensor vb_terms_bpd(const DiffusionSchedule& s, const Tensor& model_mean, const Tensor& model_log_variance,
                    const Tensor& x0, const Tensor& xt, const Timesteps& t) {
  Gaussian q = q_posterior_mean_variance(s, x0, xt, t);
  Tensor kl = bits_per_dim(normal_kl(q.mean, q.log_variance, model_mean, model_log_variance));  // [N]
  Tensor log_scales = expand_to(scale(model_log_variance, 0.5), x0.shape());
  Tensor decoder_nll = bits_per_dim(neg(discretized_gaussian_log_likelihood(x0, model_mean, log_scales)));  // [N]
  Tensor first = first_step_mask(t, x0);
  // t == 0 ? decoder_nll : kl
  return add(mul(first, decoder_nll), mul(add_scalar(neg(first), 1.0), kl));
}

Tensor hybrid_loss(const DiffusionSchedule& s, const Tensor& eps, const Tensor& var_values, const Tensor& x0,
                   const Tensor& xt, const Timesteps& t, const Tensor& noise, double lambda) {
  DDPM_CHECK(eps.shape() == noise.shape() && var_values.shape() == noise.shape(),
             "hybrid_loss: eps " << shape_str(eps.shape()) << ", var_values " << shape_str(var_values.shape())
                                 << " and noise " << shape_str(noise.shape()) << " must have the same shape");
  Tensor simple = mean_flat(square(sub(eps, noise)));  // [N]
  // Stop-gradient on the mean: the bound only trains the variance.
  Gaussian p = p_mean_variance(s, VarianceType::learned_range, eps.detach(), var_values, xt, t, false);
  Tensor vb = vb_terms_bpd(s, p.mean, p.log_variance, x0, xt, t);  // [N]
  return add(simple, scale(vb, lambda * static_cast<double>(s.num_timesteps())));
}

BpdResult calc_bpd_loop(const DiffusionSchedule& s, const ModelGaussianFn& model, const Tensor& x0, Generator& gen) {
  const ModelStepFn step_fn = [&model](const Tensor& xt, const Timesteps& t) {
    return ModelStep{model(xt, t), Tensor()};
  };
  return calc_bpd_loop(s, step_fn, x0, gen, BpdStepFn());
}

BpdResult calc_bpd_loop(const DiffusionSchedule& s, const ModelStepFn& model, const Tensor& x0, Generator& gen,
                        const BpdStepFn& on_step) {
  NoGradGuard no_grad;
  const std::int64_t T = s.num_timesteps(), N = x0.dim(0);
  BpdResult r;
  r.terms_bpd.resize(static_cast<std::size_t>(T));
  r.prior_bpd = prior_bpd(s, x0).to_double_vector();
  r.total_bpd = r.prior_bpd;
  for (std::int64_t step = T - 1; step >= 0; --step) {
    Timesteps t(static_cast<std::size_t>(N), step);
    Tensor noise = randn(x0.shape(), gen, x0.device(), x0.dtype());
    Tensor xt = q_sample(s, x0, t, noise);
    const ModelStep out = model(xt, t);
    std::vector<double> term = vb_terms_bpd(s, out.p.mean, out.p.log_variance, x0, xt, t).to_double_vector();
    for (std::size_t n = 0; n < term.size(); ++n) r.total_bpd[n] += term[n];
    if (on_step) on_step(step, out, term);
    r.terms_bpd[static_cast<std::size_t>(step)] = std::move(term);
  }
  return r;
}

LossSecondMomentSampler::LossSecondMomentSampler(std::int64_t T, int history, double uniform_prob)
    : T_(T), history_(history), uniform_prob_(uniform_prob), losses_(static_cast<std::size_t>(T)) {
  DDPM_CHECK(T >= 1 && history >= 1 && uniform_prob >= 0.0 && uniform_prob <= 1.0,
             "LossSecondMomentSampler: needs T >= 1, history >= 1 and uniform_prob in [0, 1], got T = "
                 << T << ", history = " << history << ", uniform_prob = " << uniform_prob);
}

bool LossSecondMomentSampler::warmed_up() const {
  for (const auto& l : losses_)
    if (static_cast<int>(l.size()) < history_) return false;
  return true;
}

std::vector<double> LossSecondMomentSampler::probabilities() const {
  std::vector<double> p(static_cast<std::size_t>(T_), 1.0 / static_cast<double>(T_));
  if (!warmed_up()) return p;
  double total = 0.0;
  for (std::size_t t = 0; t < p.size(); ++t) {
    double sq = 0.0;
    for (double l : losses_[t]) sq += l * l;
    p[t] = std::sqrt(sq / static_cast<double>(losses_[t].size()));  // sqrt(E[L_t^2])
    total += p[t];
  }
  if (!(total > 0.0) || !std::isfinite(total)) return std::vector<double>(p.size(), 1.0 / static_cast<double>(T_));
  for (double& v : p) v = (1.0 - uniform_prob_) * v / total + uniform_prob_ / static_cast<double>(T_);
  return p;
}

void LossSecondMomentSampler::update(const Timesteps& t, const std::vector<double>& losses) {
  DDPM_CHECK(t.size() == losses.size(), "LossSecondMomentSampler::update: " << t.size() << " timesteps but "
                                                                           << losses.size() << " losses");
  for (std::size_t i = 0; i < t.size(); ++i) {
    DDPM_CHECK(t[i] >= 0 && t[i] < T_, "LossSecondMomentSampler::update: timestep " << t[i] << " is outside [0, "
                                                                                      << T_ << ")");
    auto& h = losses_[static_cast<std::size_t>(t[i])];
    if (static_cast<int>(h.size()) == history_) h.erase(h.begin());
    h.push_back(losses[i]);
  }
}

void LossSecondMomentSampler::set_history(std::vector<std::vector<double>> losses) {
  DDPM_CHECK(static_cast<std::int64_t>(losses.size()) == T_,
             "LossSecondMomentSampler::set_history: " << losses.size() << " timesteps of history for T = " << T_);
  for (std::size_t t = 0; t < losses.size(); ++t) {
    DDPM_CHECK(static_cast<int>(losses[t].size()) <= history_,
               "LossSecondMomentSampler::set_history: timestep " << t << " has " << losses[t].size()
                                                                 << " losses, more than the history of " << history_);
    for (double l : losses[t])
      DDPM_CHECK(std::isfinite(l), "LossSecondMomentSampler::set_history: a non-finite loss at timestep " << t);
  }
  losses_ = std::move(losses);
}

LossSecondMomentSampler::Draw LossSecondMomentSampler::sample(std::int64_t batch, Generator& gen) const {
  std::vector<double> p = probabilities(), cdf(p.size());
  double acc = 0.0;
  for (std::size_t t = 0; t < p.size(); ++t) cdf[t] = acc += p[t];
  std::vector<double> u = rand({batch}, gen, Device::cpu(), DType::f64).to_double_vector();
  Draw d;
  for (double ui : u) {
    // Inverse CDF: the first t with cdf[t] > u * total.
    std::size_t t = static_cast<std::size_t>(std::upper_bound(cdf.begin(), cdf.end(), ui * acc) - cdf.begin());
    t = std::min(t, p.size() - 1);
    d.t.push_back(static_cast<std::int64_t>(t));
    d.weights.push_back(1.0 / (static_cast<double>(T_) * p[t]));
  }
  return d;
}

}  // namespace ddpm::diffusion
