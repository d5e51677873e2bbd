// The UNet against diffusers' UNet2DModel (fixtures from scripts/make_reference.py, see
// docs/REFERENCE.md): the config import, the weights (OIHW on disk), the forward output, the
// L_simple loss and the gradient of every parameter, for the DDPM layout and for a
// class-conditional scale-shift layout with learned sigma and two heads.
#include <cmath>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/ops/concat.h"
#include "engine/ops/reduce.h"
#include "models/unet/model_io.h"
#include "support/gradcheck.h"
#include "support/test_data.h"
#include "support/temp_dir.h"

namespace ddpm::unet {
namespace {

std::string fixture(const std::string& model, const std::string& file) {
  return ddpm::test::data_dir() + "/reference/" + model + "/" + file;
}

struct Reference {
  std::unique_ptr<UNet> net;
  SafetensorsFile io;
  std::vector<double> t;
  std::vector<std::int64_t> labels;
};

Reference load(const std::string& model) {
  Reference r;
  r.net = load_diffusers_folder(ddpm::test::data_dir() + "/reference/" + model, Device::cpu());
  r.io = load_safetensors(fixture(model, "io.safetensors"));
  r.t = r.io.get("timesteps").to_double_vector();
  if (r.io.contains("labels"))
    for (double l : r.io.get("labels").to_double_vector()) r.labels.push_back(static_cast<std::int64_t>(l));
  return r;
}

// |a - e| <= atol + rtol * max|e| over the whole tensor: the error budget of an fp32
// network against a float64 one scales with the tensor's magnitude, not per element.
::testing::AssertionResult close_scaled(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  std::vector<double> a = actual.to_double_vector(), e = expected.to_double_vector();
  if (a.size() != e.size()) return ::testing::AssertionFailure() << "sizes differ";
  double scale = 0, worst = 0;
  for (double v : e) scale = std::max(scale, std::fabs(v));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - e[i]));
  if (worst <= atol + rtol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max |diff| " << worst << " > " << atol << " + " << rtol << " * " << scale;
}

class ReferenceUNet : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceUNet, ForwardLossAndGradientsMatchDiffusers) {
  Reference r = load(GetParam());
  const UNetConfig& cfg = r.net->config();
  Tensor x = r.io.get("x_nhwc");
  Tensor out = r.net->forward(x, r.t, r.labels, nn::Context{});
  // Against diffusers in float64: our fp32 network's error (diffusers' own fp32 run differs
  // from its float64 run by up to 2.9e-6; see docs/REFERENCE.md).
  EXPECT_TRUE(close_scaled(out, r.io.get("out_f64_nhwc").to(DType::f32), 2e-5, 1e-6));
  EXPECT_TRUE(close_scaled(out, r.io.get("out_nhwc"), 2e-5, 1e-6));

  // L_simple on the first C channels (the eps half when sigma is learned).
  Tensor eps = cfg.learn_sigma ? slice(out, -1, 0, cfg.in_channels) : out;
  Tensor loss = mse_loss(eps, r.io.get("noise_nhwc"));
  EXPECT_NEAR(loss.item(), r.io.get("loss_f64").item(), 1e-5 * r.io.get("loss_f64").item());
  loss.backward();
  int checked = 0;
  for (const auto& [name, p] : r.net->named_parameters()) {
    Tensor g = p.grad();
    ASSERT_TRUE(g.defined()) << name;
    if (g.ndim() == 4) g = krsc_to_oihw(g);
    Tensor expected = r.io.get("grad." + name);
    // A bias added to every key cancels in the softmax: its true gradient is 0, and the
    // fixture holds rounding noise, so only an absolute bound makes sense there.
    bool zero_in_theory = name.find("to_k.bias") != std::string::npos;
    EXPECT_TRUE(zero_in_theory ? close_scaled(g, expected, 0, 1e-6) : close_scaled(g, expected, 2e-4, 1e-7)) << name;
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(r.net->named_parameters().size()));
}

