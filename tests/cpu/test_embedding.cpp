// Timestep embedding (both styles, against the closed forms) and the class-embedding
// table (values, scatter-add gradient with repeated ids, errors).
#include <cmath>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/embedding.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;

// The closed form, written independently of the kernel: column j of the embedding of t.
double expected(double t, int dim, TimestepEmbeddingStyle style, int j, double max_period = 10000) {
  int half = dim / 2;
  if (j >= 2 * half) return 0.0;  // zero pad of an odd dim
  bool ddpm_style = style == TimestepEmbeddingStyle::ddpm;
  int i = j % half;
  double freq = std::exp(-std::log(max_period) * i / (ddpm_style ? half - 1 : half));
  bool first_half = j < half;
  bool is_sin = ddpm_style ? first_half : !first_half;
  return is_sin ? std::sin(t * freq) : std::cos(t * freq);
}

TEST(TimestepEmbedding, ZeroTimeGivesSinZerosAndCosOnesInStyleOrder) {
  Tensor t = Tensor::from_vector(std::vector<double>{0.0}, {1});
  std::vector<double> d = timestep_embedding(t, 8, TimestepEmbeddingStyle::ddpm).to_double_vector();
  EXPECT_EQ(d, (std::vector<double>{0, 0, 0, 0, 1, 1, 1, 1}));  // [sin | cos]
  std::vector<double> im = timestep_embedding(t, 8, TimestepEmbeddingStyle::improved).to_double_vector();
  EXPECT_EQ(im, (std::vector<double>{1, 1, 1, 1, 0, 0, 0, 0}));  // [cos | sin]
  std::vector<double> odd = timestep_embedding(t, 7, TimestepEmbeddingStyle::improved).to_double_vector();
  EXPECT_EQ(odd, (std::vector<double>{1, 1, 1, 0, 0, 0, 0}));  // last column is the zero pad
}

TEST(TimestepEmbedding, MatchesClosedFormsForBothStyles) {
  std::vector<double> ts{1.0, 37.5, 499.25, 999.0};  // non-integer t from respaced samplers
  Tensor t = Tensor::from_vector(ts, {4});
  for (auto style : {TimestepEmbeddingStyle::ddpm, TimestepEmbeddingStyle::improved})
    for (int dim : {4, 9, 128}) {
      SCOPED_TRACE(std::string(timestep_embedding_style_name(style)) + " dim " + std::to_string(dim));
      Tensor e = timestep_embedding(t, dim, style);
      ASSERT_EQ(e.shape(), (Shape{4, dim}));
      std::vector<double> v = e.to_double_vector();
      for (std::size_t n = 0; n < ts.size(); ++n)
        for (int j = 0; j < dim; ++j)
          EXPECT_NEAR(v[n * dim + j], expected(ts[n], dim, style, j), 1e-12) << "t " << ts[n] << " column " << j;
    }
  // The two styles' frequency ladders differ: ddpm's last frequency is exactly 1/max_period.
  Tensor t1 = Tensor::from_vector(std::vector<double>{1000.0}, {1});
  std::vector<double> d = timestep_embedding(t1, 8, TimestepEmbeddingStyle::ddpm, 1000).to_double_vector();
  EXPECT_NEAR(d[3], std::sin(1.0), 1e-14);  // sin(t * 1/1000)
  EXPECT_NEAR(d[7], std::cos(1.0), 1e-14);
  // f32 output: computed in double, rounded once.
  std::vector<float> f = timestep_embedding(t.to(DType::f32), 128, TimestepEmbeddingStyle::improved).to_vector();
  for (int j = 0; j < 128; ++j)
    EXPECT_EQ(f[3 * 128 + j], static_cast<float>(expected(999.0, 128, TimestepEmbeddingStyle::improved, j)));
}

TEST(TimestepEmbedding, StyleNamesAndErrors) {
  EXPECT_EQ(parse_timestep_embedding_style("ddpm"), TimestepEmbeddingStyle::ddpm);
  EXPECT_EQ(parse_timestep_embedding_style("improved"), TimestepEmbeddingStyle::improved);
  EXPECT_STREQ(timestep_embedding_style_name(TimestepEmbeddingStyle::improved), "improved");
  try {
    parse_timestep_embedding_style("guided");
    FAIL();
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'guided'"), std::string::npos) << m;
    EXPECT_NE(m.find("'improved'"), std::string::npos) << m;
  }
  Tensor t = Tensor::zeros({3});
  EXPECT_THROW(timestep_embedding(t, 3, TimestepEmbeddingStyle::ddpm), ValueError);  // half - 1 = 0
  EXPECT_THROW(timestep_embedding(t, 1, TimestepEmbeddingStyle::improved), ValueError);
  EXPECT_THROW(timestep_embedding(Tensor::zeros({3, 1}), 8, TimestepEmbeddingStyle::improved), ValueError);
  EXPECT_THROW(timestep_embedding(t, 8, TimestepEmbeddingStyle::improved, 0.0), ValueError);
}

TEST(Embedding, LooksUpRows) {
  Tensor table = Tensor::from_vector(std::vector<double>{0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor out = embedding(table, {2, 0, 2});
  ASSERT_EQ(out.shape(), (Shape{3, 2}));
  EXPECT_EQ(out.to_double_vector(), (std::vector<double>{20, 21, 0, 1, 20, 21}));
}

TEST(Embedding, GradientScatterAddsWithRepeatedIds) {
  Tensor table = random_tensor({4, 3}, 5);
  table.set_requires_grad(true);
  std::vector<std::int64_t> ids{1, 3, 1, 0, 1};  // id 1 three times, id 2 never
  EXPECT_TRUE(gradcheck([ids](const Inputs& in) { return embedding(in[0], ids); }, {table}));
  table.set_grad(Tensor());
  Tensor g = Tensor::from_vector(std::vector<double>{1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8, 16, 16, 16}, {5, 3});
  embedding(table, ids).backward(g);
  EXPECT_EQ(table.grad().to_double_vector(), (std::vector<double>{8, 8, 8, 21, 21, 21, 0, 0, 0, 2, 2, 2}));
}

TEST(Embedding, OutOfRangeIdNamesTheIdAndTableSize) {
  Tensor table = Tensor::zeros({10, 4});
  try {
    embedding(table, {3, 10});
    FAIL();
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("id 10"), std::string::npos) << m;
    EXPECT_NE(m.find("10 classes"), std::string::npos) << m;
  }
  EXPECT_THROW(embedding(table, {-1}), ValueError);
  EXPECT_THROW(embedding(Tensor::zeros({10}), {0}), ValueError);
}

}  // namespace
}  // namespace ddpm
