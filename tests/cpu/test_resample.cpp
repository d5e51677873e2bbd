// Nearest 2x upsampling and 2x2 average pooling (NHWC): forward values against hand-built
// expectations, finite-difference gradients in double, and the error cases.
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/resample.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;
using testing::param;

// x[n, h, w, c] = 1000 n + 100 h + 10 w + c, so every value names its position.
Tensor positional(std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C) {
  std::vector<double> v;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t w = 0; w < W; ++w)
        for (std::int64_t c = 0; c < C; ++c) v.push_back(1000.0 * n + 100.0 * h + 10.0 * w + c);
  return Tensor::from_vector(v, {N, H, W, C});
}

TEST(Resample, UpsampleCopiesEachPixelToA2x2Block) {
  const std::int64_t N = 2, H = 3, W = 2, C = 3;
  Tensor y = upsample_nearest2x(positional(N, H, W, C));
  ASSERT_EQ(y.shape(), (Shape{N, 2 * H, 2 * W, C}));
  std::vector<double> v = y.to_double_vector();
  std::size_t i = 0;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t h = 0; h < 2 * H; ++h)
      for (std::int64_t w = 0; w < 2 * W; ++w)
        for (std::int64_t c = 0; c < C; ++c)
          EXPECT_EQ(v[i++], 1000.0 * n + 100.0 * (h / 2) + 10.0 * (w / 2) + c) << n << h << w << c;
}

TEST(Resample, AvgPoolAveragesEach2x2Block) {
  const std::int64_t N = 2, H = 4, W = 6, C = 2;
  Tensor y = avg_pool2x(positional(N, H, W, C));
  ASSERT_EQ(y.shape(), (Shape{N, H / 2, W / 2, C}));
  std::vector<double> v = y.to_double_vector();
  std::size_t i = 0;
  // mean over a, b of 100 (2h + a) + 10 (2w + b) = 100 (2h + 0.5) + 10 (2w + 0.5)
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t h = 0; h < H / 2; ++h)
      for (std::int64_t w = 0; w < W / 2; ++w)
        for (std::int64_t c = 0; c < C; ++c)
          EXPECT_DOUBLE_EQ(v[i++], 1000.0 * n + 100.0 * (2 * h + 0.5) + 10.0 * (2 * w + 0.5) + c);
  // Pooling an upsampled image gives the image back.
  Tensor x = random_tensor({2, 3, 5, 4}, 11);
  EXPECT_EQ(avg_pool2x(upsample_nearest2x(x)).to_double_vector(), x.to_double_vector());
}

TEST(Resample, Gradients) {
  Tensor x = param(random_tensor({2, 3, 2, 3}, 1));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return upsample_nearest2x(in[0]); }, {x}));
  Tensor z = param(random_tensor({2, 4, 6, 3}, 2));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return avg_pool2x(in[0]); }, {z}));
  // Backward rules by value: upsample sums 2x2 blocks of g, avg_pool spreads g / 4.
  Tensor u = param(Tensor::zeros({1, 1, 1, 1}, DType::f64));
  upsample_nearest2x(u).backward(Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {1, 2, 2, 1}));
  EXPECT_EQ(u.grad().to_double_vector(), (std::vector<double>{10}));
  Tensor p = param(Tensor::zeros({1, 2, 2, 1}, DType::f64));
  avg_pool2x(p).backward(Tensor::from_vector(std::vector<double>{8}, {1, 1, 1, 1}));
  EXPECT_EQ(p.grad().to_double_vector(), (std::vector<double>{2, 2, 2, 2}));
}

TEST(Resample, Errors) {
  try {
    avg_pool2x(Tensor::zeros({1, 5, 4, 3}));
    FAIL() << "odd height accepted";
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("avg_pool2x"), std::string::npos) << m;
    EXPECT_NE(m.find("[1, 5, 4, 3]"), std::string::npos) << m;
  }
  EXPECT_THROW(avg_pool2x(Tensor::zeros({1, 4, 3, 3})), ValueError);
  EXPECT_THROW(avg_pool2x(Tensor::zeros({4, 4, 3})), ValueError);
  EXPECT_THROW(upsample_nearest2x(Tensor::zeros({4, 4})), ValueError);
}

}  // namespace
}  // namespace ddpm
