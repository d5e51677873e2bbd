// models/diffusion/inpaint.cpp: see inpaint.h for the equations and the schedule.
#include "models/diffusion/inpaint.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "models/diffusion/respace.h"

namespace ddpm::diffusion {

std::vector<TimeMove> repaint_schedule(std::int64_t K, std::int64_t jump_length, std::int64_t jump_n_sample) {
  DDPM_CHECK(K >= 1, "repaint_schedule: the process needs at least one step, got K = " << K);
  DDPM_CHECK(jump_length >= 1, "repaint: the jump length must be >= 1, got " << jump_length);
  DDPM_CHECK(jump_n_sample >= 1, "repaint: jump_n_sample must be >= 1 (1 = no resampling), got " << jump_n_sample);
  // jumps_left[s]: how many more times the walk goes back up from state s. Jump states are
  // the multiples of jump_length that leave room to go up (s + jump_length <= K).
  std::vector<std::int64_t> jumps_left(static_cast<std::size_t>(K + 1), 0);
  for (std::int64_t s = jump_length; s + jump_length <= K; s += jump_length)
    jumps_left[static_cast<std::size_t>(s)] = jump_n_sample - 1;

  std::vector<TimeMove> moves;
  std::int64_t s = K;
  while (s > 0) {
    moves.push_back({s, s - 1});
    --s;
    // Coming down to s again after a jump from s finds the states above already spent, so
    // the jumps nest: a stretch is redone jump_n_sample times in all, the walk never
    // goes past K.
    std::int64_t& left = jumps_left[static_cast<std::size_t>(s)];
    if (left > 0) {
      --left;
      for (std::int64_t k = 0; k < jump_length; ++k, ++s) moves.push_back({s, s + 1});
    }
  }
  return moves;
}

std::int64_t repaint_network_calls(const std::vector<TimeMove>& moves) {
  std::int64_t calls = 0;
  for (const TimeMove& m : moves) calls += m.reverse() ? 1 : 0;
  return calls;
}

namespace {

// The given tensor as config.dtype on `device`, through the host (a one-off copy of one
// image or mask).
Tensor to_working(const Tensor& t, DType dtype, Device device) {
  return Tensor::from_vector(t.to_double_vector(), t.shape(), dtype, device);
}

// known [1 or n, ...] and mask [1 or dim, ...] against the sample shape [n, ...].
void check_inputs(const Tensor& known, const Tensor& mask, const Shape& shape) {
  DDPM_CHECK(known.defined() && mask.defined(), "inpaint: the known image and the mask are both required");
  Shape one = shape;
  one[0] = 1;
  DDPM_CHECK(known.shape() == shape || known.shape() == one,
             "inpaint: the known image is " << shape_str(known.shape()) << ", expected " << shape_str(one) << " or "
                                            << shape_str(shape) << " (the sample shape)");
  bool fits = mask.shape().size() == shape.size();
  for (std::size_t a = 0; fits && a < shape.size(); ++a) fits = mask.shape()[a] == shape[a] || mask.shape()[a] == 1;
  DDPM_CHECK(fits, "inpaint: the mask " << shape_str(mask.shape()) << " does not fit the sample shape "
                                        << shape_str(shape) << ": each axis must match or be 1");
  for (double v : mask.to_double_vector())
    DDPM_CHECK(v == 0.0 || v == 1.0, "inpaint: mask values must be 1 (known) or 0 (generate), found " << v);
}

}  // namespace

Tensor inpaint(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& known, const Tensor& mask,
               std::int64_t n, const std::vector<std::int64_t>& labels, const SamplerConfig& config,
               const RepaintConfig& repaint, Generator& gen, Device device, const StepCallback& callback) {
  NoGradGuard no_grad;
  DDPM_CHECK(net, "inpaint: no network was given");
  DDPM_CHECK(config.kind == SamplerConfig::Kind::ddpm,
             "inpaint: RePaint is built on DDPM ancestral steps; the DDIM sampler is not supported");
  DDPM_CHECK(n > 0, "inpaint: the number of samples must be positive, got " << n);
  DDPM_CHECK(known.defined() && known.shape().size() >= 2,
             "inpaint: the known image needs a batch axis and a channel axis");
  Shape shape = known.shape();
  shape[0] = n;
  check_sample_request(net, shape, labels, config);
  check_inputs(known, mask, shape);

  const RespacedSchedule rs = sampling_process(base, config.respacing);
  const DiffusionSchedule& s = rs.schedule;
  const std::int64_t K = s.num_timesteps();
  const VarianceType variance = resolve_variance(config, K < base.num_timesteps());
  const std::vector<TimeMove> moves = repaint_schedule(K, repaint.jump_length, repaint.jump_n_sample);

  // The last reverse move into each state: the one the callback reports.
  std::vector<std::size_t> last_visit(static_cast<std::size_t>(K), 0);
  for (std::size_t j = 0; j < moves.size(); ++j)
    if (moves[j].reverse()) last_visit[static_cast<std::size_t>(moves[j].to)] = j;

  const Tensor x0 = to_working(known, config.dtype, device);  // [1 or n, ...]
  const Tensor m = to_working(mask, config.dtype, device);    // [1 or n, ...] of 0/1, broadcast
  const Tensor one_minus_m = add_scalar(neg(m), 1.0);

  Tensor x = randn(shape, gen, device, config.dtype);  // x_K = x_T ~ N(0, I)
  for (std::size_t j = 0; j < moves.size(); ++j) {
    const TimeMove& mv = moves[j];
    if (!mv.reverse()) {
      // Forward re-noising s -> s+1 with the (respaced) beta of index s:
      // x_{s+1} = sqrt(1 - beta) x_s + sqrt(beta) z.
      const double beta = s.betas[static_cast<std::size_t>(mv.from)];
      x = add(scale(x, std::sqrt(1.0 - beta)), scale(randn(shape, gen, device, config.dtype), std::sqrt(beta)));
      continue;
    }
    const std::int64_t i = mv.from - 1;  // schedule index of the reverse step s -> s-1
    // Known half: a sample of q(x_{s-1} | x0); x0 itself at the last step (abar_prev = 1).
    Tensor x_known = x0;
    if (i > 0) {
      const double abar_prev = s.alphas_cumprod_prev[static_cast<std::size_t>(i)];
      x_known = add(scale(x0, std::sqrt(abar_prev)),
                    scale(randn(shape, gen, device, config.dtype), std::sqrt(1.0 - abar_prev)));
    }
    // Unknown half: the model's ancestral step from the merged x_s.
    const Denoised d = denoise(rs, net, config, x, i, labels);
    const Tensor x_unknown = ddpm_ancestral_step(s, variance, x, d, i, gen);
    // x_{s-1} = m * known + (1 - m) * unknown; with m in {0, 1} the known pixels are copied
    // exactly (1 * a + 0 * b = a in floating point for finite b).
    x = add(mul(m, x_known), mul(one_minus_m, x_unknown));
    if (callback && last_visit[static_cast<std::size_t>(i)] == j)
      callback(StepInfo{i, K, rs.timestep_map[static_cast<std::size_t>(i)], x, d.pred_x0});
  }
  return x;
}

}  // namespace ddpm::diffusion
