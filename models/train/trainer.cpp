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
#include "engine/seed_streams.h"
#include "models/diffusion/super_res.h"
#include "models/diffusion/training_recipes.h"

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

Objective parse_objective(const std::string& name) {
  if (name == "ddpm") return Objective::ddpm;
  if (name == "edm") return Objective::edm;
  if (name == "vdm") return Objective::vdm;
  if (name == "ict") return Objective::ict;
  DDPM_THROW(ValueError, "training objective '" << name << "' is unknown; choose ddpm (discrete-time DDPM / "
                                                           "improved DDPM), edm (Karras et al. 2022 preconditioning), "
                                                           "vdm (Kingma et al. 2021 variational diffusion) or ict "
                                                           "(Song & Dhariwal 2023 improved consistency training)");
}

const char* objective_name(Objective o) {
  return o == Objective::edm ? "edm" : o == Objective::vdm ? "vdm" : o == Objective::ict ? "ict" : "ddpm";
}

TimestepSampling parse_timestep_sampling(const std::string& name) {
  if (name == "uniform") return TimestepSampling::uniform;
  if (name == "loss-second-moment") return TimestepSampling::loss_second_moment;
  DDPM_THROW(ValueError, "timestep sampler '" << name << "' is unknown; choose uniform or loss-second-moment");
}

double warmup_lr(double base, std::int64_t warmup_steps, std::int64_t step) {
  return scheduled_lr(LrSchedule::constant, base, 0.0, std::max<std::int64_t>(0, warmup_steps), 0, step);
}

double config_lr(const TrainerConfig& c, std::int64_t step) {
  return scheduled_lr(c.lr_schedule, c.adamw.lr, c.lr_min, c.warmup_steps, c.total_steps, step);
}

namespace {

// The Philox key of rank r's dropout stream: SplitMix64 stream 0x5C + r of the seed
// (engine/seed_streams.h; state seed + (r + 0x5D) G, the offset that recorded runs used),
// far from the main generator's key (the seed itself) and from the low streams the run layer
// derives.
std::uint64_t dropout_key(std::uint64_t seed, int rank) {
  return splitmix64_stream(seed, static_cast<std::uint64_t>(rank) + 0x5C);
}
// Each step's dropout draws start 2^40 elements after the previous step's (a trillion
// numbers per step, far more than any step draws).
constexpr int kDropoutStepShift = 40;

}  // namespace

