// models/toy/classifier_training.cpp: the noisy classifier's training loop (the step in the
// header).
#include "models/toy/classifier_training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/optim.h"
#include "models/eval/classifier.h"
#include "models/toy/datasets2d.h"
#include "models/train/lr_schedule.h"

namespace ddpm::toy {

namespace {

constexpr std::int64_t kWarmupSteps = 100;

// t ~ U{0..T-1} for n samples, from one rand draw of gen.
diffusion::Timesteps uniform_t(std::int64_t n, std::int64_t T, Generator& gen) {
  const std::vector<double> u = rand({n}, gen, Device::cpu(), DType::f64).to_double_vector();
  diffusion::Timesteps t(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    t[static_cast<std::size_t>(i)] = std::min(T - 1, static_cast<std::int64_t>(u[static_cast<std::size_t>(i)] * T));
  return t;
}

std::vector<double> as_doubles(const diffusion::Timesteps& t) { return std::vector<double>(t.begin(), t.end()); }

}  // namespace

NoisyClassifierReport train_noisy_mlp_classifier(const NoisyMlpClassifier& cls, ParameterSlab& slab,
                                                 const std::string& data, const diffusion::DiffusionSchedule& schedule,
                                                 const NoisyClassifierTrainArgs& a,
                                                 const std::function<void(const std::string&)>& log) {
  check_toy2d_name(data, "--data");
  DDPM_CHECK(toy2d_num_classes(data) == cls.config().num_classes,
             "train_noisy_mlp_classifier: " << data << " has " << toy2d_num_classes(data)
                                            << " classes, the classifier predicts " << cls.config().num_classes);
  DDPM_CHECK(a.steps >= 1 && a.batch_size >= 1 && a.log_every >= 1 && a.lr > 0 && std::isfinite(a.lr),
             "the classifier's --steps, --batch-size, --log-every and --lr must be positive, got "
                 << a.steps << ", " << a.batch_size << ", " << a.log_every << ", " << a.lr);
  const std::int64_t T = schedule.num_timesteps(), B = a.batch_size;
  AdamWConfig ac;
  ac.lr = a.lr;
  AdamW opt(slab, ac);
  Generator gen(a.seed);
  NoisyClassifierReport r;
  const auto t0 = std::chrono::steady_clock::now();
  double running = 0;
  std::int64_t counted = 0;
  for (std::int64_t step = 0; step < a.steps; ++step) {
    const PointDataset d = make_toy2d(data, B, gen);
    const Tensor x0 = Tensor::from_vector(d.points, {B, 2});  // [B, 2]
    const diffusion::Timesteps t = uniform_t(B, T, gen);
    const Tensor xt = diffusion::q_sample(schedule, x0, t, randn({B, 2}, gen));  // [B, 2]
    // The trainer's schedule function (lr_schedule.h): a linear warm-up, then constant.
    opt.set_lr(train::scheduled_lr(train::LrSchedule::constant, a.lr, 0.0, kWarmupSteps, 0, step));
    slab.zero_grad();
    const Tensor loss = eval::cross_entropy(cls.forward(xt, as_doubles(t)), d.labels);
    loss.backward();
    opt.step();
    running += loss.item(), ++counted;
    if ((step + 1) % a.log_every == 0 || step + 1 == a.steps) {
      r.log_steps.push_back(step + 1);
      r.log_losses.push_back(running / static_cast<double>(counted));
      if (log) {
        char line[128];
        std::snprintf(line, sizeof line, "classifier step %lld/%lld  cross-entropy %.4f  %.1f s",
                      static_cast<long long>(step + 1), static_cast<long long>(a.steps), r.log_losses.back(),
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        log(line);
      }
      running = 0, counted = 0;
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<double> noisy_accuracy(const NoisyMlpClassifier& cls, const std::string& data,
                                   const diffusion::DiffusionSchedule& schedule,
                                   const std::vector<std::int64_t>& timesteps, std::int64_t n, std::uint64_t seed) {
  DDPM_CHECK(n >= 1, "noisy_accuracy: n must be positive, got " << n);
  NoGradGuard no_grad;
  Generator gen(seed);
  const PointDataset d = make_toy2d(data, n, gen);
  const Tensor x0 = Tensor::from_vector(d.points, {n, 2});  // [n, 2]
  const Tensor eps = randn({n, 2}, gen);
  const std::int64_t K = cls.config().num_classes;
  std::vector<double> acc;
  for (const std::int64_t t : timesteps) {
    DDPM_CHECK(t >= 0 && t < schedule.num_timesteps(),
               "noisy_accuracy: timestep " << t << " is outside [0, " << schedule.num_timesteps() << ")");
    const diffusion::Timesteps tt(static_cast<std::size_t>(n), t);
    const std::vector<float> logits =
        cls.forward(diffusion::q_sample(schedule, x0, tt, eps), as_doubles(tt)).to_vector();  // [n, K]
    std::int64_t hits = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const float* row = logits.data() + i * K;
      hits += std::max_element(row, row + K) - row == d.labels[static_cast<std::size_t>(i)];
    }
    acc.push_back(static_cast<double>(hits) / static_cast<double>(n));
  }
  return acc;
}

}  // namespace ddpm::toy
