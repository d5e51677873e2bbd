// conv2d's fused epilogue on CUDA (kernels/cuda/conv_epilogue.h) against the CPU reference.
//   - The epilogue kernel alone, for all eight combinations of bias / sample_bias / residual,
//     on UNet shapes (float4 path), C not a multiple of 4 and pointers off 16-byte alignment
//     (scalar path): bit-for-bit equal to cpu::conv2d_epilogue<float>, since both add the
//     same fp32 values in the same order.
//   - The per-sample reduction d sample_bias (and the bias gradient summed from it) against
//     a double reference: sums of up to 4096 N(0,1) terms, so errors of ~1e-5 relative.
//   - The whole op, forward and all five gradients, against the CPU f32 op
//     (testing::check_against_cpu), at UNet shapes and odd ones.
//   - Fused equals the separate adds bit for bit on the device too (fp32 math, the same
//     deterministic cuDNN plan for both calls).
//   - Device mismatch of an epilogue input is a ValueError naming it.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/math_mode.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "kernels/cpu/conv2d.h"
#include "support/gradcheck.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/context.h"
#include "kernels/cuda/conv_epilogue.h"
#endif

namespace ddpm {
namespace {

using testing::all_close;
using testing::check_against_cpu;
using testing::CudaCheck;
using testing::Inputs;
using testing::random_tensor;

std::vector<float> random_floats(std::int64_t count, std::uint64_t seed) {
  std::vector<double> d = random_tensor({count}, seed).to_double_vector();
  return std::vector<float>(d.begin(), d.end());
}

#if DDPM_HAVE_CUDA

// A device copy of `values` starting `offset` floats into its allocation (offset 1 breaks
// 16-byte alignment and forces the scalar path).
struct DeviceBuffer {
  Tensor storage;
  std::int64_t offset;
  DeviceBuffer(const std::vector<float>& values, std::int64_t off) : offset(off) {
    std::vector<float> padded(static_cast<std::size_t>(off), -7.f);
    padded.insert(padded.end(), values.begin(), values.end());
    storage = Tensor::from_vector(padded, {static_cast<std::int64_t>(padded.size())}, Device::cuda());
  }
  float* ptr() { return storage.data<float>() + offset; }
  std::vector<float> host() const {
    std::vector<double> d = storage.to(Device::cpu()).to_double_vector();
    return std::vector<float>(d.begin() + offset, d.end());
  }
};

struct EpilogueShape {
  const char* name;
  std::int64_t n, pixels, c;
};

const EpilogueShape kShapes[] = {
    {"unet_32x32_c128", 4, 32 * 32, 128},
    {"unet_16x16_c256", 4, 16 * 16, 256},
    {"unet_4x4_c256", 3, 4 * 4, 256},
    {"odd_c6", 2, 7 * 5, 6},     // C % 4 != 0: scalar path
    {"odd_c3", 5, 3 * 3, 3},     // scalar, tiny
    {"odd_c129", 2, 11 * 13, 129},
};

TEST(Conv2dEpilogueGpu, KernelMatchesCpuBitForBit) {
  DDPM_REQUIRE_CUDA();
  std::uint64_t seed = 100;
  for (const auto& s : kShapes) {
    const std::int64_t elems = s.n * s.pixels * s.c;
    const std::vector<float> y0 = random_floats(elems, ++seed), bias = random_floats(s.c, ++seed),
                             sb = random_floats(s.n * s.c, ++seed), res = random_floats(elems, ++seed);
    for (std::int64_t offset : {0, 1}) {
      for (int mask = 0; mask < 8; ++mask) {  // bit 0: bias, bit 1: sample_bias, bit 2: residual
        SCOPED_TRACE(std::string(s.name) + " offset " + std::to_string(offset) + " mask " + std::to_string(mask));
        const bool use_b = mask & 1, use_sb = mask & 2, use_r = mask & 4;
        std::vector<float> expected = y0;
        cpu::conv2d_epilogue<float>(expected.data(), use_b ? bias.data() : nullptr, use_sb ? sb.data() : nullptr,
                                    use_r ? res.data() : nullptr, s.n, s.pixels, s.c);
        DeviceBuffer y(y0, offset), b(bias, offset), e(sb, offset), r(res, offset);
        cuda::conv2d_epilogue(y.ptr(), use_b ? b.ptr() : nullptr, use_sb ? e.ptr() : nullptr,
                              use_r ? r.ptr() : nullptr, s.n, s.pixels, s.c, cuda::stream());
        cuda::synchronize();
        const std::vector<float> got = y.host();
        ASSERT_EQ(got.size(), expected.size());
        std::int64_t mismatches = 0, first = -1;
        for (std::size_t i = 0; i < got.size(); ++i)
          if (got[i] != expected[i] && mismatches++ == 0) first = static_cast<std::int64_t>(i);
        EXPECT_EQ(mismatches, 0) << "first at " << first;
        // The padding in front of y is untouched.
        if (offset) EXPECT_EQ(y.storage.to(Device::cpu()).to_double_vector()[0], -7.0);
      }
    }
  }
}

TEST(Conv2dEpilogueGpu, SampleBiasGradientMatchesCpu) {
  DDPM_REQUIRE_CUDA();
  std::uint64_t seed = 300;
  for (const auto& s : kShapes) {
    SCOPED_TRACE(s.name);
    const std::vector<float> gy = random_floats(s.n * s.pixels * s.c, ++seed);
    std::vector<double> gyd(gy.begin(), gy.end()), gsb_ref(static_cast<std::size_t>(s.n * s.c)),
        gb_ref(static_cast<std::size_t>(s.c));
    cpu::conv2d_backward_sample_bias<double>(gyd.data(), gsb_ref.data(), gb_ref.data(), s.n, s.pixels, s.c);
    for (bool with_bias : {false, true}) {
      DeviceBuffer g(gy, 0), gsb(std::vector<float>(gsb_ref.size(), NAN), 0),
          gb(std::vector<float>(gb_ref.size(), NAN), 0);
      cuda::conv2d_backward_sample_bias(g.ptr(), gsb.ptr(), with_bias ? gb.ptr() : nullptr, s.n, s.pixels, s.c,
                                        cuda::stream());
      cuda::synchronize();
      std::vector<float> a = gsb.host();
      // Sums of `pixels` N(0,1) fp32 terms: O(sqrt(pixels)) <= 32, rounding well below 1e-3.
      EXPECT_TRUE(all_close(Tensor::from_vector(std::vector<double>(a.begin(), a.end()), {s.n, s.c}),
                            Tensor::from_vector(gsb_ref, {s.n, s.c}), 1e-3, 1e-5))
          << "d sample_bias";
      std::vector<float> b = gb.host();
      if (with_bias) {
        EXPECT_TRUE(all_close(Tensor::from_vector(std::vector<double>(b.begin(), b.end()), {s.c}),
                              Tensor::from_vector(gb_ref, {s.c}), 2e-3, 1e-5))
            << "d bias";
      } else {
        for (float v : b) EXPECT_TRUE(std::isnan(v)) << "gb written although not requested";
      }
    }
  }
}

#endif  // DDPM_HAVE_CUDA

struct OpCase {
  const char* name;
  Shape x, w;
  int stride, pad;
};

const OpCase kOpCases[] = {
    {"3x3_pad1_32x32_c128", {4, 32, 32, 128}, {128, 3, 3, 128}, 1, 1},
    {"3x3_pad1_16x16_c256", {4, 16, 16, 256}, {256, 3, 3, 256}, 1, 1},
    {"3x3_pad1_16x16_c128_to_256", {2, 16, 16, 128}, {256, 3, 3, 128}, 1, 1},
    {"1x1_8x8_c256_to_128", {2, 8, 8, 256}, {128, 1, 1, 256}, 1, 0},
    {"odd_3x3_pad1_7x5_c5_to_6", {3, 7, 5, 5}, {6, 3, 3, 5}, 1, 1},
    {"odd_3x3_stride2_9x9_c8_to_7", {2, 9, 9, 8}, {7, 3, 3, 8}, 2, 1},
};

Shape out_shape(const OpCase& c) {
  return {c.x[0], (c.x[1] + 2 * c.pad - c.w[1]) / c.stride + 1, (c.x[2] + 2 * c.pad - c.w[2]) / c.stride + 1, c.w[0]};
}

TEST(Conv2dEpilogueGpu, OpForwardAndGradientsMatchCpu) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  std::uint64_t seed = 700;
  for (const auto& c : kOpCases) {
    const Shape o = out_shape(c);
    const double fan_in = static_cast<double>(c.w[1] * c.w[2] * c.w[3]);
    Inputs in{random_tensor(c.x, ++seed), random_tensor(c.w, ++seed, DType::f64, 1.0 / std::sqrt(fan_in)),
              random_tensor({c.w[0]}, ++seed, DType::f64, 0.1), random_tensor({o[0], o[3]}, ++seed),
              random_tensor(o, ++seed)};
    CudaCheck check{{1e-4, 1e-4}};
    // x: O(1) sums; weight, bias, sample_bias: sums of up to N*Ho*Wo = 4096 terms, O(64);
    // residual: g itself, exactly.
    check.grad = {{1e-4, 1e-4}, {3e-3, 1e-4}, {3e-3, 1e-4}, {1e-3, 1e-4}, {0, 0}};
    check.names = {"x", "weight", "bias", "sample_bias", "residual"};
    check.expect_cuda_output = true;
    const int s = c.stride, p = c.pad;
    {
      SCOPED_TRACE(std::string(c.name) + " bias + sample_bias + residual");
      check_against_cpu([s, p](const Inputs& v) { return conv2d(v[0], v[1], v[2], s, p, v[3], v[4]); }, in, check);
    }
    {
      // The ResnetBlock's conv1: sample_bias only. (The residual input is unused here: it
      // gets no gradient, so it is marked as not needing one.)
      SCOPED_TRACE(std::string(c.name) + " bias + sample_bias");
      CudaCheck c1 = check;
      c1.needs_grad = {true, true, true, true, false};
      check_against_cpu([s, p](const Inputs& v) { return conv2d(v[0], v[1], v[2], s, p, v[3]); }, in, c1);
    }
    {
      SCOPED_TRACE(std::string(c.name) + " bias + residual");  // the ResnetBlock's conv2
      CudaCheck c2 = check;
      c2.needs_grad = {true, true, true, false, true};
      check_against_cpu([s, p](const Inputs& v) { return conv2d(v[0], v[1], v[2], s, p, Tensor(), v[4]); }, in, c2);
    }
    {
      SCOPED_TRACE(std::string(c.name) + " sample_bias + residual, no bias");
      CudaCheck c3 = check;
      c3.needs_grad = {true, true, false, true, true};
      check_against_cpu([s, p](const Inputs& v) { return conv2d(v[0], v[1], Tensor(), s, p, v[3], v[4]); }, in, c3);
    }
  }
}

TEST(Conv2dEpilogueGpu, FusedEqualsSeparateAddsBitForBit) {
  DDPM_REQUIRE_CUDA();
  MathModeScope restore;
  set_allow_tf32(false);
  std::uint64_t seed = 900;
  for (const auto& c : kOpCases) {
    SCOPED_TRACE(c.name);
    const Shape o = out_shape(c);
    Tensor x = random_tensor(c.x, ++seed, DType::f32).to(Device::cuda());
    Tensor w = random_tensor(c.w, ++seed, DType::f32, 0.05).to(Device::cuda());
    Tensor b = random_tensor({c.w[0]}, ++seed, DType::f32).to(Device::cuda());
    Tensor e = random_tensor({o[0], o[3]}, ++seed, DType::f32).to(Device::cuda());
    Tensor r = random_tensor(o, ++seed, DType::f32).to(Device::cuda());
    Tensor conv = conv2d(x, w, b, c.stride, c.pad);
    Tensor with_e = add(conv, e.reshape({o[0], 1, 1, o[3]}));
    EXPECT_TRUE(all_close(conv2d(x, w, b, c.stride, c.pad, e).to(Device::cpu()), with_e.to(Device::cpu()), 0, 0))
        << "sample_bias";
    EXPECT_TRUE(all_close(conv2d(x, w, b, c.stride, c.pad, Tensor(), r).to(Device::cpu()),
                          add(r, conv).to(Device::cpu()), 0, 0))
        << "residual";
    EXPECT_TRUE(all_close(conv2d(x, w, b, c.stride, c.pad, e, r).to(Device::cpu()),
                          add(with_e, r).to(Device::cpu()), 0, 0))
        << "both";
  }
}

TEST(Conv2dEpilogueGpu, EpilogueInputOnTheWrongDeviceIsAValueError) {
  DDPM_REQUIRE_CUDA();
  Tensor x = Tensor::zeros({2, 5, 5, 3}, DType::f32, Device::cuda());
  Tensor w = Tensor::zeros({4, 3, 3, 3}, DType::f32, Device::cuda());
  Tensor b = Tensor::zeros({4}, DType::f32, Device::cuda());
  for (int which = 0; which < 2; ++which) {
    try {
      if (which == 0)
        conv2d(x, w, b, 1, 1, Tensor::zeros({2, 4}));
      else
        conv2d(x, w, b, 1, 1, Tensor(), Tensor::zeros({2, 5, 5, 4}));
      ADD_FAILURE() << "no exception";
    } catch (const ValueError& err) {
      EXPECT_NE(std::string(err.what()).find(which == 0 ? "sample_bias" : "residual"), std::string::npos)
          << err.what();
    }
  }
}

}  // namespace
}  // namespace ddpm
