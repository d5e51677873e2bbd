// RePaint inpainting (models/diffusion/inpaint.h) and its ddpm-sample wiring: the jump
// schedule, ORACLE tests on Gaussian data (see test_sampler.cpp for the oracle denoiser),
// the resampling effect on a correlated toy, the random-number order, input errors, and the
// --inpaint / --mask options of the app.
//
// Oracle for data x_0 ~ N(mu, s^2) per pixel, independent across pixels:
//   eps*(x_t, t) = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar),
// and for a mixture of isotropic Gaussians the responsibility-weighted sum of those.
#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "models/diffusion/inpaint.h"
#include "models/diffusion/respace.h"
#include "models/run/sample_run.h"
#include "support/temp_dir.h"
#include "support/tiny_model.h"
#include "support/tiny_unet.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

// --- the jump schedule -------------------------------------------------------------------

TEST(RepaintSchedule, LengthEndpointsAndEveryStateVisited) {
  for (auto [K, L, r] : std::vector<std::array<std::int64_t, 3>>{{250, 10, 10}, {50, 5, 3}, {23, 4, 2}, {7, 10, 5}}) {
    const std::vector<TimeMove> moves = repaint_schedule(K, L, r);
    const std::int64_t jump_states = std::max<std::int64_t>(0, K / L - 1);
    ASSERT_EQ(static_cast<std::int64_t>(moves.size()), K + 2 * (r - 1) * L * jump_states) << K << " " << L << " " << r;
    EXPECT_EQ(repaint_network_calls(moves), K + (r - 1) * L * jump_states);
    EXPECT_EQ(moves.front().from, K);
    EXPECT_EQ(moves.back(), (TimeMove{1, 0}));
    std::set<std::int64_t> seen{K};
    for (std::size_t j = 0; j < moves.size(); ++j) {
      EXPECT_EQ(std::abs(moves[j].to - moves[j].from), 1);
      EXPECT_GE(moves[j].to, 0);
      EXPECT_LE(moves[j].to, K);  // never above x_T
      if (j > 0) {
        EXPECT_EQ(moves[j].from, moves[j - 1].to);
      }
      seen.insert(moves[j].to);
    }
    EXPECT_EQ(static_cast<std::int64_t>(seen.size()), K + 1);  // every state 0 .. K
  }
}

TEST(RepaintSchedule, NoJumpsIsPlainDescendingOrder) {
  for (std::int64_t L : {1, 3, 10}) {
    const std::vector<TimeMove> moves = repaint_schedule(12, L, 1);
    ASSERT_EQ(moves.size(), 12u);
    for (std::int64_t j = 0; j < 12; ++j) EXPECT_EQ(moves[static_cast<std::size_t>(j)], (TimeMove{12 - j, 11 - j}));
  }
}

TEST(RepaintSchedule, SmallCaseSpelledOut) {
  // K = 6, jump length 2, 2 passes: jump states 2 and 4.
  auto moves = repaint_schedule(6, 2, 2);
  std::vector<std::int64_t> states{6};
  for (const TimeMove& m : moves) states.push_back(m.to);
  EXPECT_EQ(states, (std::vector<std::int64_t>{6, 5, 4, 5, 6, 5, 4, 3, 2, 3, 4, 3, 2, 1, 0}));
  // Jump length 1 is the paper's Algorithm 1: resample every state but 0 and K.
  states = {3};
  for (const TimeMove& m : repaint_schedule(3, 1, 3)) states.push_back(m.to);
  EXPECT_EQ(states, (std::vector<std::int64_t>{3, 2, 3, 2, 3, 2, 1, 2, 1, 2, 1, 0}));
}

TEST(RepaintSchedule, RejectsBadArguments) {
  EXPECT_THROW(repaint_schedule(0, 10, 10), ValueError);
  EXPECT_THROW(repaint_schedule(10, 0, 10), ValueError);
  EXPECT_THROW(repaint_schedule(10, 10, 0), ValueError);
}

// --- oracle tests --------------------------------------------------------------------------

