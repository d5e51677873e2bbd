// models/diffusion/edm.cpp: see edm.h for the equations.
#include "models/diffusion/edm.h"

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/likelihood.h"

namespace ddpm::diffusion {

void check_edm_config(const EdmConfig& c) {
  DDPM_CHECK(std::isfinite(c.sigma_data) && c.sigma_data > 0.0,
             "EDM: sigma_data (the std of the data) must be a finite number > 0, got " << c.sigma_data);
  DDPM_CHECK(std::isfinite(c.p_mean), "EDM: P_mean (the mean of ln sigma in training) must be finite, got "
                                          << c.p_mean);
  DDPM_CHECK(std::isfinite(c.p_std) && c.p_std > 0.0,
             "EDM: P_std (the std of ln sigma in training) must be a finite number > 0, got " << c.p_std);
}

EdmPreconditioning edm_preconditioning(double sigma, double sigma_data) {
  DDPM_CHECK(std::isfinite(sigma) && sigma > 0.0, "edm_preconditioning: sigma must be a finite number > 0, got "
                                                      << sigma);
  const double sd2 = sigma_data * sigma_data, r = std::sqrt(sigma * sigma + sd2);  // r = std of x
  return {sd2 / (sigma * sigma + sd2), sigma * sigma_data / r, 1.0 / r, std::log(sigma) / 4.0};
}

double edm_loss_weight(double sigma, double sigma_data) {
  return (sigma * sigma + sigma_data * sigma_data) / ((sigma * sigma_data) * (sigma * sigma_data));
}

EdmSigmaDraw sample_edm_sigmas(std::int64_t n, const EdmConfig& c, Generator& gen) {
  check_edm_config(c);
  DDPM_CHECK(n >= 1, "sample_edm_sigmas: needs at least one sample, got " << n);
  EdmSigmaDraw d;
  d.z = randn({n}, gen, Device::cpu(), DType::f64).to_double_vector();
  d.sigma.reserve(d.z.size());
  for (double z : d.z) d.sigma.push_back(std::exp(c.p_mean + c.p_std * z));  // ln sigma ~ N(P_mean, P_std^2)
  return d;
}

int edm_sigma_quartile(double z) {
  constexpr double q = 0.6744897501960817;  // Phi^-1(3/4)
  return z < -q ? 0 : z < 0.0 ? 1 : z < q ? 2 : 3;
}

namespace {

// values[i] as an [N, 1, ..., 1] tensor with like's rank, dtype and device (a constant).
Tensor per_sample(const std::vector<double>& values, const Tensor& like) {
  Shape shape(static_cast<std::size_t>(like.ndim()), 1);
  shape[0] = like.dim(0);
  return Tensor::from_vector(values, shape, like.dtype(), like.device());
}

}  // namespace

Tensor edm_training_loss(const DenoiseFn& net, const EdmConfig& c, const Tensor& y, const std::vector<double>& sigma,
                         const Tensor& noise, const std::vector<std::int64_t>& labels) {
  DDPM_CHECK(net, "edm_training_loss: no network given");
  DDPM_CHECK(y.defined() && y.ndim() >= 2 && noise.defined() && noise.shape() == y.shape() &&
                 static_cast<std::int64_t>(sigma.size()) == y.dim(0),
             "edm_training_loss: needs y [N, ..., C], noise of y's shape and N sigmas; got y "
                 << (y.defined() ? shape_str(y.shape()) : std::string("none")) << ", noise "
                 << (noise.defined() ? shape_str(noise.shape()) : std::string("none")) << " and " << sigma.size()
                 << " sigmas");
  const std::size_t n = sigma.size();
  std::vector<double> c_skip(n), inv_c_out(n), c_in(n), c_noise(n);
  for (std::size_t i = 0; i < n; ++i) {
    const EdmPreconditioning p = edm_preconditioning(sigma[i], c.sigma_data);
    c_skip[i] = p.c_skip;
    inv_c_out[i] = 1.0 / p.c_out;
    c_in[i] = p.c_in;
    c_noise[i] = p.c_noise;
  }
  const Tensor x = add(y, mul(noise, per_sample(sigma, y)));  // x = y + sigma n        [N, ..., C]
  const Tensor f = net(mul(x, per_sample(c_in, y)), c_noise, labels);  // F(c_in x; c_noise)
  DDPM_CHECK(f.defined() && f.shape() == y.shape(),
             "edm_training_loss: the network returned " << (f.defined() ? shape_str(f.shape()) : std::string("nothing"))
                                                        << " for data of shape " << shape_str(y.shape())
                                                        << " (EDM has no learned variance: the output must have the "
                                                           "data's channels)");
  // F_target = (y - c_skip x) / c_out, a constant of the data: lambda ||D - y||^2 = ||F - F_target||^2.
  const Tensor target = mul(sub(y, mul(x, per_sample(c_skip, y))), per_sample(inv_c_out, y));
  return mean_flat(square(sub(f, target)));  // [N]
}

Tensor edm_denoise(const DenoiseFn& net, const EdmConfig& c, const SamplerConfig& config, const Tensor& x,
                   double sigma, const std::vector<std::int64_t>& labels) {
  DDPM_CHECK(!config.learned_sigma,
             "EDM sampling: the preconditioned network has no learned variance (learned_sigma must be false)");
  const EdmPreconditioning p = edm_preconditioning(sigma, c.sigma_data);
  // F guided as pred_u + s (pred_c - pred_u) by network_output (doubled batch); D is affine in F.
  const Tensor f = network_output(net, config, scale(x, p.c_in), p.c_noise, labels, sigma).pred;
  const Tensor d = add(scale(x, p.c_skip), scale(f, p.c_out));  // D = c_skip x + c_out F
  return apply_x0_threshold(d, resolve_x0_threshold(config));    // clip policy (x0_threshold.h)
}

std::pair<double, double> resolve_edm_sigma_range(const SamplerConfig& config) {
  const double smin = config.sigma_min > 0.0 ? config.sigma_min : kEdmSigmaMin;
  const double smax = config.sigma_max > 0.0 ? config.sigma_max : kEdmSigmaMax;
  DDPM_CHECK(config.sigma_min >= 0.0 && config.sigma_max >= 0.0 && std::isfinite(smin) && std::isfinite(smax),
             "EDM sampling: sigma_min and sigma_max must be finite and positive (0 = EDM's 0.002 and 80), got "
                 << config.sigma_min << " and " << config.sigma_max);
  DDPM_CHECK(smin < smax, "EDM sampling: sigma_min (" << smin << ") must be below sigma_max (" << smax << ")");
  return {smin, smax};
}

Tensor edm_sample(const DenoiseFn& net, const EdmConfig& c, const Shape& shape,
                  const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen, Device device,
                  const StepCallback& callback, KarrasSolver solver) {
  NoGradGuard no_grad;
  check_edm_config(c);
  check_sample_request(net, shape, labels, config);
  const auto [sigma_min, sigma_max] = resolve_edm_sigma_range(config);
  const std::vector<double> sig = karras_sigmas(config.heun_steps, sigma_min, sigma_max, config.rho);
  // Continuous sigma: no training grid, so the churned sigma^ is not capped.
  const std::vector<double> sig_hat = churned_sigmas(sig, std::numeric_limits<double>::infinity(), config);
  const SigmaDenoiser denoiser = [&](const Tensor& x, double sigma) {
    return SigmaDenoised{edm_denoise(net, c, config, x, sigma, labels), -1.0};
  };
  return karras_solve(denoiser, shape, sig, sig_hat, config, gen, device, callback, solver);
}

}  // namespace ddpm::diffusion
