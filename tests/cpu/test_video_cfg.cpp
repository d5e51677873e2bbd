// Classifier-free guidance on the frame condition (models/run/video_run.h "Frame guidance";
// Emu Video sec. 3, InstructPix2Pix eq. 3). What is checked: the training dropout draws,
// replayed by hand (which clips were dropped, their condition rows all zero, the others
// unchanged; P = 0 draws nothing); the guided denoiser against the formulas written out from
// separate network calls of a condition- and label-sensitive fake network that mixes frames
// (S_I alone, S_I with S_T, a learned variance, one condition for every clip), with the one
// batched call of 2n or 3n rows it makes, and S_I = 1 as one call of n rows equal to the
// unguided denoiser; moving the label guidance out of the sampler; the refusals; and a run
// with P > 0 that records P and resumes bit for bit like the run that never stopped.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/ops/concat.h"
#include "engine/rng.h"
#include "models/diffusion/super_res.h"
#include "models/run/checkpoint.h"
#include "models/run/train_run.h"
#include "models/run/video_run.h"
#include "support/temp_dir.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace fs = std::filesystem;

namespace ddpm {
namespace {

using testing::expect_value_error;

constexpr std::int64_t kF = 3, kH = 2, kW = 2, kC = 2, kP = kH * kW;
constexpr int kClasses = 3;  // the null label is 3

// x [n, F, H, W, C] in f64 with distinct values.
Tensor clips(std::int64_t n, double offset) {
  std::vector<double> v(static_cast<std::size_t>(n * kF * kP * kC));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = offset + 0.37 * std::sin(1.3 * static_cast<double>(i) + offset);
  return Tensor::from_vector(v, {n, kF, kH, kW, kC});
}

// A fake network that reads everything the guidance varies: its input [m, F, H, W, 2C + 1] is
// x_t, the known frames k and the mask; output frame f mixes x_t's frame f with the NEXT
// frame's condition and the mask of frame 0, scaled by the label:
//   e[r, f, p, c] = tanh(x[r, f, p, c] + 0.7 k[r, f+1 mod F, p, c] + 0.3 mask[r, 0, p]) (1 + 0.1 y_r) + 0.05 f
// and with a learned variance a second half v[r, f, p, c] = 0.2 k[r, 0, p, c] + 0.01 y_r + 0.1 x.
struct FakeNet {
  bool learned_sigma = false;
  std::vector<std::int64_t> rows;  // the batch of every call
  diffusion::DenoiseFn fn() {
    return [this](const Tensor& in, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
      const std::int64_t m = in.dim(0), Ci = 2 * kC + 1, Co = learned_sigma ? 2 * kC : kC;
      EXPECT_EQ(in.shape(), (Shape{m, kF, kH, kW, Ci}));
      EXPECT_EQ(static_cast<std::int64_t>(t.size()), m);
      rows.push_back(m);
      const std::vector<double> a = in.to_double_vector();
      std::vector<double> out(static_cast<std::size_t>(m * kF * kP * Co));
      auto at = [&](std::int64_t r, std::int64_t f, std::int64_t p, std::int64_t c) {
        return a[static_cast<std::size_t>(((r * kF + f) * kP + p) * Ci + c)];
      };
      for (std::int64_t r = 0; r < m; ++r) {
        const double label = y.empty() ? 0.0 : static_cast<double>(y[static_cast<std::size_t>(r)]);
        for (std::int64_t f = 0; f < kF; ++f)
          for (std::int64_t p = 0; p < kP; ++p)
            for (std::int64_t c = 0; c < kC; ++c) {
              const double x = at(r, f, p, c), known = at(r, (f + 1) % kF, p, kC + c), mask = at(r, 0, p, 2 * kC);
              const std::size_t o = static_cast<std::size_t>(((r * kF + f) * kP + p) * Co + c);
              out[o] = std::tanh(x + 0.7 * known + 0.3 * mask) * (1 + 0.1 * label) + 0.05 * static_cast<double>(f);
              if (learned_sigma) out[o + kC] = 0.2 * at(r, 0, p, kC + c) + 0.01 * label + 0.1 * x;
            }
      }
      return Tensor::from_vector(out, {m, kF, kH, kW, Co});
    };
  }
};

std::vector<double> call(const diffusion::DenoiseFn& net, const Tensor& cond, const Tensor& x,
                         const std::vector<std::int64_t>& y) {
  return diffusion::concat_condition(net, cond)(x, std::vector<double>(static_cast<std::size_t>(x.dim(0)), 7.0), y)
      .to_double_vector();
}

// The condition of n clips: frames_condition of the first `known` frames of other clips.
Tensor condition(std::int64_t n, int known) {
  return unet::frames_condition(slice(clips(n, 2.0), 1, 0, known), static_cast<int>(kF));
}

// --- training --------------------------------------------------------------------------------

TEST(VideoCfg, DropoutDrawsAreReplayedByHand) {
  const std::int64_t n = 8;
  const Tensor x0 = clips(n, 0.5).to(DType::f32);
  unet::UNetConfig mc;
  mc.num_frames = static_cast<int>(kF);
  mc.first_frame_condition = true;
  mc.condition_frames = 2;
  const double p = 0.4;
  Generator gen(33), replay(33);
  const std::vector<float> got = run::training_frames_condition(x0, mc, gen, p).to_vector();
  // By hand, in the documented order: k ~ U{1..K} (n values of rand), then n values of rand
  // in f64, clip i dropped when u_i < P.
  const std::vector<int> k = run::draw_known_frames(n, mc.condition_frames, replay);
  const std::vector<double> u = rand({n}, replay, Device::cpu(), DType::f64).to_double_vector();
  EXPECT_EQ(gen.offset(), replay.offset());
  const std::vector<float> undropped = run::known_frames_condition(x0, k).to_vector();
  ASSERT_EQ(got.size(), undropped.size());
  const std::size_t row = got.size() / static_cast<std::size_t>(n);
  int dropped = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const bool drop = u[static_cast<std::size_t>(i)] < p;
    dropped += drop ? 1 : 0;
    bool any_nonzero = false;
    for (std::size_t j = 0; j < row; ++j) {
      const std::size_t e = static_cast<std::size_t>(i) * row + j;
      any_nonzero = any_nonzero || undropped[e] != 0.0f;
      ASSERT_EQ(got[e], drop ? 0.0f : undropped[e]) << "clip " << i << " element " << j << (drop ? " (dropped)" : "");
    }
    EXPECT_TRUE(any_nonzero) << "clip " << i << ": its condition must hold a known frame";
  }
  EXPECT_GT(dropped, 0);  // seed 33 drops some clips and keeps others
  EXPECT_LT(dropped, n);
  // The K = 1 model draws only the dropout.
  mc.condition_frames = 1;
  Generator g1(4), r1(4);
  const std::vector<float> c1 = run::training_frames_condition(x0, mc, g1, 0.5).to_vector();
  const std::vector<bool> d1 = run::draw_condition_dropout(n, 0.5, r1);
  EXPECT_EQ(c1, run::drop_conditions(run::first_frame_condition_of(x0, static_cast<int>(kF)), d1).to_vector());
  EXPECT_EQ(g1.offset(), r1.offset());
  EXPECT_GT(g1.offset(), 0u);
}

TEST(VideoCfg, NoDropoutDrawsNothing) {
  const Tensor x0 = clips(4, 0.25).to(DType::f32);
  unet::UNetConfig mc;
  mc.num_frames = static_cast<int>(kF);
  mc.first_frame_condition = true;
  for (int K : {1, 2}) {
    mc.condition_frames = K;
    Generator with(9), before(9);
    const std::vector<float> a = run::training_frames_condition(x0, mc, with, 0.0).to_vector();
    const std::vector<float> b = run::training_frames_condition(x0, mc, before).to_vector();  // today's call
    EXPECT_EQ(a, b) << "K = " << K;
    EXPECT_EQ(with.offset(), before.offset()) << "K = " << K << ": P = 0 must not draw";
  }
  Generator g(1);
  EXPECT_EQ(run::draw_condition_dropout(5, 0.0, g), std::vector<bool>(5, false));
  EXPECT_EQ(g.offset(), 0u);
  expect_value_error([&] { run::draw_condition_dropout(5, 1.0, g); }, "in [0, 1), got 1");
  expect_value_error([&] { run::draw_condition_dropout(5, -0.1, g); }, "got -0.1");
}

// --- sampling --------------------------------------------------------------------------------

run::FrameGuidance guidance(double s_i, double s_t, bool learned_sigma) {
  run::FrameGuidance g;
  g.scale = s_i;
  g.label_scale = s_t;
  g.null_label = kClasses;
  g.learned_sigma = learned_sigma;
  return g;
}

// pred = e(null) + S_I (e(c) - e(null)), the label y in both; one call of 2n rows.
void check_frame_scale_alone(bool learned_sigma, std::int64_t cond_rows) {
  const std::int64_t n = 2;
  const double s_i = 2.5;
  FakeNet fake;
  fake.learned_sigma = learned_sigma;
  const diffusion::DenoiseFn net = fake.fn();
  const Tensor x = clips(n, -0.3), cond = condition(cond_rows, 2);
  const Tensor null = Tensor::zeros(cond.shape(), cond.dtype());
  const std::vector<std::int64_t> y{0, 2};
  const std::vector<double> e_c = call(net, cond, x, y), e_n = call(net, null, x, y);
  fake.rows.clear();
  const std::vector<double> got =
      run::frame_guided_denoiser(net, cond, guidance(s_i, 1.0, learned_sigma))(x, std::vector<double>(n, 7.0), y)
          .to_double_vector();
  EXPECT_EQ(fake.rows, std::vector<std::int64_t>{2 * n});
  ASSERT_EQ(got.size(), e_c.size());
  const std::size_t Co = learned_sigma ? 2 * kC : kC;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool variance = i % Co >= static_cast<std::size_t>(kC);
    const double want = variance ? e_c[i] : e_n[i] + s_i * (e_c[i] - e_n[i]);  // the variance: the conditioned one
    EXPECT_NEAR(got[i], want, 1e-12) << "element " << i;
  }
  // The guidance did something: the two branches differ.
  double gap = 0;
  for (std::size_t i = 0; i < got.size(); ++i) gap = std::max(gap, std::fabs(e_c[i] - e_n[i]));
  EXPECT_GT(gap, 0.05);
}