// Oracle eps for data whose every row of D values is a mixture (equal weights) of isotropic
// Gaussians N(center_k, s^2 I_D); one component = independent pixels N(center, s^2).
DenoiseFn mixture_oracle(const DiffusionSchedule& s, std::vector<std::vector<double>> centers, double sd) {
  return [&s, centers, sd](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
    const std::vector<double> xv = x.to_double_vector();
    const std::size_t n = t.size(), D = xv.size() / n;
    std::vector<double> eps(xv.size(), 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      const double ab = s.alphas_cumprod[static_cast<std::size_t>(t[i])];
      const double var = ab * sd * sd + 1 - ab;
      std::vector<double> logw(centers.size());
      for (std::size_t k = 0; k < centers.size(); ++k) {
        double q = 0;
        for (std::size_t d = 0; d < D; ++d) q += std::pow(xv[i * D + d] - std::sqrt(ab) * centers[k][d], 2);
        logw[k] = -q / (2 * var);
      }
      const double mx = *std::max_element(logw.begin(), logw.end());
      double wsum = 0;
      for (std::size_t k = 0; k < centers.size(); ++k) {
        const double w = std::exp(logw[k] - mx);
        wsum += w;
        for (std::size_t d = 0; d < D; ++d)
          eps[i * D + d] += w * std::sqrt(1 - ab) * (xv[i * D + d] - std::sqrt(ab) * centers[k][d]) / var;
      }
      for (std::size_t d = 0; d < D; ++d) eps[i * D + d] /= wsum;
    }
    return Tensor::from_vector(eps, x.shape(), x.dtype());
  };
}

// The exact mean and variance of a GENERATED pixel (data N(mu, sd^2), independent pixels, no
// clipping, fixed-small variance) after the moves: every reverse step is affine in x plus
// Gaussian noise, x' = A x + B + sigma z, and every forward step x' = sqrt(1 - b) x + sqrt(b) z:
//   x_0^ = c0 x + mu (1 - c0 sqrt(a)), c0 = sqrt(a) sd^2 / (a sd^2 + 1 - a)
//   A = coef1 c0 + coef2, B = coef1 mu (1 - c0 sqrt(a)), sigma^2 = beta~ (0 at index 0).
std::pair<double, double> exact_generated_moments(const DiffusionSchedule& s, const std::vector<TimeMove>& moves,
                                                  double mu, double sd) {
  double m = 0, v = 1;  // x_K ~ N(0, 1)
  for (const TimeMove& mv : moves) {
    if (!mv.reverse()) {
      const double b = s.betas[static_cast<std::size_t>(mv.from)];
      m *= std::sqrt(1 - b);
      v = (1 - b) * v + b;
      continue;
    }
    const std::size_t i = static_cast<std::size_t>(mv.from - 1);
    const double a = s.alphas_cumprod[i];
    const double c0 = std::sqrt(a) * sd * sd / (a * sd * sd + 1 - a);
    const double A = s.posterior_mean_coef1[i] * c0 + s.posterior_mean_coef2[i];
    const double B = s.posterior_mean_coef1[i] * mu * (1 - c0 * std::sqrt(a));
    m = A * m + B;
    v = A * A * v + (i == 0 ? 0.0 : s.posterior_variance[i]);
  }
  return {m, v};
}

