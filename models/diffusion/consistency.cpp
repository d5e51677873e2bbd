// models/diffusion/consistency.cpp: see consistency.h for the grid and equations (1) to (4).
#include "models/diffusion/consistency.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

namespace ddpm::diffusion {

namespace {

// A per-sample coefficient [N, 1, ..., 1] (the rank of like) in like's dtype and device.
Tensor per_sample(const std::vector<double>& c, const Tensor& like) {
  Shape shape(static_cast<std::size_t>(like.ndim()), 1);
  shape[0] = static_cast<std::int64_t>(c.size());
  return Tensor::from_vector(c, shape, like.dtype(), like.device());
}

std::vector<int> non_batch_axes(const Tensor& x) {
  std::vector<int> axes;
  for (int a = 1; a < x.ndim(); ++a) axes.push_back(a);
  return axes;
}

}  // namespace

ConsistencyGrid consistency_grid(std::int64_t T, std::int64_t N) {
  DDPM_CHECK(N >= 1 && N <= T && T % N == 0,
             "--consistency-levels " << N << " does not fit the model's T = " << T
                                     << ": the levels are the \"ddimN\" grid of ddpm-sample (stride T / N), so N must "
                                        "divide T");
  ConsistencyGrid g;
  g.T = T;
  g.timestep_scale = kLcmTimestepScaling * 1000.0 / static_cast<double>(T);
  g.levels.push_back(kCleanLevel);
  for (std::int64_t t : ddim_sampling_grid(T, N)) g.levels.push_back(t);
  return g;
}

BoundaryScalings boundary_scalings(const ConsistencyGrid& g, std::int64_t level) {
  DDPM_CHECK(level >= kCleanLevel && level < g.T,
             "boundary_scalings: level " << level << " is neither a timestep in [0, " << g.T << ") nor clean ("
                                         << kCleanLevel << ")");
  if (level == kCleanLevel) return {1.0, 0.0};  // the boundary condition f(z, clean) = z, exactly
  const double tau = g.timestep_scale * static_cast<double>(level + 1);
  const double sd2 = g.sigma_data * g.sigma_data;
  return {sd2 / (tau * tau + sd2), tau / std::sqrt(tau * tau + sd2)};
}

Tensor consistency_function(const DiffusionSchedule& s, const DenoiseFn& net, const DenoiserReading& r,
                            const ConsistencyGrid& g, const Tensor& z, const Timesteps& level,
                            const std::vector<std::int64_t>& labels) {
  const std::int64_t n = z.dim(0);
  DDPM_CHECK(static_cast<std::int64_t>(level.size()) == n,
             "consistency_function: " << n << " samples need as many levels, got " << level.size());
  std::vector<double> cs(level.size()), co(level.size());
  Timesteps t(level.size());
  bool any_noisy = false;
  for (std::size_t k = 0; k < level.size(); ++k) {
    const BoundaryScalings b = boundary_scalings(g, level[k]);
    cs[k] = b.c_skip;
    co[k] = b.c_out;
    t[k] = level[k] == kCleanLevel ? 0 : level[k];  // a clean row's output is multiplied by c_out = 0
    any_noisy = any_noisy || level[k] != kCleanLevel;
  }
  if (!any_noisy) return z;
  const Tensor x0 = x0_estimate(s, net, r, z, t, labels);  // [N, ...]
  return add(mul(per_sample(cs, z), z), mul(per_sample(co, x0), x0));  // (1)
}

ConsistencyExamples consistency_examples(const DiffusionSchedule& s, const ConsistencyGrid& g, const Tensor& x0,
                                         const std::vector<std::int64_t>& upper_index, const Tensor& eps) {
  DDPM_CHECK(static_cast<std::int64_t>(upper_index.size()) == x0.dim(0),
             "consistency_examples: " << x0.dim(0) << " samples need as many level indices, got "
                                      << upper_index.size());
  ConsistencyExamples e;
  for (std::int64_t i : upper_index) {
    DDPM_CHECK(i >= 1 && i <= g.num_levels(),
               "consistency_examples: the upper level index " << i << " is outside [1, " << g.num_levels() << "]");
    e.upper.push_back(g.levels[static_cast<std::size_t>(i)]);
    e.lower.push_back(g.levels[static_cast<std::size_t>(i - 1)]);
  }
  e.z = q_sample(s, x0, e.upper, eps);
  return e;
}

Tensor teacher_step_x0(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiserReading& r,
                       const Tensor& z, const Timesteps& t, const std::vector<std::int64_t>& labels,
                       const TeacherGuidance& guidance) {
  NoGradGuard no_grad;
  if (!guidance.active()) return x0_estimate(s, teacher, r, z, t, labels);
  // LCM eq. 9-10: (1 + w) eps_c - w eps_u, read as x^w (progressive_distill.h eq. 4).
  return teacher_guided_x0(s, teacher, r, z, t, labels, guidance.null_label, guidance.w);
}

Tensor consistency_target(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiseFn& target_net,
                          const DenoiserReading& r, const ConsistencyGrid& g, const ConsistencyExamples& e,
                          const std::vector<std::int64_t>& labels, const TeacherGuidance& guidance) {
  NoGradGuard no_grad;
  // The teacher's eta = 0 DDIM step L_{n+1} -> L_n (progressive_distill.h eq. 1).
  const Tensor z_lower =
      ddim_jump(s, e.z, teacher_step_x0(s, teacher, r, e.z, e.upper, labels, guidance), e.upper, e.lower);
  return consistency_function(s, target_net, r, g, z_lower, e.lower, labels);  // (2)
}

ConsistencyDistance parse_consistency_distance(const std::string& name) {
  if (name == "l2") return ConsistencyDistance::l2;
  if (name == "pseudo-huber") return ConsistencyDistance::pseudo_huber;
  DDPM_THROW(ValueError, "--consistency-loss must be l2 or pseudo-huber, got \"" << name << "\"");
}

const char* consistency_distance_name(ConsistencyDistance d) {
  return d == ConsistencyDistance::l2 ? "l2" : "pseudo-huber";
}

double pseudo_huber_c(std::int64_t elements_per_sample) {
  return 0.00054 * std::sqrt(static_cast<double>(elements_per_sample));  // iCT sec. 3.3
}

Tensor consistency_loss(const Tensor& f, const Tensor& target, ConsistencyDistance d) {
  DDPM_CHECK(f.shape() == target.shape() && f.ndim() >= 2,
             "consistency_loss: f " << shape_str(f.shape()) << " and its target " << shape_str(target.shape())
                                    << " must be batches [N, ...] of one shape");
  const Tensor sq = square(sub(f, target));
  if (d == ConsistencyDistance::l2) return mean(sq);  // mean over samples and elements
  // sqrt(||f - target||^2 + c^2) - c per sample, then the batch mean.
  const double c = pseudo_huber_c(f.numel() / f.dim(0));
  return add_scalar(mean(sqrt(add_scalar(sum(sq, non_batch_axes(f)), c * c))), -c);
}

Timesteps consistency_sampling_levels(const ConsistencyGrid& g, std::int64_t K) {
  const std::int64_t N = g.num_levels();
  DDPM_CHECK(K >= 1 && K <= N, "--sampling-steps " << K << " is outside [1, " << N << "]: a consistency model "
                                                   << "samples on its " << N << " trained levels");
  const std::int64_t stride = N / K;  // LCMScheduler: from the top, floor(N / K) levels apart
  Timesteps out;
  for (std::int64_t j = 0; j < K; ++j) out.push_back(g.levels[static_cast<std::size_t>(N - j * stride)]);
  return out;
}

Tensor consistency_sample(const DiffusionSchedule& s, const DenoiseFn& net, const DenoiserReading& r,
                          const ConsistencyGrid& g, const Shape& shape, const std::vector<std::int64_t>& labels,
                          std::int64_t K, bool clip, Generator& gen, Device device, DType dtype) {
  DDPM_CHECK(!shape.empty() && shape[0] >= 1, "consistency_sample: the shape needs a batch axis");
  const Timesteps taus = consistency_sampling_levels(g, K);
  NoGradGuard no_grad;
  const auto at = [&](std::int64_t level) { return Timesteps(static_cast<std::size_t>(shape[0]), level); };
  const auto f = [&](const Tensor& z, std::int64_t level) {
    const Tensor x = consistency_function(s, net, r, g, z, at(level), labels);
    return clip ? clamp(x, -1.0, 1.0) : x;
  };
  Tensor x = f(randn(shape, gen, device, dtype), taus[0]);  // (4), z at L_N is pure noise
  for (std::size_t j = 1; j < taus.size(); ++j)
    x = f(q_sample(s, x, at(taus[j]), randn(shape, gen, device, dtype)), taus[j]);
  return x;
}

Tensor teacher_ode_endpoint(const DiffusionSchedule& s, const DenoiseFn& teacher, const DenoiserReading& r,
                            const ConsistencyGrid& g, const Tensor& z, const std::vector<std::int64_t>& labels,
                            const TeacherGuidance& guidance) {
  NoGradGuard no_grad;
  const auto at = [&](std::int64_t level) { return Timesteps(static_cast<std::size_t>(z.dim(0)), level); };
  Tensor x = z;
  for (std::int64_t n = g.num_levels(); n >= 1; --n) {
    const Timesteps from = at(g.levels[static_cast<std::size_t>(n)]), to = at(g.levels[static_cast<std::size_t>(n - 1)]);
    x = ddim_jump(s, x, teacher_step_x0(s, teacher, r, x, from, labels, guidance), from, to);
  }
  return x;
}

double one_step_endpoint_gap(const DiffusionSchedule& s, const DenoiseFn& model, const DenoiserReading& r,
                             const ConsistencyGrid& g, const Tensor& z, const Tensor& endpoint,
                             const std::vector<std::int64_t>& labels) {
  NoGradGuard no_grad;
  const Timesteps top(static_cast<std::size_t>(z.dim(0)), g.levels.back());
  const std::vector<double> a = consistency_function(s, model, r, g, z, top, labels).to_double_vector();
  const std::vector<double> b = endpoint.to_double_vector();
  double acc = 0;
  for (std::size_t k = 0; k < a.size(); ++k) acc += (a[k] - b[k]) * (a[k] - b[k]);
  return acc / static_cast<double>(a.size());
}

}  // namespace ddpm::diffusion
