// models/diffusion/progressive_distill.cpp: see progressive_distill.h for the grid rule and
// the equations (1) to (3).
#include "models/diffusion/progressive_distill.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/concat.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/x0_threshold.h"

namespace ddpm::diffusion {

namespace {

// alpha and sigma of a level: an original timestep, or the clean level (1, 0).
double level_alpha(const DiffusionSchedule& s, std::int64_t level) {
  return level == kCleanLevel ? 1.0 : s.sqrt_alphas_cumprod[static_cast<std::size_t>(level)];
}
double level_sigma(const DiffusionSchedule& s, std::int64_t level) {
  return level == kCleanLevel ? 0.0 : s.sqrt_one_minus_alphas_cumprod[static_cast<std::size_t>(level)];
}

void check_levels(const DiffusionSchedule& s, const Timesteps& from, const Timesteps& to, std::int64_t n,
                  const char* where) {
  DDPM_CHECK(static_cast<std::int64_t>(from.size()) == n && static_cast<std::int64_t>(to.size()) == n,
             where << ": " << n << " samples need as many start and end levels, got " << from.size() << " and "
                   << to.size());
  const std::int64_t T = s.num_timesteps();
  for (std::size_t k = 0; k < from.size(); ++k)
    DDPM_CHECK(from[k] >= 0 && from[k] < T && to[k] >= kCleanLevel && to[k] < T,
               where << ": sample " << k << " goes from level " << from[k] << " to " << to[k]
                     << "; start levels must be timesteps in [0, " << T << ") and end levels timesteps or "
                     << kCleanLevel << " (clean)");
}

// A per-sample coefficient [N, 1, ..., 1] (the rank of like) in like's dtype and device.
Tensor per_sample(const std::vector<double>& c, const Tensor& like) {
  Shape shape(static_cast<std::size_t>(like.ndim()), 1);
  shape[0] = static_cast<std::int64_t>(c.size());
  return Tensor::from_vector(c, shape, like.dtype(), like.device());
}

}  // namespace

Timesteps ddim_sampling_grid(std::int64_t T, std::int64_t K) {
  DDPM_CHECK(K >= 1 && K <= T && T % K == 0,
             "ddim_sampling_grid: " << K << " DDIM steps do not fit " << T
                                    << " training steps; ddpm-sample's DDIM needs a step count that divides T "
                                       "(the exact-stride \"ddimK\" spacing of respace.h)");
  if (K == T) {  // sample_run.cpp: --sampling-steps T runs every step, unrespaced
    Timesteps all(static_cast<std::size_t>(T));
    for (std::int64_t t = 0; t < T; ++t) all[static_cast<std::size_t>(t)] = t;
    return all;
  }
  return space_timesteps(T, "ddim" + std::to_string(K));
}

DistillGrid distill_grid(std::int64_t T, std::int64_t student_steps) {
  DDPM_CHECK(student_steps >= 1 && 2 * student_steps <= T && T % (2 * student_steps) == 0,
             "distill_grid: a student of " << student_steps << " DDIM steps needs a teacher of " << 2 * student_steps
                                           << ", and both must divide the model's T = " << T);
  DistillGrid g;
  g.T = T;
  g.student = ddim_sampling_grid(T, student_steps);
  g.teacher = ddim_sampling_grid(T, 2 * student_steps);
  for (std::size_t i = 0; i < g.student.size(); ++i)
    DDPM_CHECK(g.teacher[2 * i + 1] == g.student[i],
               "distill_grid: the " << g.teacher.size() << "-step grid does not hold the " << g.student.size()
                                    << "-step grid's timestep " << g.student[i] << " at index " << 2 * i + 1
                                    << " (respace.h changed?)");
  return g;
}

std::vector<std::int64_t> distill_step_counts(std::int64_t T, std::int64_t teacher_steps, int rounds) {
  DDPM_CHECK(rounds >= 1 && rounds <= 12, "--rounds must be in [1, 12], got " << rounds);
  const std::int64_t per = std::int64_t{1} << rounds;
  DDPM_CHECK(teacher_steps >= 2 && teacher_steps <= T && T % teacher_steps == 0 && teacher_steps % per == 0,
             "--teacher-steps " << teacher_steps << " cannot be halved " << rounds << " times: ddpm-sample's DDIM "
                                << "grids nest only for step counts that divide the model's T = " << T
                                << ", so it must divide " << T << " and be a multiple of 2^rounds = " << per);
  std::vector<std::int64_t> counts;
  std::int64_t k = teacher_steps;
  for (int r = 0; r < rounds; ++r) counts.push_back(k /= 2);
  return counts;
}

Tensor ddim_jump(const DiffusionSchedule& s, const Tensor& z, const Tensor& x0, const Timesteps& from,
                 const Timesteps& to) {
  const std::int64_t n = z.dim(0);
  DDPM_CHECK(z.shape() == x0.shape(), "ddim_jump: z " << shape_str(z.shape()) << " and x_0^ " << shape_str(x0.shape())
                                                      << " differ in shape");
  check_levels(s, from, to, n, "ddim_jump");
  // Equation (1) regrouped: z_u = (alpha_u - sigma_u alpha_t / sigma_t) x^ + (sigma_u / sigma_t) z_t.
  std::vector<double> cx(static_cast<std::size_t>(n)), cz(static_cast<std::size_t>(n));
  for (std::size_t k = 0; k < cx.size(); ++k) {
    const double at = level_alpha(s, from[k]), st = level_sigma(s, from[k]);
    const double au = level_alpha(s, to[k]), su = level_sigma(s, to[k]);
    cz[k] = su / st;
    cx[k] = au - cz[k] * at;
  }
  return add(mul(per_sample(cx, x0), x0), mul(per_sample(cz, z), z));
}

Tensor distillation_target(const DiffusionSchedule& s, const Tensor& z, const Tensor& z_end, const Timesteps& start,
                           const Timesteps& end) {
  const std::int64_t n = z.dim(0);
  DDPM_CHECK(z.shape() == z_end.shape(), "distillation_target: z " << shape_str(z.shape()) << " and z'' "
                                                                   << shape_str(z_end.shape()) << " differ in shape");
  check_levels(s, start, end, n, "distillation_target");
  // Equation (2): x~ = (z'' - r z) / (alpha'' - r alpha_t), r = sigma'' / sigma_t.
  std::vector<double> cz(static_cast<std::size_t>(n)), cend(static_cast<std::size_t>(n));
  for (std::size_t k = 0; k < cz.size(); ++k) {
    const double at = level_alpha(s, start[k]), st = level_sigma(s, start[k]);
    const double ae = level_alpha(s, end[k]), se = level_sigma(s, end[k]);
    const double r = se / st, denom = ae - r * at;
    DDPM_CHECK(denom > 0 && std::isfinite(denom),
               "distillation_target: sample " << k << " goes from timestep " << start[k] << " to level " << end[k]
                                              << ", which is not less noisy: one DDIM step cannot reach it");
    cend[k] = 1.0 / denom;
    cz[k] = -r / denom;
  }
  return add(mul(per_sample(cend, z_end), z_end), mul(per_sample(cz, z), z));
}

Tensor x0_estimate(const DiffusionSchedule& s, const DenoiseFn& net, const DenoiserReading& r, const Tensor& z,
                   const Timesteps& t, const std::vector<std::int64_t>& labels) {
  const std::vector<double> td(t.begin(), t.end());
  Tensor out = net(z, td, labels);
  if (r.learned_sigma) out = split_learned_variance(out).first;  // eta = 0 DDIM ignores the variance
  const Tensor x0 = x0_from_prediction(s, r.type, out, z, t);
  return apply_x0_threshold(x0, r.clip_x0 ? X0Threshold::static_clip() : X0Threshold::none());  // the samplers' clip
}

TeacherSteps teacher_ddim_steps(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiserReading& r,
                                const DistillGrid& g, const Tensor& z, const std::vector<std::int64_t>& index,
                                const std::vector<std::int64_t>& labels) {
  NoGradGuard no_grad;  // the teacher's activations are not kept: two forwards at inference cost
  const std::int64_t n = z.dim(0);
  DDPM_CHECK(static_cast<std::int64_t>(index.size()) == n,
             "teacher_ddim_steps: " << n << " samples need as many student indices, got " << index.size());
  TeacherSteps out;
  Timesteps mid(static_cast<std::size_t>(n));
  out.start.resize(static_cast<std::size_t>(n));
  out.end.resize(static_cast<std::size_t>(n));
  for (std::size_t k = 0; k < index.size(); ++k) {
    const std::int64_t i = index[k];
    DDPM_CHECK(i >= 0 && i < g.student_steps(),
               "teacher_ddim_steps: student index " << i << " is outside [0, " << g.student_steps() << ")");
    const auto u = static_cast<std::size_t>(i);
    // G_K[i] = G_2K[2i+1] -> G_2K[2i] -> G_2K[2i-1] = G_K[i-1], or clean after G_2K[0].
    out.start[k] = g.student[u];
    mid[k] = g.teacher[2 * u];
    out.end[k] = i >= 1 ? g.student[u - 1] : kCleanLevel;
  }
  const Tensor z_mid = ddim_jump(s, z, x0_estimate(s, teacher, r, z, out.start, labels), out.start, mid);
  out.z_end = ddim_jump(s, z_mid, x0_estimate(s, teacher, r, z_mid, mid, labels), mid, out.end);
  return out;
}

Tensor guided_combination(const Tensor& x_cond, const Tensor& x_uncond, const std::vector<double>& w) {
  const std::int64_t n = x_cond.dim(0);
  DDPM_CHECK(x_cond.shape() == x_uncond.shape() && static_cast<std::int64_t>(w.size()) == n,
             "guided_combination: x^_c " << shape_str(x_cond.shape()) << ", x^_u " << shape_str(x_uncond.shape())
                                         << " and " << w.size() << " guidance weights do not match");
  // Equation (4): (1 + w) x^_c - w x^_u, per sample.
  std::vector<double> cc(w.size()), cu(w.size());
  for (std::size_t k = 0; k < w.size(); ++k) {
    cc[k] = 1.0 + w[k];
    cu[k] = -w[k];
  }
  return add(mul(per_sample(cc, x_cond), x_cond), mul(per_sample(cu, x_uncond), x_uncond));
}

Tensor teacher_guided_x0(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiserReading& r,
                         const Tensor& z, const Timesteps& t, const std::vector<std::int64_t>& labels,
                         std::int64_t null_label, const std::vector<double>& w) {
  NoGradGuard no_grad;
  const std::int64_t n = z.dim(0);
  DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n && static_cast<std::int64_t>(w.size()) == n &&
                 static_cast<std::int64_t>(t.size()) == n,
             "teacher_guided_x0: " << n << " samples need as many timesteps, labels and guidance weights, got "
                                   << t.size() << ", " << labels.size() << " and " << w.size());
  // Both branches in one batch [2N, ...]: rows 0..N-1 conditional, N..2N-1 null-labelled.
  Timesteps t2 = t;
  t2.insert(t2.end(), t.begin(), t.end());
  std::vector<std::int64_t> y2 = labels;
  y2.insert(y2.end(), static_cast<std::size_t>(n), null_label);
  const Tensor both = x0_estimate(s, teacher, r, concat({z, z}, 0), t2, y2);
  return guided_combination(slice(both, 0, 0, n), slice(both, 0, n, n), w);
}