Trainer::Trainer(ParameterSlab& params, diffusion::DenoiseFn model, const diffusion::DiffusionSchedule& schedule,
                 BatchProvider batches, const TrainerConfig& config, dist::Communicator* comm)
    : params_(&params),
      model_(std::move(model)),
      schedule_(&schedule),
      batches_(std::move(batches)),
      config_(config),
      own_comm_(comm != nullptr ? nullptr : dist::Communicator::single_process()),
      comm_(comm != nullptr ? comm : own_comm_.get()),
      gen_(config.seed),
      dropout_gen_(dropout_key(config.seed, comm_->rank())),
      adamw_(params, config.adamw),
      ema_(params, config.ema_rate) {
  DDPM_CHECK(model_ && batches_, "Trainer: a model and a batch provider are required");
  DDPM_CHECK(config.microbatch >= 0 && config.warmup_steps >= 0 && config.grad_clip >= 0.0,
             "Trainer: microbatch, warmup_steps and grad_clip must be >= 0, got " << config.microbatch << ", "
                                                                                 << config.warmup_steps << ", "
                                                                                 << config.grad_clip);
  check_lr_schedule(config.lr_schedule, config.adamw.lr, config.lr_min, config.warmup_steps, config.total_steps,
                    "Trainer");
  DDPM_CHECK(config.label_dropout >= 0.0 && config.label_dropout <= 1.0 &&
                 (config.label_dropout == 0.0 || config.num_classes > 0),
             "Trainer: label_dropout " << config.label_dropout
                                       << " must be in [0, 1] and needs a class-conditional model (num_classes = "
                                       << config.num_classes << ")");
  if (config.objective == Objective::edm) {
    diffusion::check_edm_config(config.edm);
    DDPM_CHECK(config.timesteps == TimestepSampling::uniform,
               "Trainer: importance sampling of t (loss-second-moment) does not apply to the EDM objective, which "
               "draws a continuous sigma from its log-normal training distribution");
    DDPM_CHECK(!config.loss.learned_sigma && config.loss.loss == diffusion::LossType::simple,
               "Trainer: the EDM objective trains the preconditioned denoiser with its own weighted L2 loss; a "
               "learned variance and the hybrid / vlb losses belong to the discrete DDPM process");
  }
  if (config.objective == Objective::ict) {
    diffusion::check_ict_config(config.ict);
    DDPM_CHECK(config.total_steps >= 1,
               "Trainer: the ict objective's discretisation curriculum needs the run's total step count K "
               "(total_steps >= 1), got " << config.total_steps);
    DDPM_CHECK(config.timesteps == TimestepSampling::uniform && !config.loss.learned_sigma &&
                   config.loss.loss == diffusion::LossType::simple,
               "Trainer: the ict objective draws its level pairs from iCT's own distribution and trains a "
               "consistency function with its own distance; importance sampling of t, a learned variance and the "
               "hybrid / vlb losses belong to the discrete DDPM process");
  }
  if (config.objective == Objective::vdm) {
    DDPM_CHECK(config.vdm_schedule != nullptr, "Trainer: the VDM objective needs its noise schedule (vdm_schedule)");
    DDPM_CHECK(config.timesteps == TimestepSampling::uniform && !config.loss.learned_sigma &&
                   config.loss.loss == diffusion::LossType::simple &&
                   config.loss.mean_type == diffusion::ModelMeanType::eps,
               "Trainer: the VDM objective draws t by its own antithetic sampler and trains an eps network on the "
               "variational bound; importance sampling, a learned variance, the hybrid / vlb losses and x0 / v "
               "prediction belong to the discrete DDPM process");
  }
  for (const auto& [name, value] : {std::pair<const char*, double>{"snr_gamma", config.snr_gamma},
                                     {"noise_offset", config.noise_offset},
                                     {"input_perturbation", config.input_perturbation}}) {
    DDPM_CHECK(std::isfinite(value) && value >= 0.0,
               "Trainer: " << name << " must be a number >= 0 (0 = off), got " << value);
    DDPM_CHECK(value == 0.0 || config.objective == Objective::ddpm,
               "Trainer: " << name << " is a recipe for the DDPM objective; the EDM objective has its own noise "
                              "distribution and loss weighting");
  }
  DDPM_CHECK(config.snr_gamma == 0.0 || config.loss.loss == diffusion::LossType::simple,
             "Trainer: Min-SNR-gamma weighting (snr_gamma " << config.snr_gamma << ") reweights the simple MSE loss; "
             "the hybrid and vlb losses carry the variational bound's own weights");
  DDPM_CHECK(config.joint_images >= 0,
             "Trainer: joint_images (still images per step) must be >= 0 (0 = off), got " << config.joint_images);
  if (config.joint_images > 0) {
    DDPM_CHECK(config.objective == Objective::ddpm,
               "Trainer: joint image-video training (joint_images " << config.joint_images
                   << ") supports the DDPM objective only, not " << objective_name(config.objective));
    DDPM_CHECK(config.timesteps == TimestepSampling::uniform,
               "Trainer: joint image-video training (joint_images "
                   << config.joint_images
                   << ") draws the stills' t uniformly; importance sampling of t (loss-second-moment) is not supported");
    DDPM_CHECK(comm_->world_size() == 1, "Trainer: joint image-video training (joint_images "
                                             << config.joint_images << ") runs in one process; the world size is "
                                             << comm_->world_size());
  }
  if (config.timesteps == TimestepSampling::loss_second_moment)
    importance_.emplace(schedule.num_timesteps());
  for (double sigma_rel : config.posthoc_sigma_rels) power_emas_.emplace_back(params, sigma_rel);
  if (comm_->world_size() > 1) {  // rank 0's weights everywhere; the EMA starts as their copy
    comm_->broadcast(params_->values(), 0);
    ema_.load(params_->values());
    for (PowerEma& p : power_emas_) p.load(params_->values());
  }
}