TEST(InpaintOracle, KnownPixelsAreTheImageAndGeneratedOnesFollowTheData) {
  // 4 independent pixels per sample, N(mu_d, 0.3^2); pixels 0 and 2 known, 1 and 3 generated.
  const std::vector<double> mu{0.3, -0.2, 0.1, 0.5};
  const double sd = 0.3;
  const DiffusionSchedule base(cosine_betas(200));
  const DenoiseFn net = mixture_oracle(base, {mu}, sd);
  const Tensor known = Tensor::from_vector(std::vector<double>{0.65, 0.0, -0.4, 0.0}, {1, 4});
  const Tensor mask = Tensor::from_vector(std::vector<double>{1, 0, 1, 0}, {1, 4});
  SamplerConfig cfg;
  cfg.respacing = "50";
  cfg.clip_x0 = false;
  const RepaintConfig rp{5, 3};
  const std::int64_t N = 3000;
  Generator gen(7);
  const std::vector<double> v = inpaint(base, net, known, mask, N, {}, cfg, rp, gen).to_double_vector();

  // Known pixels: the last step's known half is x0 itself and the merge copies it, so they
  // are the given values exactly (as f32), whatever the model did. Tolerance 0.
  for (std::int64_t i = 0; i < N; ++i) {
    ASSERT_EQ(v[static_cast<std::size_t>(4 * i)], static_cast<double>(0.65f));
    ASSERT_EQ(v[static_cast<std::size_t>(4 * i + 2)], static_cast<double>(-0.4f));
  }
  // Generated pixels: mean and std against the exact values of this discrete chain (mean
  // within 0.025, about 5 standard errors of 0.3/sqrt(4000); std within 5 %, about 4 of
  // 1/sqrt(2 N)), and those within a little of the data's mu and sd: the exact std is 0.90
  // sd here, the discretization shrink of a 50-step chain whose last step returns a
  // posterior mean (plain 50-step DDPM shrinks about as much: test_sampler.cpp).
  const RespacedSchedule rs = respace(base.betas, "50");
  for (std::size_t d : {1u, 3u}) {
    const auto [exact_mean, ev] = exact_generated_moments(rs.schedule, repaint_schedule(50, 5, 3), mu[d], sd);
    double m = 0, q = 0;
    for (std::int64_t i = 0; i < N; ++i) m += v[static_cast<std::size_t>(4 * i) + d];
    m /= N;
    for (std::int64_t i = 0; i < N; ++i) q += std::pow(v[static_cast<std::size_t>(4 * i) + d] - m, 2);
    const double sdev = std::sqrt(q / (N - 1));
    EXPECT_NEAR(m, exact_mean, 0.025) << "pixel " << d;
    EXPECT_NEAR(sdev / std::sqrt(ev), 1.0, 0.05) << "pixel " << d;
    EXPECT_NEAR(exact_mean, mu[d], 0.02) << "pixel " << d;
    EXPECT_NEAR(std::sqrt(ev) / sd, 1.0, 0.12) << "pixel " << d;  // 0.90: see above
    const double ev_plain = exact_generated_moments(rs.schedule, repaint_schedule(50, 5, 1), mu[d], sd).second;
    // Resampling keeps the generated marginal where plain 50-step DDPM puts it (0.900 vs 0.906).
    EXPECT_NEAR(std::sqrt(ev / ev_plain), 1.0, 0.02) << "pixel " << d;
  }
}

// Fraction of samples whose generated values have the sign of the known one, for data
// that is a mixture of N(c 1, s^2 I) and N(-c 1, s^2 I) in D values: one value is known and
// determines the other D - 1. With a large unknown part the model's responsibilities are
// driven by the unknown values, which commit to a component early on noise alone; the
// single known value, only seen through its noised copy, pulls too late. Resampling gives
// the known value more passes to pull (RePaint sec. 4.2's point).
double agreement(std::int64_t jump_n_sample, std::uint64_t seed, std::int64_t D) {
  const DiffusionSchedule base(cosine_betas(100));
  const std::size_t n_values = static_cast<std::size_t>(D);
  const DenoiseFn net =
      mixture_oracle(base, {std::vector<double>(n_values, 0.6), std::vector<double>(n_values, -0.6)}, 0.1);
  std::vector<double> kv(static_cast<std::size_t>(D), 0.0), mv(static_cast<std::size_t>(D), 0.0);
  kv[0] = 0.6;
  mv[0] = 1.0;
  const Tensor known = Tensor::from_vector(kv, {1, D});
  const Tensor mask = Tensor::from_vector(mv, {1, D});
  SamplerConfig cfg;
  cfg.respacing = "20";
  Generator gen(seed);
  const std::int64_t N = 400;
  std::vector<double> v = inpaint(base, net, known, mask, N, {}, cfg, RepaintConfig{2, jump_n_sample}, gen)
                              .to_double_vector();
  std::int64_t agree = 0;
  for (std::int64_t i = 0; i < N; ++i) {
    double m = 0;
    for (std::int64_t d = 1; d < D; ++d) m += v[static_cast<std::size_t>(i * D + d)];
    agree += m > 0 ? 1 : 0;
  }
  return double(agree) / double(N);
}

