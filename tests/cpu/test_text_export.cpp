// ddpm-export of a text-conditioned run (models/run/model_source.h export_diffusers, source
// 4): the pipeline-shaped folder, its tensor names, the round trip through open_model (same
// pixels for the same prompts and seed), the text probe, and the refusals. The folder's UNet
// against diffusers itself is scripts/check_export.py's job (docs/REFERENCE.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/tensor.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "models/run/train_run.h"
#include "models/unet/model_io.h"
#include "support/temp_dir.h"
#include "support/tiny_model.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::temp_run;
using testing::tiny_run;

// A trained tiny text run (as tests/cpu/test_text_conditioning_run.cpp's), opened, with its
// weights perturbed: after a few steps the zero-initialised proj_out of the spatial
// transformers still hides the text from the output, and the round trip must carry it.
struct TextModel {
  run::ModelSource src;
  explicit TextModel(const std::string& name) {
    run::TrainOptions o = testing::tiny_text_run(temp_run(name));
    o.steps = 2;
    run::train_run(o);
    src = run::open_model(o.out, Device::cpu());
    Generator g(11);
    testing::perturb_weights(*src.text, g);
  }
};

run::SampleResult sample(const run::ModelSource& m, const std::vector<std::string>& prompts, const std::string& out) {
  run::SampleOptions so;
  so.checkpoint = "(in memory)";
  so.num_samples = 2;
  so.sampler = "ddim";
  so.sampling_steps = 5;
  so.prompts = prompts;
  so.guidance_scale = 2.0;
  so.seed = 3;
  so.out = out;
  return run::run_sample(so, m, nullptr, nullptr);
}