StepMetrics Trainer::step() {
  const diffusion::DiffusionSchedule& s = *schedule_;
  const std::int64_t T = s.num_timesteps();
  StepMetrics m;
  m.step = step_;

  const int world = comm_->world_size();
  if (world > 1) dropout_gen_.set_state(dropout_gen_.seed(), static_cast<std::uint64_t>(step_) << kDropoutStepShift);

  // The GLOBAL batch, drawn identically on every rank (see trainer.h).
  Batch batch = batches_(step_, gen_);
  const Tensor& x0 = batch.x0;
  DDPM_CHECK(x0.defined() && x0.ndim() >= 2 && x0.dim(0) >= 1,
             "Trainer: the batch needs x0 of shape [N, ..., C], got "
                 << (x0.defined() ? shape_str(x0.shape()) : std::string("none")));
  DDPM_CHECK(x0.device() == params_->device(),
             "Trainer: the batch is on " << x0.device().str() << " but the parameters are on "
                                         << params_->device().str());
  const std::int64_t n = x0.dim(0);
  const Tensor& cond = batch.cond;
  DDPM_CHECK(!cond.defined() || (cond.ndim() == x0.ndim() && cond.dim(0) == n && cond.dim(1) == x0.dim(1) &&
                                 cond.dim(2) == x0.dim(2) && cond.device() == x0.device() &&
                                 cond.dtype() == x0.dtype()),
             "Trainer: the batch's condition " << (cond.defined() ? cond.describe() : std::string()) << " does not fit x0 "
                                               << x0.describe() << " (same rows, spatial size, dtype and device)");
  DDPM_CHECK(n % world == 0, "Trainer: the global batch of " << n << " samples is not divisible by the world size "
                                                            << world << " (every rank trains on an equal share)");
  const std::int64_t n_local = n / world, first = comm_->rank() * n_local;  // this rank's rows
  std::vector<std::int64_t> labels = batch.labels;
  if (config_.num_classes > 0) {
    DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
               "Trainer: a class-conditional model needs one label per sample: " << labels.size() << " for " << n);
  } else {
    DDPM_CHECK(labels.empty(), "Trainer: labels were given to a model without classes (num_classes = 0)");
  }
  // Joint image-video training: the M stills, one-frame clips of x0's frames.
  const Tensor& stills = batch.stills;
  const std::int64_t m_stills = config_.joint_images;
  std::vector<std::int64_t> still_labels = batch.still_labels;
  if (m_stills > 0) {
    DDPM_CHECK(stills.defined() && x0.ndim() == 5 && stills.ndim() == 5 && stills.dim(0) == m_stills &&
                   stills.dim(1) == 1 && stills.dim(2) == x0.dim(2) && stills.dim(3) == x0.dim(3) &&
                   stills.dim(4) == x0.dim(4) && stills.device() == x0.device() && stills.dtype() == x0.dtype(),
               "Trainer: joint image-video training (joint_images "
                   << m_stills << ") needs clips x0 [N, F, H, W, C] and " << m_stills
                   << " stills [M, 1, H, W, C] of the same frame size, dtype and device; got x0 " << x0.describe()
                   << " and stills " << (stills.defined() ? stills.describe() : std::string("none")));
    DDPM_CHECK(!cond.defined(), "Trainer: joint image-video training takes no condition (Batch::cond): a still "
                                "has no conditioning frames");
    DDPM_CHECK(static_cast<std::int64_t>(still_labels.size()) == (config_.num_classes > 0 ? m_stills : 0),
               "Trainer: " << still_labels.size() << " still labels for " << m_stills << " stills (num_classes = "
                           << config_.num_classes << ": one per still when class-conditional, else none)");
  } else {
    DDPM_CHECK(!stills.defined() && still_labels.empty(),
               "Trainer: the batch holds still images but joint image-video training is off (joint_images = 0)");
  }

  // Timesteps and their importance weights; for EDM the noise levels, and in t their
  // quartile of ln sigma's distribution (for the metrics only).
  const bool edm = config_.objective == Objective::edm, vdm = config_.objective == Objective::vdm;
  const bool ict = config_.objective == Objective::ict;
  Timesteps t;
  std::vector<double> tv;  // VDM: continuous t in [0, 1]
  std::vector<double> sigma;
  std::vector<double> sigma_hi;  // iCT: sigma_{i+1} of each pair (sigma holds sigma_i)
  std::vector<double> w(static_cast<std::size_t>(n), 1.0);
  if (edm) {
    diffusion::EdmSigmaDraw d = diffusion::sample_edm_sigmas(n, config_.edm, gen_);
    sigma = std::move(d.sigma);
    for (double z : d.z) t.push_back(diffusion::edm_sigma_quartile(z));
  } else if (ict) {
    const std::int64_t levels = diffusion::ict_num_levels(config_.ict, step_, config_.total_steps);
    diffusion::IctLevelDraw d = diffusion::sample_ict_levels(n, config_.ict, levels, gen_);
    sigma = std::move(d.sigma_lo);
    sigma_hi = std::move(d.sigma_hi);
    for (int q : d.quartile) t.push_back(q);
  } else if (vdm) {
    tv = diffusion::sample_vdm_times(n, config_.vdm_schedule->config().steps, gen_);
    for (double ti : tv) t.push_back(std::min<std::int64_t>(3, static_cast<std::int64_t>(ti * 4)));
  } else if (importance_) {
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
  Tensor eps0;  // VDM: the reconstruction term's noise
  if (vdm) eps0 = randn(x0.shape(), gen_, x0.device(), x0.dtype());
  // The recipes of training_recipes.h, each drawing only when enabled.
  if (!edm && !ict && config_.snr_gamma > 0.0) {
    const std::vector<double> ms = diffusion::min_snr_weights(s, config_.loss.mean_type, t, config_.snr_gamma);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] *= ms[i];
  }
  noise = diffusion::offset_noise(noise, config_.noise_offset, gen_);
  Tensor perturbation;  // gamma xi
  if (config_.input_perturbation > 0.0)
    perturbation = scale(randn(x0.shape(), gen_, x0.device(), x0.dtype()), config_.input_perturbation);
  // The stills' draws, after all of the clips' (see trainer.h): t, label dropout, noise,
  // offset noise, input perturbation.
  Timesteps still_t;
  std::vector<double> still_w;
  Tensor still_noise, still_perturbation;
  if (m_stills > 0) {
    std::vector<double> u = rand({m_stills}, gen_, Device::cpu(), DType::f64).to_double_vector();
    for (double ui : u) still_t.push_back(std::min<std::int64_t>(T - 1, static_cast<std::int64_t>(ui * T)));
    if (config_.label_dropout > 0.0) {
      std::vector<double> ud = rand({m_stills}, gen_, Device::cpu(), DType::f64).to_double_vector();
      for (std::int64_t j = 0; j < m_stills; ++j)
        if (ud[static_cast<std::size_t>(j)] < config_.label_dropout)
          still_labels[static_cast<std::size_t>(j)] = config_.num_classes;
    }
    still_noise = randn(stills.shape(), gen_, stills.device(), stills.dtype());
    still_w = config_.snr_gamma > 0.0
                  ? diffusion::min_snr_weights(s, config_.loss.mean_type, still_t, config_.snr_gamma)
                  : std::vector<double>(static_cast<std::size_t>(m_stills), 1.0);
    still_noise = diffusion::offset_noise(still_noise, config_.noise_offset, gen_);
    if (config_.input_perturbation > 0.0)
      still_perturbation =
          scale(randn(stills.shape(), gen_, stills.device(), stills.dtype()), config_.input_perturbation);
  }

  // Forward and backward per microbatch of this rank's rows; the gradients accumulate in the
  // slab. (One process: the rows are [0, N) and this is the plain training step.) `train_rows`
  // runs the rows [first_row, first_row + rows) of one part of the batch: the clips, then
  // (joint training) the stills; every part's losses are normalised by the same n_total.
  params_->zero_grad();
  const std::int64_t n_total = n + m_stills;
  std::vector<double> losses;
  losses.reserve(static_cast<std::size_t>(n_total));
  double total = 0.0;
  auto train_rows = [&](const Tensor& part_x0, const Tensor& part_noise, const Tensor& part_perturbation,
                        const Tensor& part_cond, const Timesteps& part_t, const std::vector<double>& part_w,
                        const std::vector<std::int64_t>& part_labels, std::int64_t first_row, std::int64_t rows) {
    const std::int64_t mb = (config_.microbatch <= 0 || config_.microbatch >= rows) ? rows : config_.microbatch;
    for (std::int64_t b = first_row; b < first_row + rows; b += mb) {
      const std::int64_t cnt = std::min(mb, first_row + rows - b);
      const auto lo = static_cast<std::ptrdiff_t>(b), hi = static_cast<std::ptrdiff_t>(b + cnt);
      Timesteps tb(part_t.begin() + lo, part_t.begin() + hi);
      std::vector<double> tb_d(tb.begin(), tb.end());
      std::vector<double> wb(part_w.begin() + lo, part_w.begin() + hi);
      std::vector<std::int64_t> lb =
          part_labels.empty() ? part_labels
                              : std::vector<std::int64_t>(part_labels.begin() + lo, part_labels.begin() + hi);
      Tensor x0b = diffusion::batch_rows(part_x0, b, cnt), noiseb = diffusion::batch_rows(part_noise, b, cnt);
      // With a condition the network sees concat(x, cond rows of this microbatch); EDM's c_in
      // scales x before this closure, so the condition stays unscaled.
      const diffusion::DenoiseFn net =
          part_cond.defined() ? diffusion::concat_condition(model_, diffusion::batch_rows(part_cond, b, cnt)) : model_;
      diffusion::LossTerms terms;
      if (edm) {
        const std::vector<double> sb(sigma.begin() + lo, sigma.begin() + hi);
        terms.loss = diffusion::edm_training_loss(net, config_.edm, x0b, sb, noiseb, lb);
      } else if (ict) {
        // consistency_training.h (5): the target at sigma_i without gradient, the dropout
        // generator rewound so the student's call draws the target's masks (see trainer.h).
        const std::vector<double> s_lo(sigma.begin() + lo, sigma.begin() + hi);
        const std::vector<double> s_hi(sigma_hi.begin() + lo, sigma_hi.begin() + hi);
        Generator& dropout = dropout_generator();
        const std::uint64_t dropout_seed = dropout.seed(), dropout_offset = dropout.offset();
        Tensor target;
        {
          NoGradGuard no_grad;
          const Tensor x_lo = diffusion::ict_noised(x0b, noiseb, s_lo);  // x_0 + sigma_i z
          target = diffusion::ict_consistency_function(net, config_.ict, x_lo, s_lo, lb);
        }
        dropout.set_state(dropout_seed, dropout_offset);
        const Tensor x_hi = diffusion::ict_noised(x0b, noiseb, s_hi);  // x_0 + sigma_{i+1} z, the same z
        const Tensor f = diffusion::ict_consistency_function(net, config_.ict, x_hi, s_hi, lb);
        terms.loss = diffusion::ict_pair_loss(f, target, s_lo, s_hi, config_.ict.distance);
      } else if (vdm) {
        // The VLB in bits/dim; the variance-minimising scale is in the same units (vdm.h).
        const double to_bpd = 1.0 / (static_cast<double>(x0b.numel() / cnt) * std::log(2.0));
        const std::vector<double> tvb(tv.begin() + lo, tv.begin() + hi);
        const diffusion::VdmDiffusionLoss dl =
            diffusion::vdm_diffusion_loss(net, *config_.vdm_schedule, x0b, tvb, noiseb, lb, to_bpd);
        const Tensor eps0b = diffusion::batch_rows(eps0, b, cnt);
        // prior + reconstruction; a node into learned endpoints (vdm.h), else a constant
        const Tensor ends = diffusion::vdm_prior_reconstruction_nats(*config_.vdm_schedule, x0b, eps0b);
        terms.loss = scale(add(dl.nats, ends), to_bpd);
      } else {
        const Tensor input_noise =
            part_perturbation.defined() ? add(noiseb, diffusion::batch_rows(part_perturbation, b, cnt)) : noiseb;
        Tensor xt = diffusion::q_sample(s, x0b, tb, input_noise);
        Tensor out = net(xt, tb_d, lb);
        terms = diffusion::training_losses(s, config_.loss, out, x0b, xt, tb, noiseb);
      }
      // L_b = sum_i w_i loss_i / N with the GLOBAL N (N + M with stills): the microbatches of
      // all ranks and parts add up to the full-batch weighted mean.
      Tensor wt = Tensor::from_vector(wb, {cnt}, part_x0.dtype(), part_x0.device());
      Tensor lb_loss = scale(sum(mul(terms.loss, wt)), 1.0 / static_cast<double>(n_total));
      lb_loss.backward();
      total += lb_loss.item();
      std::vector<double> per = terms.loss.to_double_vector();
      losses.insert(losses.end(), per.begin(), per.end());
    }
  };
  train_rows(x0, noise, perturbation, cond, t, w, labels, first, n_local);
  if (m_stills > 0) {
    train_rows(stills, still_noise, still_perturbation, Tensor(), still_t, still_w, still_labels, 0, m_stills);
    // The metrics: each part's unweighted mean loss, and the quartiles over all N + M samples.
    const auto mean_of = [](auto begin, auto end) {
      double acc = 0.0;
      for (auto it = begin; it != end; ++it) acc += *it;
      return acc / static_cast<double>(end - begin);
    };
    m.video_loss = mean_of(losses.begin(), losses.begin() + static_cast<std::ptrdiff_t>(n));
    m.still_loss = mean_of(losses.begin() + static_cast<std::ptrdiff_t>(n), losses.end());
    t.insert(t.end(), still_t.begin(), still_t.end());
  }
  if (world > 1) {
    // The one all-reduce of the gradient slab, then the losses: this rank's per-sample
    // losses in a zero-filled global vector, its loss total in the last slot.
    comm_->all_reduce_sum(params_->grads());
    std::vector<double> global(static_cast<std::size_t>(n) + 1, 0.0);
    std::copy(losses.begin(), losses.end(), global.begin() + static_cast<std::ptrdiff_t>(first));
    global.back() = total;
    comm_->all_reduce_sum(global.data(), n + 1, Device::cpu());
    total = global.back();
    global.pop_back();
    losses = std::move(global);
  }
  m.loss = total;
  quartile_means(t, losses, edm || vdm || ict ? 4 : T, m.loss_quartile, m.quartile_count);
  m.lr = config_lr(config_, step_);  // a function of the step alone: resume needs no lr state
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
  for (PowerEma& p : power_emas_) p.update(*params_, adamw_.step_count());  // t = 1, 2, ... updates
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
  for (const PowerEma& p : power_emas_) st.power_ema.push_back(p.values().clone());
  st.importance = importance_;
  return st;
}