TEST(InpaintOracle, ResamplingHarmonizesTheGeneratedHalfWithTheKnownHalf) {
  // D = 4 (1 known, 3 generated), 20 steps, jump length 2; the exact answer is agreement 1
  // (the known value 0.6 is 12 sd from the other component). Measured (400 samples, seeds
  // 3 / 4): no resampling 0.68 / 0.73, jump_n_sample 5: 0.89 / 0.90, 10: 0.93 / 0.95. The
  // standard error of each fraction is about 0.02, so the margins below are 5 of them.
  const double plain = agreement(1, 3, 4), resampled = agreement(5, 3, 4);
  EXPECT_LT(plain, 0.8);  // plain replacement really does fail here
  EXPECT_GT(resampled, plain + 0.1);
  EXPECT_GT(resampled, 0.85);
}

TEST(Inpaint, DrawOrderDeterminismAndCallback) {
  const DiffusionSchedule base(cosine_betas(40));
  const DenoiseFn net = mixture_oracle(base, {{0.1, 0.2, 0.3}}, 0.5);
  const Tensor known = Tensor::from_vector(std::vector<double>{0.5, 0.5, 0.5}, {1, 3});
  const Tensor mask = Tensor::from_vector(std::vector<double>{1, 0, 1}, {1, 3});
  SamplerConfig cfg;
  cfg.respacing = "8";
  std::vector<std::int64_t> seen;
  Generator g1(5), g2(5);
  const Tensor a = inpaint(base, net, known, mask, 3, {}, cfg, RepaintConfig{2, 3}, g1, Device::cpu(),
                           [&](const StepInfo& info) {
                             EXPECT_EQ(info.num_steps, 8);
                             seen.push_back(info.index);
                           });
  const Tensor b = inpaint(base, net, known, mask, 3, {}, cfg, RepaintConfig{2, 3}, g2);
  EXPECT_EQ(a.to_double_vector(), b.to_double_vector());
  EXPECT_EQ(seen, (std::vector<std::int64_t>{7, 6, 5, 4, 3, 2, 1, 0}));  // each state's last visit
  // x_T; then per reverse move two draws but none at index 0; per forward move one draw.
  // 9 numbers are rounded up to 12 per draw.
  const auto moves = repaint_schedule(8, 2, 3);
  const std::int64_t reverse = repaint_network_calls(moves), forward = std::int64_t(moves.size()) - reverse;
  EXPECT_EQ(g1.offset(), static_cast<std::uint64_t>(12 * (1 + 2 * (reverse - 1) + forward)));
}

TEST(Inpaint, RejectsBadInputs) {
  const DiffusionSchedule base(cosine_betas(40));
  const DenoiseFn net = mixture_oracle(base, {{0.0, 0.0}}, 0.5);
  const Tensor known = Tensor::zeros({1, 2}, DType::f64);
  const Tensor mask = Tensor::from_vector(std::vector<double>{1, 0}, {1, 2});
  SamplerConfig cfg;
  cfg.respacing = "4";
  Generator gen(0);
  auto message = [&](const Tensor& k, const Tensor& m, const SamplerConfig& c, std::int64_t n = 2) {
    return testing::value_error_message([&] { inpaint(base, net, k, m, n, {}, c, RepaintConfig{}, gen); });
  };
  EXPECT_NE(message(Tensor::zeros({3, 2}, DType::f64), mask, cfg).find("known image is [3, 2]"), std::string::npos)
      << message(Tensor::zeros({3, 2}, DType::f64), mask, cfg);
  EXPECT_NE(message(known, Tensor::zeros({1, 3}, DType::f64), cfg).find("does not fit"), std::string::npos);
  EXPECT_NE(message(known, Tensor::full({1, 2}, 0.5, DType::f64), cfg).find("mask values"), std::string::npos);
  EXPECT_NE(message(known, mask, cfg, 0).find("positive"), std::string::npos);
  SamplerConfig ddim = cfg;
  ddim.kind = SamplerConfig::Kind::ddim;
  EXPECT_NE(message(known, mask, ddim).find("DDIM"), std::string::npos);
}

}  // namespace
}  // namespace ddpm::diffusion

