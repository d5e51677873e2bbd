// Text conditioning end to end (models/text/text_conditioned.h): ddpm-train --text-cond on
// the toy shapes (captions generated from the class names and brightness, models/data/
// captions.h), its run folder and checkpoint, a bit-identical resume, and ddpm-sample with
// --prompt, with the refusals on both sides.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "engine/autograd.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/tensor.h"
#include "models/run/checkpoint.h"
#include "models/run/model_source.h"
#include "models/run/posthoc_export.h"
#include "models/run/sample_run.h"
#include "models/run/train_run.h"
#include "models/text/text_conditioned.h"
#include "support/temp_dir.h"
#include "support/tiny_autoencoder.h"
#include "support/tiny_model.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::expect_same_tensors;
using testing::temp_run;
using testing::tiny_run;

using testing::tiny_text_run;

// A module registered under the empty name keeps its own parameter names (module.h).
TEST(TextConditioning, ChildrenUnderTheEmptyNameKeepTheirNames) {
  struct Leaf : nn::Module {
    Leaf() { add_parameter("weight", Tensor::zeros({2})); }
  };
  struct Pair : nn::Module {
    Leaf a, b;
    Pair() {
      register_module("", &a);
      register_module("b", &b);
    }
  };
  const Pair p;
  const auto names = p.named_parameters();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0].first, "weight");
  EXPECT_EQ(names[1].first, "b.weight");
}

TEST(TextConditioning, TrainsResumesAndSamplesFromPrompts) {
  const run::TrainOptions straight = tiny_text_run(temp_run("text_straight"));
  const run::TrainResult r = run::train_run(straight);
  EXPECT_EQ(r.steps_done, 6);
  // The run folder: the tokenizer, the encoder's config, and one weights file holding both
  // networks under their own names.
  ASSERT_TRUE(fs::exists(straight.out + "/" + run::kRunTokenizerFile));
  const nlohmann::json cfg = run::read_run_config(straight.out);
  EXPECT_EQ(cfg.at("text_encoder").at("width"), 8);
  EXPECT_EQ(cfg.at("model").at("context_dim"), 8);
  const SafetensorsFile model = load_safetensors(r.last_checkpoint + "/model.safetensors");
  EXPECT_TRUE(model.contains("conv_in.weight"));
  EXPECT_TRUE(model.contains("text_model.embeddings.token_embedding.weight"));
  EXPECT_TRUE(model.contains("text_model.final_layer_norm.weight"));
  EXPECT_TRUE(load_safetensors(r.last_checkpoint + "/optimizer.safetensors")
                  .contains("exp_avg.text_model.embeddings.token_embedding.weight"));

  // The text encoder's weights, moments and EMA resume to the bits of a straight run.
  run::TrainOptions first = tiny_text_run(temp_run("text_resumed"));
  first.steps = 3;
  run::train_run(first);
  run::TrainOptions second = first;
  second.steps = 6;
  second.resume = "latest";
  run::train_run(second);
  for (const char* f : {"model.safetensors", "ema.safetensors", "optimizer.safetensors"})
    expect_same_tensors(run::checkpoint_dir(straight.out, 6) + "/" + f, run::checkpoint_dir(second.out, 6) + "/" + f);

  // The model opens with its tokenizer and samples from prompts, guided by the empty caption
  // or by a negative prompt.
  run::ModelSource src = run::open_model(straight.out, Device::cpu());
  ASSERT_NE(src.text, nullptr);
  EXPECT_GT(src.tokenizer->id_of("disc"), text::kEosId);
  testing::TempDir tmp("text_sample");
  run::SampleOptions so;
  so.checkpoint = straight.out;
  so.num_samples = 3;
  so.sampler = "ddim";
  so.sampling_steps = 5;
  so.prompts = {"a light disc", "square"};
  so.guidance_scale = 2.0;
  so.out = tmp.path + "/samples";
  const run::SampleResult s = run::run_sample(so);
  EXPECT_EQ(s.shape, (Shape{3, 16, 16, 1}));
  EXPECT_EQ(s.labels, (std::vector<std::int64_t>{0, 1, 0}));  // sample i gets prompt i mod 2
  const nlohmann::json info = nlohmann::json::parse(read_file(so.out + "/sample_info.json"));
  EXPECT_EQ(info.at("prompts"), nlohmann::json({"a light disc", "square"}));
  // Six steps leave the zero-initialised proj_out of the spatial transformers nearly zero, so
  // the text barely reaches the output yet: perturbed weights make the difference visible.
  Generator g(5);
  testing::perturb_weights(*src.text, g);
  run::SampleOptions neg = so;
  neg.out = tmp.path + "/empty";
  const run::SampleResult se = run::run_sample(neg, src, nullptr, nullptr);
  neg.negative_prompt = "dark";
  neg.out = tmp.path + "/negative";
  const run::SampleResult sn = run::run_sample(neg, src, nullptr, nullptr);
  EXPECT_NE(sn.pixels, se.pixels);  // the unconditional branch now reads "dark"

  // Refusals: no prompt, a prompt longer than the context, --class, and a negative prompt
  // without guidance.
  run::SampleOptions bad = so;
  bad.out = tmp.path + "/bad";
  bad.prompts.clear();
  testing::expect_value_error([&] { run::run_sample(bad); }, "give what to draw with --prompt");
  bad.prompts = {"one two three four five six seven"};
  testing::expect_value_error([&] { run::run_sample(bad); }, "one two three four five six seven");
  bad.prompts = {"disc"};
  bad.class_label = 1;
  testing::expect_value_error([&] { run::run_sample(bad); }, "--class does not apply");
  bad.class_label = -1;
  bad.guidance_scale = 1.0;
  bad.negative_prompt = "dark";
  testing::expect_value_error([&] { run::run_sample(bad); }, "--negative-prompt takes effect");
  EXPECT_FALSE(fs::exists(bad.out));

  // --prompt on a model without text conditioning is refused. (A text model's export is a
  // pipeline folder: tests/cpu/test_text_export.cpp.)
  run::TrainOptions plain = tiny_run(temp_run("text_plain"));
  plain.steps = 1;
  run::train_run(plain);
  run::SampleOptions p = so;
  p.checkpoint = plain.out;
  p.guidance_scale = 1.0;
  p.out = tmp.path + "/plain";
  testing::expect_value_error([&] { run::run_sample(p); }, "need a text-conditioned model");
}

