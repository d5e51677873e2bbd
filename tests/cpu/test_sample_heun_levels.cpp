// ddpm-sample's Heun noise-level flags (models/run/sample_run.h: --sigma-max, --sigma-min,
// --rho) and churn flags (--s-churn, --s-tmin, --s-tmax, --s-noise): parsed into
// SampleOptions, carried into the SamplerConfig, refused with another sampler (also when
// given at their default values) or with values the model's schedule cannot take, seen in the
// levels the sampler walks, and recorded in sample_info.json.
//
// The tiny model (tests/support/tiny_model.h) has T = 40. Its training range is read from
// karras.h vp_sigmas rather than written down, so the tests follow the schedule code.
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "apps/common/cli.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/rng.h"
#include "models/diffusion/karras.h"
#include "models/diffusion/sampler.h"
#include "models/nn/module.h"
#include "models/run/sample_run.h"
#include "support/temp_dir.h"
#include "support/tiny_model.h"
#include "support/value_error.h"

namespace ddpm::run {
namespace {

namespace fs = std::filesystem;

// The training sigmas sigma_t = sqrt((1 - abar_t) / abar_t) of a model's schedule.
std::vector<double> training_sigmas(const ModelSource& m) {
  return diffusion::vp_sigmas(
      diffusion::DiffusionSchedule(diffusion::betas_for(m.diffusion.noise_schedule, m.diffusion.diffusion_steps)));
}

ModelSource cosine_model() {
  ModelSource m = testing::tiny_model_source();
  m.diffusion.noise_schedule = diffusion::NoiseSchedule::cosine;
  return m;
}

// Heun options on the tiny model; --out names a folder that does not exist, so only the
// flags are judged by check_sample_options.
SampleOptions heun_options(const std::string& name) {
  SampleOptions o;
  o.checkpoint = "tiny";
  o.num_samples = 2;
  o.batch_size = 2;
  o.sampler = "heun";
  o.sampling_steps = 3;
  o.seed = 7;
  o.out = testing::temp_path("heun_levels_" + name);
  return o;
}

// The ValueError message of check_sample_options then make_sampler_config (the checks
// without and with the model, as run_sample runs them), or "no error".
std::string message(const SampleOptions& o, const ModelSource& m) {
  return testing::value_error_message([&] {
    check_sample_options(o);
    make_sampler_config(o, m);
  });
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(SampleHeunLevels, FlagsParseAndReachTheSamplerConfig) {
  SampleOptions o;
  CLI::App app("ddpm-sample");
  add_sample_flags(app, o);
  std::vector<std::string> args{"ddpm-sample", "--checkpoint", "c",   "--out",       "d",      "--sampler", "heun",
                                "--sigma-max", "80",           "--sigma-min", "0.5", "--rho", "3"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  EXPECT_DOUBLE_EQ(o.sigma_max, 80.0);
  EXPECT_DOUBLE_EQ(o.sigma_min, 0.5);
  EXPECT_DOUBLE_EQ(o.rho, 3.0);

  // Left out: 0 (the schedule's ends) and EDM's rho = 7, as SamplerConfig's own defaults.
  const SampleOptions defaults;
  const diffusion::SamplerConfig library;
  EXPECT_EQ(defaults.sigma_max, library.sigma_max);
  EXPECT_EQ(defaults.sigma_min, library.sigma_min);
  EXPECT_EQ(defaults.rho, library.rho);

  // The cosine tiny model's range reaches far above 80 (beta clipped at 0.999), like the
  // T = 1000 cosine schedule's 2e4, so EDM's 80 fits.
  const ModelSource m = cosine_model();
  const std::vector<double> train = training_sigmas(m);
  ASSERT_GT(train.back(), 80.0);
  ASSERT_LT(train.front(), 0.5);
  SampleOptions h = heun_options("config");
  h.sigma_max = 80;
  h.sigma_min = 0.5;
  h.rho = 3;
  const diffusion::SamplerConfig sc = make_sampler_config(h, m);
  EXPECT_EQ(sc.sigma_max, 80.0);
  EXPECT_EQ(sc.sigma_min, 0.5);
  EXPECT_EQ(sc.rho, 3.0);
  const diffusion::SamplerConfig plain = make_sampler_config(heun_options("config_plain"), m);
  EXPECT_EQ(plain.sigma_max, 0.0);
  EXPECT_EQ(plain.sigma_min, 0.0);
  EXPECT_EQ(plain.rho, 7.0);
}

TEST(SampleHeunLevels, OtherSamplersRefuseTheFlagsNamingFlagAndSampler) {
  const ModelSource m = testing::tiny_model_source();
  for (const char* sampler : {"ddpm", "ddim"}) {
    SampleOptions o = heun_options("other");
    o.sampler = sampler;
    o.sampling_steps = 0;
    SampleOptions bad = o;
    bad.sigma_max = 10;
    std::string msg = message(bad, m);
    EXPECT_TRUE(contains(msg, "--sigma-max applies to --sampler heun")) << msg;
    EXPECT_TRUE(contains(msg, std::string("got --sampler ") + sampler)) << msg;
    bad = o;
    bad.sigma_min = 0.1;
    msg = message(bad, m);
    EXPECT_TRUE(contains(msg, "--sigma-min applies to --sampler heun")) << msg;
    bad = o;
    bad.rho = 3;
    msg = message(bad, m);
    EXPECT_TRUE(contains(msg, "--rho applies to --sampler heun")) << msg;
    EXPECT_EQ(message(o, m), "no error");  // the defaults are no request
  }
}

TEST(SampleHeunLevels, BadValuesAreClearErrors) {
  const ModelSource m = testing::tiny_model_source();  // linear, T = 40
  const std::vector<double> train = training_sigmas(m);
  const double lo = train.front(), hi = train.back();
  const SampleOptions o = heun_options("bad");
  auto with = [&](double sigma_min, double sigma_max, double rho = 7.0) {
    SampleOptions b = o;
    b.sigma_min = sigma_min;
    b.sigma_max = sigma_max;
    b.rho = rho;
    return message(b, m);
  };
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(contains(with(0, -1), "--sigma-max must be positive")) << with(0, -1);
  EXPECT_TRUE(contains(with(-0.5, 0), "--sigma-min must be positive")) << with(-0.5, 0);
  EXPECT_TRUE(contains(with(0, inf), "--sigma-max must be a finite number")) << with(0, inf);
  EXPECT_TRUE(contains(with(nan, 0), "--sigma-min must be a finite number")) << with(nan, 0);
  EXPECT_TRUE(contains(with(0, 0, 0), "--rho must be positive")) << with(0, 0, 0);
  EXPECT_TRUE(contains(with(0, 0, -2), "--rho must be positive"));
  EXPECT_TRUE(contains(with(0, 0, inf), "--rho must be a finite number"));
  // Both given, inverted or equal: judged without the model.
  EXPECT_TRUE(contains(with(2, 1), "--sigma-min 2 must be below --sigma-max 1")) << with(2, 1);
  EXPECT_TRUE(contains(with(1, 1), "must be below --sigma-max"));

  // Outside the training range: refused (not clamped), naming the flag and the range.
  std::string msg = with(0, hi * 2);
  EXPECT_TRUE(contains(msg, "--sigma-max")) << msg;
  EXPECT_TRUE(contains(msg, "training range")) << msg;
  EXPECT_TRUE(contains(msg, "40-step linear schedule")) << msg;
  msg = with(lo / 2, 0);
  EXPECT_TRUE(contains(msg, "--sigma-min")) << msg;
  EXPECT_TRUE(contains(msg, "training range")) << msg;
  msg = with(0, lo / 2);  // below the whole range
  EXPECT_TRUE(contains(msg, "--sigma-max")) << msg;
  EXPECT_TRUE(contains(msg, "training range")) << msg;
  // Inside the range but not above the other (left-out) end: the order, naming both.
  msg = with(0, lo);
  EXPECT_TRUE(contains(msg, "must be below --sigma-max")) << msg;
  EXPECT_TRUE(contains(msg, "the schedule's smallest sigma")) << msg;
  msg = with(hi, 0);
  EXPECT_TRUE(contains(msg, "must be below --sigma-max")) << msg;
  EXPECT_TRUE(contains(msg, "the schedule's largest sigma")) << msg;
  // The ends themselves are accepted, as are values inside.
  EXPECT_EQ(with(lo, hi), "no error");
  EXPECT_EQ(with(lo * 3, hi / 3, 2.5), "no error");
}

TEST(SampleHeunLevels, UsageErrorsExitWithStatusTwo) {
  // As apps/ddpm_sample.cpp runs: parse, then check_sample_options in the body.
  auto status = [](std::vector<std::string> args) {
    SampleOptions o;
    CLI::App app("ddpm-sample", "ddpm-sample");
    add_sample_flags(app, o);
    args.insert(args.begin(), "ddpm-sample");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    ::testing::internal::CaptureStderr();
    const int rc = cli::run(app, static_cast<int>(argv.size()), argv.data(), [&] {
      note_given_flags(app, o);
      check_sample_options(o);
      return 0;
    });
    return std::make_pair(rc, ::testing::internal::GetCapturedStderr());
  };
  const std::string out = testing::temp_path("heun_levels_cli_unused");
  std::pair<int, std::string> r = status({"--checkpoint", "c", "--out", out, "--sigma-max", "80"});
  EXPECT_EQ(r.first, 2);
  EXPECT_EQ(r.second, "ddpm-sample: error: --sigma-max applies to --sampler heun, euler, dpm++2m, euler-ancestral, "
                      "unipc or dpm++2m-sde only (it sets the Karras noise levels); got --sampler ddpm\n");
  r = status({"--checkpoint", "c", "--out", out, "--sampler", "heun", "--rho", "-1"});
  EXPECT_EQ(r.first, 2);
  EXPECT_TRUE(contains(r.second, "--rho must be positive, got -1")) << r.second;
  r = status({"--checkpoint", "c", "--out", out, "--sampler", "heun", "--sigma-max", "ten"});
  EXPECT_EQ(r.first, 2);  // not a number: CLI11's parse error
  r = status({"--checkpoint", "c", "--out", out, "--sampler", "heun", "--sigma-max", "80", "--sigma-min", "0.5",
              "--rho", "7"});
  EXPECT_EQ(r.first, 0) << r.second;
}

TEST(SampleHeunLevels, ASmallerSigmaMaxMovesTheFirstLevel) {
  // The cosine case that motivated the flag: the schedule's top level is far above EDM's 80.
  const ModelSource m = cosine_model();
  const std::vector<double> train = training_sigmas(m);
  const diffusion::DiffusionSchedule base(diffusion::betas_for(m.diffusion.noise_schedule, 40));
  const unet::UNet& net = *m.net;
  diffusion::DenoiseFn fn = [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };
  // The noise levels sigma_i the sampler visits, in order (StepInfo::sigma), and the
  // (rounded) timestep of the first network call.
  struct Walk {
    std::vector<double> sigmas;
    std::int64_t first_timestep = -1;
  };
  auto walk = [&](const SampleOptions& o) {
    Walk w;
    const diffusion::SamplerConfig sc = make_sampler_config(o, m);
    Generator gen(o.seed);
    diffusion::sample(base, fn, {1, 8, 8, 3}, {}, sc, gen, Device::cpu(), [&](const diffusion::StepInfo& s) {
      if (w.sigmas.empty()) w.first_timestep = s.timestep;
      w.sigmas.push_back(s.sigma);
    });
    return w;
  };
  SampleOptions o = heun_options("walk");
  o.sampling_steps = 4;
  const Walk plain = walk(o);
  ASSERT_EQ(plain.sigmas.size(), 4u);
  EXPECT_EQ(plain.sigmas.front(), train.back());  // 0: the schedule's largest sigma
  EXPECT_EQ(plain.first_timestep, 39);
  o.sigma_max = 80;
  const Walk capped = walk(o);
  ASSERT_EQ(capped.sigmas.size(), 4u);
  EXPECT_EQ(capped.sigmas.front(), 80.0);
  // The network is first called at t(80), between the top two training steps (38 and 39).
  EXPECT_EQ(capped.first_timestep, std::llround(diffusion::timestep_for_sigma(train, 80.0)));
  EXPECT_LT(capped.first_timestep, 39);
  EXPECT_EQ(capped.sigmas.back(), plain.sigmas.back());  // sigma_min unchanged
  EXPECT_EQ(capped.sigmas.back(), train.front());
  // Each level is EDM eq. 5 between the new ends (karras_sigmas).
  const std::vector<double> expected = diffusion::karras_sigmas(4, train.front(), 80.0, 7.0);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(capped.sigmas[i], expected[i]) << i;
  // rho moves the levels in between, not the ends.
  o.rho = 1;
  const Walk even = walk(o);
  EXPECT_EQ(even.sigmas.front(), 80.0);
  EXPECT_GT(even.sigmas[1], capped.sigmas[1]);  // rho = 1: evenly spaced, so the second level stays high
}

TEST(SampleHeunLevels, EndToEndRunRecordsTheLevels) {
  const ModelSource m = cosine_model();
  const std::vector<double> train = training_sigmas(m);
  SampleOptions o = heun_options("run_plain");
  const SampleResult plain = run_sample(o, m);
  o.out = testing::temp_path("heun_levels_run_capped");
  o.sigma_max = 80;
  o.rho = 5;
  const SampleResult capped = run_sample(o, m);
  EXPECT_EQ(capped.pixels.size(), 2u * 8 * 8 * 3);
  EXPECT_NE(capped.pixels, plain.pixels);  // same seed, other levels: other samples

  const nlohmann::json info = nlohmann::json::parse(read_file(o.out + "/sample_info.json"));
  EXPECT_EQ(info["sampler"], "heun");
  const nlohmann::json& heun = info["heun"];
  EXPECT_EQ(heun["sigma_max"].get<double>(), 80.0);
  EXPECT_EQ(heun["sigma_max_from"], "--sigma-max");
  EXPECT_EQ(heun["sigma_min"].get<double>(), train.front());
  EXPECT_EQ(heun["sigma_min_from"], "schedule");
  EXPECT_EQ(heun["rho"].get<double>(), 5.0);
  ASSERT_EQ(heun["training_sigma_range"].size(), 2u);
  EXPECT_EQ(heun["training_sigma_range"][0].get<double>(), train.front());
  EXPECT_EQ(heun["training_sigma_range"][1].get<double>(), train.back());
  EXPECT_EQ(heun["network_evaluations_per_sample"], 5);

  const nlohmann::json before = nlohmann::json::parse(read_file(plain.out_dir + "/sample_info.json"));
  EXPECT_EQ(before["heun"]["sigma_max"].get<double>(), train.back());
  EXPECT_EQ(before["heun"]["sigma_max_from"], "schedule");
  fs::remove_all(plain.out_dir);
  fs::remove_all(o.out);
}

// --- the churn flags (EDM algorithm 2) and flags given at their defaults ------------------

// Exit status and stderr of ddpm-sample's flag handling as apps/ddpm_sample.cpp runs it:
// parse (with the common flags, so --config works), note_given_flags, check_sample_options.
std::pair<int, std::string> usage_status(std::vector<std::string> args) {
  SampleOptions o;
  cli::CommonFlags common;
  CLI::App app("ddpm-sample", "ddpm-sample");
  add_sample_flags(app, o);
  cli::add_common_flags(app, common);
  args.insert(args.begin(), "ddpm-sample");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ::testing::internal::CaptureStderr();
  const int rc = cli::run(app, static_cast<int>(argv.size()), argv.data(), [&] {
    note_given_flags(app, o);
    check_sample_options(o);
    return 0;
  });
  return {rc, ::testing::internal::GetCapturedStderr()};
}

TEST(SampleHeunChurn, FlagsParseAndReachTheSamplerConfig) {
  SampleOptions o;
  CLI::App app("ddpm-sample");
  add_sample_flags(app, o);
  std::vector<std::string> args{"ddpm-sample", "--checkpoint", "c",      "--out",     "d",   "--sampler",
                                "heun",        "--s-churn",    "80",     "--s-tmin",  "0.05", "--s-tmax",
                                "50",          "--s-noise",    "1.003"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(o.s_churn, 80.0);
  EXPECT_EQ(o.s_tmin, 0.05);
  EXPECT_EQ(o.s_tmax, 50.0);
  EXPECT_EQ(o.s_noise, 1.003);
  note_given_flags(app, o);
  EXPECT_EQ(o.heun_flags_given, (std::vector<std::string>{"--s-churn", "--s-tmin", "--s-tmax", "--s-noise"}));

  // Left out: SamplerConfig's own defaults (deterministic; S_tmax = inf, written "inf").
  const SampleOptions defaults;
  const diffusion::SamplerConfig library;
  EXPECT_EQ(defaults.s_churn, library.s_churn);
  EXPECT_EQ(defaults.s_tmin, library.s_tmin);
  EXPECT_EQ(defaults.s_tmax, library.s_tmax);
  EXPECT_TRUE(std::isinf(defaults.s_tmax));
  EXPECT_EQ(defaults.s_noise, library.s_noise);
  const std::string out = testing::temp_path("heun_churn_parse_unused");
  EXPECT_EQ(usage_status({"--checkpoint", "c", "--out", out, "--sampler", "heun", "--s-tmax", "inf"}).first, 0);

  const ModelSource m = testing::tiny_model_source();
  SampleOptions h = heun_options("churn_config");
  h.s_churn = 80;
  h.s_tmin = 0.05;
  h.s_tmax = 50;
  h.s_noise = 1.003;
  const diffusion::SamplerConfig sc = make_sampler_config(h, m);
  EXPECT_EQ(sc.s_churn, 80.0);
  EXPECT_EQ(sc.s_tmin, 0.05);
  EXPECT_EQ(sc.s_tmax, 50.0);
  EXPECT_EQ(sc.s_noise, 1.003);
}

TEST(SampleHeunChurn, OtherSamplersRefuseEveryHeunFlagEvenAtItsDefault) {
  const std::string out = testing::temp_path("heun_churn_cli_unused");
  // Values that differ from the defaults, and the defaults themselves given explicitly
  // (0 = "the schedule's end" for the sigmas: a value check cannot see those; count() can).
  const std::vector<std::pair<std::string, std::string>> flags{
      {"--s-churn", "40"}, {"--s-tmin", "0.05"}, {"--s-tmax", "50"}, {"--s-noise", "1.003"},
      {"--s-churn", "0"},  {"--s-tmin", "0"},    {"--s-tmax", "inf"}, {"--s-noise", "1"},
      {"--sigma-max", "0"}, {"--sigma-min", "0"}, {"--rho", "7"}};
  for (const char* sampler : {"ddpm", "ddim"}) {
    for (const auto& [flag, value] : flags) {
      const auto r = usage_status({"--checkpoint", "c", "--out", out, "--sampler", sampler, flag, value});
      EXPECT_EQ(r.first, 2) << flag << " " << value << " " << sampler;
      EXPECT_TRUE(contains(r.second, "ddpm-sample: error: " + flag + " applies to --sampler heun")) << r.second;
      EXPECT_TRUE(contains(r.second, std::string("got --sampler ") + sampler)) << r.second;
    }
    EXPECT_EQ(usage_status({"--checkpoint", "c", "--out", out, "--sampler", sampler}).first, 0);
  }
  // dpm++2m, euler-ancestral, unipc and dpm++2m-sde take the levels but not the churn.
  for (const char* sampler : {"dpm++2m", "euler-ancestral", "unipc", "dpm++2m-sde"})
    for (const auto& [flag, value] : flags) {
      const auto r = usage_status({"--checkpoint", "c", "--out", out, "--sampler", sampler, flag, value});
      const bool churn_flag = flag.rfind("--s-", 0) == 0;
      EXPECT_EQ(r.first, churn_flag ? 2 : 0) << sampler << " " << flag << " " << value << ": " << r.second;
      if (churn_flag) EXPECT_TRUE(contains(r.second, "applies to --sampler heun or euler only")) << r.second;
    }
  // A --config file counts as given too.
  const std::string config = testing::temp_path("heun_churn_flags.toml");
  write_file_atomic(config, "s-churn = 0\n");
  auto r = usage_status({"--checkpoint", "c", "--out", out, "--config", config});
  EXPECT_EQ(r.first, 2);
  EXPECT_TRUE(contains(r.second, "--s-churn applies to --sampler heun")) << r.second;
  r = usage_status({"--checkpoint", "c", "--out", out, "--config", config, "--sampler", "heun"});
  EXPECT_EQ(r.first, 0) << r.second;
  fs::remove(config);

  // Library callers (no parse): a value away from the default is the request.
  const ModelSource m = testing::tiny_model_source();
  SampleOptions o = heun_options("churn_other");
  o.sampler = "ddim";
  o.sampling_steps = 0;
  o.s_noise = 1.2;
  EXPECT_TRUE(contains(message(o, m), "--s-noise applies to --sampler heun")) << message(o, m);
}

TEST(SampleHeunChurn, BadValuesAreUsageErrorsNamingTheFlag) {
  const std::string out = testing::temp_path("heun_churn_bad_unused");
  auto heun = [&](std::vector<std::string> more) {
    std::vector<std::string> args{"--checkpoint", "c", "--out", out, "--sampler", "heun"};
    args.insert(args.end(), more.begin(), more.end());
    return usage_status(args);
  };
  const struct {
    std::vector<std::string> args;
    std::string says;
  } cases[] = {{{"--s-churn", "-1"}, "--s-churn must be a finite number >= 0"},
               {{"--s-churn", "inf"}, "--s-churn must be a finite number >= 0"},
               {{"--s-noise", "0"}, "--s-noise must be a finite number > 0"},
               {{"--s-noise", "-1"}, "--s-noise must be a finite number > 0"},
               {{"--s-tmin", "-0.1"}, "--s-tmin must be a finite number >= 0"},
               {{"--s-tmin", "5", "--s-tmax", "1"}, "--s-tmin 5 must not exceed --s-tmax 1"},
               {{"--s-tmax", "nan"}, "--s-tmax nan"}};
  for (const auto& c : cases) {
    const auto r = heun(c.args);
    EXPECT_EQ(r.first, 2) << c.says;
    EXPECT_TRUE(contains(r.second, c.says)) << r.second;
  }
  EXPECT_EQ(heun({"--s-churn", "80", "--s-tmin", "0.05", "--s-tmax", "50", "--s-noise", "1.003"}).first, 0);
  EXPECT_EQ(heun({"--s-tmin", "3", "--s-tmax", "3"}).first, 0);  // a one-point window is allowed
}

TEST(SampleHeunChurn, EndToEndRunChurnsAndRecordsTheSettings) {
  const ModelSource m = cosine_model();
  SampleOptions o = heun_options("churn_plain");
  const SampleResult plain = run_sample(o, m);
  o.s_churn = 2;  // N = 3: gamma = 2/3, capped at sqrt(2) - 1
  o.s_tmin = 0.01;
  o.s_noise = 1.003;
  o.out = testing::temp_path("heun_churn_a");
  const SampleResult a = run_sample(o, m);
  const std::string a_dir = o.out;
  o.out = testing::temp_path("heun_churn_b");
  const SampleResult b = run_sample(o, m);
  EXPECT_NE(a.pixels, plain.pixels);  // the churn noise changes the samples
  EXPECT_EQ(a.pixels, b.pixels);      // and the seed fixes it

  // The levels the run churned, counted here from karras_sigmas: all three lie in
  // [0.01, inf) except the top one, which has no room above the training range.
  const std::vector<double> train = training_sigmas(m);
  const std::vector<double> levels = diffusion::karras_sigmas(3, train.front(), train.back(), 7.0);
  ASSERT_GE(levels[2], 0.01);
  const nlohmann::json info = nlohmann::json::parse(read_file(a_dir + "/sample_info.json"));
  const nlohmann::json& heun = info["heun"];
  EXPECT_EQ(heun["s_churn"].get<double>(), 2.0);
  EXPECT_EQ(heun["s_tmin"].get<double>(), 0.01);
  EXPECT_TRUE(heun["s_tmax"].is_null());  // infinite: no upper bound
  EXPECT_EQ(heun["s_noise"].get<double>(), 1.003);
  EXPECT_EQ(heun["churned_levels"], 2);
  EXPECT_EQ(info["variance"], "none (ODE with churn noise)");

  const nlohmann::json before = nlohmann::json::parse(read_file(plain.out_dir + "/sample_info.json"));
  EXPECT_EQ(before["heun"]["s_churn"].get<double>(), 0.0);
  EXPECT_EQ(before["heun"]["churned_levels"], 0);
  EXPECT_EQ(before["variance"], "none (deterministic ODE)");
  for (const std::string& dir : {plain.out_dir, a_dir, o.out}) fs::remove_all(dir);
}

}  // namespace
}  // namespace ddpm::run