TEST(VideoCfg, FrameScaleMatchesTheFormula) {
  check_frame_scale_alone(false, 2);
  check_frame_scale_alone(false, 1);  // one condition (a PNG) for every clip
  check_frame_scale_alone(true, 2);   // learned variance
}

// InstructPix2Pix eq. 3: e(0, 0) + S_I (e(c, 0) - e(0, 0)) + S_T (e(c, y) - e(c, 0)); one call
// of 3n rows.
TEST(VideoCfg, TwoScaleFormMatchesInstructPix2Pix) {
  for (bool learned_sigma : {false, true}) {
    const std::int64_t n = 2;
    const double s_i = 1.75, s_t = 3.0;
    FakeNet fake;
    fake.learned_sigma = learned_sigma;
    const diffusion::DenoiseFn net = fake.fn();
    const Tensor x = clips(n, 0.8), cond = condition(n, 1);
    const Tensor null = Tensor::zeros(cond.shape(), cond.dtype());
    const std::vector<std::int64_t> y{1, 2}, no(2, kClasses);
    const std::vector<double> e_cy = call(net, cond, x, y), e_cn = call(net, cond, x, no), e_nn = call(net, null, x, no);
    fake.rows.clear();
    const std::vector<double> got =
        run::frame_guided_denoiser(net, cond, guidance(s_i, s_t, learned_sigma))(x, std::vector<double>(n, 7.0), y)
            .to_double_vector();
    EXPECT_EQ(fake.rows, std::vector<std::int64_t>{3 * n});
    ASSERT_EQ(got.size(), e_cy.size());
    const std::size_t Co = learned_sigma ? 2 * kC : kC;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const bool variance = i % Co >= static_cast<std::size_t>(kC);
      const double want = variance ? e_cy[i] : e_nn[i] + s_i * (e_cn[i] - e_nn[i]) + s_t * (e_cy[i] - e_cn[i]);
      EXPECT_NEAR(got[i], want, 1e-12) << "element " << i << (learned_sigma ? " (learned sigma)" : "");
    }
  }
}