// The label-to-text mapping: label k runs texts[k], label P the unconditional text, with the
// same output as the forward that takes the texts.
TEST(TextConditioning, LabelsIndexTheTextTable) {
  const run::TrainOptions o = tiny_text_run(temp_run("text_labels"));
  run::TrainOptions one = o;
  one.steps = 1;
  run::train_run(one);
  const run::ModelSource src = run::open_model(o.out, Device::cpu());
  Generator g(3);
  testing::perturb_weights(*src.text, g);  // a fresh proj_out (zero) would hide the text
  const Tensor x = Tensor::full({3, 16, 16, 1}, 0.25f);
  const std::vector<double> t{10, 20, 30};
  const diffusion::DenoiseFn fn = src.text->denoiser({"disc", "a dark square"}, "bar", {});
  const Tensor via_labels = fn(x, t, {1, 2, 0});
  const Tensor via_texts = src.text->forward(x, t, {"a dark square", "bar", "disc"}, nn::Context{});
  EXPECT_EQ(via_labels.to_vector(), via_texts.to_vector());
  const Tensor other = src.text->forward(x, t, {"disc", "disc", "disc"}, nn::Context{});
  EXPECT_NE(via_texts.to_vector(), other.to_vector());  // the text reaches the output
  testing::expect_value_error([&] { fn(x, t, {0, 3, 0}); }, "text index 3");

  // Reusing the context across a sampler's calls changes nothing, and new labels are encoded
  // afresh rather than served from the kept context.
  NoGradGuard no_grad;
  const diffusion::DenoiseFn kept = src.text->denoiser({"disc", "a dark square"}, "bar", {}, true);
  EXPECT_EQ(kept(x, t, {1, 2, 0}).to_vector(), via_texts.to_vector());
  EXPECT_EQ(kept(x, t, {1, 2, 0}).to_vector(), via_texts.to_vector());
  EXPECT_EQ(kept(x, t, {0, 0, 0}).to_vector(), other.to_vector());
}

// Post-hoc EMA of a text run (ddpm-export --posthoc-ema): the folder carries the tokenizer,
// so it opens as a text model and samples from prompts.
TEST(TextConditioning, PosthocEmaFolderOfATextRunTakesPrompts) {
  run::TrainOptions o = tiny_text_run(temp_run("text_posthoc"));
  o.posthoc_ema = "0.05,0.10";
  o.posthoc_snapshot_every = 2;
  run::train_run(o);
  const std::string dir = testing::temp_path("text_posthoc_export");
  fs::remove_all(dir);
  run::write_posthoc_model(run::reconstruct_posthoc_ema(o.out, 0.08), dir);
  EXPECT_TRUE(fs::exists(dir + "/" + run::kRunTokenizerFile));
  const run::ModelSource src = run::open_model(dir, Device::cpu());
  ASSERT_NE(src.text, nullptr);
  testing::TempDir tmp("text_posthoc_sample");
  run::SampleOptions so;
  so.checkpoint = dir;
  so.num_samples = 2;
  so.sampler = "ddim";
  so.sampling_steps = 5;
  so.prompts = {"a dark disc"};
  so.out = tmp.path + "/samples";
  EXPECT_EQ(run::run_sample(so).shape, (Shape{2, 16, 16, 1}));
}

// Latent diffusion with text (the paper's own combination): captions of the pixel images
// condition a UNet on autoencoder latents, and ddpm-sample decodes the prompted latents.
TEST(TextConditioning, LatentRunsTakePromptsToo) {
  run::TrainOptions o = tiny_text_run(temp_run("text_latent"));
  o.autoencoder = testing::tiny_autoencoder("text_latent_ae");
  o.attention_resolutions = "4";  // 16x16 pixels, f = 4: 4x4 latents
  o.channel_mult = "1";
  o.steps = 2;
  o.save_every = 2;
  run::train_run(o);
  testing::TempDir tmp("text_latent_sample");
  run::SampleOptions so;
  so.checkpoint = o.out;
  so.num_samples = 2;
  so.sampler = "ddim";
  so.sampling_steps = 5;
  so.prompts = {"a dark bar"};
  so.guidance_scale = 2.0;
  so.out = tmp.path + "/samples";
  const run::SampleResult r = run::run_sample(so);
  EXPECT_EQ(r.shape, (Shape{2, 16, 16, 1}));  // decoded to pixels
}

}  // namespace
}  // namespace ddpm
