// models/diffusion/guidance.cpp: see guidance.h for the equations.
#include "models/diffusion/guidance.h"

#include <tuple>
#include <vector>

#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm::diffusion {

double sigma_of_alpha_bar(double alpha_bar) {
  if (alpha_bar <= 0.0) return std::numeric_limits<double>::infinity();  // zero terminal SNR: pure noise
  return std::sqrt((1.0 - alpha_bar) / alpha_bar);
}

bool has_guidance_interval(const SamplerConfig& config) {
  return config.guidance_sigma_lo > 0.0 || config.guidance_sigma_hi < std::numeric_limits<double>::infinity();
}

void check_guidance_settings(const SamplerConfig& config) {
  const bool guided = config.guidance_scale != 1.0;
  DDPM_CHECK(std::isfinite(config.guidance_scale) && config.guidance_scale >= 0.0,
             "sample: the guidance scale must be a finite number >= 0, got " << config.guidance_scale);
  DDPM_CHECK(std::isfinite(config.guidance_rescale) && config.guidance_rescale >= 0.0 && config.guidance_rescale <= 1.0,
             "sample: the guidance rescale phi must lie in [0, 1] (0 = off), got " << config.guidance_rescale);
  DDPM_CHECK(config.guidance_rescale == 0.0 || guided,
             "sample: the guidance rescale (phi " << config.guidance_rescale
                 << ") rescales a guided prediction, but the guidance scale is 1 (no guidance)");
  const double lo = config.guidance_sigma_lo, hi = config.guidance_sigma_hi;
  DDPM_CHECK(!std::isnan(lo) && !std::isnan(hi) && lo >= 0.0 && lo < hi,
             "sample: the guidance interval [" << lo << ", " << hi
                 << "] must have 0 <= sigma_lo < sigma_hi (noise levels sigma; the default [0, inf] is every step)");
}

bool in_guidance_interval(const SamplerConfig& config, double sigma) {
  if (!has_guidance_interval(config)) return true;
  DDPM_CHECK(!std::isnan(sigma),
             "sample: a guidance interval [" << config.guidance_sigma_lo << ", " << config.guidance_sigma_hi
                 << "] was set, but this step was taken without its noise level sigma");
  return sigma >= config.guidance_sigma_lo && sigma <= config.guidance_sigma_hi;
}

bool guidance_applies(const SamplerConfig& config, double sigma) {
  return config.guidance_scale != 1.0 && in_guidance_interval(config, sigma);
}

bool classifier_guidance_applies(const SamplerConfig& config, const ClassifierGuidance& guidance, double sigma) {
  return guidance.active() && in_guidance_interval(config, sigma);
}

Tensor guided_combination(const Tensor& strong, const Tensor& weak, double w, double phi) {
  return guided_combination(strong, weak, w, phi, weak);
}

Tensor guided_combination(const Tensor& strong, const Tensor& weak, double w, double phi, const Tensor& from) {
  auto shape_of = [](const Tensor& t) { return t.defined() ? shape_str(t.shape()) : std::string("nothing"); };
  DDPM_CHECK(strong.defined() && weak.defined() && from.defined() && strong.shape() == weak.shape() &&
                 from.shape() == strong.shape(),
             "guidance: the predictions must share one shape, got " << shape_of(strong) << " and " << shape_of(weak)
                                                                     << " (starting from " << shape_of(from) << ")");
  // pred = from + w (strong - weak); from = weak is guidance.h (1)
  Tensor pred = add(from, scale(sub(strong, weak), w));
  if (phi > 0.0) pred = rescale_guided_prediction(pred, strong, phi);
  return pred;
}

std::pair<double, double> parse_guidance_interval(const std::string& text, const std::string& flag) {
  const std::size_t comma = text.find(',');
  DDPM_CHECK(comma != std::string::npos && text.find(',', comma + 1) == std::string::npos,
             flag << " takes two noise levels LO,HI (sigma units, e.g. 0.3,5), got '" << text << "'");
  auto number = [&](const std::string& part, const char* which) {
    std::size_t used = 0;
    double v = 0.0;
    try {
      v = std::stod(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DDPM_CHECK(used > 0 && used == part.size() && !std::isnan(v),
               flag << " takes two noise levels LO,HI: the " << which << " '" << part << "' of '" << text
                    << "' is not a number");
    return v;
  };
  const double lo = number(text.substr(0, comma), "first");
  const double hi = number(text.substr(comma + 1), "second");
  DDPM_CHECK(std::isfinite(lo) && lo >= 0.0, flag << " " << text << ": LO must be a finite noise level >= 0, got " << lo);
  DDPM_CHECK(lo < hi, flag << " " << text << ": LO (" << lo << ") must be below HI (" << hi << ")");
  return {lo, hi};
}

NetOutput network_output(const DenoiseFn& net, const SamplerConfig& config, const Tensor& x, double t,
                         const std::vector<std::int64_t>& labels, double sigma) {
  check_guidance_settings(config);
  const bool autoguided = static_cast<bool>(config.autoguide);
  // Outside the interval (or at scale 1) the main network alone, one call on [x].
  const bool guided = guidance_applies(config, sigma);
  const bool doubled = guided && !autoguided;  // CFG's [x; x] batch
  const std::int64_t n = x.dim(0);
  const std::int64_t c = x.dim(-1);
  Shape expected = x.shape();
  expected.back() = config.learned_sigma ? 2 * c : c;
  Shape expected_out = expected;
  if (doubled) expected_out[0] = 2 * n;
  auto check_output = [&](const Tensor& out, const Shape& want, const char* who) {
    DDPM_CHECK(out.defined() && out.shape() == want,
               "sample: " << who << " returned " << (out.defined() ? shape_str(out.shape()) : std::string("nothing"))
                          << ", expected " << shape_str(want)
                          << (config.learned_sigma ? " (2C channels: learned sigma)" : ""));
  };
  const std::vector<double> ts(static_cast<std::size_t>(n), t);

  Tensor out;
  if (doubled) {
    // One doubled batch: [x; x] with labels [y; null].
    std::vector<std::int64_t> labels2(labels);
    labels2.insert(labels2.end(), static_cast<std::size_t>(n), static_cast<std::int64_t>(config.num_classes));
    out = net(concat_rows(x, x), std::vector<double>(static_cast<std::size_t>(2 * n), t), labels2);
  } else {
    out = net(x, ts, labels);
  }
  check_output(out, expected_out, "the network");
  NetOutput r;
  if (!guided) {
    if (config.learned_sigma) {
      std::tie(r.pred, r.var_values) = split_learned_variance(out);
    } else {
      r.pred = out;
    }
    return r;
  }
  Tensor strong_out = doubled ? batch_rows(out, 0, n) : out;
  Tensor weak_out;
  if (doubled) {
    weak_out = batch_rows(out, n, n);
  } else {
    weak_out = config.autoguide(x, ts, labels);  // the bad model, same labels
    check_output(weak_out, expected, "the autoguidance network");
  }
  Tensor strong = strong_out, weak = weak_out;
  if (config.learned_sigma) {
    std::tie(strong, r.var_values) = split_learned_variance(strong_out);  // the main/conditional variance
    weak = split_learned_variance(weak_out).first;
  }
  r.pred = guided_combination(strong, weak, config.guidance_scale, config.guidance_rescale);
  return r;
}

}  // namespace ddpm::diffusion