Tensor distillation_loss(const DiffusionSchedule& s, const Tensor& x_hat, const Tensor& target, const Timesteps& t) {
  const std::int64_t n = x_hat.dim(0);
  DDPM_CHECK(x_hat.shape() == target.shape() && static_cast<std::int64_t>(t.size()) == n,
             "distillation_loss: x^ " << shape_str(x_hat.shape()) << ", x~ " << shape_str(target.shape()) << " and "
                                      << t.size() << " timesteps do not match");
  // Truncated SNR weights max(alpha_bar / (1 - alpha_bar), 1), divided by N for the batch mean.
  std::vector<double> w(static_cast<std::size_t>(n));
  for (std::size_t k = 0; k < w.size(); ++k) {
    DDPM_CHECK(t[k] >= 0 && t[k] < s.num_timesteps(), "distillation_loss: timestep " << t[k] << " is outside [0, "
                                                                                     << s.num_timesteps() << ")");
    const double abar = s.alphas_cumprod[static_cast<std::size_t>(t[k])];
    w[k] = std::max(abar / (1.0 - abar), 1.0) / static_cast<double>(n);
  }
  std::vector<int> axes;
  for (int a = 1; a < x_hat.ndim(); ++a) axes.push_back(a);
  const Tensor per = mean(square(sub(x_hat, target)), axes);  // [N]
  return sum(mul(per, Tensor::from_vector(w, {n}, per.dtype(), per.device())));
}