INSTANTIATE_TEST_SUITE_P(Diffusers, ReferenceUNet, ::testing::Values("ddpm", "cond_scale_shift"));

TEST(ReferenceUNetConfig, DiffusersConfigsImportAndExportRoundTrip) {
  auto read = [](const std::string& m) { return nlohmann::json::parse(read_file(fixture(m, "config.json"))); };
  UNetConfig ddpm = config_from_diffusers(read("ddpm"));
  EXPECT_EQ(ddpm.model_channels, 16);
  EXPECT_EQ(ddpm.channel_mult, (std::vector<int>{1, 2}));
  EXPECT_EQ(ddpm.attention_resolutions, (std::vector<int>{8}));
  EXPECT_EQ(ddpm.num_heads, 1);
  EXPECT_EQ(ddpm.time_embedding, TimestepEmbeddingStyle::ddpm);
  EXPECT_FALSE(ddpm.learn_sigma);
  UNetConfig cond = config_from_diffusers(read("cond_scale_shift"));
  EXPECT_TRUE(cond.use_scale_shift_norm);
  EXPECT_TRUE(cond.learn_sigma);
  EXPECT_EQ(cond.num_classes, 4);
  EXPECT_EQ(cond.num_head_channels, 16);
  EXPECT_EQ(cond.time_embedding, TimestepEmbeddingStyle::improved);
  for (const UNetConfig& c : {ddpm, cond}) {
    UNetConfig back = config_from_diffusers(config_to_diffusers(c));
    EXPECT_EQ(config_to_json(back), config_to_json(c));
    EXPECT_EQ(config_from_json(config_to_json(c)).channel_mult, c.channel_mult);
  }
}

TEST(ReferenceUNetConfig, UnsupportedDiffusersFieldsAreNamed) {
  auto cfg = nlohmann::json::parse(read_file(fixture("ddpm", "config.json")));
  auto expect_error = [](nlohmann::json j, const std::string& needle) {
    try {
      config_from_diffusers(j);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto j = cfg;
  j["up_block_types"] = {"UpBlock2D", "UpBlock2D"};
  expect_error(j, "do not mirror");
  j = cfg;
  j["time_embedding_type"] = "fourier";
  expect_error(j, "time_embedding_type");
  j = cfg;
  j["flip_sin_to_cos"] = true;
  expect_error(j, "flip_sin_to_cos");
  j = cfg;
  j["down_block_types"] = {"DownBlock2D", "CrossAttnDownBlock2D"};
  expect_error(j, "CrossAttnDownBlock2D");
  j = cfg;
  j["act_fn"] = "gelu";
  expect_error(j, "act_fn");
}

TEST(ReferenceUNetConfig, LoadingMismatchedWeightsListsEveryProblem) {
  Reference r = load("ddpm");
  auto tensors = export_state_dict(*r.net);
  tensors.erase(tensors.begin());                               // missing conv_in.weight
  tensors.emplace_back("extra.weight", Tensor::zeros({2}));    // unexpected
  for (auto& [name, t] : tensors)
    if (name == "conv_out.bias") t = Tensor::zeros({5});        // mismatched
  try {
    load_state_dict(*r.net, tensors, "test weights");
    FAIL() << "expected an error";
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("missing (1): conv_in.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected (1): extra.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("mismatched (1): conv_out.bias"), std::string::npos) << m;
  }
}

TEST(ReferenceUNetConfig, ExportedFolderReloadsToTheSameOutputs) {
  Reference r = load("cond_scale_shift");
  std::string dir = testing::temp_path("export_roundtrip");
  save_diffusers_folder(*r.net, dir);
  auto again = load_diffusers_folder(dir, Device::cpu());
  Tensor x = r.io.get("x_nhwc");
  EXPECT_EQ(r.net->forward(x, r.t, r.labels, nn::Context{}).to_vector(),
            again->forward(x, r.t, r.labels, nn::Context{}).to_vector());
  EXPECT_THROW(save_diffusers_folder(*r.net, dir), Error);  // never overwrites
}

}  // namespace
}  // namespace ddpm::unet