TEST(VideoCfg, ScaleOneIsOneCallOfNRows) {
  const std::int64_t n = 2;
  FakeNet fake;
  const diffusion::DenoiseFn net = fake.fn();
  const Tensor x = clips(n, 0.1), cond = condition(n, 1);
  const std::vector<std::int64_t> y{0, 1};
  const std::vector<double> plain = call(net, cond, x, y);
  fake.rows.clear();
  const std::vector<double> got =
      run::frame_guided_denoiser(net, cond, run::FrameGuidance{})(x, std::vector<double>(n, 7.0), y).to_double_vector();
  EXPECT_EQ(fake.rows, std::vector<std::int64_t>{n});
  EXPECT_EQ(got, plain);

  // take_frame_guidance: S_I = 1 leaves the sampler's label guidance alone; S_I != 1 moves it
  // into the frame guidance, so the sampler calls the denoiser once per step.
  run::SampleOptions o;
  diffusion::SamplerConfig sc;
  sc.guidance_scale = 4.0;
  sc.guidance_rescale = 0.5;
  sc.num_classes = kClasses;
  EXPECT_FALSE(run::take_frame_guidance(o, sc).active());
  EXPECT_EQ(sc.guidance_scale, 4.0);
  o.frame_guidance_scale = 2.0;
  const run::FrameGuidance g = run::take_frame_guidance(o, sc);
  EXPECT_TRUE(g.active());
  EXPECT_EQ(g.scale, 2.0);
  EXPECT_EQ(g.label_scale, 4.0);
  EXPECT_EQ(g.rescale, 0.5);
  EXPECT_EQ(g.null_label, kClasses);
  EXPECT_EQ(sc.guidance_scale, 1.0);
  EXPECT_EQ(sc.guidance_rescale, 0.0);
}

