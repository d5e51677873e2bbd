// matmul and linear on the CPU: forward values against a naive triple loop written here,
// finite-difference gradient checks in double (every transpose combination, 2-D, batched,
// shared operands; linear with and without bias on 2-D, token and NHWC inputs), the
// kernel-level GEMM contract (leading dimensions, alpha/beta, K = 0, batch stride 0), and
// the error messages.
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/ops/linalg.h"
#include "kernels/cpu/gemm.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::random_tensor;
using testing::Inputs;
using testing::param;

// op(a) op(b) by the definition C[i][j] = sum_k A[i][k] B[k][j], in double, per batch
// matrix. A 2-D operand is shared by every batch matrix.
Tensor naive_matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
  std::int64_t batch = a.ndim() == 3 ? a.dim(0) : (b.ndim() == 3 ? b.dim(0) : 1);
  std::int64_t ar = a.dim(-2), ac = a.dim(-1), br = b.dim(-2), bc = b.dim(-1);
  std::int64_t M = ta ? ac : ar, K = ta ? ar : ac, N = tb ? br : bc;
  std::vector<double> c(static_cast<std::size_t>(batch * M * N), 0.0);
  for (std::int64_t p = 0; p < batch; ++p) {
    const double* A = av.data() + (a.ndim() == 3 ? p * ar * ac : 0);
    const double* B = bv.data() + (b.ndim() == 3 ? p * br * bc : 0);
    for (std::int64_t i = 0; i < M; ++i)
      for (std::int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (std::int64_t k = 0; k < K; ++k)
          s += (ta ? A[k * ac + i] : A[i * ac + k]) * (tb ? B[j * bc + k] : B[k * bc + j]);
        c[static_cast<std::size_t>((p * M + i) * N + j)] = s;
      }
  }
  Shape shape = a.ndim() == 3 || b.ndim() == 3 ? Shape{batch, M, N} : Shape{M, N};
  return Tensor::from_vector(c, shape, DType::f64);
}

// Stored shape of an operand whose op() is rows x cols.
Shape stored(std::int64_t batch, std::int64_t rows, std::int64_t cols, bool trans) {
  Shape s = trans ? Shape{cols, rows} : Shape{rows, cols};
  if (batch > 0) s.insert(s.begin(), batch);
  return s;
}

struct Case {
  const char* name;
  std::int64_t batch_a, batch_b;  // 0: a 2-D operand
};
const Case kCases[] = {{"2d", 0, 0}, {"batched", 3, 3}, {"shared_b", 3, 0}, {"shared_a", 0, 3}};
const bool kFlags[] = {false, true};

TEST(Linalg, MatmulForwardMatchesNaiveLoop) {
  const std::int64_t M = 5, K = 7, N = 4;
  for (const Case& c : kCases)
    for (bool ta : kFlags)
      for (bool tb : kFlags) {
        SCOPED_TRACE(std::string(c.name) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
        Tensor a = random_tensor(stored(c.batch_a, M, K, ta), 11);
        Tensor b = random_tensor(stored(c.batch_b, K, N, tb), 12);
        Tensor expected = naive_matmul(a, b, ta, tb);
        EXPECT_TRUE(all_close(matmul(a, b, ta, tb), expected, 1e-12, 1e-12)) << "f64";
        EXPECT_TRUE(all_close(matmul(a.to(DType::f32), b.to(DType::f32), ta, tb), expected, 1e-5, 1e-5)) << "f32";
      }
}

TEST(Linalg, MatmulExactSmallProduct) {
  // [[1,2,3],[4,5,6]] x [[7,8],[9,10],[11,12]] = [[58,64],[139,154]]
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<double>{7, 8, 9, 10, 11, 12}, {3, 2});
  EXPECT_EQ(matmul(a, b).to_double_vector(), (std::vector<double>{58, 64, 139, 154}));
  // a^T a = [[17,22,27],[22,29,36],[27,36,45]]
  EXPECT_EQ(matmul(a, a, true, false).to_double_vector(),
            (std::vector<double>{17, 22, 27, 22, 29, 36, 27, 36, 45}));
}

