// models/diffusion/gaussian_diffusion.cpp: see gaussian_diffusion.h.
#include "models/diffusion/gaussian_diffusion.h"

#include <memory>
#include <tuple>

#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "models/diffusion/likelihood.h"

namespace ddpm::diffusion {

ModelMeanType parse_model_mean_type(const std::string& name) {
  if (name == "eps") return ModelMeanType::eps;
  if (name == "x0") return ModelMeanType::x0;
  if (name == "v") return ModelMeanType::v;
  DDPM_CHECK(false, "model mean type '" << name << "' is unknown; choose one of eps, x0, v");
  return ModelMeanType::eps;
}

const char* model_mean_type_name(ModelMeanType m) {
  switch (m) {
    case ModelMeanType::eps: return "eps";
    case ModelMeanType::x0: return "x0";
    case ModelMeanType::v: return "v";
  }
  return "?";
}

LossType parse_loss_type(const std::string& name) {
  if (name == "simple") return LossType::simple;
  if (name == "hybrid") return LossType::hybrid;
  if (name == "vlb") return LossType::vlb;
  DDPM_CHECK(false, "loss type '" << name << "' is unknown; choose one of simple, hybrid, vlb");
  return LossType::simple;
}

const char* loss_type_name(LossType l) {
  switch (l) {
    case LossType::simple: return "simple";
    case LossType::hybrid: return "hybrid";
    case LossType::vlb: return "vlb";
  }
  return "?";
}

Tensor slice_channels(const Tensor& x, std::int64_t begin, std::int64_t count) {
  DDPM_CHECK(x.defined() && x.ndim() >= 1, "slice_channels: the input must have a channel axis");
  const std::int64_t c_in = x.dim(-1);
  DDPM_CHECK(begin >= 0 && count >= 1 && begin + count <= c_in,
             "slice_channels: channels [" << begin << ", " << begin + count << ") are outside the "
                                          << c_in << " channels of " << shape_str(x.shape()));
  return slice(x, -1, begin, count);  // a copy of the channel range, recorded on the tape
}

std::pair<Tensor, Tensor> split_learned_variance(const Tensor& out) {
  DDPM_CHECK(out.defined() && out.ndim() >= 1 && out.dim(-1) % 2 == 0,
             "split_learned_variance: a learned-variance output needs an even channel count (mean part and "
             "variance part), got "
                 << (out.defined() ? shape_str(out.shape()) : std::string("none")));
  const std::int64_t c = out.dim(-1) / 2;
  return {slice_channels(out, 0, c), slice_channels(out, c, c)};
}

Tensor batch_rows(const Tensor& x, std::int64_t begin, std::int64_t count) {
  DDPM_CHECK(x.defined() && x.ndim() >= 1 && begin >= 0 && count >= 0 && begin + count <= x.dim(0),
             "batch_rows: rows [" << begin << ", " << begin + count << ") are outside "
                                  << (x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor")));
  const std::int64_t row = x.dim(0) == 0 ? 0 : x.numel() / x.dim(0);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.impl()->storage;
  impl->offset_bytes = x.impl()->offset_bytes + static_cast<std::size_t>(begin * row) * dtype_size(x.dtype());
  impl->shape = x.shape();
  impl->shape[0] = count;
  impl->dtype = x.dtype();
  return Tensor(impl);
}

Tensor concat_rows(const Tensor& a, const Tensor& b) {
  DDPM_CHECK(a.ndim() >= 1 && b.ndim() == a.ndim() && a.dtype() == b.dtype() && a.device() == b.device(),
             "concat_rows: cannot stack " << a.describe() << " and " << b.describe());
  return concat({a, b}, 0);
}

Tensor mean_type_target(const DiffusionSchedule& s, ModelMeanType type, const Tensor& x0, const Tensor& noise,
                        const Timesteps& t) {
  switch (type) {
    case ModelMeanType::eps: return noise;
    case ModelMeanType::x0: return x0;
    case ModelMeanType::v: return v_target(s, x0, noise, t);
  }
  return noise;
}

Tensor eps_from_prediction(const DiffusionSchedule& s, ModelMeanType type, const Tensor& pred, const Tensor& xt,
                           const Timesteps& t) {
  switch (type) {
    case ModelMeanType::eps: return pred;
    case ModelMeanType::x0: return predict_eps_from_x0(s, xt, t, pred);
    case ModelMeanType::v: return predict_eps_from_v(s, xt, t, pred);
  }
  return pred;
}

Tensor x0_from_prediction(const DiffusionSchedule& s, ModelMeanType type, const Tensor& pred, const Tensor& xt,
                          const Timesteps& t) {
  switch (type) {
    case ModelMeanType::eps: return predict_x0_from_eps(s, xt, t, pred);
    case ModelMeanType::x0: return pred;
    case ModelMeanType::v: return predict_x0_from_v(s, xt, t, pred);
  }
  return pred;
}

void check_mean_type_for_schedule(const DiffusionSchedule& s, ModelMeanType type, const char* where) {
  DDPM_CHECK(!(s.zero_terminal_snr() && type == ModelMeanType::eps),
             where << ": the schedule has zero terminal SNR (alpha_bar = 0 at the last timestep), where an "
                      "eps-prediction cannot give x_0 (it divides by sqrt(alpha_bar) = 0); use --predict v (as Lin et "
                      "al. 2024 do) or --predict x0");
}

LossTerms training_losses(const DiffusionSchedule& s, const LossConfig& config, const Tensor& model_output,
                          const Tensor& x0, const Tensor& xt, const Timesteps& t, const Tensor& noise) {
  DDPM_CHECK(x0.shape() == xt.shape() && x0.shape() == noise.shape(),
             "training_losses: x0 " << shape_str(x0.shape()) << ", x_t " << shape_str(xt.shape()) << " and noise "
                                    << shape_str(noise.shape()) << " must have the same shape");
  const std::int64_t c = x0.dim(-1);
  const std::int64_t want = config.learned_sigma ? 2 * c : c;
  Shape expected = x0.shape();
  expected.back() = want;
  DDPM_CHECK(model_output.shape() == expected,
             "training_losses: the model output is " << shape_str(model_output.shape()) << " but "
                                                     << shape_str(expected) << " was expected ("
                                                     << (config.learned_sigma ? "2C channels: mean part and "
                                                                                "variance, learned sigma"
                                                                              : "C channels, fixed variance")
                                                     << ")");
  DDPM_CHECK(config.loss != LossType::hybrid || config.learned_sigma,
             "training_losses: the hybrid loss trains the variance, so it needs learned_sigma");

  Tensor pred = model_output, var_values;
  if (config.learned_sigma) std::tie(pred, var_values) = split_learned_variance(model_output);

  LossTerms terms;
  if (config.loss != LossType::vlb)
    terms.mse = mean_flat(square(sub(pred, mean_type_target(s, config.mean_type, x0, noise, t))));  // [N]
  if (config.loss != LossType::simple) {
    // The model's p(x_{t-1} | x_t): posterior mean at the predicted (unclipped) x_0. For the
    // hybrid loss the mean part is detached, so L_t trains only the variance.
    Tensor mean_pred = config.loss == LossType::hybrid ? pred.detach() : pred;
    Tensor x0_pred = x0_from_prediction(s, config.mean_type, mean_pred, xt, t);
    Tensor model_mean = q_posterior_mean_variance(s, x0_pred, xt, t).mean;
    Tensor log_var;
    if (config.learned_sigma) {
      log_var = learned_range_variance(s, t, var_values).log_variance;
    } else {
      DDPM_CHECK(config.fixed_variance != VarianceType::learned_range,
                 "training_losses: learned_range variance needs learned_sigma (a 2C-channel output)");
      log_var = (config.fixed_variance == VarianceType::fixed_small ? fixed_small_variance(s, t, xt)
                                                                     : fixed_large_variance(s, t, xt))
                    .log_variance;
    }
    terms.vb = vb_terms_bpd(s, model_mean, log_var, x0, xt, t);  // [N]
  }
  const double T = static_cast<double>(s.num_timesteps());
  switch (config.loss) {
    case LossType::simple: terms.loss = terms.mse; break;
    case LossType::hybrid: terms.loss = add(terms.mse, scale(terms.vb, config.hybrid_lambda * T)); break;
    case LossType::vlb: terms.loss = scale(terms.vb, T); break;
  }
  return terms;
}

}  // namespace ddpm::diffusion