// --- ddpm-sample --inpaint -------------------------------------------------------------------
namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

ModelSource tiny_model() { return testing::tiny_model_source(); }

// An 8x8 RGB image (a gradient) and a mask keeping the left half.
struct Inputs {
  testing::TempDir dir{"inpaint"};
  std::string image = dir.path + "/image.png", mask = dir.path + "/mask.png";
  std::vector<std::uint8_t> pixels;
  Inputs() {
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x)
        for (int c = 0; c < 3; ++c) pixels.push_back(static_cast<std::uint8_t>(30 * x + 7 * y + 40 * c));
    write_png(image, pixels.data(), 8, 8, 3);
    std::vector<std::uint8_t> m;
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) m.push_back(x < 4 ? 255 : 0);
    write_png(mask, m.data(), 8, 8, 1);
  }
};

SampleOptions options(const Inputs& in, const std::string& out) {
  SampleOptions o;
  o.checkpoint = "tiny";
  o.num_samples = 3;
  o.batch_size = 2;
  o.sampling_steps = 6;
  o.out = out;
  o.seed = 9;
  o.inpaint_image = in.image;
  o.inpaint_mask = in.mask;
  o.jump_length = 2;
  o.jump_n_sample = 2;
  return o;
}

TEST(SampleRunInpaint, KeepsTheKnownPixelsAndWritesTheInputStrip) {
  Inputs in;
  ModelSource m = tiny_model();
  SampleOptions o = options(in, in.dir.path + "/out");
  o.show_steps = true;
  std::ostringstream log;
  SampleResult r = run_sample(o, m, &log);
  EXPECT_NE(log.str().find("32 of 64 pixels known"), std::string::npos) << log.str();
  ASSERT_EQ(r.pixels.size(), 3u * 8 * 8 * 3);
  bool generated_differs = false;
  for (int i = 0; i < 3; ++i)
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x)
        for (int c = 0; c < 3; ++c) {
          const std::size_t p = static_cast<std::size_t>((y * 8 + x) * 3 + c);
          const std::uint8_t got = r.pixels[static_cast<std::size_t>(i) * 192 + p];
          if (x < 4) {
            ASSERT_EQ(got, in.pixels[p]) << i << " " << y << " " << x << " " << c;  // exact after the uint8 round trip
          } else {
            generated_differs = generated_differs || got != in.pixels[p];
          }
        }
  EXPECT_TRUE(generated_differs);
  Image strip = read_png(o.out + "/inpaint_input.png");
  EXPECT_EQ(strip.width, 3 * 10 + 2);
  EXPECT_EQ(strip.height, 12);
  EXPECT_TRUE(fs::exists(o.out + "/steps.png"));
  const nlohmann::json info = nlohmann::json::parse(read_file(o.out + "/sample_info.json"));
  EXPECT_EQ(info["inpaint"]["known_pixels"], 32);
  EXPECT_EQ(info["inpaint"]["jump_n_sample"], 2);
  EXPECT_EQ(info["inpaint"]["network_calls_per_batch"],
            diffusion::repaint_network_calls(diffusion::repaint_schedule(6, 2, 2)));
  EXPECT_NE(std::find(r.files.begin(), r.files.end(), "inpaint_input.png"), r.files.end());
  // The same seed gives the same inpainting.
  o.out = in.dir.path + "/again";
  EXPECT_EQ(run_sample(o, m).pixels, r.pixels);
}

