// The CUDA attention core (cuBLAS GEMMs + fused softmax kernels) against the CPU reference,
// forward and gradients of q, k and v, at the UNet's attention shapes: 16x16, 32x32 and
// 8x8 token grids with 128..512 channels, by head count and by 64 channels per head.
// The batching paths of kernels/cuda/attention.cu are each covered: heads == 1 (strided
// over images), B == 1 (strided over heads), otherwise pointer tables; and the softmax
// paths of attention_softmax.cu: float4 / float2 / scalar rows held in registers, and the
// streaming kernel for rows longer than 1024 tokens. Cross-attention (k, v with Sk != Sq
// tokens: Sk = 1, 7, 77 context tokens against Sq = 64, 256 image tokens) on each path.
// With a logit bias [heads, Sq, Sk] (the temporal attention's relative positions): forward
// and the gradients of q, k, v and the bias on each batching path and each softmax path, the
// temporal shape (many sequences of a few frames), and a zero bias equal to no bias.
#include <string>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/attention.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::all_close;
using testing::check_against_cpu;
using testing::random_tensor;

// fp32 on both sides; the CPU sums in double, cuBLAS in fp32 over S (up to 1024) terms.
constexpr double kForwardAtol = 2e-5, kForwardRtol = 1e-4;
constexpr double kGradAtol = 1e-4, kGradRtol = 1e-3;

// Runs attention on the CPU (f32) and on CUDA with the same inputs and output gradient;
// compares the outputs and the gradients of q, k and v.
void check_attention(const Shape& shape, int heads, std::uint64_t seed) {
  SCOPED_TRACE(shape_str(shape) + " heads " + std::to_string(heads));
  std::vector<Tensor> host;
  for (std::uint64_t i = 0; i < 3; ++i) host.push_back(random_tensor(shape, seed + i, DType::f32));
  testing::CudaCheck check{{kForwardAtol, kForwardRtol}, {{kGradAtol, kGradRtol}}};
  check.grad_seed = seed + 100;
  check.names = {"q", "k", "v"};
  check_against_cpu([heads](const auto& in) { return attention(in[0], in[1], in[2], heads); }, host, check);
}

// Cross-attention: q [B, Sq, C], k and v [B, Sk, C].
void check_cross_attention(std::int64_t B, std::int64_t Sq, std::int64_t Sk, std::int64_t C, int heads,
                           std::uint64_t seed) {
  SCOPED_TRACE("B " + std::to_string(B) + " Sq " + std::to_string(Sq) + " Sk " + std::to_string(Sk) + " C " +
               std::to_string(C) + " heads " + std::to_string(heads));
  std::vector<Tensor> host{random_tensor({B, Sq, C}, seed, DType::f32), random_tensor({B, Sk, C}, seed + 1, DType::f32),
                           random_tensor({B, Sk, C}, seed + 2, DType::f32)};
  testing::CudaCheck check{{kForwardAtol, kForwardRtol}, {{kGradAtol, kGradRtol}}};
  check.grad_seed = seed + 100;
  check.names = {"q", "k", "v"};
  check_against_cpu([heads](const auto& in) { return attention(in[0], in[1], in[2], heads); }, host, check);
}

TEST(AttentionGpu, CrossAttentionToContextTokens) {
  DDPM_REQUIRE_CUDA();
  std::uint64_t seed = 200;
  for (std::int64_t sq : {64, 256}) {
    for (std::int64_t sk : {1, 7, 77}) {
      check_cross_attention(4, sq, sk, 128, 4, seed += 10);  // pointer tables over (b, h)
      check_cross_attention(2, sq, sk, 64, 1, seed += 10);   // heads == 1: strided over images
      check_cross_attention(1, sq, sk, 128, 2, seed += 10);  // B == 1: strided over heads
    }
  }
}

TEST(AttentionGpu, Tokens16x16) {
  DDPM_REQUIRE_CUDA();
  check_attention({2, 256, 128}, 1, 1);
  check_attention({4, 256, 128}, 4, 2);
  check_attention({4, 256, 256}, attention_heads(256, 1, 64), 3);
  check_attention({8, 256, 512}, attention_heads(512, 1, 64), 4);
  check_attention({2, 256, 512}, 1, 5);
}

TEST(AttentionGpu, Tokens32x32) {
  DDPM_REQUIRE_CUDA();
  check_attention({4, 1024, 128}, attention_heads(128, 1, 64), 6);
  check_attention({4, 1024, 128}, 1, 7);
}

TEST(AttentionGpu, Tokens8x8) {
  DDPM_REQUIRE_CUDA();
  check_attention({8, 64, 256}, 4, 8);
  check_attention({8, 64, 256}, attention_heads(256, 1, 64), 9);
}