double one_step_gap(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiseFn& model,
                    const DenoiserReading& r, const DistillGrid& g, const Tensor& z,
                    const std::vector<std::int64_t>& index, const std::vector<std::int64_t>& labels) {
  NoGradGuard no_grad;
  const TeacherSteps ts = teacher_ddim_steps(s, teacher, r, g, z, index, labels);
  const Tensor one = ddim_jump(s, z, x0_estimate(s, model, r, z, ts.start, labels), ts.start, ts.end);
  const std::vector<double> a = one.to_double_vector(), b = ts.z_end.to_double_vector();
  double acc = 0;
  for (std::size_t k = 0; k < a.size(); ++k) acc += (a[k] - b[k]) * (a[k] - b[k]);
  return acc / static_cast<double>(a.size());
}

double guided_x0_gap(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiseFn& model,
                     const DenoiserReading& r, const Tensor& z, const Timesteps& t,
                     const std::vector<std::int64_t>& labels, std::int64_t null_label, const std::vector<double>& w) {
  NoGradGuard no_grad;
  const std::vector<double> a = x0_estimate(s, model, r, z, t, labels).to_double_vector();
  const std::vector<double> b = teacher_guided_x0(s, teacher, r, z, t, labels, null_label, w).to_double_vector();
  double acc = 0;
  for (std::size_t k = 0; k < a.size(); ++k) acc += (a[k] - b[k]) * (a[k] - b[k]);
  return acc / static_cast<double>(a.size());
}

}  // namespace ddpm::diffusion
