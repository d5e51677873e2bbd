// models/train/trainer.cpp: see trainer.h for the order of a step.
#include "models/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

namespace ddpm::train {

using diffusion::Timesteps;

void quartile_means(const Timesteps& t, const std::vector<double>& losses, std::int64_t T,
                    std::array<double, 4>& means, std::array<std::int64_t, 4>& counts) {
  DDPM_CHECK(t.size() == losses.size() && T >= 1,
             "quartile_means: " << t.size() << " timesteps for " << losses.size() << " losses (T = " << T << ")");
  std::array<double, 4> sums{};
  counts = {};
  for (std::size_t i = 0; i < t.size(); ++i) {
    DDPM_CHECK(t[i] >= 0 && t[i] < T, "quartile_means: timestep " << t[i] << " is outside [0, " << T << ")");
    const std::size_t q = static_cast<std::size_t>(std::min<std::int64_t>(3, t[i] * 4 / T));
    sums[q] += losses[i];
    ++counts[q];
  }
  for (std::size_t q = 0; q < 4; ++q)
    means[q] = counts[q] > 0 ? sums[q] / static_cast<double>(counts[q]) : std::numeric_limits<double>::quiet_NaN();
}

double warmup_lr(double base, std::int64_t warmup_steps, std::int64_t step) {
  if (warmup_steps <= 0) return base;
  return base * std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(warmup_steps));
}

Trainer::Trainer(ParameterSlab& params, diffusion::DenoiseFn model, const diffusion::DiffusionSchedule& schedule,
                 BatchProvider batches, const TrainerConfig& config)
    : params_(&params),
      model_(std::move(model)),
      schedule_(&schedule),
      batches_(std::move(batches)),
      config_(config),
      gen_(config.seed),
      adamw_(params, config.adamw),
      ema_(params, config.ema_rate) {
  DDPM_CHECK(model_ && batches_, "Trainer: a model and a batch provider are required");
  DDPM_CHECK(config.microbatch >= 0 && config.warmup_steps >= 0 && config.grad_clip >= 0.0,
             "Trainer: microbatch, warmup_steps and grad_clip must be >= 0, got " << config.microbatch << ", "
                                                                                 << config.warmup_steps << ", "
                                                                                 << config.grad_clip);
  DDPM_CHECK(config.label_dropout >= 0.0 && config.label_dropout <= 1.0 &&
                 (config.label_dropout == 0.0 || config.num_classes > 0),
             "Trainer: label_dropout " << config.label_dropout
                                       << " must be in [0, 1] and needs a class-conditional model (num_classes = "
                                       << config.num_classes << ")");
  if (config.timesteps == TimestepSampling::loss_second_moment)
    importance_.emplace(schedule.num_timesteps());
}

