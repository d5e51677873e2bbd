// Zero terminal SNR through the run layer: the diffusion settings (our config.json and the
// diffusers DDPMScheduler's rescale_betas_zero_snr), ddpm-train's --zero-terminal-snr (the
// eps refusal, the recorded key, resume of runs without it) and sampling a trained v-model
// with every sampler family. The schedule math itself is tests/cpu/test_zero_snr.cpp.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/rng.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/sampler.h"
#include "models/run/checkpoint.h"
#include "models/run/model_source.h"
#include "models/run/train_run.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm::run {
namespace {

DiffusionSettings zero_snr_v() {
  DiffusionSettings d;
  d.diffusion_steps = 100;
  d.predict = diffusion::ModelMeanType::v;
  d.zero_terminal_snr = true;
  return d;
}

TEST(ZeroSnrRun, SettingsRoundTripThroughOurConfigAndDiffusers) {
  const DiffusionSettings d = zero_snr_v();
  const nlohmann::json ours = diffusion_to_json(d);
  EXPECT_EQ(ours.at("zero_terminal_snr"), true);
  EXPECT_TRUE(diffusion_from_json(ours, false).zero_terminal_snr);
  // An older config (no key) reads as false, and false writes no key: old configs are unchanged.
  nlohmann::json old = ours;
  old.erase("zero_terminal_snr");
  EXPECT_FALSE(diffusion_from_json(old, false).zero_terminal_snr);
  EXPECT_FALSE(diffusion_to_json(diffusion_from_json(old, false)).contains("zero_terminal_snr"));

  const nlohmann::json sched = diffusion_to_diffusers_scheduler(d);
  EXPECT_EQ(sched.at("rescale_betas_zero_snr"), true);
  EXPECT_EQ(sched.at("timestep_spacing"), "trailing");
  EXPECT_EQ(sched.at("prediction_type"), "v_prediction");
  const DiffusionSettings back = diffusion_from_diffusers_scheduler(sched, false);
  EXPECT_TRUE(back.zero_terminal_snr);
  EXPECT_EQ(back.predict, diffusion::ModelMeanType::v);
  EXPECT_FALSE(diffusion_to_diffusers_scheduler(DiffusionSettings{}).contains("rescale_betas_zero_snr"));

  // The schedule every consumer builds: the rescaled betas exactly.
  EXPECT_EQ(diffusion_betas(d), diffusion::rescale_zero_terminal_snr(diffusion::linear_betas(100)));
  EXPECT_EQ(diffusion_betas(DiffusionSettings{}), diffusion::linear_betas(1000));

  // eps with zero terminal SNR is refused on every way in.
  nlohmann::json eps = ours;
  eps["predict"] = "eps";
  testing::expect_value_error([&] { diffusion_from_json(eps, false); }, "must predict v");
  nlohmann::json eps_sched = sched;
  eps_sched["prediction_type"] = "epsilon";
  testing::expect_value_error([&] { diffusion_from_diffusers_scheduler(eps_sched, false); }, "must predict v");
  nlohmann::json bad = ours;
  bad["zero_terminal_snr"] = "yes";
  testing::expect_value_error([&] { diffusion_from_json(bad, false); }, "true or false");
}

TrainOptions tiny_zero_snr(const std::string& name) {
  TrainOptions o = testing::tiny_run(testing::temp_run(name));
  o.steps = 2;
  o.save_every = 2;
  o.predict = "v";
  o.zero_terminal_snr = true;
  return o;
}

TEST(ZeroSnrRun, TrainRefusesEpsAndTheEdmObjective) {
  TrainOptions o = tiny_zero_snr("zero_snr_refusals");
  o.predict = "eps";
  testing::expect_value_error([&] { train_run(o); }, "--zero-terminal-snr needs --predict v");
  o.predict = "v";
  o.objective = "edm";
  testing::expect_value_error([&] { train_run(o); }, "--objective edm has none");
}

TEST(ZeroSnrRun, TrainsAVModelThatEverySamplerDrawsFiniteImagesFrom) {
  const TrainOptions o = tiny_zero_snr("zero_snr_v");
  train_run(o);
  const nlohmann::json cfg = nlohmann::json::parse(read_file(o.out + "/config.json"));
  EXPECT_EQ(cfg.at("diffusion").at("zero_terminal_snr"), true);

  ModelSource m = open_model(o.out, Device::cpu());
  ASSERT_TRUE(m.diffusion.zero_terminal_snr);
  const diffusion::DiffusionSchedule base(diffusion_betas(m.diffusion));
  ASSERT_EQ(base.alphas_cumprod.back(), 0.0);
  unet::UNet& net = *m.net;
  const diffusion::DenoiseFn fn = [&net](const Tensor& x, const std::vector<double>& t,
                                         const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };
  const std::int64_t H = net.config().image_size, C = net.config().in_channels;
  auto expect_finite = [](const Tensor& x, const char* what) {
    for (double v : x.to_double_vector()) ASSERT_TRUE(std::isfinite(v)) << what;
  };
  diffusion::SamplerConfig sc;
  sc.mean_type = diffusion::ModelMeanType::v;
  for (const auto& [kind, respacing] : {std::pair{diffusion::SamplerConfig::Kind::ddpm, "5"},
                                        std::pair{diffusion::SamplerConfig::Kind::ddim, "ddim5"}}) {
    sc.kind = kind;
    sc.respacing = respacing;
    Generator g(1);
    expect_finite(diffusion::sample(base, fn, {2, H, H, C}, {}, sc, g), respacing);
  }
  sc.kind = diffusion::SamplerConfig::Kind::heun;
  sc.heun_steps = 3;
  for (diffusion::KarrasSolver solver : {diffusion::KarrasSolver::heun, diffusion::KarrasSolver::dpmpp_2m}) {
    Generator g(2);
    expect_finite(diffusion::karras_sample(base, fn, {2, H, H, C}, {}, sc, g, Device::cpu(), {}, solver),
                  diffusion::karras_solver_name(solver));
  }
}

TEST(ZeroSnrRun, RunsWithoutTheFlagKeepTheirConfigAndResumeOnlyWithoutIt) {
  TrainOptions o = testing::tiny_run(testing::temp_run("zero_snr_absent"));
  o.steps = 2;
  o.save_every = 2;
  train_run(o);
  const nlohmann::json cfg = nlohmann::json::parse(read_file(o.out + "/config.json"));
  EXPECT_FALSE(cfg.at("diffusion").contains("zero_terminal_snr"));  // what runs before the flag wrote
  TrainOptions more = o;
  more.steps = 3;
  more.resume = "latest";
  more.predict = "v";
  more.zero_terminal_snr = true;  // a different process than the checkpoint's: refused
  testing::expect_value_error([&] { train_run(more); }, "different configuration");
  more.predict = o.predict;
  more.zero_terminal_snr = false;
  EXPECT_EQ(train_run(more).steps_done, 3);
}

}  // namespace
}  // namespace ddpm::run
