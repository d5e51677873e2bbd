// tests/support/cross_attn_reference.h: the comparison of a context UNet (unet.h
// context_dim > 0) with a diffusers UNet2DConditionModel fixture written by
// scripts/make_reference.py (tests/data/reference/<name>: config.json, the weights, and
// io.safetensors with x, t, the context, diffusers' outputs, loss and every gradient), shared
// by test_reference_cross_attn.cpp and test_reference_cross_attn_pool.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/ops/reduce.h"
#include "models/unet/model_io.h"
#include "support/test_data.h"

namespace ddpm::testing {

inline std::string reference_dir(const std::string& name) { return ddpm::test::data_dir() + "/reference/" + name; }

inline nlohmann::json reference_config(const std::string& name) {
  return nlohmann::json::parse(read_file(reference_dir(name) + "/config.json"));
}

struct CrossAttnReference {
  std::unique_ptr<unet::UNet> net;
  SafetensorsFile io;
  std::vector<double> t;
};

inline CrossAttnReference load_cross_attn_reference(const std::string& name) {
  CrossAttnReference r;
  r.net = unet::load_diffusers_folder(reference_dir(name), Device::cpu());
  r.io = load_safetensors(reference_dir(name) + "/io.safetensors");
  r.t = r.io.get("timesteps").to_double_vector();
  return r;
}

// |a - e| <= atol + rtol * max|e| over the whole tensor (as test_reference_unet.cpp): an
// error budget that scales with the tensor's magnitude, not per element.
inline ::testing::AssertionResult close_scaled(const Tensor& actual, const Tensor& expected, double rtol,
                                               double atol) {
  std::vector<double> a = actual.to_double_vector(), e = expected.to_double_vector();
  if (a.size() != e.size()) return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << e.size();
  double scale = 0, worst = 0;
  for (double v : e) scale = std::max(scale, std::fabs(v));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - e[i]));
  if (worst <= atol + rtol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max |diff| " << worst << " > " << atol << " + " << rtol << " * " << scale;
}

// Runs the network on the fixture's x, t and context (all as leaves that require grad, in
// `dtype`), backpropagates L_simple and compares every gradient with diffusers' float64 ones
// (stored as float32, so rgrad cannot go below ~1e-7). Parameters named in `zero_gradient`
// have a gradient that is zero up to roundoff in exact arithmetic (diffusers' stored values
// are roundoff too): theirs and ours must both stay below zero_atol instead.
inline void check_against_diffusers(CrossAttnReference& r, DType dtype, double rout, double rloss, double rgrad,
                                    const std::set<std::string>& zero_gradient = {}, double zero_atol = 0) {
  Tensor x = r.io.get("x_nhwc").to(dtype).set_requires_grad(true);                       // [N, H, W, C]
  Tensor context = r.io.get("encoder_hidden_states").to(dtype).set_requires_grad(true);  // [N, L, D]
  Tensor out = r.net->forward(x, r.t, {}, context, nn::Context{});                       // [N, H, W, C]
  EXPECT_TRUE(close_scaled(out, r.io.get("out_f64_nhwc"), rout, 0)) << "output";
  // L_simple = mean (out - eps)^2 over every element (no learned variance here).
  Tensor loss = mse_loss(out, r.io.get("noise_nhwc").to(dtype));
  const double expected_loss = r.io.get("loss_f64").item();
  EXPECT_NEAR(loss.item(), expected_loss, rloss * expected_loss);
  loss.backward();
  EXPECT_TRUE(close_scaled(x.grad(), r.io.get("grad_x_nhwc"), rgrad, 0)) << "d loss / d x";
  EXPECT_TRUE(close_scaled(context.grad(), r.io.get("grad_encoder_hidden_states"), rgrad, 0)) << "d loss / d context";
  int checked = 0;
  for (const auto& [name, p] : r.net->named_parameters()) {
    Tensor g = p.grad();
    ASSERT_TRUE(g.defined()) << name;
    if (g.ndim() == 4) g = unet::krsc_to_oihw(g);
    if (zero_gradient.count(name)) {
      const Tensor zeros = Tensor::zeros(g.shape(), DType::f64);
      EXPECT_TRUE(close_scaled(g, zeros, 0, zero_atol)) << name << " (ours)";
      EXPECT_TRUE(close_scaled(r.io.get("grad." + name), zeros, 0, zero_atol)) << name << " (diffusers')";
    } else {
      EXPECT_TRUE(close_scaled(g, r.io.get("grad." + name), rgrad, 0)) << name;
    }
    ++checked;
  }
  // Every parameter of diffusers' model has a counterpart (load_state_dict is strict too).
  int expected = 0;
  for (const auto& [name, t] : r.io.tensors) expected += name.rfind("grad.", 0) == 0 ? 1 : 0;
  EXPECT_EQ(checked, expected);
}

}  // namespace ddpm::testing