StepMetrics Trainer::step() {
  const diffusion::DiffusionSchedule& s = *schedule_;
  const std::int64_t T = s.num_timesteps();
  StepMetrics m;
  m.step = step_;

  Batch batch = batches_(step_, gen_);
  const Tensor& x0 = batch.x0;
  DDPM_CHECK(x0.defined() && x0.ndim() >= 2 && x0.dim(0) >= 1,
             "Trainer: the batch needs x0 of shape [N, ..., C], got "
                 << (x0.defined() ? shape_str(x0.shape()) : std::string("none")));
  DDPM_CHECK(x0.device() == params_->device(),
             "Trainer: the batch is on " << x0.device().str() << " but the parameters are on "
                                         << params_->device().str());
  const std::int64_t n = x0.dim(0);
  std::vector<std::int64_t> labels = batch.labels;
  if (config_.num_classes > 0) {
    DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
               "Trainer: a class-conditional model needs one label per sample: " << labels.size() << " for " << n);
  } else {
    DDPM_CHECK(labels.empty(), "Trainer: labels were given to a model without classes (num_classes = 0)");
  }

  // Timesteps and their importance weights.
  Timesteps t;
  std::vector<double> w(static_cast<std::size_t>(n), 1.0);
  if (importance_) {
    diffusion::LossSecondMomentSampler::Draw d = importance_->sample(n, gen_);
    t = std::move(d.t);
    w = std::move(d.weights);
  } else {
    std::vector<double> u = rand({n}, gen_, Device::cpu(), DType::f64).to_double_vector();
    for (double ui : u) t.push_back(std::min<std::int64_t>(T - 1, static_cast<std::int64_t>(ui * T)));
  }
  if (config_.label_dropout > 0.0) {
    std::vector<double> u = rand({n}, gen_, Device::cpu(), DType::f64).to_double_vector();
    for (std::int64_t i = 0; i < n; ++i)
      if (u[static_cast<std::size_t>(i)] < config_.label_dropout) labels[static_cast<std::size_t>(i)] = config_.num_classes;
  }
  Tensor noise = randn(x0.shape(), gen_, x0.device(), x0.dtype());

  // Forward and backward per microbatch; the gradients accumulate in the slab.
  params_->zero_grad();
  const std::int64_t mb = (config_.microbatch <= 0 || config_.microbatch >= n) ? n : config_.microbatch;
  std::vector<double> losses;
  losses.reserve(static_cast<std::size_t>(n));
  double total = 0.0;
  for (std::int64_t b = 0; b < n; b += mb) {
    const std::int64_t cnt = std::min(mb, n - b);
    const auto first = static_cast<std::ptrdiff_t>(b), last = static_cast<std::ptrdiff_t>(b + cnt);
    Timesteps tb(t.begin() + first, t.begin() + last);
    std::vector<double> tb_d(tb.begin(), tb.end());
    std::vector<double> wb(w.begin() + first, w.begin() + last);
    std::vector<std::int64_t> lb = labels.empty() ? labels : std::vector<std::int64_t>(labels.begin() + first,
                                                                                         labels.begin() + last);
    Tensor x0b = diffusion::batch_rows(x0, b, cnt), noiseb = diffusion::batch_rows(noise, b, cnt);
    Tensor xt = diffusion::q_sample(s, x0b, tb, noiseb);
    Tensor out = model_(xt, tb_d, lb);
    diffusion::LossTerms terms = diffusion::training_losses(s, config_.loss, out, x0b, xt, tb, noiseb);
    // L_b = sum_i w_i loss_i / N: the microbatches add up to the full-batch weighted mean.
    Tensor wt = Tensor::from_vector(wb, {cnt}, x0.dtype(), x0.device());
    Tensor lb_loss = scale(sum(mul(terms.loss, wt)), 1.0 / static_cast<double>(n));
    lb_loss.backward();
    total += lb_loss.item();
    std::vector<double> per = terms.loss.to_double_vector();
    losses.insert(losses.end(), per.begin(), per.end());
  }
  m.loss = total;
  quartile_means(t, losses, T, m.loss_quartile, m.quartile_count);
  m.lr = warmup_lr(config_.adamw.lr, config_.warmup_steps, step_);
  ++step_;

  if (!std::isfinite(m.loss)) {
    m.skipped = true;
    m.grad_norm = std::numeric_limits<double>::quiet_NaN();
    return m;
  }
  m.grad_norm = config_.grad_clip > 0.0 ? clip_grad_norm(*params_, config_.grad_clip) : grad_norm(*params_);
  if (!std::isfinite(m.grad_norm)) {
    m.skipped = true;
    return m;
  }
  if (importance_) importance_->update(t, losses);
  adamw_.set_lr(m.lr);
  adamw_.step();
  m.ema_decay = ema_.update(*params_, adamw_.step_count() - 1);
  return m;
}

TrainerState Trainer::state() const {
  TrainerState st;
  st.step = step_;
  st.seed = gen_.seed();
  st.offset = gen_.offset();
  st.params = params_->values().clone();
  st.adam_step = adamw_.step_count();
  st.exp_avg = adamw_.exp_avg().clone();
  st.exp_avg_sq = adamw_.exp_avg_sq().clone();
  st.ema = ema_.values().clone();
  st.importance = importance_;
  return st;
}

void Trainer::load_state(const TrainerState& st) {
  DDPM_CHECK(st.params.defined() && st.params.numel() == params_->slab_numel(),
             "Trainer::load_state: the saved parameters do not match the slab of " << params_->slab_numel()
                                                                                   << " elements");
  DDPM_CHECK(st.importance.has_value() == importance_.has_value(),
             "Trainer::load_state: the saved state and this trainer disagree on importance sampling of t");
  step_ = st.step;
  gen_.set_state(st.seed, st.offset);
  Tensor values = params_->values();
  values.copy_from(st.params.to(values.device()));
  adamw_.load_state(st.adam_step, st.exp_avg, st.exp_avg_sq);
  ema_.load(st.ema);
  importance_ = st.importance;
}

}  // namespace ddpm::train