// --- refusals --------------------------------------------------------------------------------

// A folder whose config.json records frame_condition_dropout p (nothing when p < 0).
std::string run_with_dropout(const std::string& name, double p) {
  const fs::path dir = testing::temp_path("video_cfg_" + name);
  fs::create_directories(dir);
  nlohmann::json j = {{"train", {{"batch_size", 4}}}};
  if (p >= 0) j["train"]["frame_condition_dropout"] = p;
  std::ofstream(dir / "config.json") << j.dump();
  return dir.string();
}

TEST(VideoCfg, Refusals) {
  unet::UNetConfig video;
  video.num_frames = 4;
  video.first_frame_condition = true;
  video.condition_frames = 1;
  run::SampleOptions o;
  o.first_frame = "f.png";
  o.frame_guidance_scale = 2;
  o.checkpoint = run_with_dropout("p02", 0.2);
  EXPECT_DOUBLE_EQ(run::recorded_frame_condition_dropout(o.checkpoint), 0.2);
  run::check_video_flags(o);
  run::check_video_sample(o, video, false);  // accepted
  // A model trained without the dropout, or with no record of it.
  o.checkpoint = run_with_dropout("p0", 0.0);
  expect_value_error([&] { run::check_video_sample(o, video, false); },
                     "--frame-guidance-scale 2 needs the null condition");
  o.checkpoint = run_with_dropout("none", -1);
  EXPECT_EQ(run::recorded_frame_condition_dropout(o.checkpoint), 0.0);
  expect_value_error([&] { run::check_video_sample(o, video, false); }, "frame_condition_dropout 0");
  // Not frame-conditioned: a plain video model, an image model.
  o.checkpoint = run_with_dropout("p02", 0.2);
  unet::UNetConfig plain = video;
  plain.first_frame_condition = false;
  plain.condition_frames = 0;
  o.first_frame.clear();
  expect_value_error([&] { run::check_video_sample(o, plain, false); }, "is not conditioned on frames");
  expect_value_error([&] { run::check_video_sample(o, unet::UNetConfig{}, false); }, "is an image model");
  // With reconstruction guidance, a guidance interval, the consistency sampler; bad scales.
  o.segments = 2;
  o.reconstruction_guidance = 2;
  expect_value_error([&] { run::check_video_flags(o); }, "--reconstruction-guidance guides an unconditional one");
  o.reconstruction_guidance = -1;
  o.guidance_interval = "0.5,5";
  expect_value_error([&] { run::check_video_flags(o); }, "--guidance-interval 0.5,5 is not supported");
  o.guidance_interval.clear();
  o.sampler = "consistency";
  expect_value_error([&] { run::check_video_flags(o); }, "--sampler consistency");
  o.sampler = "ddpm";
  for (double bad : {-1.0, std::nan("")}) {
    o.frame_guidance_scale = bad;
    expect_value_error([&] { run::check_video_flags(o); }, "--frame-guidance-scale must be a finite number >= 0");
  }
  // Training: P out of range, P without the frame condition.
  run::TrainOptions t = testing::tiny_run(testing::temp_run("video_cfg_refused"));
  t.data = "moving-toy";
  t.frame_condition_dropout = 0.2;
  expect_value_error([&] { run::validate_options(t); }, "needs --first-frame-condition");
  t.first_frame_condition = true;
  run::validate_options(t);
  for (double bad : {1.0, -0.5}) {
    t.frame_condition_dropout = bad;
    expect_value_error([&] { run::validate_options(t); }, "--frame-condition-dropout must be a probability in [0, 1)");
  }
}