TEST(AttentionGpu, RowsShorterOrNotAMultipleOfTheWarp) {
  DDPM_REQUIRE_CUDA();
  check_attention({3, 100, 96}, 3, 10);  // 100 tokens: a partial last pass per row
  check_attention({2, 7, 16}, 2, 11);    // fewer tokens than warp lanes
}

TEST(AttentionGpu, OneImageBatchesOverHeads) {
  DDPM_REQUIRE_CUDA();
  check_attention({1, 256, 256}, 4, 15);  // B == 1: one strided call over the heads
  check_attention({1, 64, 128}, 1, 16);   // B == 1, heads == 1: a batch of one
}

TEST(AttentionGpu, OddAndLongRows) {
  DDPM_REQUIRE_CUDA();
  check_attention({2, 999, 32}, 1, 17);   // odd row length: scalar loads, 32 per lane
  check_attention({2, 1100, 64}, 2, 18);  // past 1024 tokens: the streaming softmax kernels
}

TEST(AttentionGpu, ZeroQueryGivesTheMeanOfValues) {
  DDPM_REQUIRE_CUDA();
  Tensor q = Tensor::zeros({2, 256, 128}, DType::f32, Device::cuda());
  Tensor k = random_tensor({2, 256, 128}, 12, DType::f32, 5.0).to(Device::cuda());
  Tensor v = random_tensor({2, 256, 128}, 13, DType::f32);
  Tensor expected = expand_to(mean(v, {1}, true), v.shape());  // [2, 1, 128] -> [2, 256, 128]
  EXPECT_TRUE(all_close(attention(q, k, v.to(Device::cuda()), 2), expected, 1e-5, 1e-4));
}

// Attention with a logit bias [heads, Sq, Sk]: outputs and the gradients of q, k, v, bias.
void check_biased_attention(std::int64_t B, std::int64_t Sq, std::int64_t Sk, std::int64_t C, int heads,
                            std::uint64_t seed) {
  SCOPED_TRACE("bias: B " + std::to_string(B) + " Sq " + std::to_string(Sq) + " Sk " + std::to_string(Sk) + " C " +
               std::to_string(C) + " heads " + std::to_string(heads));
  std::vector<Tensor> host{random_tensor({B, Sq, C}, seed, DType::f32), random_tensor({B, Sk, C}, seed + 1, DType::f32),
                           random_tensor({B, Sk, C}, seed + 2, DType::f32),
                           random_tensor({heads, Sq, Sk}, seed + 3, DType::f32, 2.0)};
  testing::CudaCheck check{{kForwardAtol, kForwardRtol}, {{kGradAtol, kGradRtol}}};
  check.grad_seed = seed + 100;
  check.names = {"q", "k", "v", "bias"};
  check_against_cpu([heads](const auto& in) { return attention(in[0], in[1], in[2], in[3], heads); }, host, check);
}

TEST(AttentionGpu, LogitBiasForwardAndGradients) {
  DDPM_REQUIRE_CUDA();
  check_biased_attention(128, 8, 8, 64, 2, 300);     // temporal: 2 clips x 8x8 positions, 8 frames; scalar rows
  check_biased_attention(4, 256, 256, 128, 4, 310);  // pointer tables, float4 rows
  check_biased_attention(2, 100, 100, 64, 1, 320);   // heads == 1: strided over images, float2 rows
  check_biased_attention(1, 64, 77, 128, 2, 330);    // B == 1: strided over heads, cross-attention
  check_biased_attention(2, 1100, 1100, 32, 1, 340); // the streaming softmax kernels
}

TEST(AttentionGpu, ZeroLogitBiasIsNoBias) {
  DDPM_REQUIRE_CUDA();
  const Tensor q = random_tensor({4, 64, 128}, 350, DType::f32).to(Device::cuda());
  const Tensor k = random_tensor({4, 64, 128}, 351, DType::f32).to(Device::cuda());
  const Tensor v = random_tensor({4, 64, 128}, 352, DType::f32).to(Device::cuda());
  const Tensor zero = Tensor::zeros({2, 64, 64}, DType::f32, Device::cuda());
  EXPECT_TRUE(testing::same_bits(attention(q, k, v, zero, 2), attention(q, k, v, 2)));
}

TEST(AttentionGpu, NoGradForwardAndDeviceMismatch) {
  DDPM_REQUIRE_CUDA();
  Tensor x = random_tensor({2, 64, 128}, 14, DType::f32);
  Tensor xg = x.to(Device::cuda());
  {
    NoGradGuard no_grad;
    EXPECT_TRUE(all_close(attention(xg, xg, xg, 2), attention(x, x, x, 2), kForwardAtol, kForwardRtol));
  }
  EXPECT_THROW(attention(xg, x, xg, 2), ValueError);
}

}  // namespace
}  // namespace ddpm
