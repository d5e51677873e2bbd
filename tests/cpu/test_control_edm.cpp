// ControlNet on an EDM-objective base (models/run/control_run.h, models/diffusion/edm.h): the
// residuals enter the preconditioned F exactly as they enter a DDPM base's prediction, so at
// initialisation the controlled D(x; sigma) IS the base's at every sigma (c_noise = ln(sigma)/4
// negative or positive), training with the EDM loss resumes bit-identically, and sampling
// through ddpm-sample's EDM path (Heun) reproduces the base at scale 0 and changes with the
// scale once trained.
#include <algorithm>
#include <filesystem>
#include <sstream>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "models/diffusion/edm.h"
#include "models/run/checkpoint.h"
#include "models/run/control_eval.h"
#include "models/run/control_run.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "support/tiny_control.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

const std::string& edm_base() {
  static const std::string dir = testing::train_tiny_base("control_edm_base", [](TrainOptions& o) {
    o.objective = "edm";
    o.class_cond = true;
  });
  return dir;
}

ControlTrainArgs edm_control(const std::string& out) { return testing::tiny_control_args(edm_base(), out); }

TEST(ControlEdm, AtInitialisationTheControlledDenoiserIsTheBasesAtEverySigma) {
  const ModelSource m = open_model(edm_base(), Device::cpu(), /*use_ema=*/true);
  ASSERT_TRUE(m.diffusion.edm.has_value());
  unet::ControlNetConfig cc;
  cc.base = m.net->config();
  cc.conditioning_channels = 1;
  Generator g(5);
  unet::ControlNet cn(cc, g, Device::cpu());
  cn.copy_encoder_from(*m.net);
  const unet::UNet& net = *m.net;
  const Tensor hint = randn({2, 16, 16, 1}, g);
  const diffusion::DenoiseFn base_fn = [&](const Tensor& x, const std::vector<double>& t,
                                           const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };
  const diffusion::DenoiseFn control_fn = [&](const Tensor& x, const std::vector<double>& t,
                                              const std::vector<std::int64_t>& y) {
    return unet::controlled_forward(net, cn, x, t, y, hint, nn::Context{}, 1.0);
  };
  {  // the trained base's F is not zero, so the equality below covers it
    const std::vector<double> f = base_fn(randn({2, 16, 16, 1}, g), {-0.5, 0.5}, {0, 1}).to_double_vector();
    EXPECT_TRUE(std::any_of(f.begin(), f.end(), [](double v) { return v != 0; }));
  }
  diffusion::SamplerConfig sc;
  sc.clip_x0 = false;
  const std::vector<std::int64_t> labels = {0, 3};
  for (double sigma : {0.01, 0.5, 1.0, 30.0}) {  // c_noise from -1.15 to +0.85
    const Tensor x = randn({2, 16, 16, 1}, g);
    const Tensor a = diffusion::edm_denoise(base_fn, *m.diffusion.edm, sc, x, sigma, labels);
    const Tensor b = diffusion::edm_denoise(control_fn, *m.diffusion.edm, sc, x, sigma, labels);
    EXPECT_EQ(a.to_vector(), b.to_vector()) << "sigma " << sigma;
  }
  // The EDM training loss of the pair equals the base's too (same draws).
  const Tensor y0 = randn({2, 16, 16, 1}, g), n = randn({2, 16, 16, 1}, g);
  EXPECT_EQ(diffusion::edm_training_loss(base_fn, *m.diffusion.edm, y0, {0.3, 4.0}, n, labels).to_vector(),
            diffusion::edm_training_loss(control_fn, *m.diffusion.edm, y0, {0.3, 4.0}, n, labels).to_vector());
}

TEST(ControlEdm, TrainingResumesBitIdenticallyAndSamplingFollowsTheScale) {
  const std::string full = testing::temp_run("control_edm_full"), split = testing::temp_run("control_edm_split");
  testing::expect_control_resume_bit_identical(edm_control, full, split);
  const nlohmann::json cfg = read_run_config(full);
  EXPECT_EQ(cfg.at("base").at("diffusion").at("objective"), "edm");
  EXPECT_EQ(cfg.at("train").at("schedule_sampler"), "uniform");  // sigma is drawn, not t
  ControlTrainArgs importance = edm_control(testing::temp_run("control_edm_lsm"));
  importance.schedule_sampler = "loss-second-moment";
  EXPECT_THROW(train_control_run(importance), ValueError);

  // ddpm-sample's EDM path (the sampler defaults to heun for an EDM model).
  SampleOptions s;
  s.checkpoint = edm_base();
  s.sampler_defaulted = true;
  s.sampling_steps = 4;
  s.num_samples = 3;
  s.batch_size = 2;
  s.seed = 9;
  s.class_label = 1;  // one class for both: --control-from toy would otherwise give the images' labels
  s.out = testing::temp_run("control_edm_plain");
  const SampleResult plain = run_sample(s);
  SampleOptions c = s;
  c.control = full;
  c.control_from = "toy";
  c.num_samples_given = true;
  c.control_scale = 0.0;
  c.out = testing::temp_run("control_edm_zero");
  EXPECT_EQ(run_sample(c).pixels, plain.pixels);
  c.control_scale = 1.0;
  c.out = testing::temp_run("control_edm_on");
  const SampleResult on = run_sample(c);
  EXPECT_NE(on.pixels, plain.pixels);
  c.control_scale = 3.0;
  c.out = testing::temp_run("control_edm_three");
  EXPECT_NE(run_sample(c).pixels, on.pixels);
  c.sampler = "ddim";  // no discrete process: refused as for the base alone
  c.sampler_defaulted = false;
  c.out = testing::temp_run("control_edm_ddim");
  EXPECT_THROW(run_sample(c), ValueError);

  // ddpm-control eval picks heun for the EDM base; its baseline is the base alone.
  ControlEvalArgs e;
  e.control = full;
  e.limit = 2;
  e.sampler = "";
  e.sampling_steps = 4;
  std::ostringstream text;
  const ControlEvalReport rep = run_control_eval(e, text);
  EXPECT_EQ(rep.images, 2);
  EXPECT_TRUE(std::isfinite(rep.controlled.mad));
  EXPECT_EQ(rep.json.at("sampler"), "heun");
}

}  // namespace
}  // namespace ddpm::run