TEST(Linalg, MatmulGradcheckAllTransposesAndBatchForms) {
  const std::int64_t M = 3, K = 4, N = 2;
  for (const Case& c : kCases)
    for (bool ta : kFlags)
      for (bool tb : kFlags) {
        SCOPED_TRACE(std::string(c.name) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
        Tensor a = param(random_tensor(stored(c.batch_a, M, K, ta), 21));
        Tensor b = param(random_tensor(stored(c.batch_b, K, N, tb), 22));
        EXPECT_TRUE(gradcheck([ta, tb](const Inputs& in) { return matmul(in[0], in[1], ta, tb); }, {a, b}));
      }
}

TEST(Linalg, MatmulGradientOfOneOperandOnly) {
  Tensor a = param(random_tensor({2, 3, 4}, 23));
  Tensor b = random_tensor({4, 5}, 24);
  EXPECT_TRUE(gradcheck([b](const Inputs& in) { return matmul(in[0], b); }, {a}));
  Tensor a2 = random_tensor({2, 3, 4}, 25);
  Tensor b2 = param(random_tensor({4, 5}, 26));
  EXPECT_TRUE(gradcheck([a2](const Inputs& in) { return matmul(a2, in[0]); }, {b2}));
}

// y = x W^T + b, by the definition.
Tensor naive_linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  std::vector<double> xv = x.to_double_vector(), wv = w.to_double_vector();
  std::vector<double> bv = bias.defined() ? bias.to_double_vector() : std::vector<double>();
  std::int64_t in = w.dim(1), out = w.dim(0), rows = x.numel() / in;
  std::vector<double> y(static_cast<std::size_t>(rows * out));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t o = 0; o < out; ++o) {
      double s = bias.defined() ? bv[static_cast<std::size_t>(o)] : 0.0;
      for (std::int64_t i = 0; i < in; ++i)
        s += xv[static_cast<std::size_t>(r * in + i)] * wv[static_cast<std::size_t>(o * in + i)];
      y[static_cast<std::size_t>(r * out + o)] = s;
    }
  Shape shape = x.shape();
  shape.back() = out;
  return Tensor::from_vector(y, shape, DType::f64);
}

const Shape kLinearInputs[] = {{6, 4}, {2, 5, 4}, {2, 3, 3, 4}};  // [N, C], tokens [B, S, C], NHWC

TEST(Linalg, LinearForwardMatchesNaiveLoop) {
  Tensor w = random_tensor({5, 4}, 31), bias = random_tensor({5}, 32);
  for (const Shape& xs : kLinearInputs) {
    SCOPED_TRACE(shape_str(xs));
    Tensor x = random_tensor(xs, 33);
    EXPECT_TRUE(all_close(linear(x, w, bias), naive_linear(x, w, bias), 1e-12, 1e-12));
    EXPECT_TRUE(all_close(linear(x, w), naive_linear(x, w, Tensor()), 1e-12, 1e-12));
    EXPECT_TRUE(all_close(linear(x.to(DType::f32), w.to(DType::f32), bias.to(DType::f32)),
                          naive_linear(x, w, bias), 1e-5, 1e-5));
  }
}

TEST(Linalg, LinearGradcheckWithAndWithoutBias) {
  for (const Shape& xs : kLinearInputs) {
    SCOPED_TRACE(shape_str(xs));
    Tensor x = param(random_tensor(xs, 41));
    Tensor w = param(random_tensor({5, 4}, 42));
    Tensor bias = param(random_tensor({5}, 43));
    EXPECT_TRUE(gradcheck([](const Inputs& in) { return linear(in[0], in[1], in[2]); }, {x, w, bias}));
    EXPECT_TRUE(gradcheck([](const Inputs& in) { return linear(in[0], in[1]); }, {x, w}));
  }
  // Only the parameters need gradients (the network input does not).
  Tensor x = random_tensor({2, 3, 3, 4}, 44);
  Tensor w = param(random_tensor({5, 4}, 45)), bias = param(random_tensor({5}, 46));
  EXPECT_TRUE(gradcheck([x](const Inputs& in) { return linear(x, in[0], in[1]); }, {w, bias}));
}

TEST(Linalg, EmptyInnerDimensionGivesZeros) {
  Tensor a = Tensor::zeros({3, 0}, DType::f64), b = Tensor::zeros({0, 2}, DType::f64);
  EXPECT_EQ(matmul(a, b).to_double_vector(), std::vector<double>(6, 0.0));
  Tensor x = Tensor::zeros({2, 0}, DType::f64), w = Tensor::zeros({3, 0}, DType::f64);
  Tensor bias = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3});
  EXPECT_EQ(linear(x, w, bias).to_double_vector(), (std::vector<double>{1, 2, 3, 1, 2, 3}));
}

