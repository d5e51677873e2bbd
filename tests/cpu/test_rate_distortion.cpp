// DDPM's rate-distortion curve (models/eval/rate_distortion.h), checked independently:
//   - an ORACLE model that returns q(x_{t-1} | x_t, x_0) itself and x0_hat = x_0: every KL
//     term is 0, the first row is the prior KL in closed form, the last the decoder's
//     expected value in closed form (erf), the distortion 0; this pins the row <-> term
//     index convention against formulas written here, not the code's;
//   - a model whose eps is 0 (x0_hat = x_t / sqrt(abar)): the distortion at row t is
//     127.5 sqrt((1 - abar) / abar) at the paper's t (our 0-based step t - 1) in expectation,
//     which pins the distortion's index;
//   - on a tiny UNet: the last cumulative rate is calc_bpd_loop's bound with the same draws,
//     the rate never decreases, the dataset pass equals evaluate_bpd's bound;
//   - the stride, the CSV and the summary rate; ddpm-eval bpd --rate-distortion on a tiny run
//     folder (files published, bound unchanged, refusals), and its flags.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "apps/common/cli.h"
#include "engine/error.h"
#include "engine/io/png.h"
#include "engine/io/safetensors.h"
#include "engine/ops/elementwise.h"
#include "models/data/toy.h"
#include "models/eval/classifier.h"
#include "models/eval/eval_flags.h"
#include "models/eval/eval_run.h"
#include "models/eval/rate_distortion.h"
#include "models/run/loss_plot.h"
#include "models/unet/model_io.h"
#include "support/temp_dir.h"
#include "support/tiny_unet.h"

