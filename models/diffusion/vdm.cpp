// models/diffusion/vdm.cpp: see vdm.h for the equations and their sources.
#include "models/diffusion/vdm.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/likelihood.h"

namespace ddpm::diffusion {

namespace {

constexpr double kLn2 = 0.69314718055994530942;

double sigmoid(double a) { return a >= 0.0 ? 1.0 / (1.0 + std::exp(-a)) : std::exp(a) / (1.0 + std::exp(a)); }
double sign(double w) { return w < 0.0 ? -1.0 : 1.0; }  // d|w|/dw (the subgradient +1 at 0)
// log sigmoid(a) = -softplus(-a), stable for either sign.
double log_sigmoid(double a) { return a >= 0.0 ? -std::log1p(std::exp(-a)) : a - std::log1p(std::exp(a)); }

// values[i] as an [N, 1, ..., 1] tensor with like's rank, dtype and device (a constant).
Tensor per_sample(const std::vector<double>& values, const Tensor& like) {
  Shape shape(static_cast<std::size_t>(like.ndim()), 1);
  shape[0] = like.dim(0);
  return Tensor::from_vector(values, shape, like.dtype(), like.device());
}

}  // namespace

VdmScheduleKind parse_vdm_schedule_kind(const std::string& name) {
  if (name == "fixed") return VdmScheduleKind::fixed;
  if (name == "learned") return VdmScheduleKind::learned;
  DDPM_THROW(ValueError, "unknown VDM noise schedule '" << name << "' (expected fixed or learned)");
}

const char* vdm_schedule_kind_name(VdmScheduleKind k) { return k == VdmScheduleKind::learned ? "learned" : "fixed"; }

void check_vdm_config(const VdmConfig& c) {
  DDPM_CHECK(std::isfinite(c.gamma_min) && std::isfinite(c.gamma_max) && c.gamma_min < c.gamma_max,
             "VDM: gamma_min (-log SNR at t = 0) must be finite and below gamma_max (-log SNR at t = 1), got "
                 << c.gamma_min << " and " << c.gamma_max);
  DDPM_CHECK(c.steps >= 0, "VDM: the number of discrete steps T must be >= 0 (0 = continuous time), got " << c.steps);
  DDPM_CHECK(c.features >= 1, "VDM: the learned schedule needs at least one feature, got " << c.features);
  DDPM_CHECK(!c.learn_endpoints || c.schedule == VdmScheduleKind::learned,
             "VDM: learned endpoints (learn_endpoints) need the learned schedule; the schedule is "
                 << vdm_schedule_kind_name(c.schedule));
}

// --- GammaCurve ------------------------------------------------------------------------------

GammaCurve::GammaCurve(const VdmConfig& c) : c_(c), g0_(c.gamma_min), g1_(c.gamma_max) { check_vdm_config(c); }

GammaCurve::GammaCurve(const VdmConfig& c, double w1, std::vector<double> w2, std::vector<double> b2,
                       std::vector<double> w3)
    : GammaCurve(c, w1, std::move(w2), std::move(b2), std::move(w3), c.gamma_min, c.gamma_max) {}

GammaCurve::GammaCurve(const VdmConfig& c, double w1, std::vector<double> w2, std::vector<double> b2,
                       std::vector<double> w3, double gamma_0, double gamma_1)
    : c_(c), learned_(true), g0_(gamma_0), g1_(gamma_1), w1_(w1), w2_(std::move(w2)), b2_(std::move(b2)),
      w3_(std::move(w3)) {
  check_vdm_config(c);
  DDPM_CHECK(std::isfinite(g0_) && std::isfinite(g1_) && g0_ < g1_,
             "GammaCurve: the endpoints gamma_0 = " << g0_ << " and gamma_1 = " << g1_
                                                    << " must be finite with gamma_0 < gamma_1 (learned endpoints "
                                                       "that crossed: lower the learning rate)");
  DDPM_CHECK(!w2_.empty() && b2_.size() == w2_.size() && w3_.size() == w2_.size(),
             "GammaCurve: the learned schedule needs F weights in each of w2, b2 and w3, got " << w2_.size() << ", "
                                                                                          << b2_.size() << " and "
                                                                                          << w3_.size());
}

GammaCurve::Net GammaCurve::net(double t) const {
  // n(t) = |w1| t + (1/F) sum_k |w3_k| phi(a_k),  a_k = |w2_k| u + b2_k,  u = 2t - 1
  // n'(t) = |w1| + (1/F) sum_k |w3_k| phi'(a_k) 2 |w2_k|,  phi' = 2 s (1 - s), s = sigmoid(a)
  const double u = 2.0 * t - 1.0, inv_f = 1.0 / static_cast<double>(w2_.size());
  double n = std::abs(w1_) * t, dn = std::abs(w1_);
  for (std::size_t k = 0; k < w2_.size(); ++k) {
    const double s = sigmoid(std::abs(w2_[k]) * u + b2_[k]);
    n += inv_f * std::abs(w3_[k]) * (2.0 * s - 1.0);
    dn += inv_f * std::abs(w3_[k]) * 2.0 * s * (1.0 - s) * 2.0 * std::abs(w2_[k]);
  }
  return {n, dn};
}

void GammaCurve::net_grad(double t, double a, double b, std::vector<double>& grad) const {
  const std::size_t f = w2_.size();
  const double u = 2.0 * t - 1.0, inv_f = 1.0 / static_cast<double>(f);
  grad[0] += (a * t + b) * sign(w1_);  // dn/dw1 = sgn t, dn'/dw1 = sgn
  for (std::size_t k = 0; k < f; ++k) {
    const double aw2 = std::abs(w2_[k]), aw3 = std::abs(w3_[k]);
    const double s = sigmoid(aw2 * u + b2_[k]);
    const double phi = 2.0 * s - 1.0, dphi = 2.0 * s * (1.0 - s), ddphi = dphi * (1.0 - 2.0 * s);
    // d/d|w2|: n gets |w3| phi' u / F; n' = 2 |w3| |w2| phi' / F gets 2 |w3| (phi'' u |w2| + phi') / F
    grad[1 + k] += inv_f * aw3 * (a * dphi * u + b * 2.0 * (ddphi * u * aw2 + dphi)) * sign(w2_[k]);
    // d/db2: phi' and phi''
    grad[1 + f + k] += inv_f * aw3 * (a * dphi + b * 2.0 * aw2 * ddphi);
    // d/d|w3|: phi and 2 |w2| phi'
    grad[1 + 2 * f + k] += inv_f * (a * phi + b * 2.0 * aw2 * dphi) * sign(w3_[k]);
  }
}

GammaPoint GammaCurve::at(double t) const {
  const double g0 = g0_, g1 = g1_;
  if (!learned_) return {g0 + (g1 - g0) * t, g1 - g0};
  // gamma = g0 + (g1 - g0) (n(t) - n(0)) / D, D = n(1) - n(0); gamma' = (g1 - g0) n'(t) / D.
  const Net n0 = net(0.0), n1 = net(1.0), nt = net(t);
  const double d = n1.n - n0.n;
  return {g0 + (g1 - g0) * (nt.n - n0.n) / d, (g1 - g0) * nt.dn / d};
}

void GammaCurve::accumulate_grad(const std::vector<double>& t, const std::vector<double>& cg,
                                 const std::vector<double>& cd, std::vector<double>& grad) const {
  if (!learned_) return;
  DDPM_CHECK(cg.size() == t.size() && cd.size() == t.size() &&
                 static_cast<std::int64_t>(grad.size()) == num_weights(),
             "GammaCurve::accumulate_grad: needs one gamma and one gamma' coefficient per time and "
                 << num_weights() << " gradient slots, got " << t.size() << " times, " << cg.size() << ", "
                 << cd.size() << " coefficients and " << grad.size() << " slots");
  const double delta = g1_ - g0_;
  const Net n0 = net(0.0), n1 = net(1.0);
  const double d = n1.n - n0.n;
  // With r = (n(t) - n(0)) / D: dgamma = delta [(dn(t) - dn(0)) / D - r (dn(1) - dn(0)) / D],
  // dgamma' = delta [dn'(t) / D - n'(t) (dn(1) - dn(0)) / D^2]. The dn(0), dn(1) parts are
  // collected over all times and added once.
  double k0 = 0.0, k1 = 0.0;  // coefficients of dn(0) and dn(1)
  for (std::size_t j = 0; j < t.size(); ++j) {
    const Net nt = net(t[j]);
    const double a = cg[j] * delta / d, b = cd[j] * delta / d;
    net_grad(t[j], a, b, grad);
    const double r = (nt.n - n0.n) / d, q = nt.dn / d;
    const double shared = a * r + b * q;  // multiplies -(dn(1) - dn(0))
    k0 += -a + shared;
    k1 += -shared;
  }
  net_grad(0.0, k0, 0.0, grad);
  net_grad(1.0, k1, 0.0, grad);
}

void GammaCurve::accumulate_endpoint_grad(const std::vector<double>& t, const std::vector<double>& cg,
                                          const std::vector<double>& cd, double& d0, double& d1) const {
  DDPM_CHECK(cg.size() == t.size() && cd.size() == t.size(),
             "GammaCurve::accumulate_endpoint_grad: needs one gamma and one gamma' coefficient per time, got "
                 << t.size() << " times, " << cg.size() << " and " << cd.size() << " coefficients");
  const double delta = g1_ - g0_;
  for (std::size_t j = 0; j < t.size(); ++j) {
    // gamma = g0 + delta r(t), gamma' = delta r'(t), r and r' fixed by the net's weights.
    const GammaPoint p = at(t[j]);
    const double r = (p.gamma - g0_) / delta, dr = p.dgamma / delta;
    d0 += cg[j] * (1.0 - r) - cd[j] * dr;
    d1 += cg[j] * r + cd[j] * dr;
  }
}

// --- VdmSchedule -----------------------------------------------------------------------------

VdmSchedule::VdmSchedule(const VdmConfig& c, Generator& gen, Device device, DType dtype) : c_(c) {
  check_vdm_config(c);
  if (c.schedule != VdmScheduleKind::learned) return;
  // The code's init: l1 kernel = gamma_max - gamma_min, l2 / l3 kernels ~ N(0, 1), l2 bias 0.
  w1_ = add_parameter("l1.weight", Tensor::full({1}, c.gamma_max - c.gamma_min, dtype, device));
  w2_ = add_parameter("l2.weight", randn({c.features}, gen, device, dtype));
  b2_ = add_parameter("l2.bias", Tensor::full({c.features}, 0.0, dtype, device));
  w3_ = add_parameter("l3.weight", randn({c.features}, gen, device, dtype));
  if (!c.learn_endpoints) return;
  // Last, so the weights above are drawn as without them; initialised at the flags.
  g0_ = add_parameter("gamma_0", Tensor::full({1}, c.gamma_min, dtype, device));
  g1_ = add_parameter("gamma_1", Tensor::full({1}, c.gamma_max, dtype, device));
}

GammaCurve VdmSchedule::curve() const {
  if (!learned()) return GammaCurve(c_);
  const double e0 = c_.learn_endpoints ? g0_.to_double_vector()[0] : c_.gamma_min;
  const double e1 = c_.learn_endpoints ? g1_.to_double_vector()[0] : c_.gamma_max;
  return GammaCurve(c_, w1_.to_double_vector()[0], w2_.to_double_vector(), b2_.to_double_vector(),
                    w3_.to_double_vector(), e0, e1);
}

std::vector<Tensor> VdmSchedule::weights() const {
  if (!learned()) return {};
  return {w1_, w2_, b2_, w3_};
}

std::vector<Tensor> VdmSchedule::endpoints() const {
  if (!c_.learn_endpoints) return {};
  return {g0_, g1_};
}

// --- sampling of t, weights, prior and reconstruction ----------------------------------------

double vdm_network_time(double gamma, const VdmConfig& c) {
  return 1000.0 * (gamma - c.gamma_min) / (c.gamma_max - c.gamma_min);
}

std::vector<double> sample_vdm_times(std::int64_t n, std::int64_t steps, Generator& gen) {
  DDPM_CHECK(n >= 1 && steps >= 0, "sample_vdm_times: needs n >= 1 and steps >= 0, got " << n << " and " << steps);
  const double u = rand({1}, gen, Device::cpu(), DType::f64).to_double_vector()[0];
  std::vector<double> t(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    double ti = std::fmod(u + static_cast<double>(i) / static_cast<double>(n), 1.0);  // antithetic
    if (steps > 0) {
      const double T = static_cast<double>(steps);
      ti = std::max(std::ceil(ti * T), 1.0) / T;  // the grid i/T, i = 1..T
    }
    t[static_cast<std::size_t>(i)] = ti;
  }
  return t;
}

std::vector<double> vdm_prior_nats(const GammaCurve& g, const Tensor& x) {
  const double g1 = g.gamma(1.0);
  const double alpha2 = sigmoid(-g1), var1 = sigmoid(g1), log_var1 = log_sigmoid(g1);
  const std::vector<double> xs = x.to_double_vector();
  const std::int64_t n = x.dim(0), d = x.numel() / n;
  std::vector<double> out(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const double xv = xs[static_cast<std::size_t>(i * d + j)];
      // KL(N(alpha_1 x, sigma_1^2) || N(0, 1)) per dimension
      out[static_cast<std::size_t>(i)] += 0.5 * (alpha2 * xv * xv + var1 - log_var1 - 1.0);
    }
  return out;
}

namespace {

// The 256-value decoder p(x | z_0) of vdm_reconstruction_nats and its gamma_0 derivative, in one
// walk. Per element: y = z_0 / alpha_0 = v(k_true) + sigma_0 eps0 (v(k) = k / 127.5 - 1, sigma_0 =
// exp(g0 / 2)) and the logits l_k = -(y - v(k))^2 / (2 sigma_0^2). They are a concave parabola in
// k, so the log-sum-exp walks out from the nearest value and stops where a term is below e^-60 of
// the largest. Per sample, the sum over elements of -(l_true - logsumexp l) (want_dgamma0 false)
// or of its d/dgamma_0, -(dl_true - E_softmax[dl]) with dy/dgamma_0 = sigma_0 eps0 / 2 (true).
std::vector<double> reconstruction_walk(const char* what, double g0, const Tensor& x, const Tensor& eps0,
                                        bool want_dgamma0) {
  DDPM_CHECK(eps0.shape() == x.shape(),
             what << ": eps0 has shape " << shape_str(eps0.shape()) << ", x " << shape_str(x.shape()));
  const double std0 = std::exp(0.5 * g0), prec = std::exp(-g0);
  const std::vector<double> xs = x.to_double_vector(), es = eps0.to_double_vector();
  const std::int64_t n = x.dim(0), d = x.numel() / n;
  auto value = [](int k) { return k / 127.5 - 1.0; };
  std::vector<double> out(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const std::size_t e = static_cast<std::size_t>(i * d + j);
      const int k_true = std::clamp(static_cast<int>(std::lround((xs[e] + 1.0) * 127.5)), 0, 255);
      const double y = value(k_true) + std0 * es[e], dy = 0.5 * std0 * es[e];
      auto logit = [&](int k) { const double r = y - value(k); return -0.5 * r * r * prec; };
      auto dlogit = [&](int k) { const double r = y - value(k); return -r * prec * dy + 0.5 * r * r * prec; };
      const int k_near = std::clamp(static_cast<int>(std::lround((y + 1.0) * 127.5)), 0, 255);
      const double top = logit(k_near);
      double sum = 1.0, mean = want_dgamma0 ? dlogit(k_near) : 0.0;
      auto add = [&](int k) {
        const double p = std::exp(logit(k) - top);
        sum += p;
        if (want_dgamma0) mean += p * dlogit(k);
      };
      for (int k = k_near - 1; k >= 0 && logit(k) > top - 60.0; --k) add(k);
      for (int k = k_near + 1; k <= 255 && logit(k) > top - 60.0; ++k) add(k);
      out[static_cast<std::size_t>(i)] -=
          want_dgamma0 ? dlogit(k_true) - mean / sum : logit(k_true) - (top + std::log(sum));
    }
  return out;
}

}  // namespace

std::vector<double> vdm_reconstruction_nats(const GammaCurve& g, const Tensor& x, const Tensor& eps0) {
  return reconstruction_walk("vdm_reconstruction_nats", g.gamma(0.0), x, eps0, false);
}

std::vector<double> vdm_prior_dgamma1(const GammaCurve& g, const Tensor& x) {
  const double s = sigmoid(g.gamma_1());
  const std::vector<double> xs = x.to_double_vector();
  const std::int64_t n = x.dim(0), d = x.numel() / n;
  std::vector<double> out(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      const double xv = xs[static_cast<std::size_t>(i * d + j)];
      // d/dg of 1/2 [sigmoid(-g) x^2 + sigmoid(g) - log sigmoid(g) - 1] = 1/2 (1 - s) (s (1 - x^2) - 1)
      out[static_cast<std::size_t>(i)] += 0.5 * (1.0 - s) * (s * (1.0 - xv * xv) - 1.0);
    }
  return out;
}

std::vector<double> vdm_reconstruction_dgamma0(const GammaCurve& g, const Tensor& x, const Tensor& eps0) {
  return reconstruction_walk("vdm_reconstruction_dgamma0", g.gamma_0(), x, eps0, true);
}

Tensor vdm_prior_reconstruction_nats(const VdmSchedule& schedule, const Tensor& x, const Tensor& eps0) {
  const auto g = std::make_shared<const GammaCurve>(schedule.curve());
  std::vector<double> nats = vdm_prior_nats(*g, x);
  const std::vector<double> recon = vdm_reconstruction_nats(*g, x, eps0);
  for (std::size_t i = 0; i < nats.size(); ++i) nats[i] += recon[i];
  Tensor out = Tensor::from_vector(nats, {x.dim(0)}, x.dtype(), x.device());
  const std::vector<Tensor> ends = schedule.endpoints();
  if (ends.empty()) return out;
  // dL/dgamma_1 = sum_i go_i dprior_i, dL/dgamma_0 = sum_i go_i drecon_i (plain VLB gradient).
  auto d1 = std::make_shared<const std::vector<double>>(vdm_prior_dgamma1(*g, x));
  auto d0 = std::make_shared<const std::vector<double>>(vdm_reconstruction_dgamma0(*g, x, eps0));
  const DType dtype = ends[0].dtype();
  const Device device = ends[0].device();
  record(out, "vdm_endpoints", ends, [d0, d1, dtype, device](const Tensor& grad_out, const std::vector<bool>& need) {
    const std::vector<double> go = grad_out.to_double_vector();
    double s0 = 0.0, s1 = 0.0;
    for (std::size_t i = 0; i < go.size(); ++i) s0 += go[i] * (*d0)[i], s1 += go[i] * (*d1)[i];
    std::vector<Tensor> grads(2);
    if (need[0]) grads[0] = Tensor::from_vector(std::vector<double>{s0}, {1}, dtype, device);
    if (need[1]) grads[1] = Tensor::from_vector(std::vector<double>{s1}, {1}, dtype, device);
    return grads;
  });
  return out;
}

double vdm_bits_per_dim(double nats, std::int64_t dims) { return nats / (static_cast<double>(dims) * kLn2); }

// --- the diffusion loss ----------------------------------------------------------------------

namespace {

// The per-sample coefficients of one batch at times t: alpha_i, sigma_i and the loss weight
// w_i (times D, since the loss uses the MEAN of the squared error), with their derivatives in
// gamma(t_i) (and gamma(s_i) for T > 0; gamma'(t_i) for T = 0).
struct Coefficients {
  std::vector<double> t, s, gamma, alpha, sigma, weight;
  std::vector<double> dalpha, dsigma;   // d/dgamma(t)
  std::vector<double> dw_t, dw_s, dw_d;  // weight: d/dgamma(t), d/dgamma(s), d/dgamma'(t)
};

Coefficients coefficients(const GammaCurve& g, const std::vector<double>& t, std::int64_t dims) {
  const std::int64_t T = g.config().steps;
  const double D = static_cast<double>(dims);
  Coefficients c;
  c.t = t;
  for (double ti : t) {
    const GammaPoint p = g.at(ti);
    const double a = std::sqrt(sigmoid(-p.gamma)), s = std::sqrt(sigmoid(p.gamma));
    c.gamma.push_back(p.gamma);
    c.alpha.push_back(a);
    c.sigma.push_back(s);
    c.dalpha.push_back(-0.5 * a * s * s);  // d sqrt(sigmoid(-g))/dg
    c.dsigma.push_back(0.5 * s * a * a);   // d sqrt(sigmoid(g))/dg
    if (T == 0) {  // w = 1/2 gamma'(t) D                                     (paper eq. 17)
      c.s.push_back(ti);
      c.weight.push_back(0.5 * p.dgamma * D);
      c.dw_t.push_back(0.0);
      c.dw_s.push_back(0.0);
      c.dw_d.push_back(0.5 * D);
    } else {  // w = 1/2 T expm1(gamma(t) - gamma(s)) D = 1/2 T (SNR(s)/SNR(t) - 1) D
      const double si = ti - 1.0 / static_cast<double>(T), e = std::exp(p.gamma - g.gamma(si));
      const double half_t = 0.5 * static_cast<double>(T) * D;
      c.s.push_back(si);
      c.weight.push_back(half_t * std::expm1(p.gamma - g.gamma(si)));
      c.dw_t.push_back(half_t * e);
      c.dw_s.push_back(-half_t * e);
      c.dw_d.push_back(0.0);
    }
  }
  return c;
}

enum class Which { alpha, sigma, weight };

// One coefficient as an [N, 1, ..., 1] tensor shaped like `like` (weight: [N]). When the
// schedule's weights require grad, a node whose backward sends the gradient through gamma
// into the schedule's weights, scaled per sample by 2 L_i when variance (L filled after the
// forward by the caller).
Tensor coefficient_op(const VdmSchedule& schedule, std::shared_ptr<const GammaCurve> g,
                      std::shared_ptr<const Coefficients> c, Which which, const Tensor& like,
                      std::shared_ptr<const std::vector<double>> losses, bool variance) {
  const std::vector<double>& v = which == Which::alpha ? c->alpha : which == Which::sigma ? c->sigma : c->weight;
  Tensor out = which == Which::weight ? Tensor::from_vector(v, {like.dim(0)}, like.dtype(), like.device())
                                      : per_sample(v, like);
  std::vector<Tensor> inputs = schedule.weights();
  if (inputs.empty()) return out;
  const std::size_t net_inputs = inputs.size();  // then the learned endpoints, if any
  for (const Tensor& e : schedule.endpoints()) inputs.push_back(e);
  // The weights' shapes, dtypes and devices (no handles: a node keeps no tensor alive).
  std::vector<std::tuple<Shape, DType, Device>> layout;
  for (const Tensor& w : inputs) layout.emplace_back(w.shape(), w.dtype(), w.device());
  record(out, "vdm_gamma", inputs,
         [g, c, which, losses, variance, layout, net_inputs](const Tensor& grad_out, const std::vector<bool>& need) {
           const std::vector<double> go = grad_out.to_double_vector();  // dL/dcoef_i
           const std::size_t n = go.size();
           // Coefficients of dgamma(time) and dgamma'(time): plain (dL) and variance-scaled.
           std::vector<double> times, cg, cd, pg, pd;
           auto term = [&](double time, double f, double plain, double dg, double dd) {
             times.push_back(time), cg.push_back(f * dg), cd.push_back(f * dd);
             pg.push_back(plain * dg), pd.push_back(plain * dd);
           };
           for (std::size_t i = 0; i < n; ++i) {
             const double f = go[i] * (variance ? 2.0 * (*losses)[i] : 1.0);  // d(L_i^2) = 2 L_i dL_i
             if (which == Which::alpha) {
               term(c->t[i], f, go[i], c->dalpha[i], 0.0);
             } else if (which == Which::sigma) {
               term(c->t[i], f, go[i], c->dsigma[i], 0.0);
             } else {
               term(c->t[i], f, go[i], c->dw_t[i], c->dw_d[i]);
               if (c->dw_s[i] != 0.0) term(c->s[i], f, go[i], c->dw_s[i], 0.0);
             }
           }
           std::vector<double> flat(static_cast<std::size_t>(g->num_weights()), 0.0);
           g->accumulate_grad(times, cg, cd, flat);
           if (layout.size() > net_inputs) {  // learned endpoints: the plain VLB gradient
             double d0 = 0.0, d1 = 0.0;
             g->accumulate_endpoint_grad(times, pg, pd, d0, d1);
             flat.push_back(d0);
             flat.push_back(d1);
           }
           std::vector<Tensor> grads(layout.size());
           std::size_t offset = 0;
           for (std::size_t k = 0; k < layout.size(); ++k) {
             const auto& [shape, dtype, device] = layout[k];
             const auto count = static_cast<std::size_t>(shape_numel(shape));
             if (need[k])
               grads[k] = Tensor::from_vector(std::vector<double>(flat.begin() + static_cast<std::ptrdiff_t>(offset),
                                                                  flat.begin() +
                                                                      static_cast<std::ptrdiff_t>(offset + count)),
                                              shape, dtype, device);
             offset += count;
           }
           return grads;
         });
  return out;
}

void check_loss_inputs(const Tensor& x, const std::vector<double>& t, const Tensor& noise) {
  DDPM_CHECK(x.defined() && x.ndim() >= 2 && noise.defined() && noise.shape() == x.shape() &&
                 static_cast<std::int64_t>(t.size()) == x.dim(0),
             "VDM diffusion loss: needs x [N, ..., C], noise of x's shape and N times; got x "
                 << (x.defined() ? shape_str(x.shape()) : std::string("none")) << ", noise "
                 << (noise.defined() ? shape_str(noise.shape()) : std::string("none")) << " and " << t.size()
                 << " times");
  for (double ti : t)
    DDPM_CHECK(ti >= 0.0 && ti <= 1.0, "VDM diffusion loss: every time must lie in [0, 1], got " << ti);
}

Tensor squared_error(const DenoiseFn& net, const Tensor& z, const Tensor& x, const std::vector<double>& gamma,
                     const Tensor& noise, const std::vector<std::int64_t>& labels, const VdmConfig& cfg) {
  std::vector<double> tn;
  for (double gi : gamma) tn.push_back(vdm_network_time(gi, cfg));
  const Tensor eps_hat = net(z, tn, labels);
  DDPM_CHECK(eps_hat.defined() && eps_hat.shape() == x.shape(),
             "VDM diffusion loss: the network returned "
                 << (eps_hat.defined() ? shape_str(eps_hat.shape()) : std::string("nothing")) << " for data of shape "
                 << shape_str(x.shape()) << " (VDM predicts eps: the output must have the data's channels)");
  return mean_flat(square(sub(noise, eps_hat)));  // [N], ||eps - eps^||^2 / D
}

}  // namespace

VdmDiffusionLoss vdm_diffusion_loss(const DenoiseFn& net, const VdmSchedule& schedule, const Tensor& x,
                                    const std::vector<double>& t, const Tensor& noise,
                                    const std::vector<std::int64_t>& labels, double variance_scale) {
  DDPM_CHECK(net, "vdm_diffusion_loss: no network given");
  check_loss_inputs(x, t, noise);
  auto g = std::make_shared<const GammaCurve>(schedule.curve());
  auto c = std::make_shared<const Coefficients>(coefficients(*g, t, x.numel() / x.dim(0)));
  auto losses = std::make_shared<std::vector<double>>();
  const bool variance = variance_scale != 0.0;
  const Tensor alpha = coefficient_op(schedule, g, c, Which::alpha, x, losses, variance);
  const Tensor sigma = coefficient_op(schedule, g, c, Which::sigma, x, losses, variance);
  const Tensor weight = coefficient_op(schedule, g, c, Which::weight, x, losses, variance);
  const Tensor z = add(mul(x, alpha), mul(noise, sigma));  // z_t = alpha_t x + sigma_t eps
  VdmDiffusionLoss out;
  out.nats = mul(squared_error(net, z, x, c->gamma, noise, labels, schedule.config()), weight);  // [N]
  out.gamma = c->gamma;
  *losses = out.nats.to_double_vector();
  for (double& l : *losses) l *= variance_scale;
  return out;
}

Tensor vdm_diffusion_nats(const DenoiseFn& net, const GammaCurve& g, const Tensor& x, const std::vector<double>& t,
                          const Tensor& noise, const std::vector<std::int64_t>& labels) {
  DDPM_CHECK(net, "vdm_diffusion_nats: no network given");
  check_loss_inputs(x, t, noise);
  const Coefficients c = coefficients(g, t, x.numel() / x.dim(0));
  const Tensor z = add(mul(x, per_sample(c.alpha, x)), mul(noise, per_sample(c.sigma, x)));
  const Tensor w = Tensor::from_vector(c.weight, {x.dim(0)}, x.dtype(), x.device());
  return mul(squared_error(net, z, x, c.gamma, noise, labels, g.config()), w);
}

// --- the grid bridge -------------------------------------------------------------------------

DiffusionSchedule vdm_grid_schedule(const GammaCurve& g, std::int64_t n) {
  DDPM_CHECK(n >= 1, "vdm_grid_schedule: needs at least one step, got " << n);
  std::vector<double> betas;
  double prev = 1.0;  // alpha_bar before the first grid point
  for (std::int64_t i = 0; i < n; ++i) {
    const double abar = sigmoid(-g.gamma(static_cast<double>(i + 1) / static_cast<double>(n)));
    betas.push_back(1.0 - abar / prev);  // beta_i = 1 - abar_i / abar_{i-1}
    prev = abar;
  }
  return DiffusionSchedule(std::move(betas));
}

DenoiseFn vdm_grid_denoiser(const DenoiseFn& net, std::shared_ptr<const GammaCurve> g, std::int64_t n) {
  DDPM_CHECK(net && g && n >= 1, "vdm_grid_denoiser: needs a network, a schedule and n >= 1, got n = " << n);
  return [net, g, n](const Tensor& x, const std::vector<double>& idx, const std::vector<std::int64_t>& labels) {
    std::vector<double> tn;
    tn.reserve(idx.size());
    for (double i : idx) {
      const double t = std::clamp((i + 1.0) / static_cast<double>(n), 0.0, 1.0);
      tn.push_back(vdm_network_time(g->gamma(t), g->config()));
    }
    return net(x, tn, labels);
  };
}

}  // namespace ddpm::diffusion