TEST(Linalg, KernelHonoursLeadingDimensionsAlphaBeta) {
  // A is 2x3 inside a 2x5 buffer (lda = 5), B is 3x2 inside a 3x4 buffer (ldb = 4), C is
  // 2x2 inside a 2x3 buffer (ldc = 3); C = 2 A B + 0.5 C. Padding must stay untouched.
  std::vector<double> A = {1, 2, 3, -9, -9, 4, 5, 6, -9, -9};
  std::vector<double> B = {7, 8, -9, -9, 9, 10, -9, -9, 11, 12, -9, -9};
  std::vector<double> C = {2, 4, 77, 6, 8, 77};
  cpu::gemm<double>(false, false, 2, 2, 3, 2.0, A.data(), 5, B.data(), 4, 0.5, C.data(), 3);
  EXPECT_EQ(C, (std::vector<double>{2 * 58 + 1, 2 * 64 + 2, 77, 2 * 139 + 3, 2 * 154 + 4, 77}));
  // K = 0: C = beta C.
  std::vector<float> Cf = {1, 2, 3, 4};
  cpu::gemm<float>(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 3.0f, Cf.data(), 2);
  EXPECT_EQ(Cf, (std::vector<float>{3, 6, 9, 12}));
  // Batch stride 0 shares B: two products with the same B.
  std::vector<double> A2 = {1, 0, 0, 1, 2, 0, 0, 2};  // I, 2I  (2x2 each)
  std::vector<double> B2 = {1, 2, 3, 4};
  std::vector<double> C2(8);
  cpu::gemm_strided_batched<double>(false, false, 2, 2, 2, 1.0, A2.data(), 2, 4, B2.data(), 2, 0, 0.0, C2.data(), 2,
                                    4, 2);
  EXPECT_EQ(C2, (std::vector<double>{1, 2, 3, 4, 2, 4, 6, 8}));
}

TEST(Linalg, KernelRejectsBadLeadingDimensions) {
  std::vector<float> buf(64);
  EXPECT_THROW(cpu::gemm<float>(false, false, 4, 4, 4, 1.0f, buf.data(), 3, buf.data(), 4, 0.0f, buf.data(), 4),
               ValueError);  // lda < K
  EXPECT_THROW(cpu::gemm<float>(true, false, 4, 4, 2, 1.0f, buf.data(), 2, buf.data(), 4, 0.0f, buf.data(), 4),
               ValueError);  // trans_a: lda < M
  EXPECT_THROW(cpu::gemm<float>(false, false, 2, 4, 2, 1.0f, buf.data(), 2, buf.data(), 4, 0.0f, buf.data(), 3),
               ValueError);  // ldc < N
  EXPECT_THROW(cpu::gemm_strided_batched<float>(false, false, 2, 2, 2, 1.0f, buf.data(), 2, 4, buf.data(), 2, 4, 0.0f,
                                                buf.data(), 2, 2, 2),
               ValueError);  // output matrices overlap
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ValueError& e) {
    return e.what();
  }
  return "(no ValueError thrown)";
}

TEST(LinalgErrors, MessagesNameTheOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
  std::string m = message_of([&] { matmul(a, b); });
  EXPECT_NE(m.find("matmul: inner dimensions differ: 'a' [2, 3] (transpose_a=false) has K=3 but 'b' [4, 5] "
                   "(transpose_b=false) has K=4"),
            std::string::npos)
      << m;
  EXPECT_NO_THROW(matmul(a, Tensor::zeros({5, 2}), true, true));  // [3, 2] x [2, 5]
  m = message_of([&] { matmul(a, Tensor::zeros({5, 3}), true, true); });
  EXPECT_NE(m.find("'a' [2, 3] (transpose_a=true) has K=2 but 'b' [5, 3] (transpose_b=true) has K=3"),
            std::string::npos)
      << m;
  m = message_of([&] { matmul(Tensor::zeros({3, 2, 3}), Tensor::zeros({2, 3, 4})); });
  EXPECT_NE(m.find("matmul: batch sizes differ: 'a' is [3, 2, 3] and 'b' is [2, 3, 4]"), std::string::npos) << m;
  m = message_of([&] { matmul(Tensor::zeros({3}), b); });
  EXPECT_NE(m.find("matmul: 'a' must be a matrix [M, K] or a batch of matrices [B, M, K], got shape [3]"),
            std::string::npos)
      << m;
  EXPECT_THROW(matmul(a, Tensor::zeros({3, 2}, DType::f64)), ValueError);

  Tensor x = Tensor::zeros({2, 8, 8, 6}), w = Tensor::zeros({5, 4});
  m = message_of([&] { linear(x, w); });
  EXPECT_NE(m.find("linear: 'x' [2, 8, 8, 6] has 6 features in its last axis but 'weight' [5, 4] [out, in] "
                   "expects in=4"),
            std::string::npos)
      << m;
  m = message_of([&] { linear(Tensor::zeros({2, 4}), w, Tensor::zeros({4})); });
  EXPECT_NE(m.find("linear: 'bias' must have shape [5], got [4]"), std::string::npos) << m;
  EXPECT_THROW(linear(Tensor::zeros({2, 4}), Tensor::zeros({5, 4, 1})), ValueError);
}

}  // namespace
}  // namespace ddpm