namespace ddpm::eval {
namespace {

namespace fs = std::filesystem;
using diffusion::DiffusionSchedule;
using diffusion::Gaussian;
using diffusion::ModelStep;
using diffusion::ModelStepFn;
using diffusion::Timesteps;

constexpr double kLn2 = 0.69314718055994530942;

// Pixels k / 127.5 - 1 that include both ends (the decoder's open-ended bins).
Tensor pixel_batch(std::int64_t n, std::int64_t hw, DType dtype) {
  std::vector<double> v;
  for (std::int64_t i = 0; i < n * hw * hw; ++i) v.push_back(((i * 53) % 256) / 127.5 - 1.0);
  v[0] = -1.0;
  v[1] = 1.0;
  return Tensor::from_vector(v, {n, hw, hw, 1}, dtype, Device::cpu());
}

double standard_normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

TEST(RateDistortion, OracleModelPaysOnlyThePriorAndTheDecoder) {
  const DiffusionSchedule s(diffusion::linear_betas(40));
  const std::int64_t T = 40;
  const Tensor x0 = pixel_batch(3, 4, DType::f64);
  const ModelStepFn oracle = [&](const Tensor& xt, const Timesteps& t) {
    return ModelStep{diffusion::q_posterior_mean_variance(s, x0, xt, t), x0};
  };
  Generator gen(4);
  const RateDistortionCurve c = finish_rate_distortion(rate_distortion_batch(s, oracle, x0, gen));
  ASSERT_EQ(c.points.size(), static_cast<std::size_t>(T + 1));

  // Closed forms over the pixel values, averaged like bits/dim (per image, then over images:
  // here every image's mean is taken together, the same thing for equal image sizes).
  const std::vector<double> x = x0.to_double_vector();
  const double ab = s.alphas_cumprod[T - 1];
  // The decoder at t = 0: mean x_0 exactly (posterior coefficients 1 and 0), log variance the
  // clipped posterior log variance (beta~_1 stands in for beta~_0 = 0).
  const double sigma = std::exp(0.5 * s.posterior_log_variance_clipped[0]), h = 1.0 / 255.0;
  double prior = 0, decoder = 0;
  for (double v : x) {
    prior += 0.5 * (-1.0 - std::log(1.0 - ab) + (1.0 - ab) + ab * v * v);  // KL(N(sqrt(ab) x, 1 - ab) || N(0, 1))
    const double p = std::fabs(v) > 0.999 ? standard_normal_cdf(h / sigma)  // an open-ended edge bin
                                          : standard_normal_cdf(h / sigma) - standard_normal_cdf(-h / sigma);
    decoder += -std::log(p);
  }
  prior /= kLn2 * static_cast<double>(x.size());
  decoder /= kLn2 * static_cast<double>(x.size());
  ASSERT_GT(decoder, 1.0);  // a real test: sigma is comparable to the bin width here

  EXPECT_EQ(c.points.front().t, T);
  EXPECT_NEAR(c.points.front().term_bpd, prior, 1e-9);
  for (std::size_t r = 1; r + 1 < c.points.size(); ++r) {
    EXPECT_EQ(c.points[r].t, T - static_cast<std::int64_t>(r));
    EXPECT_NEAR(c.points[r].term_bpd, 0.0, 1e-9) << "t = " << c.points[r].t;
  }
  EXPECT_EQ(c.points.back().t, 0);
  EXPECT_NEAR(c.points.back().term_bpd, decoder, 1e-3 * decoder);  // the tanh CDF is ~1e-4 off
  for (const RateDistortionPoint& p : c.points) EXPECT_NEAR(p.distortion_rmse, 0.0, 1e-9) << "t = " << p.t;
  EXPECT_NEAR(c.points.back().rate_bpd, prior + decoder, 1e-3 * decoder);
  EXPECT_NEAR(c.bpd, c.points.back().rate_bpd, 1e-9);
}

TEST(RateDistortion, DistortionOfTheNoisyImageFollowsAlphaBarOfTheReceivedStep) {
  // eps_theta = 0: x0_hat = x_t / sqrt(abar), so x0_hat - x_0 = sqrt((1 - abar) / abar) noise
  // and E[D(t)^2] = 127.5^2 (1 - abar_t) / abar_t, abar of the paper's t = our abar[t - 1].
  const DiffusionSchedule s(diffusion::linear_betas(40));
  const Tensor x0 = pixel_batch(4, 16, DType::f64);  // 1024 values: D within a few percent
  const ModelStepFn blind = [&](const Tensor& xt, const Timesteps& t) {
    const double ab = s.alphas_cumprod[static_cast<std::size_t>(t[0])];
    return ModelStep{diffusion::q_posterior_mean_variance(s, x0, xt, t), scale(xt, 1.0 / std::sqrt(ab))};
  };
  Generator gen(8);
  const RateDistortionCurve c = finish_rate_distortion(rate_distortion_batch(s, blind, x0, gen));
  for (const RateDistortionPoint& p : c.points) {
    if (p.t == 0) {
      EXPECT_EQ(p.distortion_rmse, 0.0);  // x_0 itself has arrived
      continue;
    }
    const double ab = s.alphas_cumprod[static_cast<std::size_t>(p.t - 1)];
    const double expected = 127.5 * std::sqrt((1 - ab) / ab);
    EXPECT_NEAR(p.distortion_rmse, expected, 0.1 * expected) << "t = " << p.t;
  }
}

// A tiny random UNet as an eps model with the fixed-small variance.
struct TinyNet {
  Generator init{11};
  unet::UNet net{testing::tiny_unet_config(8, 1), init, Device::cpu()};
  diffusion::DenoiseFn fn() const {
    return [this](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels) {
      return net.forward(x, t, labels, nn::Context{});
    };
  }
};

TEST(RateDistortion, LastRateIsTheBoundOfTheSameDrawsAndRateNeverFalls) {
  const DiffusionSchedule s(diffusion::cosine_betas(20));
  TinyNet tiny;
  BpdEvalOptions o;
  const Tensor x0 = pixel_batch(2, 8, DType::f32);
  Generator g1(5), g2(5);
  const RateDistortionCurve c =
      finish_rate_distortion(rate_distortion_batch(s, model_step(s, tiny.fn(), o, {}), x0, g1));
  const diffusion::BpdResult b = diffusion::calc_bpd_loop(s, model_gaussian(s, tiny.fn(), o, {}), x0, g2);
  const double bound = (b.total_bpd[0] + b.total_bpd[1]) / 2;
  EXPECT_NEAR(c.points.back().rate_bpd, bound, 1e-9 * bound);
  EXPECT_NEAR(c.bpd, bound, 1e-9 * bound);
  EXPECT_NEAR(c.points.front().term_bpd, (b.prior_bpd[0] + b.prior_bpd[1]) / 2, 1e-12);
  EXPECT_NEAR(c.points.back().term_bpd, (b.terms_bpd[0][0] + b.terms_bpd[0][1]) / 2, 1e-12);
  for (std::size_t r = 1; r < c.points.size(); ++r) {
    EXPECT_GE(c.points[r].rate_bpd, c.points[r - 1].rate_bpd) << "t = " << c.points[r].t;
    EXPECT_TRUE(std::isfinite(c.points[r].distortion_rmse));
  }
  // The clipped estimate is an image in [-1, 1]: no pixel is off by more than 255.
  for (const RateDistortionPoint& p : c.points) EXPECT_LE(p.distortion_rmse, 255.0);
}

TEST(RateDistortion, DatasetPassMatchesTheBitsPerDimEvaluation) {
  const DiffusionSchedule s(diffusion::cosine_betas(12));
  const Dataset ds = make_toy_shapes(5, 3);  // 16x16 grey
  unet::UNetConfig cfg = testing::tiny_unet_config(16, 1);
  Generator init(2);
  unet::UNet net(cfg, init, Device::cpu());
  const diffusion::DenoiseFn fn = [&net](const Tensor& x, const std::vector<double>& t,
                                         const std::vector<std::int64_t>& labels) {
    return net.forward(x, t, labels, nn::Context{});
  };
  BpdEvalOptions o;
  o.batch_size = 2;  // three batches, the last of one image
  o.seed = 21;
  const RateDistortionCurve c = evaluate_rate_distortion(s, fn, ds, o);
  const BpdEvalReport r = evaluate_bpd(s, fn, ds, o);
  EXPECT_EQ(c.n, 5);
  EXPECT_EQ(c.timesteps, 12);
  EXPECT_NEAR(c.bpd, r.bpd, 1e-9 * r.bpd);
  EXPECT_NEAR(c.bpd_stderr, r.bpd_stderr, 1e-9);
  EXPECT_NEAR(c.points.front().term_bpd, r.prior_bpd, 1e-9);
  EXPECT_NEAR(c.points.back().term_bpd, r.decoder_bpd, 1e-9);
  EXPECT_NEAR(c.points.back().rate_bpd, r.bpd, 1e-9 * r.bpd);
}

RateDistortionCurve made_up_curve(std::int64_t T) {
  RateDistortionCurve c;
  c.timesteps = T;
  c.n = 1;
  double rate = 0;
  for (std::int64_t t = T; t >= 0; --t) {
    rate += 0.1;
    c.points.push_back({t, 0.1, rate, t == 0 ? 0.0 : 2.0 * static_cast<double>(t)});
  }
  return c;
}

TEST(RateDistortion, StrideKeepsTheEndsAndMultiples) {
  const RateDistortionCurve c = made_up_curve(40);
  std::vector<std::int64_t> ts;
  for (const RateDistortionPoint& p : strided_points(c, 7)) ts.push_back(p.t);
  EXPECT_EQ(ts, (std::vector<std::int64_t>{40, 35, 28, 21, 14, 7, 0}));
  EXPECT_EQ(strided_points(c, 10).size(), 5u);  // 40 30 20 10 0: T once
  EXPECT_EQ(strided_points(c, 1).size(), 41u);
  EXPECT_THROW(strided_points(c, 0), ValueError);
  // Distortion 2t falls below 10 first at t = 4 (the 37th row), below 1 only at t = 0.
  EXPECT_NEAR(rate_at_distortion(c, 10.0), 3.7, 1e-12);
  EXPECT_NEAR(rate_at_distortion(c, 1.0), 4.1, 1e-12);
}

TEST(RateDistortion, CsvHasOneLinePerPointThatReadsBack) {
  const std::vector<RateDistortionPoint> pts = strided_points(made_up_curve(6), 3);
  std::istringstream in(rate_distortion_csv(pts));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "t,term_bpd,rate_bpd,distortion_rmse");
  for (const RateDistortionPoint& p : pts) {
    ASSERT_TRUE(std::getline(in, line));
    long long t = 0;
    double term = 0, rate = 0, d = 0;
    ASSERT_EQ(std::sscanf(line.c_str(), "%lld,%lf,%lf,%lf", &t, &term, &rate, &d), 4) << line;
    EXPECT_EQ(t, p.t);
    EXPECT_NEAR(rate, p.rate_bpd, 1e-8);
    EXPECT_NEAR(d, p.distortion_rmse, 1e-8);
  }
  EXPECT_FALSE(std::getline(in, line));
}

TEST(RateDistortion, PlotHasThreePanelsEachWithItsCurve) {
  const std::vector<RateDistortionPoint> pts = strided_points(made_up_curve(30), 1);
  const int h = 200, w = 260;
  const std::vector<std::uint8_t> img = draw_rate_distortion(pts, 30, h, w);
  ASSERT_EQ(img.size(), static_cast<std::size_t>(h) * 3 * w * 3);
  // loss_plot's curve colour (31, 90, 200) appears in every panel.
  for (int k = 0; k < 3; ++k) {
    int curve = 0;
    for (int y = 0; y < h; ++y)
      for (int x = k * w; x < (k + 1) * w; ++x) {
        const std::uint8_t* p = &img[(static_cast<std::size_t>(y) * 3 * w + x) * 3];
        curve += p[0] == 31 && p[1] == 90 && p[2] == 200;
      }
    EXPECT_GT(curve, w / 2) << "panel " << k;
  }
  run::LineChartSpec bad;
  bad.xs = {1, 2};
  bad.ys = {1};
  EXPECT_THROW(run::draw_line_chart(bad, h, w), ValueError);
}

// --- ddpm-eval bpd --rate-distortion ---------------------------------------------------------

// RUN/config.json + RUN/checkpoints/step_1/{model,ema}.safetensors + checkpoints/latest.
fs::path write_tiny_run(const std::string& name, const nlohmann::json& diffusion_settings) {
  const fs::path run = testing::temp_path(name);
  fs::remove_all(run);
  fs::create_directories(run / "checkpoints" / "step_1");
  const unet::UNetConfig cfg = testing::tiny_unet_config(16, 1);
  Generator gen(3);
  unet::UNet net(cfg, gen, Device::cpu());
  nlohmann::json config;
  config["model"] = unet::config_to_json(cfg);
  config["diffusion"] = diffusion_settings;
  std::ofstream(run / "config.json") << config.dump();
  for (const char* f : {"model.safetensors", "ema.safetensors"})
    save_safetensors((run / "checkpoints" / "step_1" / f).string(), unet::export_state_dict(net));
  std::ofstream(run / "checkpoints" / "latest") << "step_1\n";
  return run;
}

TEST(RateDistortionRun, WritesTheCurveBesideAnUnchangedBound) {
  const fs::path run = write_tiny_run("rd_run", {{"diffusion_steps", 20}, {"noise_schedule", "cosine"}});
  const fs::path out = testing::temp_path("rd_out");
  fs::remove_all(out);
  BpdArgs a;
  a.checkpoint = run.string();
  a.data = "toy";
  a.limit = 2;
  a.batch_size = 2;
  a.seed = 7;
  std::ostringstream plain_log;
  const BpdEvalReport plain = run_bpd(a, plain_log);
  a.rate_distortion = out.string();
  a.rd_stride = 5;
  std::ostringstream log;
  const BpdEvalReport r = run_bpd(a, log);
  EXPECT_NEAR(r.bpd, plain.bpd, 1e-9 * plain.bpd) << log.str();
  EXPECT_NEAR(r.prior_bpd, plain.prior_bpd, 1e-9);
  EXPECT_NEAR(r.decoder_bpd, plain.decoder_bpd, 1e-9);
  EXPECT_NEAR(r.terms_bpd, plain.terms_bpd, 1e-6);
  EXPECT_NE(log.str().find("distortion below 5 RMSE from rate"), std::string::npos) << log.str();

  // The CSV: t = 20, 15, 10, 5, 0, the last rate the bound.
  std::ifstream csv(out / "rate_distortion.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "t,term_bpd,rate_bpd,distortion_rmse");
  std::vector<long long> ts;
  double last_rate = 0;
  while (std::getline(csv, line)) {
    long long t = 0;
    double term = 0, d = 0;
    ASSERT_EQ(std::sscanf(line.c_str(), "%lld,%lf,%lf,%lf", &t, &term, &last_rate, &d), 4) << line;
    ts.push_back(t);
  }
  EXPECT_EQ(ts, (std::vector<long long>{20, 15, 10, 5, 0}));
  EXPECT_NEAR(last_rate, r.bpd, 1e-6 * r.bpd);
  const Image png = read_png((out / "rate_distortion.png").string());
  EXPECT_EQ(png.channels, 3);
  EXPECT_EQ(png.width, 3 * 480);

  // A non-empty folder is refused before any work, and replaced with overwrite.
  EXPECT_THROW(run_bpd(a, log), ValueError);
  a.overwrite = true;
  a.rd_stride = 10;
  run_bpd(a, log);
  std::ifstream again(out / "rate_distortion.csv");
  int lines = 0;
  while (std::getline(again, line)) ++lines;
  EXPECT_EQ(lines, 1 + 3);  // header, t = 20, 10, 0
  for (const auto& e : fs::directory_iterator(out.parent_path()))
    EXPECT_EQ(e.path().filename().string().find("rd_out."), std::string::npos) << "left behind: " << e.path();
  fs::remove_all(out);
  fs::remove_all(run);
}

TEST(RateDistortionRun, RefusesAnEdmRun) {
  const fs::path run = write_tiny_run(
      "rd_edm_run", {{"objective", "edm"}, {"sigma_data", 0.5}, {"p_mean", -1.2}, {"p_std", 1.2}});
  const fs::path out = testing::temp_path("rd_edm_out");
  fs::remove_all(out);
  BpdArgs a;
  a.checkpoint = run.string();
  a.data = "toy";
  a.limit = 1;
  a.rate_distortion = out.string();
  std::ostringstream log;
  try {
    run_bpd(a, log);
    ADD_FAILURE() << "an EDM run was evaluated";
  } catch (const ValueError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rate-distortion"), std::string::npos) << what;
    EXPECT_NE(what.find("EDM"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(out));
  fs::remove_all(run);
}

TEST(RateDistortionRun, FlagsBindToTheBpdMode) {
  CLI::App app{"test", "ddpm-eval"};
  cli::CommonFlags common;
  EvalCommand c;
  cli::add_common_flags(app, common);
  add_eval_subcommands(app, c);
  std::vector<std::string> args{"ddpm-eval", "bpd",         "--checkpoint", "RUN",        "--data",
                                "toy",       "--rate-distortion", "rd",    "--rd-stride", "10", "--overwrite"};
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(c.mode(), EvalMode::bpd);
  EXPECT_EQ(c.bpd.rate_distortion, "rd");
  EXPECT_EQ(c.bpd.rd_stride, 10);
  EXPECT_TRUE(c.bpd.overwrite);

  CLI::App app2{"test", "ddpm-eval"};
  cli::CommonFlags common2;
  EvalCommand c2;
  cli::add_common_flags(app2, common2);
  add_eval_subcommands(app2, c2);
  std::vector<std::string> bad{"ddpm-eval", "bpd", "--checkpoint", "RUN", "--rd-stride", "0"};
  std::vector<char*> argv2;
  for (auto& s : bad) argv2.push_back(s.data());
  EXPECT_THROW(app2.parse(static_cast<int>(argv2.size()), argv2.data()), CLI::ParseError);
}

}  // namespace
}  // namespace ddpm::eval
