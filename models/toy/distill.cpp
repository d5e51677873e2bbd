// models/toy/distill.cpp: see distill.h for the algorithm and the equations (1), (2).
#include "models/toy/distill.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "models/diffusion/progressive_distill.h"
#include "models/diffusion/respace.h"
#include "models/toy/datasets2d.h"
#include "models/toy/loss_log.h"
#include "models/train/trainer.h"

namespace ddpm::toy {

namespace {

// A per-sample coefficient [N, 1] in like's dtype and device.
Tensor per_sample(const std::vector<double>& c, const Tensor& like) {
  return Tensor::from_vector(c, {static_cast<std::int64_t>(c.size()), 1}, like.dtype(), like.device());
}

// The mean-part prediction of `net` as an x_0 estimate, at per-sample timesteps t.
Tensor teacher_x0(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& net, diffusion::ModelMeanType type,
                  const Tensor& z, const diffusion::Timesteps& t) {
  const std::vector<double> td(t.begin(), t.end());
  return diffusion::x0_from_prediction(s, type, net(z, td, {}), z, t);
}

}  // namespace

DistillGrid distill_grid(std::int64_t T, std::int64_t student_steps) {
  DDPM_CHECK(student_steps >= 2 && 2 * (student_steps - 1) + 1 <= T,
             "distill_grid: a student of " << student_steps << " steps needs a teacher of " << 2 * (student_steps - 1) + 1
                                           << " steps; both must lie in [2, T = " << T << "]");
  DistillGrid g;
  g.T = T;
  g.student = diffusion::space_timesteps(T, std::to_string(student_steps));
  g.teacher = diffusion::space_timesteps(T, std::to_string(2 * (student_steps - 1) + 1));
  for (std::size_t k = 0; k < g.student.size(); ++k)
    DDPM_CHECK(g.teacher[2 * k] == g.student[k],
               "distill_grid: the " << g.teacher.size() << "-step grid does not contain the " << g.student.size()
                                    << "-step grid's timestep " << g.student[k] << " (respace.h changed?)");
  return g;
}

std::vector<std::int64_t> distill_step_counts(std::int64_t T, std::int64_t teacher_steps, int rounds) {
  DDPM_CHECK(rounds >= 1 && rounds <= 10, "--rounds must be in [1, 10], got " << rounds);
  const std::int64_t per = std::int64_t{1} << rounds;
  DDPM_CHECK(teacher_steps >= 3 && teacher_steps <= T && (teacher_steps - 1) % per == 0,
             "--teacher-steps " << teacher_steps << " cannot be halved " << rounds << " times: it must be 2^rounds M + 1 "
                                << "(e.g. " << per + 1 << " or " << 2 * per + 1 << ") and at most the model's T = " << T
                                << " (each round halves the " << teacher_steps - 1 << " intervals between its steps)");
  std::vector<std::int64_t> counts;
  std::int64_t m = teacher_steps - 1;
  for (int r = 0; r < rounds; ++r) m /= 2, counts.push_back(m + 1);
  return counts;
}

// Equations (1) and (2) are the UNet distillation's own (models/diffusion/progressive_distill.h,
// the same level convention and the same arithmetic); only the grid differs (see distill.h).
Tensor ddim_jump(const diffusion::DiffusionSchedule& s, const Tensor& z, const Tensor& x0,
                 const diffusion::Timesteps& from, const diffusion::Timesteps& to) {
  return diffusion::ddim_jump(s, z, x0, from, to);
}

TeacherSteps teacher_ddim_steps(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& teacher,
                                diffusion::ModelMeanType type, const DistillGrid& g, const Tensor& z,
                                const std::vector<std::int64_t>& index) {
  NoGradGuard no_grad;
  const std::int64_t n = z.dim(0);
  DDPM_CHECK(static_cast<std::int64_t>(index.size()) == n,
             "teacher_ddim_steps: " << n << " samples need as many student indices, got " << index.size());
  TeacherSteps r;
  diffusion::Timesteps mid(static_cast<std::size_t>(n)), mid_call(static_cast<std::size_t>(n));
  r.start.resize(static_cast<std::size_t>(n));
  r.end.resize(static_cast<std::size_t>(n));
  std::vector<double> second(static_cast<std::size_t>(n));  // 1 where the teacher takes a second step
  for (std::size_t k = 0; k < index.size(); ++k) {
    const std::int64_t i = index[k];
    DDPM_CHECK(i >= 0 && i < g.student_steps(),
               "teacher_ddim_steps: student index " << i << " is outside [0, " << g.student_steps() << ")");
    r.start[k] = g.student[static_cast<std::size_t>(i)];
    // i >= 1: t -> t' = teacher[2i - 1] -> t'' = student[i - 1]; i = 0: t = 0 -> clean, one step.
    mid[k] = i >= 1 ? g.teacher[static_cast<std::size_t>(2 * i - 1)] : kCleanLevel;
    r.end[k] = i >= 1 ? g.student[static_cast<std::size_t>(i - 1)] : kCleanLevel;
    second[k] = i >= 1 ? 1.0 : 0.0;
    mid_call[k] = std::max<std::int64_t>(mid[k], 0);  // a valid timestep for the batched call
  }
  const Tensor z_mid = toy::ddim_jump(s, z, teacher_x0(s, teacher, type, z, r.start), r.start, mid);
  // The second step for the whole batch at once; rows with i = 0 are already clean and keep
  // z_mid (their step is replaced by the identity: z'' = 0 x^ + 1 z_mid).
  const Tensor x_mid = teacher_x0(s, teacher, type, z_mid, mid_call);
  diffusion::Timesteps from2(static_cast<std::size_t>(n)), to2(static_cast<std::size_t>(n));
  for (std::size_t k = 0; k < from2.size(); ++k) from2[k] = mid_call[k], to2[k] = second[k] > 0 ? r.end[k] : mid_call[k];
  const Tensor stepped = toy::ddim_jump(s, z_mid, x_mid, from2, to2);
  std::vector<double> keep(second.size());
  for (std::size_t k = 0; k < keep.size(); ++k) keep[k] = 1.0 - second[k];
  r.z_end = add(mul(per_sample(second, z), stepped), mul(per_sample(keep, z), z_mid));
  return r;
}

Tensor distillation_target(const diffusion::DiffusionSchedule& s, const Tensor& z, const Tensor& z_end,
                           const diffusion::Timesteps& start, const diffusion::Timesteps& end) {
  return diffusion::distillation_target(s, z, z_end, start, end);
}

namespace {

// One batch of examples: x ~ data, i ~ U{0..M}, eps ~ N(0, I), z_t = alpha_t x + sigma_t eps.
struct Examples {
  Tensor z;
  std::vector<std::int64_t> index;
  diffusion::Timesteps t;
};
Examples draw_examples(const diffusion::DiffusionSchedule& s, const DistillGrid& g, const std::string& data,
                       std::int64_t n, Generator& gen) {
  Examples e;
  const PointDataset d = make_toy2d(data, n, gen);
  const Tensor x = Tensor::from_vector(d.points, {n, 2});  // [n, 2]
  const std::int64_t K = g.student_steps();
  for (double u : rand({n}, gen, Device::cpu(), DType::f64).to_double_vector()) {
    const std::int64_t i = std::min<std::int64_t>(K - 1, static_cast<std::int64_t>(u * static_cast<double>(K)));
    e.index.push_back(i);
    e.t.push_back(g.student[static_cast<std::size_t>(i)]);
  }
  const Tensor eps = randn({n, 2}, gen);
  e.z = diffusion::q_sample(s, x, e.t, eps);
  return e;
}

}  // namespace

double one_step_gap(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& teacher,
                    const diffusion::DenoiseFn& model, diffusion::ModelMeanType type, const DistillGrid& g,
                    const std::string& data, std::int64_t n, std::uint64_t seed) {
  DDPM_CHECK(n >= 1, "one_step_gap: needs at least one point, got " << n);
  NoGradGuard no_grad;
  Generator gen(seed);
  const Examples e = draw_examples(s, g, data, n, gen);
  const TeacherSteps ts = teacher_ddim_steps(s, teacher, type, g, e.z, e.index);
  const Tensor one = toy::ddim_jump(s, e.z, teacher_x0(s, model, type, e.z, e.t), e.t, ts.end);
  const std::vector<double> a = one.to_double_vector(), b = ts.z_end.to_double_vector();
  double acc = 0;
  for (std::size_t k = 0; k < a.size(); ++k) acc += (a[k] - b[k]) * (a[k] - b[k]);
  return acc / static_cast<double>(a.size());
}

void check_distill_args(const DistillArgs& a) {
  check_toy2d_name(a.data, "the teacher's dataset");
  DDPM_CHECK(a.steps >= 1, "--steps must be positive, got " << a.steps);
  DDPM_CHECK(a.batch_size >= 1 && a.batch_size <= 65536, "--batch-size must be in [1, 65536], got " << a.batch_size);
  DDPM_CHECK(a.lr > 0 && std::isfinite(a.lr), "--lr must be positive, got " << a.lr);
  DDPM_CHECK(a.warmup_steps >= 0, "the warm-up must be >= 0 steps, got " << a.warmup_steps);
  DDPM_CHECK(a.grad_clip >= 0, "the gradient clip must be >= 0, got " << a.grad_clip);
  DDPM_CHECK(a.ema_rate >= 0 && a.ema_rate < 1, "--ema-rate must be in [0, 1), got " << a.ema_rate);
  DDPM_CHECK(a.log_every >= 1, "--log-every must be positive, got " << a.log_every);
  DDPM_CHECK(a.gap_points >= 1 && a.gap_points <= 1000000, "the held-out points must be in [1, 1e6], got " << a.gap_points);
}

DistillRoundReport distill_round(const diffusion::DiffusionSchedule& s, const diffusion::DenoiseFn& teacher,
                                 MlpDenoiser& student, ParameterSlab& slab, diffusion::ModelMeanType type,
                                 const DistillGrid& g, const DistillArgs& a, Tensor* ema,
                                 const std::function<void(const std::string&)>& log) {
  check_distill_args(a);
  DDPM_CHECK(ema != nullptr, "distill_round: needs a tensor to return the EMA weights in");
  DistillRoundReport r;
  r.teacher_steps = g.teacher_steps();
  r.student_steps = g.student_steps();
  const diffusion::DenoiseFn student_fn = student.fn();
  // The held-out gap uses its own stream, apart from the training draws.
  const std::uint64_t gap_seed = a.seed ^ 0x5DEECE66Dull;
  r.gap_before = one_step_gap(s, teacher, teacher, type, g, a.data, a.gap_points, gap_seed);

  AdamWConfig ac;
  ac.lr = a.lr;
  AdamW opt(slab, ac);
  Ema averaged(slab, a.ema_rate);
  Generator gen(a.seed);
  LossLog loss_log(a.steps, a.log_every, "  ", 5, log);  // under the round's header line
  for (std::int64_t step = 0; step < a.steps; ++step) {
    const Examples e = draw_examples(s, g, a.data, a.batch_size, gen);
    const TeacherSteps ts = teacher_ddim_steps(s, teacher, type, g, e.z, e.index);
    const Tensor target = toy::distillation_target(s, e.z, ts.z_end, ts.start, ts.end);  // x~ [B, 2], no grad
    // Truncated SNR weights max(alpha_t^2 / sigma_t^2, 1), divided by B for the batch mean.
    std::vector<double> w;
    for (std::int64_t t : e.t) {
      const double abar = s.alphas_cumprod[static_cast<std::size_t>(t)];
      w.push_back(std::max(abar / (1.0 - abar), 1.0) / static_cast<double>(a.batch_size));
    }
    slab.zero_grad();
    const std::vector<double> td(e.t.begin(), e.t.end());
    const Tensor x_hat = diffusion::x0_from_prediction(s, type, student_fn(e.z, td, {}), e.z, e.t);  // [B, 2]
    const Tensor per = mean(square(sub(x_hat, target)), {1});                                     // [B]
    Tensor loss = sum(mul(per, Tensor::from_vector(w, {a.batch_size}, per.dtype(), per.device())));
    loss.backward();
    // A non-finite loss or gradient norm skips the update, as the trainer does.
    const double value = loss.item();
    const double norm = !std::isfinite(value) ? value
                        : a.grad_clip > 0     ? clip_grad_norm(slab, a.grad_clip)
                                              : grad_norm(slab);
    if (std::isfinite(norm)) {
      opt.set_lr(train::warmup_lr(a.lr, a.warmup_steps, step));
      opt.step();
      averaged.update(slab, opt.step_count() - 1);
    }
    loss_log.after_step(step, value, std::isfinite(norm));
  }
  r.log_steps = loss_log.steps();
  r.log_losses = loss_log.losses();
  r.seconds = loss_log.seconds();
  *ema = averaged.values().clone();
  // The gap of the EMA student: swap its weights in, measure, swap back.
  averaged.swap(slab);
  r.gap_after = one_step_gap(s, teacher, student_fn, type, g, a.data, a.gap_points, gap_seed);
  averaged.swap(slab);
  return r;
}

void progressive_distillation(const diffusion::DiffusionSchedule& s, const MlpDenoiserConfig& config,
                              const Tensor& teacher_weights, diffusion::ModelMeanType type,
                              std::int64_t teacher_steps, int rounds, const DistillArgs& a,
                              const DistillRoundFn& on_round, const std::function<void(const std::string&)>& log) {
  check_distill_args(a);
  DDPM_CHECK(config.num_classes == 0 && !config.learned_sigma,
             "progressive distillation takes an unconditional teacher with a fixed variance");
  const std::vector<std::int64_t> counts = distill_step_counts(s.num_timesteps(), teacher_steps, rounds);
  Tensor teacher_values = teacher_weights.clone();
  for (int r = 0; r < rounds; ++r) {
    // Two networks of the same config: the frozen teacher and the student, both starting
    // from the teacher's weights (Algorithm 2: "init student from teacher").
    Generator unused(0);
    MlpDenoiser teacher(config, unused), student(config, unused);
    ParameterSlab teacher_slab, student_slab;
    teacher_slab.pack(teacher.parameters());
    student_slab.pack(student.parameters());
    DDPM_CHECK(teacher_values.numel() == teacher_slab.values().numel(),
               "progressive_distillation: the teacher's weights hold " << teacher_values.numel()
                                                                       << " values; the network's slab needs "
                                                                       << teacher_slab.values().numel());
    Tensor tv = teacher_slab.values(), sv = student_slab.values();  // handles on the slabs
    tv.copy_from(teacher_values);
    sv.copy_from(teacher_values);
    const DistillGrid g = distill_grid(s.num_timesteps(), counts[static_cast<std::size_t>(r)]);
    if (log)
      log("round " + std::to_string(r + 1) + "/" + std::to_string(rounds) + ": " + std::to_string(g.teacher_steps()) +
          " teacher steps -> " + std::to_string(g.student_steps()) + " student steps");
    DistillArgs ra = a;
    // A fresh seed per round: SplitMix64's raw state after r steps, seed + r G, WITHOUT the
    // finaliser (so round 0 keeps the seed itself). Not engine/seed_streams.h's
    // splitmix64_stream, which mixes: switching would change every recorded round's numbers.
    ra.seed = a.seed + static_cast<std::uint64_t>(r) * 0x9E3779B97F4A7C15ull;
    Tensor ema;
    DistillRoundReport rep = distill_round(s, teacher.fn(), student, student_slab, type, g, ra, &ema, log);
    rep.round = r + 1;
    if (on_round) on_round(rep, student, student_slab, ema);
    teacher_values = ema;
  }
}

}  // namespace ddpm::toy
