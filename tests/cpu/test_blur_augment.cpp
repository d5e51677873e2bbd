// Blurring augmentation of the super-resolution condition (models/diffusion/blur_augment.h):
// the sampled kernel against its closed form, the blur against independent computations in
// double (an impulse's response is the outer product of the 1-D Gaussians; the separable
// passes equal a direct 2-D convolution with its own reflection), the reflect border rule on
// a ramp, the bit-identical limits (sigma -> 0, p = 0) and the draws against a replayed
// generator; then ddpm-train --blur-augment through the run layer: the recorded config, a
// bit-identical resume, and the refusals.
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/io/atomic_file.h"
#include "engine/rng.h"
#include "models/diffusion/blur_augment.h"
#include "models/diffusion/super_res.h"
#include "models/run/checkpoint.h"
#include "models/run/train_run.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm::diffusion {
namespace {

// The unnormalised Gaussian weight at integer offset j, written out here (not the code's).
double gauss(double j, double sigma) { return std::exp(-j * j / (2 * sigma * sigma)); }

// A reflection written differently from reflect_index: walk from 0 one pixel at a time,
// bouncing off the first and last pixels.
std::int64_t bounce(std::int64_t i, std::int64_t n) {
  if (n == 1) return 0;
  std::int64_t p = 0, dir = i >= 0 ? 1 : -1;
  for (std::int64_t step = 0; step < std::abs(i); ++step) {
    if (p + dir < 0 || p + dir >= n) dir = -dir;
    p += dir;
  }
  return p;
}

Tensor random_images(std::int64_t n, std::int64_t s, std::int64_t c, std::uint64_t seed, DType dtype) {
  Generator g(seed);
  return randn({n, s, s, c}, g, Device::cpu(), DType::f64).to(dtype);
}

TEST(BlurAugment, KernelIsTheNormalisedSampledGaussianOfRadiusCeil3Sigma) {
  for (double sigma : {0.1, 1.0 / 3.0, 0.4, 0.6, 1.0, 2.2}) {
    const std::vector<double> k = gaussian_kernel_1d(sigma);
    const auto r = static_cast<std::int64_t>(std::ceil(3 * sigma));
    ASSERT_EQ(k.size(), static_cast<std::size_t>(2 * r + 1)) << sigma;
    double z = 0, sum = 0;
    for (std::int64_t j = -r; j <= r; ++j) z += gauss(static_cast<double>(j), sigma);
    for (std::int64_t j = -r; j <= r; ++j) {
      sum += k[static_cast<std::size_t>(j + r)];
      EXPECT_EQ(k[static_cast<std::size_t>(j + r)], k[static_cast<std::size_t>(r - j)]) << sigma << " " << j;
      EXPECT_NEAR(k[static_cast<std::size_t>(j + r)], gauss(static_cast<double>(j), sigma) / z, 1e-16) << sigma;
    }
    EXPECT_NEAR(sum, 1.0, 1e-15) << sigma;
  }
  // The recipe's 3 taps up to sigma = 1/3; the CDM range [0.4, 0.6] gets 5.
  EXPECT_EQ(gaussian_kernel_1d(1.0 / 3.0).size(), 3u);
  EXPECT_EQ(gaussian_kernel_1d(0.6).size(), 5u);
  for (double bad : {0.0, -0.5, std::nan("")})
    testing::expect_value_error([&] { gaussian_kernel_1d(bad); }, "sigma must be a positive number");
}

TEST(BlurAugment, ReflectIndexMirrorsWithoutRepeatingTheEdge) {
  for (std::int64_t n : {1, 2, 3, 5})
    for (std::int64_t i = -13; i <= 13; ++i) EXPECT_EQ(reflect_index(i, n), bounce(i, n)) << i << " " << n;
  EXPECT_EQ(reflect_index(-1, 5), 1);  // torchvision's "reflect": -1 -> 1, n -> n - 2
  EXPECT_EQ(reflect_index(5, 5), 3);
}

TEST(BlurAugment, ConstantImageIsUnchanged) {
  // Per-channel constants; sigma 2.5 has radius 8 > S = 6, so the reflection folds again.
  const std::int64_t S = 6;
  std::vector<double> v;
  for (std::int64_t p = 0; p < S * S; ++p) v.insert(v.end(), {0.25, -0.75});
  const Tensor x = Tensor::from_vector(v, {1, S, S, 2}, DType::f64, Device::cpu());
  for (double sigma : {0.7, 2.5}) {
    const std::vector<double> out = gaussian_blur(x, {sigma}).to_double_vector();
    for (std::size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(out[i], v[i], 1e-15) << sigma << " " << i;
  }
}

TEST(BlurAugment, ImpulseGivesTheOuterProductOfTheSampledGaussians) {
  const std::int64_t S = 11, c0 = 5;  // sigma 1.2: radius 4, clear of the border
  const double sigma = 1.2;
  std::vector<double> v(static_cast<std::size_t>(S * S), 0.0);
  v[static_cast<std::size_t>(c0 * S + c0)] = 1.0;
  const std::vector<double> out =
      gaussian_blur(Tensor::from_vector(v, {1, S, S, 1}, DType::f64, Device::cpu()), {sigma}).to_double_vector();
  double z = 0;
  for (int j = -4; j <= 4; ++j) z += gauss(j, sigma);
  double total = 0;
  for (std::int64_t y = 0; y < S; ++y)
    for (std::int64_t x = 0; x < S; ++x) {
      const std::int64_t dy = y - c0, dx = x - c0;
      const double expect =
          std::abs(dy) <= 4 && std::abs(dx) <= 4 ? gauss(static_cast<double>(dy), sigma) * gauss(static_cast<double>(dx), sigma) / (z * z) : 0.0;
      EXPECT_NEAR(out[static_cast<std::size_t>(y * S + x)], expect, 1e-16) << y << "," << x;
      total += out[static_cast<std::size_t>(y * S + x)];
    }
  EXPECT_NEAR(total, 1.0, 1e-15);
}

TEST(BlurAugment, SeparablePassesEqualADirect2DConvolutionWithReflection) {
  const std::int64_t N = 3, S = 5, C = 2;
  const Tensor x = random_images(N, S, C, 11, DType::f64);
  const std::vector<double> sigmas{0.8, 1.7, 0.0};  // 1.7: radius 6 > S; 0: row left alone
  const std::vector<double> v = x.to_double_vector(), out = gaussian_blur(x, sigmas).to_double_vector();
  for (std::int64_t n = 0; n < N; ++n) {
    const double sigma = sigmas[static_cast<std::size_t>(n)];
    const auto r = static_cast<std::int64_t>(std::ceil(3 * sigma));
    double z = 0;
    for (std::int64_t j = -r; j <= r; ++j) z += gauss(static_cast<double>(j), sigma);
    for (std::int64_t y = 0; y < S; ++y)
      for (std::int64_t xx = 0; xx < S; ++xx)
        for (std::int64_t c = 0; c < C; ++c) {
          const std::size_t at = static_cast<std::size_t>(((n * S + y) * S + xx) * C + c);
          if (sigma == 0) {
            EXPECT_EQ(out[at], v[at]);
            continue;
          }
          double acc = 0;  // sum over the 2-D kernel G(a) G(b) / Z^2 at once
          for (std::int64_t a = -r; a <= r; ++a)
            for (std::int64_t b = -r; b <= r; ++b)
              acc += gauss(static_cast<double>(a), sigma) * gauss(static_cast<double>(b), sigma) / (z * z) *
                     v[static_cast<std::size_t>(((n * S + bounce(y + a, S)) * S + bounce(xx + b, S)) * C + c)];
          EXPECT_NEAR(out[at], acc, 1e-13) << n << " " << y << " " << xx << " " << c;
        }
  }
  // f32 in, f32 out, on the same values to f32 rounding.
  const std::vector<double> out32 = gaussian_blur(x.to(DType::f32), sigmas).to_double_vector();
  EXPECT_EQ(gaussian_blur(x.to(DType::f32), sigmas).dtype(), DType::f32);
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out32[i], out[i], 1e-5);
}

TEST(BlurAugment, ReflectBorderOnARamp) {
  // v(y, x) = x: the interior of a linear ramp is reproduced exactly (symmetric kernel);
  // at the first column reflection sees |j| for offset j, so out = sum_j k_j |j| (> 0; a
  // replicated border would give sum_{j > 0} k_j j, zero padding less than 0), and
  // symmetrically S - 1 - that at the last column. Every row is the same.
  const std::int64_t S = 8;
  const double sigma = 0.6;  // radius 2
  std::vector<double> v;
  for (std::int64_t y = 0; y < S; ++y)
    for (std::int64_t x = 0; x < S; ++x) v.push_back(static_cast<double>(x));
  const std::vector<double> out =
      gaussian_blur(Tensor::from_vector(v, {1, S, S, 1}, DType::f64, Device::cpu()), {sigma}).to_double_vector();
  double z = 0, edge = 0, edge1 = 0;
  for (int j = -2; j <= 2; ++j) z += gauss(j, sigma);
  for (int j = -2; j <= 2; ++j) {
    edge += gauss(j, sigma) / z * std::abs(j);                      // column 0: x -> |j|
    edge1 += gauss(j, sigma) / z * (j == -2 ? 1.0 : 1.0 + j);       // column 1: -1 -> 1
  }
  for (std::int64_t y = 0; y < S; ++y) {
    const double* row = out.data() + y * S;
    EXPECT_NEAR(row[0], edge, 1e-15);
    EXPECT_NEAR(row[1], edge1, 1e-15);
    for (std::int64_t x = 2; x < S - 2; ++x) EXPECT_NEAR(row[x], static_cast<double>(x), 1e-14) << x;
    EXPECT_NEAR(row[S - 1], static_cast<double>(S - 1) - edge, 1e-14);
    EXPECT_NEAR(row[S - 2], static_cast<double>(S - 1) - edge1, 1e-14);
  }
  EXPECT_GT(edge, 0.0);
}

TEST(BlurAugment, TinySigmaAndProbabilityZeroLeaveTheBatchBitIdentical) {
  const Tensor low = random_images(5, 4, 3, 3, DType::f32);
  EXPECT_EQ(gaussian_blur(low, {1e-3, 1e-3, 1e-3, 1e-3, 1e-3}).to_vector(), low.to_vector());  // kernel [0, 1, 0]
  EXPECT_EQ(gaussian_blur(low, {0, 0, 0, 0, 0}).to_vector(), low.to_vector());

  // p = 0: nothing blurred, but the 2N draws are still taken (the stream position after a
  // batch does not depend on p): the same offset as two rand({N}) of a replayed generator.
  Generator g(21), replay(21);
  std::vector<double> used;
  const Tensor out = draw_blurred_low_res(low, BlurAugment{0.0, 0.4, 0.6}, g, &used);
  EXPECT_EQ(out.to_vector(), low.to_vector());
  EXPECT_EQ(used, std::vector<double>(5, 0.0));
  rand({5}, replay, Device::cpu(), DType::f64);
  rand({5}, replay, Device::cpu(), DType::f64);
  EXPECT_EQ(g.offset(), replay.offset());
  EXPECT_EQ(g.offset(), 16u);  // 2 draws of 5 values, each rounded up to a Philox block of 4
}

TEST(BlurAugment, TrainingDrawMatchesAReplayedGenerator) {
  const std::int64_t N = 16;
  const Tensor low = random_images(N, 6, 1, 5, DType::f32);
  const BlurAugment blur{0.5, 0.4, 0.9};
  Generator g(99), replay(99);
  std::vector<double> used;
  const Tensor out = draw_blurred_low_res(low, blur, g, &used);
  // By hand: N decisions, then N widths.
  const std::vector<double> u = rand({N}, replay, Device::cpu(), DType::f64).to_double_vector();
  const std::vector<double> w = rand({N}, replay, Device::cpu(), DType::f64).to_double_vector();
  std::vector<double> sigmas(static_cast<std::size_t>(N), 0.0);
  int blurred = 0;
  for (std::size_t i = 0; i < sigmas.size(); ++i)
    if (u[i] < 0.5) {
      sigmas[i] = 0.4 + 0.5 * w[i];
      ++blurred;
      EXPECT_GE(sigmas[i], 0.4);
      EXPECT_LT(sigmas[i], 0.9);
    }
  EXPECT_EQ(used, sigmas);
  EXPECT_GT(blurred, 0);
  EXPECT_LT(blurred, N);  // seed 99 draws both kinds of rows
  EXPECT_EQ(out.to_vector(), gaussian_blur(low, sigmas).to_vector());
  EXPECT_EQ(g.offset(), replay.offset());

  // The condition: area down, blur, bilinear up, drawing the same numbers.
  const Tensor x0 = random_images(N, 12, 1, 6, DType::f32);
  Generator a(4), b(4);
  const Tensor cond = blurred_super_res_condition(x0, 6, blur, a);
  const Tensor by_hand = bilinear_upsample(draw_blurred_low_res(area_downsample(x0, 6), blur, b), 12);
  EXPECT_EQ(cond.shape(), x0.shape());
  EXPECT_EQ(cond.to_vector(), by_hand.to_vector());
  // p = 1 blurs every row: the condition differs from the clean one everywhere it is not flat.
  Generator c(4);
  EXPECT_NE(blurred_super_res_condition(x0, 6, BlurAugment{1.0, 0.4, 0.9}, c).to_vector(),
            super_res_condition(x0, 6).to_vector());
}

TEST(BlurAugment, SettingsAreChecked) {
  testing::expect_value_error([] { validate_blur_augment({-0.1, 0.4, 0.6}); }, "--blur-augment must be a probability");
  testing::expect_value_error([] { validate_blur_augment({1.5, 0.4, 0.6}); }, "--blur-augment must be a probability");
  testing::expect_value_error([] { validate_blur_augment({0.5, 0.0, 0.6}); }, "0 < A <= B");
  testing::expect_value_error([] { validate_blur_augment({0.5, 0.7, 0.6}); }, "0 < A <= B");
  EXPECT_NO_THROW(validate_blur_augment({1.0, 0.5, 0.5}));  // a fixed sigma is a range of one value

  run::TrainOptions o;
  o.super_res = 8;
  o.blur_augment = 0.5;
  o.blur_sigma = "0.3,0.8";
  const BlurAugment b = run::blur_augment_options(o);
  EXPECT_EQ(b.prob, 0.5);
  EXPECT_EQ(b.sigma_min, 0.3);
  EXPECT_EQ(b.sigma_max, 0.8);
  for (const char* bad : {"0.4", "0.4,", "a,b", "0.4,0.6,0.7", "0.4x,0.6", ""}) {
    o.blur_sigma = bad;
    testing::expect_value_error([&] { run::blur_augment_options(o); }, "--blur-sigma must be a range A,B");
  }
  o.blur_sigma = "0.6,0.4";
  testing::expect_value_error([&] { run::blur_augment_options(o); }, "0 < A <= B");
  o.blur_sigma = "0.4,0.6";
  o.super_res = 0;
  testing::expect_value_error([&] { run::blur_augment_options(o); }, "needs --super-res");
}

// --- ddpm-train --blur-augment through the run layer -----------------------------------------

run::TrainOptions tiny_blur_run(const std::string& name, double p) {
  run::TrainOptions o = testing::tiny_run(testing::temp_run(name));
  o.super_res = 8;  // 16x16 toy shapes from 8x8
  o.blur_augment = p;
  o.blur_sigma = "0.5,1.0";
  o.cond_augment = 0.2;  // both augmentations: blur first, then noise
  return o;
}

TEST(BlurAugmentRun, RecordsTheSettingsResumesBitIdenticallyAndRefusesAChange) {
  const run::TrainOptions straight = tiny_blur_run("blur_straight", 1.0);
  run::train_run(straight);
  const nlohmann::json cfg = nlohmann::json::parse(read_file(straight.out + "/config.json"));
  EXPECT_EQ(cfg.at("train").at("blur_augment"), 1.0);
  EXPECT_EQ(cfg.at("train").at("blur_sigma"), (nlohmann::json{0.5, 1.0}));

  // Stopped at step 3 and resumed to 6: the same weights, EMA and optimiser state bit for bit.
  run::TrainOptions first = tiny_blur_run("blur_resumed", 1.0);
  first.steps = 3;
  run::train_run(first);
  run::TrainOptions second = first;
  second.steps = 6;
  second.resume = "latest";
  run::train_run(second);
  for (const char* file : {"/model.safetensors", "/ema.safetensors"})
    testing::expect_same_tensors(run::checkpoint_dir(straight.out, 6) + file, run::checkpoint_dir(second.out, 6) + file);

  // The blur reaches the training: the same run without it ends elsewhere.
  const run::TrainOptions sharp = tiny_blur_run("blur_off", 0.0);
  run::train_run(sharp);
  EXPECT_GT(testing::max_abs_difference(run::checkpoint_dir(straight.out, 6) + "/model.safetensors",
                                        run::checkpoint_dir(sharp.out, 6) + "/model.safetensors"),
            0.0);
  const nlohmann::json sharp_cfg = nlohmann::json::parse(read_file(sharp.out + "/config.json"));
  EXPECT_EQ(sharp_cfg.at("train").at("blur_augment"), 0.0);
  EXPECT_FALSE(sharp_cfg.at("train").contains("blur_sigma"));  // the range only when on

  // A resume with another probability or range is a different run.
  for (const auto& [p, range, key] : {std::tuple{0.5, "0.5,1.0", "train.blur_augment"},
                                      std::tuple{1.0, "0.5,1.5", "train.blur_sigma"},
                                      std::tuple{0.0, "0.5,1.0", "train.blur_augment"}}) {
    run::TrainOptions changed = second;
    changed.steps = 7;
    changed.blur_augment = p;
    changed.blur_sigma = range;
    testing::expect_value_error([&] { run::train_run(changed); }, key);
  }
}

TEST(BlurAugmentRun, ARunRecordedBeforeTheFlagResumesAsOff) {
  run::TrainOptions o = tiny_blur_run("blur_legacy", 0.0);
  o.steps = 3;
  run::train_run(o);
  // Remove the key, as a config written before --blur-augment existed.
  nlohmann::json cfg = nlohmann::json::parse(read_file(o.out + "/config.json"));
  cfg["train"].erase("blur_augment");
  write_file_atomic(o.out + "/config.json", cfg.dump(2));
  run::TrainOptions again = o;
  again.steps = 4;
  again.resume = "latest";
  EXPECT_NO_THROW(run::train_run(again));
  again.steps = 5;
  again.blur_augment = 0.5;
  testing::expect_value_error([&] { run::train_run(again); }, "train.blur_augment");
}

}  // namespace
}  // namespace ddpm::diffusion