TEST(SampleRunInpaint, UsageErrors) {
  Inputs in;
  ModelSource m = tiny_model();
  auto message = [&](const SampleOptions& o) { return testing::value_error_message([&] { run_sample(o, m); }); };
  const SampleOptions o = options(in, in.dir.path + "/out");
  auto with_pngs = [&](int h, int w, int c, bool mask, std::uint8_t value) {
    SampleOptions b = o;
    const std::string path = in.dir.path + (mask ? "/m.png" : "/i.png");
    write_png(path, std::vector<std::uint8_t>(static_cast<std::size_t>(h * w * c), value).data(), h, w, c);
    (mask ? b.inpaint_mask : b.inpaint_image) = path;
    return b;
  };
  std::string msg = message(with_pngs(6, 6, 3, false, 100));
  EXPECT_NE(msg.find("is 6x6 with 3 channel(s); the model makes 8x8 images with 3"), std::string::npos) << msg;
  msg = message(with_pngs(8, 8, 1, false, 100));
  EXPECT_NE(msg.find("with 1 channel(s)"), std::string::npos) << msg;
  msg = message(with_pngs(8, 6, 1, true, 255));
  EXPECT_NE(msg.find("--mask"), std::string::npos) << msg;
  EXPECT_NE(msg.find("8x6"), std::string::npos) << msg;
  msg = message(with_pngs(8, 8, 3, true, 255));
  EXPECT_NE(msg.find("nothing to generate"), std::string::npos) << msg;
  msg = message(with_pngs(8, 8, 1, true, 0));
  EXPECT_NE(msg.find("nothing to condition on"), std::string::npos) << msg;
  SampleOptions b = o;
  b.inpaint_mask = "";
  EXPECT_NE(message(b).find("needs --mask"), std::string::npos);
  b = o;
  b.inpaint_image = "";
  EXPECT_NE(message(b).find("needs --inpaint"), std::string::npos);
  b = o;
  b.sampler = "ddim";
  b.sampling_steps = 4;
  EXPECT_NE(message(b).find("--sampler ddpm"), std::string::npos);
  b = o;
  b.jump_n_sample = 0;
  EXPECT_NE(message(b).find("--jump-n-sample"), std::string::npos);
  b = o;
  b.inpaint_image = b.inpaint_mask = "";
  b.jump_length = 3;
  EXPECT_NE(message(b).find("apply to --inpaint only"), std::string::npos);
  b = o;
  b.inpaint_image = in.dir.path + "/missing.png";
  EXPECT_THROW(run_sample(b, m), IoError);
  EXPECT_FALSE(fs::exists(o.out));  // nothing written on failure
}

TEST(SampleRunInpaint, FlagParsing) {
  SampleOptions o;
  CLI::App app("ddpm-sample");
  add_sample_flags(app, o);
  std::vector<std::string> args{"ddpm-sample", "--checkpoint",  "run", "--out",           "dir", "--inpaint",
                                "face.png",    "--mask",        "m.png", "--jump-length", "5",   "--jump-n-sample",
                                "4"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(o.inpaint_image, "face.png");
  EXPECT_EQ(o.inpaint_mask, "m.png");
  EXPECT_EQ(o.jump_length, 5);
  EXPECT_EQ(o.jump_n_sample, 4);
  SampleOptions d;
  CLI::App app2("ddpm-sample");
  add_sample_flags(app2, d);
  std::vector<std::string> a2{"x", "--checkpoint", "c", "--out", "d", "--jump-length", "ten"};
  std::vector<char*> v2;
  for (auto& s : a2) v2.push_back(s.data());
  EXPECT_THROW(app2.parse(static_cast<int>(v2.size()), v2.data()), CLI::ParseError);
  const SampleOptions defaults;  // the paper's settings
  EXPECT_EQ(defaults.jump_length, 10);
  EXPECT_EQ(defaults.jump_n_sample, 10);
}

}  // namespace
}  // namespace ddpm::run
