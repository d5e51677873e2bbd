// models/eval/condition_gap.cpp: own / rolled / null condition errors (see condition_gap.h).
#include "models/eval/condition_gap.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <sstream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/rng.h"
#include "models/eval/classifier.h"

namespace ddpm::eval {

using namespace diffusion;

namespace {

// The part of an output the training loss scores: the mean part of a learned-variance model.
std::vector<float> scored_part(const Tensor& out, bool learned_sigma) {
  return (learned_sigma ? split_learned_variance(out).first : out).to_vector();
}

}  // namespace

ConditionGapReport evaluate_condition_gap(const DiffusionSchedule& s, const DenoiseFn& net, const Dataset& ds,
                                          const std::vector<std::int64_t>& labels, const ConditionGapOptions& o,
                                          const std::function<void(const std::string&)>& log) {
  DDPM_CHECK(o.num_classes >= 1, "condition-gap: the model is unconditional (no class labels, no captions); the "
                                 "gap measures how much a class- or text-conditional model reads its condition");
  DDPM_CHECK(o.batch_size >= 1, "condition-gap: --batch-size must be positive, got " << o.batch_size);
  DDPM_CHECK(o.limit >= 0, "condition-gap: --limit must be non-negative, got " << o.limit);
  DDPM_CHECK(!o.timesteps.empty(), "condition-gap: --timesteps names no timestep");
  const std::int64_t T = s.num_timesteps();
  for (std::int64_t t : o.timesteps)
    DDPM_CHECK(t >= 0 && t < T, "condition-gap: --timesteps " << t << " is outside the model's 0.." << T - 1);
  const std::int64_t n = o.limit > 0 ? std::min(o.limit, ds.n) : ds.n;
  DDPM_CHECK(n > 0, "condition-gap: " << ds.name << " holds no images");
  DDPM_CHECK(static_cast<std::int64_t>(labels.size()) >= n,
             "condition-gap: " << ds.name << " gives " << labels.size() << " conditions for " << n << " images");
  for (std::int64_t i = 0; i < n; ++i)
    DDPM_CHECK(labels[i] >= 0 && labels[i] < o.num_classes,
               "condition-gap: image " << i << " of " << ds.name << " has condition " << labels[i]
                                       << ", not one of the model's 0.." << o.num_classes - 1);
  // The shift modulo n, in [0, n); 0 would hand every image its own condition back.
  const std::int64_t shift = ((o.roll % n) + n) % n;
  DDPM_CHECK(shift != 0, "condition-gap: --roll " << o.roll << " is 0 modulo the " << n
                                                  << " images, so every image would keep its own condition; "
                                                     "choose a roll that is not a multiple of "
                                                  << n);

  const auto t0 = std::chrono::steady_clock::now();
  NoGradGuard no_grad;
  Generator gen(o.seed);
  ConditionGapReport r;
  r.n = n;
  std::vector<std::int64_t> rolled(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    rolled[i] = labels[(i + shift) % n];
    r.rolled_differs += rolled[i] != labels[i];
  }
  for (std::int64_t t : o.timesteps) {
    // Sums of squares over every scored element of the n images.
    double se_own = 0, se_rolled = 0, se_null = 0, se_change = 0;
    std::int64_t elements = 0;
    for (std::int64_t b = 0; b < n; b += o.batch_size) {
      const std::int64_t count = std::min(o.batch_size, n - b);
      const Tensor x0 = image_batch(ds, b, count, o.device);  // [B, H, W, C] in [-1, 1]
      const Tensor eps = randn(x0.shape(), gen, o.device, DType::f32);
      const Timesteps ts(static_cast<std::size_t>(count), t);
      const Tensor xt = q_sample(s, x0, ts, eps);                          // DDPM eq. 4
      const std::vector<float> target = mean_type_target(s, o.mean_type, x0, eps, ts).to_vector();
      const std::vector<double> t_orig(static_cast<std::size_t>(count), static_cast<double>(t));
      const std::vector<std::int64_t> y_own(labels.begin() + b, labels.begin() + b + count);
      const std::vector<std::int64_t> y_rolled(rolled.begin() + b, rolled.begin() + b + count);
      const std::vector<std::int64_t> y_null(static_cast<std::size_t>(count), o.num_classes);
      const std::vector<float> own = scored_part(net(xt, t_orig, y_own), o.learned_sigma);
      const std::vector<float> other = scored_part(net(xt, t_orig, y_rolled), o.learned_sigma);
      const std::vector<float> null = scored_part(net(xt, t_orig, y_null), o.learned_sigma);
      DDPM_CHECK(own.size() == target.size(),
                 "condition-gap: the network's output has " << own.size() << " values for a target of "
                                                            << target.size() << " (its output channels do not "
                                                                                "match the images')");
      for (std::size_t k = 0; k < target.size(); ++k) {
        const double g = target[k], a = own[k], c = other[k], z = null[k];
        se_own += (a - g) * (a - g);
        se_rolled += (c - g) * (c - g);
        se_null += (z - g) * (z - g);
        se_change += (a - c) * (a - c);
      }
      elements += static_cast<std::int64_t>(target.size());
    }
    ConditionGapRow row;
    const double m = static_cast<double>(elements);
    row.t = t;
    row.mse_own = se_own / m;
    row.mse_rolled = se_rolled / m;
    row.mse_null = se_null / m;
    row.output_change = se_change / m;
    row.gap = row.mse_own > 0 ? (row.mse_rolled - row.mse_own) / row.mse_own : 0.0;
    r.rows.push_back(row);
    r.mean_gap += row.gap;
    if (log) {
      std::ostringstream line;
      line << "t=" << t << " done";
      log(line.str());
    }
  }
  r.mean_gap /= static_cast<double>(r.rows.size());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace ddpm::eval
