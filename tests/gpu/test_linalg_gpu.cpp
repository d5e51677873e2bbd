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
//
// TF32 (engine/math_mode.h, off by default): cuBLAS may round each input of a product to a
// 10-bit mantissa (relative error up to 2^-11, or 2^-10 if truncated), so a K-term sum errs by
// ~1e-3 of its magnitude whatever K is. Those checks compare against an f64 CPU reference on
// the same f32 inputs: max |error| <= 3e-3 * max |reference| and NMSE <= 1e-5, as in
// test_conv_gpu.cpp, and check that switching TF32 off restores fp32 results bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/math_mode.h"
#include "engine/ops/linalg.h"
#include "support/gradcheck.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/context.h"
#include "kernels/cuda/gemm.h"
#endif

namespace ddpm {
namespace {

using testing::all_close;
using testing::same_bits;
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

// linear(x, W, b) forward and backward on CUDA, and the f64 CPU reference on the same f32
// values: x [256, 512], W [384, 512] (K = 512 forward, 384 for dx, 256 rows for dW and db),
// and the batched attention-style product [32, 256, 64] x [32, 64, 256] (K = 64).
struct LinalgResults {
  Tensor y, dx, dw, db, p, da, dbb;  // CUDA results, on the host
};

LinalgResults run_linalg(bool tf32_tolerance) {
  Tensor x32 = random_tensor({256, 512}, 21, DType::f32);
  Tensor w32 = random_tensor({384, 512}, 22, DType::f32, 1.0 / std::sqrt(512.0));
  Tensor b32 = random_tensor({384}, 23, DType::f32);
  Tensor a32 = random_tensor({32, 256, 64}, 24, DType::f32, 0.125);
  Tensor c32 = random_tensor({32, 64, 256}, 25, DType::f32, 0.125);
  Tensor xc = x32.to(DType::f64).set_requires_grad(true), wc = w32.to(DType::f64).set_requires_grad(true);
  Tensor bc = b32.to(DType::f64).set_requires_grad(true);
  Tensor ac = a32.to(DType::f64).set_requires_grad(true), cc = c32.to(DType::f64).set_requires_grad(true);
  Tensor xg = x32.to(Device::cuda()).set_requires_grad(true), wg = w32.to(Device::cuda()).set_requires_grad(true);
  Tensor bg = b32.to(Device::cuda()).set_requires_grad(true);
  Tensor ag = a32.to(Device::cuda()).set_requires_grad(true), cg = c32.to(Device::cuda()).set_requires_grad(true);

  Tensor yc = linear(xc, wc, bc), yg = linear(xg, wg, bg);
  Tensor pc = matmul(ac, cc), pg = matmul(ag, cg);
  Tensor gy = random_tensor(yc.shape(), 26, DType::f32), gp = random_tensor(pc.shape(), 27, DType::f32);
  yc.backward(gy.to(DType::f64));
  yg.backward(gy.to(Device::cuda()));
  pc.backward(gp.to(DType::f64));
  pg.backward(gp.to(Device::cuda()));
  LinalgResults r{yg.to(Device::cpu()),      xg.grad().to(Device::cpu()), wg.grad().to(Device::cpu()),
                  bg.grad().to(Device::cpu()), pg.to(Device::cpu()),      ag.grad().to(Device::cpu()),
                  cg.grad().to(Device::cpu())};
  if (tf32_tolerance) {
    const double rel = 3e-3, nmse = 1e-5;  // see the top of the file
    EXPECT_TRUE(testing::within_scale(r.y, yc, rel, nmse)) << "linear forward (TF32)";
    EXPECT_TRUE(testing::within_scale(r.dx, xc.grad(), rel, nmse)) << "linear dx (TF32)";
    EXPECT_TRUE(testing::within_scale(r.dw, wc.grad(), rel, nmse)) << "linear dW (TF32)";
    EXPECT_TRUE(testing::within_scale(r.db, bc.grad(), rel, nmse)) << "linear db (TF32)";
    EXPECT_TRUE(testing::within_scale(r.p, pc, rel, nmse)) << "batched product (TF32)";
    EXPECT_TRUE(testing::within_scale(r.da, ac.grad(), rel, nmse)) << "batched product da (TF32)";
    EXPECT_TRUE(testing::within_scale(r.dbb, cc.grad(), rel, nmse)) << "batched product db (TF32)";
    return r;
  }
  // fp32 as in the tests above: forward K = 512 (values O(1)), dx K = 384, dW and db sum 256
  // rows (values ~16); the batched product K = 64, its gradients K = 256 (values ~2).
  EXPECT_TRUE(all_close(r.y, yc, 5e-5, 1e-4)) << "linear forward";
  EXPECT_TRUE(all_close(r.dx, xc.grad(), 5e-5, 1e-4)) << "linear dx";
  EXPECT_TRUE(all_close(r.dw, wc.grad(), 5e-4, 1e-4)) << "linear dW";
  EXPECT_TRUE(all_close(r.db, bc.grad(), 5e-4, 1e-4)) << "linear db";
  EXPECT_TRUE(all_close(r.p, pc, 1e-5, 1e-4)) << "batched product";
  EXPECT_TRUE(all_close(r.da, ac.grad(), 5e-5, 1e-4)) << "batched product da";
  EXPECT_TRUE(all_close(r.dbb, cc.grad(), 5e-5, 1e-4)) << "batched product db";
  return r;
}

TEST(LinalgGpu, Tf32WithinTf32ToleranceAndSwitchingBackRestoresFp32) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  LinalgResults before = run_linalg(false);
  set_allow_tf32(true);
  run_linalg(true);
  set_allow_tf32(false);
  LinalgResults after = run_linalg(false);
  // cuBLAS repeats its rounding exactly for the same call on the same stream and math mode.
  EXPECT_TRUE(same_bits(after.y, before.y));
  EXPECT_TRUE(same_bits(after.dx, before.dx));
  EXPECT_TRUE(same_bits(after.dw, before.dw));
  EXPECT_TRUE(same_bits(after.p, before.p));
  EXPECT_TRUE(same_bits(after.da, before.da));
  EXPECT_TRUE(same_bits(after.dbb, before.dbb));
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

TEST(LinalgGpu, HandleMathModeFollowsTheTf32Setting) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  cublasMath_t mode{};
  set_allow_tf32(true);
  ASSERT_EQ(cublasGetMathMode(cuda::cublas(), &mode), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(mode, CUBLAS_TF32_TENSOR_OP_MATH);
  set_allow_tf32(false);
  ASSERT_EQ(cublasGetMathMode(cuda::cublas(), &mode), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(mode, CUBLAS_DEFAULT_MATH);
}
#endif

}  // namespace
}  // namespace ddpm
