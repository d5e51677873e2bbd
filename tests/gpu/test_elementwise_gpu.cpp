// Elementwise and reduction ops on CUDA against the CPU reference, forward and backward,
// at UNet activation shapes (NHWC) with the broadcast forms the model uses.
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "support/gradcheck.h"

namespace ddpm {
namespace {

using testing::all_close;
using testing::check_against_cpu;
using testing::random_positive;
using testing::random_tensor;

const Shape kAct{4, 16, 16, 128};

TEST(ElementwiseGpu, BinaryOpsWithBroadcasting) {
  DDPM_REQUIRE_CUDA();
  for (const Shape& bs : {kAct, Shape{128}, Shape{4, 1, 1, 1}, Shape{4, 1, 1, 128}}) {
    SCOPED_TRACE(shape_str(bs));
    Tensor a = random_tensor(kAct, 1), b = random_tensor(bs, 2), bp = random_positive(bs, 3);
    // Broadcast gradients sum up to 16*16*4 terms: allow for fp32 summation order.
    check_against_cpu([](const auto& in) { return add(in[0], in[1]); }, {a, b}, {{1e-4, 1e-4}});
    check_against_cpu([](const auto& in) { return sub(in[0], in[1]); }, {a, b}, {{1e-4, 1e-4}});
    check_against_cpu([](const auto& in) { return mul(in[0], in[1]); }, {a, b}, {{1e-4, 1e-4}});
    check_against_cpu([](const auto& in) { return div(in[0], in[1]); }, {a, bp}, {{1e-4, 1e-4}});
  }
}

TEST(ElementwiseGpu, UnaryOps) {
  DDPM_REQUIRE_CUDA();
  Tensor x = random_tensor({2, 8, 8, 256}, 5, DType::f64, 3.0);
  Tensor p = random_positive({2, 8, 8, 256}, 6, 0.1, 4.0);
  // exp/log/sqrt/silu: CUDA's fp32 math functions are within 2 ulp of glibc's.
  check_against_cpu([](const auto& in) { return silu(in[0]); }, {x}, {{1e-6, 1e-5}});
  // gelu: erff and expf against glibc's float erf and exp.
  check_against_cpu([](const auto& in) { return gelu(in[0]); }, {x}, {{1e-6, 1e-5}});
  check_against_cpu([](const auto& in) { return exp(in[0]); }, {x}, {{1e-6, 1e-5}});
  check_against_cpu([](const auto& in) { return square(in[0]); }, {x}, {{0, 1e-6}});
  check_against_cpu([](const auto& in) { return scale(in[0], 0.3); }, {x}, {{0, 1e-6}});
  check_against_cpu([](const auto& in) { return add_scalar(in[0], -2.0); }, {x}, {{0, 1e-6}});
  check_against_cpu([](const auto& in) { return log(in[0]); }, {p}, {{1e-6, 1e-5}});
  check_against_cpu([](const auto& in) { return sqrt(in[0]); }, {p}, {{1e-6, 1e-5}});
}

TEST(ElementwiseGpu, ReductionsAndMse) {
  DDPM_REQUIRE_CUDA();
  Tensor x = random_tensor(kAct, 8);
  check_against_cpu([](const auto& in) { return sum(in[0], {0, 1, 2}); }, {x}, {{1e-3, 1e-4}});
  check_against_cpu([](const auto& in) { return sum(in[0], {-1}); }, {x}, {{1e-4, 1e-4}});
  check_against_cpu([](const auto& in) { return mean(in[0], {1, 2}, true); }, {x}, {{1e-5, 1e-4}});
  check_against_cpu([](const auto& in) { return mean(in[0]); }, {x}, {{1e-6, 1e-4}});
  Tensor t = random_tensor(kAct, 9);
  check_against_cpu([](const auto& in) { return mse_loss(in[0], in[1]); }, {x, t}, {{1e-6, 1e-4}});
  check_against_cpu([](const auto& in) { return expand_to(in[0], {4, 16, 16, 128}); }, {random_tensor({128}, 3)},
                    {{1e-4, 1e-4}});
}

TEST(ElementwiseGpu, MixingDevicesIsAClearError) {
  DDPM_REQUIRE_CUDA();
  Tensor a = Tensor::zeros({4}), b = Tensor::zeros({4}, DType::f32, Device::cuda());
  EXPECT_THROW(add(a, b), ValueError);
  EXPECT_THROW(add(Tensor::zeros({4}, DType::f64, Device::cuda()), b), ValueError);  // f64 is CPU-only
}

}  // namespace
}  // namespace ddpm
