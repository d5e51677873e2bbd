// LayerNorm on CUDA against the CPU reference (f32), forward and the gradients of x, gamma
// and beta, at the transformer blocks' shapes (tokens [N, L, C] with C 64..1024, 8x8 to
// 32x32 image tokens and 77-token contexts), rows shorter than a warp or not a multiple of
// it, and row counts that make the dgamma/dbeta reduction use one part, many parts, and
// the capped number of parts.
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/layer_norm.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::check_against_cpu;
using testing::CudaCheck;
using testing::random_tensor;

void check_layer_norm(const Shape& x_shape, std::uint64_t seed) {
  SCOPED_TRACE("x " + shape_str(x_shape));
  const std::int64_t C = x_shape.back(), R = shape_numel(x_shape) / C;
  // x gets a per-channel offset so that the row means are away from 0.
  Tensor x = add(random_tensor(x_shape, seed, DType::f32, 2.0), random_tensor({C}, seed + 1, DType::f32, 3.0));
  std::vector<Tensor> host{x, random_tensor({C}, seed + 2, DType::f32), random_tensor({C}, seed + 3, DType::f32)};
  // Forward and dx: O(1) values; the fp32 statistics differ from the double ones only in
  // summation order over C terms. dgamma, dbeta sum R terms of O(1): the tolerance grows
  // with R (fp32 summation order).
  CudaCheck check{{1e-5, 1e-4}};
  const double param_atol = 2e-6 * static_cast<double>(R) + 1e-4;
  check.grad = {{2e-5, 1e-4}, {param_atol, 1e-4}, {param_atol, 1e-4}};
  check.names = {"x", "gamma", "beta"};
  check.grad_seed = seed + 50;
  check_against_cpu([](const auto& in) { return layer_norm(in[0], in[1], in[2]); }, host, check);
}

TEST(LayerNormGpu, TransformerTokenShapes) {
  DDPM_REQUIRE_CUDA();
  check_layer_norm({4, 256, 128}, 1);   // 16x16 image tokens
  check_layer_norm({2, 1024, 64}, 5);   // 32x32: 2048 rows, 32 parts of 64 rows
  check_layer_norm({32, 1024, 32}, 7);  // 32768 rows: parts capped at 256
  check_layer_norm({8, 64, 512}, 9);    // 8x8 tokens, wide channels
  check_layer_norm({4, 77, 768}, 13);   // a 77-token text context
  check_layer_norm({2, 16, 1024}, 17);  // rows of 1024: 32 floats per lane
}

TEST(LayerNormGpu, OddRowsAndFewRows) {
  DDPM_REQUIRE_CUDA();
  check_layer_norm({3, 5, 7}, 21);    // rows shorter than a warp
  check_layer_norm({2, 9, 33}, 25);   // one float past a warp
  check_layer_norm({1, 1, 100}, 29);  // a single row: one part, one block
  check_layer_norm({130, 40}, 33);    // 2D, columns not a multiple of 32
}

}  // namespace
}  // namespace ddpm
