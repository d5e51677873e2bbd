// matmul and linear on CUDA (cuBLAS, fp32, TF32 off) against the CPU reference (OpenBLAS,
// fp32), forward and backward, at the UNet's shapes:
//   linear on NHWC activations  [8, 16, 16, 256] -> 768   (qkv projection of a 16x16 block)
//   time-embedding MLP          [128, 512] x [512, 512]
//   attention products         [8*4, 256, 64] x [8*4, 64, 256] and back (batch*heads, S, d)
// plus the kernel-level contract (leading dimensions, alpha/beta, K = 0, stride 0, a
// caller's own stream).
//
// Tolerances: both sides are fp32 GEMMs that sum K products in different orders (blocked,
// possibly split-K), so an output with K terms of size ~1 differs by a few ulp times
// sqrt(K). Inputs are scaled so forward outputs are O(1); each check states its K.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/linalg.h"
#include "support/gradcheck.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/context.h"
#include "kernels/cuda/gemm.h"
#endif

namespace ddpm {
namespace {

using testing::all_close;
using testing::check_against_cpu;
using testing::Tolerance;
using testing::random_tensor;

TEST(LinalgGpu, LinearOnNhwcActivations) {
  DDPM_REQUIRE_CUDA();
  // x [8,16,16,256], W [768,256], b [768]. Forward K = 256; dx K = 768; dW and db sum
  // over 8*16*16 = 2048 rows: values ~45, and a sequential fp32 sum of n terms of that
  // size drifts by about 2^-24 * n / 2.5 ~ 5e-5 per side, so their atol is 1e-3.
  Tensor x = random_tensor({8, 16, 16, 256}, 1);
  Tensor w = random_tensor({768, 256}, 2, DType::f64, 1.0 / 16.0);  // 1/sqrt(256)
  Tensor b = random_tensor({768}, 3);
  check_against_cpu([](const auto& in) { return linear(in[0], in[1], in[2]); }, {x, w, b},
                    {{2e-5, 1e-4}, {{2e-5, 1e-4}, {1e-3, 1e-4}, {1e-3, 1e-4}}});
  check_against_cpu([](const auto& in) { return linear(in[0], in[1]); }, {x, w},
                    {{2e-5, 1e-4}, {{2e-5, 1e-4}, {1e-3, 1e-4}}});
}

TEST(LinalgGpu, TimeEmbeddingMlp) {
  DDPM_REQUIRE_CUDA();
  // Two stacked layers [128, 512] x [512, 512]^T + b (the activation between them is not
  // this file's op): K = 512, weight gradients sum over 128 rows.
  Tensor x = random_tensor({128, 512}, 4);
  Tensor w1 = random_tensor({512, 512}, 5, DType::f64, 1.0 / std::sqrt(512.0));
  Tensor w2 = random_tensor({512, 512}, 6, DType::f64, 1.0 / std::sqrt(512.0));
  Tensor b1 = random_tensor({512}, 7), b2 = random_tensor({512}, 8);
  Tolerance t{5e-5, 1e-4};
  check_against_cpu([](const auto& in) { return linear(linear(in[0], in[1], in[2]), in[3], in[4]); },
                    {x, w1, b1, w2, b2}, {t, {t, {2e-4, 1e-4}, {2e-4, 1e-4}, {2e-4, 1e-4}, {2e-4, 1e-4}}});
}

TEST(LinalgGpu, BatchedAttentionProductsAllTransposes) {
  DDPM_REQUIRE_CUDA();
  // (batch 8) x (4 heads), S = 16*16 = 256 tokens, head dim 64.
  const std::int64_t BH = 8 * 4, S = 256, d = 64;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      SCOPED_TRACE("ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
      // op(a) [BH, S, d] x op(b) [BH, d, S] -> [BH, S, S]: K = 64.
      Tensor a = random_tensor(ta ? Shape{BH, d, S} : Shape{BH, S, d}, 9, DType::f64, 0.125);
      Tensor b = random_tensor(tb ? Shape{BH, S, d} : Shape{BH, d, S}, 10, DType::f64, 0.125);
      // Gradients contract over S = 256 (values ~2): a slightly looser atol.
      check_against_cpu([ta, tb](const auto& in) { return matmul(in[0], in[1], ta, tb); }, {a, b},
                        {{1e-5, 1e-4}, {{5e-5, 1e-4}, {5e-5, 1e-4}}});
    }
  // probabilities [BH, S, S] x v [BH, S, d]: K = 256.
  Tensor p = random_tensor({BH, S, S}, 11, DType::f64, 1.0 / 16.0), v = random_tensor({BH, S, d}, 12);
  check_against_cpu([](const auto& in) { return matmul(in[0], in[1]); }, {p, v},
                    {{2e-5, 1e-4}, {{5e-5, 1e-4}, {5e-5, 1e-4}}});
}

TEST(LinalgGpu, SharedOperandAcrossTheBatch) {
  DDPM_REQUIRE_CUDA();
  // a [8, 256, 64] with one b [64, 128] (shared) and a [64, 256] shared with b [8, 256, 128].
  // The shared operand's gradient sums 8*256 = 2048 (or 8*128) products: atol 1e-3 as for dW.
  Tensor a3 = random_tensor({8, 256, 64}, 13), b2 = random_tensor({64, 128}, 14, DType::f64, 0.125);
  Tensor a3t = random_tensor({8, 64, 256}, 15);
  for (bool tb : {false, true}) {
    Tensor b = tb ? random_tensor({128, 64}, 16, DType::f64, 0.125) : b2;
    check_against_cpu([tb](const auto& in) { return matmul(in[0], in[1], false, tb); }, {a3, b},
                      {{2e-5, 1e-4}, {{2e-5, 1e-4}, {1e-3, 1e-4}}});
    check_against_cpu([tb](const auto& in) { return matmul(in[0], in[1], true, tb); }, {a3t, b},
                      {{2e-5, 1e-4}, {{2e-5, 1e-4}, {1e-3, 1e-4}}});
  }
  Tensor a2 = random_tensor({64, 256}, 17, DType::f64, 1.0 / 16.0), b3 = random_tensor({8, 256, 128}, 18);
  check_against_cpu([](const auto& in) { return matmul(in[0], in[1]); }, {a2, b3},
                    {{2e-5, 1e-4}, {{1e-3, 1e-4}, {2e-5, 1e-4}}});
}

TEST(LinalgGpu, MixingDevicesIsAClearError) {
  DDPM_REQUIRE_CUDA();
  Tensor a = Tensor::zeros({4, 4}), b = Tensor::zeros({4, 4}, DType::f32, Device::cuda());
  EXPECT_THROW(matmul(a, b), ValueError);
  EXPECT_THROW(linear(b, b, Tensor::zeros({4})), ValueError);
  EXPECT_THROW(matmul(Tensor::zeros({4, 4}, DType::f64, Device::cuda()), b), ValueError);  // f64 is CPU-only
}

#if DDPM_HAVE_CUDA
TEST(LinalgGpu, KernelLeadingDimensionsAlphaBetaAndStreams) {
  DDPM_REQUIRE_CUDA();
  // A 2x3 in a 2x5 buffer, B 3x2 in a 3x4 buffer, C 2x2 in a 2x3 buffer: C = 2 A B + 0.5 C.
  Tensor A = Tensor::from_vector(std::vector<float>{1, 2, 3, -9, -9, 4, 5, 6, -9, -9}, {10}, Device::cuda());
  Tensor B = Tensor::from_vector(std::vector<float>{7, 8, -9, -9, 9, 10, -9, -9, 11, 12, -9, -9}, {12}, Device::cuda());
  Tensor C = Tensor::from_vector(std::vector<float>{2, 4, 77, 6, 8, 77}, {6}, Device::cuda());
  cuda::gemm(false, false, 2, 2, 3, 2.0f, A.data<float>(), 5, B.data<float>(), 4, 0.5f, C.data<float>(), 3,
             cuda::stream());
  EXPECT_EQ(C.to_vector(), (std::vector<float>{117, 130, 77, 281, 312, 77}));

  // The same with trans_a (A stored 3x2, lda = 2) and trans_b (B stored 2x3, ldb = 3).
  Tensor At = Tensor::from_vector(std::vector<float>{1, 4, 2, 5, 3, 6}, {6}, Device::cuda());
  Tensor Bt = Tensor::from_vector(std::vector<float>{7, 9, 11, 8, 10, 12}, {6}, Device::cuda());
  Tensor C2 = Tensor::empty({4}, DType::f32, Device::cuda());
  cuda::gemm(true, true, 2, 2, 3, 1.0f, At.data<float>(), 2, Bt.data<float>(), 3, 0.0f, C2.data<float>(), 2,
             cuda::stream());
  EXPECT_EQ(C2.to_vector(), (std::vector<float>{58, 64, 139, 154}));

  // K = 0: C = beta C, and with beta = 0 C becomes 0 even if it held NaN.
  Tensor C3 = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {4}, Device::cuda());
  cuda::gemm(false, false, 2, 2, 0, 1.0f, A.data<float>(), 1, B.data<float>(), 2, 3.0f, C3.data<float>(), 2,
             cuda::stream());
  EXPECT_EQ(C3.to_vector(), (std::vector<float>{3, 6, 9, 12}));
  Tensor C4 = Tensor::full({4}, NAN, DType::f32, Device::cuda());
  cuda::gemm(false, false, 2, 2, 0, 1.0f, A.data<float>(), 1, B.data<float>(), 2, 0.0f, C4.data<float>(), 2,
             cuda::stream());
  EXPECT_EQ(C4.to_vector(), (std::vector<float>{0, 0, 0, 0}));