TEST(TextExport, PipelineFolderRoundTripsToTheSamePixels) {
  const TextModel m("text_export");
  testing::TempDir tmp("text_export_out");
  const std::string out = tmp.path + "/pipeline";
  run::export_diffusers(m.src, out);
  for (const char* f : {"unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                        "scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/model.safetensors",
                        "tokenizer/tokenizer.json", "README.txt"})
    EXPECT_TRUE(fs::is_regular_file(out + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(out + "/config.json"));  // not a UNet2DModel folder

  // Names: the UNet's file holds no text_model.*, the encoder's nothing else, and together
  // they are every parameter of the run.
  const SafetensorsFile unet_file = load_safetensors(out + "/unet/diffusion_pytorch_model.safetensors");
  const SafetensorsFile enc_file = load_safetensors(out + "/text_encoder/model.safetensors");
  for (const auto& [name, t] : unet_file.tensors) EXPECT_NE(name.rfind("text_model.", 0), 0u) << name;
  for (const auto& [name, t] : enc_file.tensors) EXPECT_EQ(name.rfind("text_model.", 0), 0u) << name;
  EXPECT_TRUE(unet_file.contains("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"));
  EXPECT_TRUE(enc_file.contains("text_model.embeddings.token_embedding.weight"));
  EXPECT_EQ(unet_file.tensors.size() + enc_file.tensors.size(), m.src.text->named_parameters().size());
  const nlohmann::json ucfg = nlohmann::json::parse(read_file(out + "/unet/config.json"));
  EXPECT_EQ(ucfg.at("_class_name"), "UNet2DConditionModel");
  EXPECT_EQ(ucfg.at("cross_attention_dim"), 8);
  const nlohmann::json ecfg = nlohmann::json::parse(read_file(out + "/text_encoder/config.json"));
  EXPECT_EQ(ecfg.at("_class_name"), "DdpmTextEncoder");
  EXPECT_NE(ecfg.at("_note").get<std::string>().find("NOT a transformers CLIPTextModel"), std::string::npos);
  EXPECT_NE(read_file(out + "/README.txt").find("non-causal"), std::string::npos);

  // Reopened: a text model with the run's tokenizer and settings, sampling the same pixels.
  const run::ModelSource back = run::open_model(out, Device::cpu());
  EXPECT_EQ(back.kind, "diffusers pipeline folder");
  ASSERT_NE(back.text, nullptr);
  EXPECT_EQ(back.tokenizer->vocabulary(), m.src.tokenizer->vocabulary());
  EXPECT_EQ(back.diffusion.diffusion_steps, m.src.diffusion.diffusion_steps);
  EXPECT_EQ(back.diffusion.noise_schedule, m.src.diffusion.noise_schedule);
  // The folder's unet/ (what check_export.py loads) opens the whole pipeline.
  const run::ModelSource via_unet = run::open_model(out + "/unet/", Device::cpu());
  EXPECT_EQ(via_unet.kind, "diffusers pipeline folder");
  EXPECT_NE(via_unet.text, nullptr);
  const std::vector<std::string> prompts{"a dark disc", "square"};
  const run::SampleResult ours = sample(m.src, prompts, tmp.path + "/a");
  const run::SampleResult theirs = sample(back, prompts, tmp.path + "/b");
  EXPECT_EQ(theirs.pixels, ours.pixels);
  // ... and the text reaches the pixels, so the equality covers the text encoder too.
  EXPECT_NE(sample(back, {"light square", "disc"}, tmp.path + "/c").pixels, ours.pixels);

  // The probe: the context is the reopened encoder's output for the recorded ids, and out is
  // the UNet on it.
  const std::string probe = tmp.path + "/probe.safetensors";
  run::write_probe(back, probe, 0);
  const SafetensorsFile p = load_safetensors(probe);
  const Tensor ids = p.get("input_ids"), ctx = p.get("encoder_hidden_states");
  EXPECT_EQ(ids.shape(), (Shape{run::kProbeBatch, 8}));
  EXPECT_EQ(ctx.shape(), (Shape{run::kProbeBatch, 8, 8}));
  const std::vector<std::string> pp = run::probe_prompts(*back.tokenizer);
  EXPECT_EQ(pp[0], "");
  EXPECT_NE(pp[1], "");
  EXPECT_EQ(nlohmann::json::parse(p.metadata.at("prompts")), nlohmann::json(pp));
  std::vector<std::int64_t> id_values;
  for (double v : ids.to_double_vector()) id_values.push_back(static_cast<std::int64_t>(v));
  EXPECT_EQ(id_values, back.tokenizer->encode_batch(pp));
  const Tensor want_ctx = m.src.text_encoder->forward(id_values, run::kProbeBatch, nn::Context{});
  EXPECT_EQ(ctx.to_vector(), want_ctx.to_vector());
  const Tensor want_out = m.src.net->forward(p.get("x"), p.get("t").to_double_vector(), {}, want_ctx, nn::Context{});
  EXPECT_EQ(p.get("out").to_vector(), want_out.to_vector());
}

TEST(TextExport, RefusalsLeaveNothingBehind) {
  const TextModel m("text_export_refusals");
  testing::TempDir tmp("text_export_refusals_out");
  const std::string out = tmp.path + "/pipeline";
  run::export_diffusers(m.src, out);
  const std::string before = read_file(out + "/text_encoder/model.safetensors");
  // An existing folder is kept unless --overwrite.
  testing::expect_value_error([&] { run::export_diffusers(m.src, out); }, "pass --overwrite");
  EXPECT_EQ(read_file(out + "/text_encoder/model.safetensors"), before);
  run::export_diffusers(m.src, out, /*overwrite=*/true);
  EXPECT_TRUE(fs::is_regular_file(out + "/tokenizer/tokenizer.json"));

  // Damaged pipeline folders: each refusal names what is wrong.
  const auto copy = [&](const std::string& name) {
    const std::string d = tmp.path + "/" + name;
    fs::copy(out, d, fs::copy_options::recursive);
    return d;
  };
  const std::string no_tok = copy("no_tokenizer");
  fs::remove(no_tok + "/tokenizer/tokenizer.json");
  EXPECT_THROW(
      {
        try {
          run::open_model(no_tok, Device::cpu());
        } catch (const IoError& e) {
          EXPECT_NE(std::string(e.what()).find("tokenizer.json is missing"), std::string::npos) << e.what();
          throw;
        }
      },
      IoError);
  const std::string no_enc = copy("no_encoder");
  fs::remove_all(no_enc + "/text_encoder");
  EXPECT_THROW(run::open_model(no_enc, Device::cpu()), IoError);
  const std::string clip = copy("clip");
  nlohmann::json c = nlohmann::json::parse(read_file(clip + "/text_encoder/config.json"));
  c["_class_name"] = "CLIPTextModel";
  write_file_atomic(clip + "/text_encoder/config.json", c.dump());
  testing::expect_value_error([&] { run::open_model(clip, Device::cpu()); }, "_class_name is CLIPTextModel");
  const std::string wide = copy("wide");
  c = nlohmann::json::parse(read_file(wide + "/text_encoder/config.json"));
  c["width"] = 16;  // no longer the UNet's cross_attention_dim, nor the weights' shape
  write_file_atomic(wide + "/text_encoder/config.json", c.dump());
  EXPECT_THROW(run::open_model(wide, Device::cpu()), ValueError);

  // A text model's probe needs its context: the UNet alone refuses.
  EXPECT_THROW(run::write_probe(*m.src.net, 10, tmp.path + "/bad_probe.safetensors"), ValueError);
  EXPECT_FALSE(fs::exists(tmp.path + "/bad_probe.safetensors"));
}

}  // namespace
}  // namespace ddpm
