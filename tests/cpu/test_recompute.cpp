// Activation checkpointing (engine/recompute.h): the gradients with recomputation are the
// gradients without it, bit for bit, dropout included; the generator ends where it would
// have; and a UNet trained with it holds less memory at its peak.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops/dropout.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/linalg.h"
#include "engine/ops/reduce.h"
#include "engine/parameters.h"
#include "engine/recompute.h"
#include "engine/storage.h"
#include "support/recompute_step.h"

namespace ddpm {
namespace {

void expect_same(const Tensor& a, const Tensor& b, const char* what) {
  ASSERT_TRUE(a.defined()) << what;
  ASSERT_TRUE(b.defined()) << what;
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  for (std::size_t i = 0; i < va.size(); ++i) ASSERT_EQ(va[i], vb[i]) << what << " element " << i;
}

// A two-layer segment in double: h = dropout(silu(x W1 + b)); out = h W2, with W1, W2 the
// "parameters" (leaves captured by the segment) and x, b its inputs.
struct Segment {
  Tensor w1, w2;
  double p = 0.25;
  Tensor operator()(const std::vector<Tensor>& in, Generator* gen) const {
    Tensor h = silu(add(matmul(in[0], w1), in[1]));
    if (gen) h = dropout(h, p, *gen, true);
    return matmul(h, w2);
  }
};

Tensor random_f64(const Shape& shape, Generator& gen) { return randn(shape, gen, Device::cpu(), DType::f64); }

Segment make_segment(Generator& init) {
  Segment seg;
  seg.w1 = random_f64({5, 6}, init).set_requires_grad(true);
  seg.w2 = random_f64({6, 3}, init).set_requires_grad(true);
  return seg;
}

struct SegmentRun {
  Tensor out, gx, gb, gw1, gw2;
  std::uint64_t offset_after = 0;
};

SegmentRun run_segment(bool with_recompute, bool dropout_on) {
  Generator init(7);
  const Segment seg = make_segment(init);
  Tensor x = random_f64({4, 5}, init).set_requires_grad(true);
  Tensor b = random_f64({4, 6}, init).set_requires_grad(true);
  const Tensor r = random_f64({4, 3}, init);
  Generator drop(11, 40);
  Generator* gen = dropout_on ? &drop : nullptr;
  SegmentRun out;
  out.out = with_recompute ? recompute("segment", seg, {x, b}, true, gen) : seg({x, b}, gen);
  out.offset_after = drop.offset();
  // The forward is finished before the backward starts: later draws must not change it.
  if (gen) randn({3}, *gen);
  sum(mul(out.out, r)).backward();
  out.gx = x.grad(), out.gb = b.grad(), out.gw1 = seg.w1.grad(), out.gw2 = seg.w2.grad();
  return out;
}

TEST(Recompute, GradientsEqualThoseWithoutRecomputation) {
  for (bool dropout_on : {false, true}) {
    const SegmentRun plain = run_segment(false, dropout_on), again = run_segment(true, dropout_on);
    expect_same(plain.out, again.out, "output");
    expect_same(plain.gx, again.gx, "d/dx");
    expect_same(plain.gb, again.gb, "d/db");
    expect_same(plain.gw1, again.gw1, "d/dW1");
    expect_same(plain.gw2, again.gw2, "d/dW2");
    EXPECT_EQ(plain.offset_after, again.offset_after) << "the generator must end where the forward left it";
  }
  // Dropout really ran: its masks change the gradients.
  expect_same(run_segment(false, false).gw2, run_segment(false, false).gw2, "determinism");
  const std::vector<float> a = run_segment(true, false).gw1.to_vector(), b = run_segment(true, true).gw1.to_vector();
  EXPECT_NE(a, b);
}

TEST(Recompute, ParametersGetGradientsWhenNoInputNeedsOne) {
  // x is data and b frozen here: only the weights train, yet the node must run.
  Generator init(3);
  const Segment seg = make_segment(init);
  const Tensor x = random_f64({4, 5}, init);
  const Tensor b = random_f64({4, 6}, init);
  const Tensor out = recompute("segment", seg, {x, b}, true, nullptr);
  ASSERT_TRUE(out.requires_grad());
  sum(out).backward();
  const Tensor g_recomputed = seg.w1.grad();
  ASSERT_TRUE(g_recomputed.defined());
  Segment seg2{seg.w1.detach().set_requires_grad(true), seg.w2.detach().set_requires_grad(true), seg.p};
  sum(seg2({x, b}, nullptr)).backward();
  expect_same(seg2.w1.grad(), g_recomputed, "d/dW1");
}

TEST(Recompute, RecordsNothingWithoutGradMode) {
  Generator init(3);
  const Segment seg = make_segment(init);
  const Tensor x = random_f64({4, 5}, init);
  const Tensor b = random_f64({4, 6}, init);
  NoGradGuard no_grad;
  EXPECT_FALSE(recompute("segment", seg, {x, b}, true, nullptr).requires_grad());
}

using testing::StepResult;
using testing::unet_training_step;

TEST(Recompute, UNetGradientsAreTheSameAndThePeakIsLower) {
  const StepResult plain = unet_training_step(Device::cpu(), false), again = unet_training_step(Device::cpu(), true);
  ASSERT_EQ(plain.grads.size(), again.grads.size());
  // The same numbers are computed, but a tensor with several consumers (the timestep
  // embedding, every block's input: main path and skip) sums its gradient's parts in the
  // order the tape delivers them, and with recomputation the tape runs fewer, larger nodes:
  // float addition is not associative, so the last bits may differ.
  std::size_t nonzero = 0, equal = 0;
  double scale = 0.0, worst = 0.0;
  for (std::size_t i = 0; i < plain.grads.size(); ++i) {
    scale = std::max(scale, static_cast<double>(std::fabs(plain.grads[i])));
    worst = std::max(worst, static_cast<double>(std::fabs(plain.grads[i] - again.grads[i])));
    nonzero += plain.grads[i] != 0.f;
    equal += plain.grads[i] == again.grads[i];
  }
  std::printf("    %zu of %zu gradient elements bit-identical; worst difference %.3g of the largest\n", equal,
              plain.grads.size(), worst / scale);
  EXPECT_LE(worst, 1e-6 * scale);
  EXPECT_GT(nonzero, plain.grads.size() / 2);      // the backward reached the network
  EXPECT_EQ(plain.offset_after, again.offset_after);
  EXPECT_EQ(plain.leaked_bytes, 0u);  // the tape and everything it saved died with the step
  EXPECT_EQ(again.leaked_bytes, 0u);
  // Each residual block keeps one activation instead of ~5; what is left is the blocks'
  // inputs, the skips and the backward's own working set.
  std::printf("    peak activation bytes: %zu without recomputation, %zu with\n", plain.peak_bytes, again.peak_bytes);
  EXPECT_LT(again.peak_bytes, plain.peak_bytes * 3 / 4)
      << "peak above the parameters: " << again.peak_bytes << " bytes with recomputation, " << plain.peak_bytes
      << " without";
}

}  // namespace
}  // namespace ddpm