  // Batch stride 0 shares B, on a caller's own stream; the engine handle keeps its stream.
  Tensor A2 = Tensor::from_vector(std::vector<float>{1, 0, 0, 1, 2, 0, 0, 2}, {8}, Device::cuda());
  Tensor B2 = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {4}, Device::cuda());
  Tensor C5 = Tensor::empty({8}, DType::f32, Device::cuda());
  cuda::synchronize();
  cudaStream_t own = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&own, cudaStreamNonBlocking), cudaSuccess);
  cuda::gemm_strided_batched(false, false, 2, 2, 2, 1.0f, A2.data<float>(), 2, 4, B2.data<float>(), 2, 0, 0.0f,
                             C5.data<float>(), 2, 4, 2, own);
  ASSERT_EQ(cudaStreamSynchronize(own), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(own), cudaSuccess);
  cudaStream_t bound = nullptr;
  ASSERT_EQ(cublasGetStream(cuda::cublas(), &bound), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(bound, cuda::stream());
  EXPECT_EQ(C5.to_vector(), (std::vector<float>{1, 2, 3, 4, 2, 4, 6, 8}));

  EXPECT_THROW(cuda::gemm(false, false, 4, 4, 4, 1.0f, A.data<float>(), 3, B.data<float>(), 4, 0.0f,
                          C.data<float>(), 4, cuda::stream()),
               ValueError);  // lda < K
}
#endif

}  // namespace
}  // namespace ddpm