void Trainer::load_state(const TrainerState& st) {
  DDPM_CHECK(st.params.defined() && st.params.numel() == params_->slab_numel(),
             "Trainer::load_state: the saved parameters do not match the slab of " << params_->slab_numel()
                                                                                   << " elements");
  DDPM_CHECK(st.power_ema.size() == power_emas_.size(),
             "Trainer::load_state: the saved state holds " << st.power_ema.size()
                                                           << " power-function EMAs (post-hoc EMA) but this trainer tracks "
                                                           << power_emas_.size());
  DDPM_CHECK(st.importance.has_value() == importance_.has_value(),
             "Trainer::load_state: the saved state and this trainer disagree on importance sampling of t");
  step_ = st.step;
  gen_.set_state(st.seed, st.offset);
  Tensor values = params_->values();
  values.copy_from(st.params.to(values.device()));
  if (comm_->world_size() > 1) comm_->broadcast(values, 0);  // defensive: rank 0's weights everywhere
  adamw_.load_state(st.adam_step, st.exp_avg, st.exp_avg_sq);
  ema_.load(st.ema);
  for (std::size_t i = 0; i < power_emas_.size(); ++i) power_emas_[i].load(st.power_ema[i]);
  importance_ = st.importance;
}

}  // namespace ddpm::train