// --- a run -----------------------------------------------------------------------------------

run::TrainOptions tiny_dropout_run(const std::string& out, int steps) {
  run::TrainOptions o = testing::tiny_run(out);
  o.data = "moving-toy";
  o.toy_count = 8;
  o.frames = 3;
  o.canvas = 16;
  o.item_size = 8;
  o.attention_resolutions = "";
  o.first_frame_condition = true;
  o.condition_frames = 2;
  o.frame_condition_dropout = 0.5;
  o.steps = steps;
  o.save_every = 1;
  o.sample_steps = 5;
  return o;
}

// P is recorded, and a run that stops and resumes draws the same dropout as one that never
// stopped (the draws come from the trainer's generator).
TEST(VideoCfg, ResumeWithDropoutIsExact) {
  run::TrainOptions straight = tiny_dropout_run(testing::temp_run("video_cfg_straight"), 2);
  run::train_run(straight);
  EXPECT_EQ(run::read_run_config(straight.out).at("train").at("frame_condition_dropout"), 0.5);
  EXPECT_EQ(run::recorded_frame_condition_dropout(straight.out), 0.5);
  run::TrainOptions first = tiny_dropout_run(testing::temp_run("video_cfg_resumed"), 1);
  run::train_run(first);
  run::TrainOptions resumed = tiny_dropout_run(first.out, 2);
  resumed.resume = "latest";
  EXPECT_EQ(run::train_run(resumed).steps_done, 2);
  for (const char* f : {run::kModelFile, run::kEmaFile})
    testing::expect_same_tensors(run::checkpoint_dir(straight.out, 2) + "/" + f,
                                 run::checkpoint_dir(resumed.out, 2) + "/" + f);
  // Another P is another training configuration: refused on resume.
  run::TrainOptions other = tiny_dropout_run(first.out, 3);
  other.resume = "latest";
  other.frame_condition_dropout = 0.25;
  expect_value_error([&] { run::train_run(other); }, "train.frame_condition_dropout: 0.5 vs 0.25");
}

}  // namespace
}  // namespace ddpm
