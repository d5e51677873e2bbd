// models/eval/analytic_gamma_eval.cpp: ddpm-eval analytic-gamma (see analytic_gamma_eval.h).
#include "models/eval/analytic_gamma_eval.h"

#include <chrono>
#include <iomanip>

#include "engine/error.h"
#include "models/diffusion/respace.h"
#include "models/eval/classifier.h"
#include "models/eval/eval_run.h"
#include "models/run/latent_run.h"
#include "models/run/super_res_run.h"

namespace ddpm::eval {

diffusion::AnalyticGamma run_analytic_gamma(const AnalyticGammaArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.checkpoint.empty(), "analytic-gamma needs --checkpoint RUN|CHECKPOINT_DIR");
  DDPM_CHECK(!a.out.empty(), "analytic-gamma needs --out FILE.json");
  DDPM_CHECK(a.num_images >= 1, "analytic-gamma: --num-images must be positive, got " << a.num_images);
  DDPM_CHECK(a.batch_size >= 1, "analytic-gamma: --batch-size must be positive, got " << a.batch_size);
  check_report_file(a.out, "--out", a.overwrite, "analytic-gamma");
  run::refuse_latent_model(a.checkpoint, "ddpm-eval analytic-gamma");
  EvalModel m = load_eval_model(a.checkpoint, a.ema, a.device, "analytic-gamma");
  run::refuse_super_res_model(m.net->config(), a.checkpoint, "ddpm-eval analytic-gamma");
  DDPM_CHECK(!m.text, "analytic-gamma: " << a.checkpoint
                                         << " is text-conditioned; the Gamma estimate is implemented for "
                                            "unconditional and class-conditional runs only");
  DDPM_CHECK(!m.options.learned_sigma,
             "analytic-gamma: " << a.checkpoint
                                << " learned its variance (learn_sigma); Analytic-DPM gives a variance to models "
                                   "trained without one, and this one's is already fitted to the bound");
  const std::int64_t T = m.schedule->num_timesteps();
  diffusion::Timesteps timesteps;
  if (a.timesteps.empty()) {
    for (std::int64_t t = 0; t < T; ++t) timesteps.push_back(t);
  } else {
    try {
      timesteps = diffusion::space_timesteps(T, a.timesteps);
    } catch (const ValueError& e) {
      DDPM_THROW(ValueError, "analytic-gamma: --timesteps " << a.timesteps << " does not fit the model's " << T
                                                            << " steps: " << strip_source_locations(e.what()));
    }
  }
  const Dataset data = load_eval_images(a.data, a.split, a.data_dir, m.net->config().image_size);
  DDPM_CHECK(a.num_images <= data.n, "analytic-gamma: --num-images " << a.num_images << " is more than the "
                                                                     << data.n << " images of " << data.name);
  const int classes = m.options.num_classes;
  DDPM_CHECK(classes == 0 || data.has_labels(),
             "analytic-gamma: the model is class-conditional but " << data.name << " has no labels");
  const Tensor x0 = image_batch(data, 0, a.num_images, a.device);  // [M, H, W, C] in [-1, 1]
  std::vector<std::int64_t> labels;
  if (classes > 0) labels.assign(data.labels.begin(), data.labels.begin() + a.num_images);

  const unet::UNet& net = *m.net;
  diffusion::GammaNetwork network;
  network.net = [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };
  network.mean_type = m.options.mean_type;
  network.learned_sigma = m.options.learned_sigma;
  out << "model: " << m.description << "\n"
      << "data: " << data.name << ", first " << a.num_images << " images; " << timesteps.size()
      << " timesteps, " << timesteps.size() * ((a.num_images + a.batch_size - 1) / a.batch_size)
      << " network calls" << std::endl;
  const auto t0 = std::chrono::steady_clock::now();
  Generator gen(a.seed);
  std::size_t done = 0;
  const std::size_t every = std::max<std::size_t>(1, timesteps.size() / 10);
  diffusion::AnalyticGamma g = diffusion::estimate_gamma(
      *m.schedule, network, x0, labels, timesteps, a.batch_size, gen, [&](const std::string& line) {
        if (++done % every == 0 || done == timesteps.size()) out << "  " << line << std::endl;
      });
  g.model = m.description;
  g.noise_schedule = diffusion::noise_schedule_name(m.noise_schedule);
  g.data = data.name;
  g.seed = a.seed;
  diffusion::write_analytic_gamma(g, a.out);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out << std::fixed << std::setprecision(1) << "wrote " << a.out << ": Gamma at " << g.timesteps.size()
      << " timesteps from " << g.num_images << " images in " << seconds << " s\n";
  return g;
}

}  // namespace ddpm::eval
