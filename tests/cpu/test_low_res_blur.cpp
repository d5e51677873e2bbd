// tests/cpu/test_low_res_blur.cpp: ddpm-sample --low-res-blur (super_res_run.h). The
// condition load_low_res_for builds from a .npz of low-res images is compared with the blur
// done here by hand from blur_augment.h's public kernel and reflect index (in double), then
// the bilinear upsample of super_res.h; sigma 0 is bit-identical to no flag; the refusals.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/npz.h"
#include "models/diffusion/blur_augment.h"
#include "models/diffusion/super_res.h"
#include "models/run/sample_run.h"
#include "models/run/super_res_run.h"
#include "support/temp_dir.h"
#include "support/value_error.h"

namespace ddpm::run {
namespace {

constexpr int kL = 6, kH = 12, kC = 3;
constexpr std::int64_t kM = 3;

unet::UNetConfig super_res_model() {
  unet::UNetConfig m;
  m.in_channels = kC;
  m.image_size = kH;
  m.low_res_size = kL;
  m.concat_channels = kC;
  return m;
}

// Random uint8 [M, L, L, C] written as arr_0 of DIR/low.npz; returns the pixels.
std::vector<std::uint8_t> write_low_res_npz(const std::string& path) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<std::uint8_t> px(static_cast<std::size_t>(kM * kL * kL * kC));
  for (auto& p : px) p = static_cast<std::uint8_t>(byte(rng));
  write_npz(path, {npy_view("arr_0", {kM, kL, kL, kC}, px)});
  return px;
}

// The images in [-1, 1] (v / 127.5 - 1, the loader's scaling) blurred by hand: the 2-D
// kernel k k^T applied separably, along x then along y, reflect border, all in double.
std::vector<double> blurred_by_hand(const std::vector<std::uint8_t>& px, double sigma) {
  const std::vector<double> k = diffusion::gaussian_kernel_1d(sigma);
  const int r = static_cast<int>(k.size() / 2);
  auto at = [](std::int64_t i, int y, int x, int c) { return static_cast<std::size_t>(((i * kL + y) * kL + x) * kC + c); };
  std::vector<double> img(px.size()), rows(px.size()), out(px.size());
  for (std::size_t j = 0; j < px.size(); ++j) img[j] = px[j] / 127.5 - 1.0;
  for (std::int64_t i = 0; i < kM; ++i)
    for (int y = 0; y < kL; ++y)
      for (int x = 0; x < kL; ++x)
        for (int c = 0; c < kC; ++c) {
          double sx = 0;
          for (int d = -r; d <= r; ++d)
            sx += k[static_cast<std::size_t>(d + r)] * img[at(i, y, static_cast<int>(diffusion::reflect_index(x + d, kL)), c)];
          rows[at(i, y, x, c)] = sx;
        }
  for (std::int64_t i = 0; i < kM; ++i)
    for (int y = 0; y < kL; ++y)
      for (int x = 0; x < kL; ++x)
        for (int c = 0; c < kC; ++c) {
          double sy = 0;
          for (int d = -r; d <= r; ++d)
            sy += k[static_cast<std::size_t>(d + r)] * rows[at(i, static_cast<int>(diffusion::reflect_index(y + d, kL)), x, c)];
          out[at(i, y, x, c)] = sy;
        }
  return out;
}

Tensor upsampled(const std::vector<double>& low) {
  std::vector<float> f(low.begin(), low.end());
  return diffusion::bilinear_upsample(Tensor::from_vector(f, {kM, kL, kL, kC}), kH);
}

SampleOptions options(const std::string& low_res, double blur) {
  SampleOptions o;
  o.checkpoint = "sr-run";
  o.low_res = low_res;
  o.low_res_blur = blur;
  return o;
}

TEST(LowResBlurTest, ConditionIsTheBlurredImagesUpsampled) {
  testing::TempDir dir;
  const std::string npz = dir.path + "/low.npz";
  const std::vector<std::uint8_t> px = write_low_res_npz(npz);
  for (double sigma : {0.4, 0.7, 1.5}) {
    LowResInputs low;
    ASSERT_TRUE(load_low_res_for(options(npz, sigma), super_res_model(), low, 100));
    EXPECT_EQ(low.blur_sigma, sigma);
    ASSERT_EQ(low.cond.shape(), (Shape{kM, kH, kH, kC}));
    const std::vector<double> got = low.cond.to_double_vector();
    const std::vector<double> want = upsampled(blurred_by_hand(px, sigma)).to_double_vector();
    const std::vector<double> sharp = upsampled(blurred_by_hand(px, 0.01)).to_double_vector();  // kernel = identity
    ASSERT_EQ(got.size(), want.size());
    double max_err = 0, max_change = 0;
    for (std::size_t j = 0; j < got.size(); ++j) {
      max_err = std::max(max_err, std::abs(got[j] - want[j]));
      max_change = std::max(max_change, std::abs(got[j] - sharp[j]));
    }
    EXPECT_LT(max_err, 2e-6) << "sigma " << sigma;    // f32 rounding of values in [-1, 1]
    EXPECT_GT(max_change, 0.05) << "sigma " << sigma;  // the blur did something
    // The record beside the other SR settings.
    EXPECT_EQ(low_res_info(low, kM, false).at("blur_sigma").get<double>(), sigma);
  }
}

TEST(LowResBlurTest, SigmaZeroIsBitIdenticalToNoFlag) {
  testing::TempDir dir;
  const std::string npz = dir.path + "/low.npz";
  write_low_res_npz(npz);
  LowResInputs plain, zero;
  ASSERT_TRUE(load_low_res_for(options(npz, SampleOptions{}.low_res_blur), super_res_model(), plain, 100));
  ASSERT_TRUE(load_low_res_for(options(npz, 0.0), super_res_model(), zero, 100));
  EXPECT_EQ(SampleOptions{}.low_res_blur, 0.0);
  const std::vector<float> a = plain.cond.to_vector(), b = zero.cond.to_vector();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t j = 0; j < a.size(); ++j) ASSERT_EQ(std::memcmp(&a[j], &b[j], sizeof(float)), 0) << j;
  EXPECT_EQ(low_res_info(zero, kM, false).at("blur_sigma").get<double>(), 0.0);
}

TEST(LowResBlurTest, Refusals) {
  testing::TempDir dir;
  const std::string npz = dir.path + "/low.npz";
  write_low_res_npz(npz);
  auto checked = [&](SampleOptions o) {
    o.out = dir.path + "/out";  // absent: check_out_dir accepts it
    return [o] { check_sample_options(o); };
  };
  testing::expect_value_error(checked(options(npz, -0.5)), "--low-res-blur must be a blur sigma >= 0");
  testing::expect_value_error(checked(options(npz, std::nan(""))), "--low-res-blur must be a blur sigma >= 0");
  testing::expect_value_error(checked(options("", 0.5)), "it needs --low-res");
  EXPECT_EQ(testing::value_error_message(checked(options(npz, 0.5))), "no error");
  EXPECT_EQ(testing::value_error_message(checked(options("", 0.0))), "no error");
  // A model without super-resolution (reached by library callers that skip the flag checks).
  LowResInputs low;
  testing::expect_value_error([&] { load_low_res_for(options("", 0.5), unet::UNetConfig{}, low, 100); },
                              "--low-res-blur applies to super-resolution models only");
  testing::expect_value_error([&] { load_low_res_for(options(npz, -1.0), super_res_model(), low, 100); },
                              "--low-res-blur must be a blur sigma >= 0");
}

}  // namespace
}  // namespace ddpm::run
