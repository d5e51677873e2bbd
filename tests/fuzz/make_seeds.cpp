// tests/fuzz/make_seeds.cpp: writes the seed corpora of the fuzz targets with the library's
// own writers, so the fuzzer starts from well-formed files of every format and mutates from
// there (coverage of the deep parts of a reader comes from valid inputs, not from random bytes).
//
//   fuzz-make-seeds OUT_DIR     writes OUT_DIR/<target>/<seed>, one folder per fuzz target
//
// Targets whose first byte selects a mode (npz, idx, model_config, posthoc, trainer_state,
// distill_state) get that byte prepended.
// scripts/fuzz.sh runs it before fuzzing; the seeds are a few kB, regenerated every run.
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/io/atomic_file.h"
#include "engine/io/gif.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/io/safetensors.h"
#include "engine/tensor.h"
#include "models/run/model_source.h"
#include "models/text/tokenizer.h"
#include "models/unet/model_io.h"
#include "tests/fuzz/fuzz_runs.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::string;

std::string g_out;

void seed(const std::string& target, const std::string& name, const Bytes& bytes) {
  fs::create_directories(g_out + "/" + target);
  std::ofstream(g_out + "/" + target + "/" + name, std::ios::binary) << bytes;
}

Bytes gzip(const Bytes& raw) {
  z_stream z{};
  deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // +16: gzip wrapper
  Bytes out(deflateBound(&z, static_cast<uLong>(raw.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

Bytes be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

ddpm::unet::UNetConfig tiny_unet() {
  ddpm::unet::UNetConfig c;
  c.image_size = 8;
  c.in_channels = 1;
  c.model_channels = 8;
  c.channel_mult = {1, 2};
  c.num_res_blocks = 1;
  c.attention_resolutions = {4};
  c.norm_groups = 4;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz-make-seeds OUT_DIR\n");
    return 2;
  }
  g_out = argv[1];
  const std::string tmp = g_out + "/.tmp";
  fs::create_directories(tmp);

  // safetensors: f32 and f64 tensors with metadata (and the CRC entry), and an empty file of tensors.
  ddpm::save_safetensors(tmp + "/a", {{"w", ddpm::Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3})},
                                      {"b", ddpm::Tensor::from_vector(std::vector<double>{0.5, -1}, {2})}},
                         {{"step", "7"}});
  seed("safetensors", "two_tensors", ddpm::read_file(tmp + "/a"));
  ddpm::save_safetensors(tmp + "/b", {});
  seed("safetensors", "empty", ddpm::read_file(tmp + "/b"));

  // PNG: grey and RGB.
  std::vector<std::uint8_t> px(5 * 4 * 3);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>(i * 37);
  ddpm::write_png(tmp + "/g.png", px.data(), 5, 4, 1);
  seed("png", "grey", ddpm::read_file(tmp + "/g.png"));
  ddpm::write_png(tmp + "/c.png", px.data(), 5, 4, 3);
  seed("png", "rgb", ddpm::read_file(tmp + "/c.png"));

  // GIF: grey (two frames, looping) and RGB (one frame, not looping).
  ddpm::write_gif(tmp + "/g.gif", px.data(), 2, 5, 2, 1);
  seed("gif", "grey", ddpm::read_file(tmp + "/g.gif"));
  ddpm::write_gif(tmp + "/c.gif", px.data(), 1, 5, 4, 3, 4, false);
  seed("gif", "rgb", ddpm::read_file(tmp + "/c.gif"));

  // npz (mode byte 0: archive, 1: bare .npy): images and labels as ddpm-sample writes them.
  const std::vector<std::uint8_t> images(2 * 3 * 3 * 1, 200);
  const std::vector<std::int64_t> labels{3, 1};
  const std::vector<float> floats{0.5f, -2.f, 3.f};
  seed("npz", "samples", "\x00" + ddpm::npz_bytes({ddpm::npy_view("arr_0", {2, 3, 3, 1}, images),
                                                  ddpm::npy_view("arr_1", {2}, labels)}));
  seed("npz", "npy_u8", "\x01" + ddpm::npy_bytes(ddpm::npy_view("arr_0", {2, 3, 3, 1}, images)));
  seed("npz", "npy_f32", "\x01" + ddpm::npy_bytes(ddpm::npy_view("x", {3}, floats)));
  seed("npz", "npy_i64", "\x01" + ddpm::npy_bytes(ddpm::npy_view("y", {2}, labels)));

  // IDX (mode byte 0: the images file is fuzzed, 1: the labels file), plain and gzip'd.
  Bytes idx_images = Bytes("\x00\x00\x08\x03", 4) + be32(4) + be32(5) + be32(5);
  for (int i = 0; i < 100; ++i) idx_images += static_cast<char>(i * 13);
  const Bytes idx_labels = Bytes("\x00\x00\x08\x01", 4) + be32(4) + Bytes("\x00\x03\x09\x01", 4);
  seed("idx", "images", Bytes(1, '\0') + idx_images);
  seed("idx", "images_gz", Bytes(1, '\0') + gzip(idx_images));
  seed("idx", "labels", "\x01" + idx_labels);
  seed("idx", "labels_gz", "\x01" + gzip(idx_labels));

  // CIFAR-10: two records (label byte + 3 x 1024 planes).
  Bytes cifar;
  for (int r = 0; r < 2; ++r) {
    cifar += static_cast<char>(r * 4);
    for (int i = 0; i < 3072; ++i) cifar += static_cast<char>(i + r);
  }
  seed("cifar", "two_records", cifar);

  // Model configs (mode byte 0: config.json beside a model file, 1: scheduler_config.json).
  const ddpm::unet::UNetConfig cfg = tiny_unet();
  ddpm::run::DiffusionSettings d;
  d.diffusion_steps = 40;
  seed("model_config", "run_config",
       Bytes(1, '\0') + nlohmann::json{{"model", ddpm::unet::config_to_json(cfg)},
                                       {"diffusion", ddpm::run::diffusion_to_json(d)}}.dump(1));
  ddpm::run::DiffusionSettings edm;
  edm.edm = ddpm::diffusion::EdmConfig{};
  seed("model_config", "edm_run_config",
       Bytes(1, '\0') + nlohmann::json{{"model", ddpm::unet::config_to_json(cfg)},
                                       {"diffusion", ddpm::run::diffusion_to_json(edm)}}.dump(1));
  seed("model_config", "unet_config", Bytes(1, '\0') + ddpm::unet::config_to_json(cfg).dump(1));
  seed("model_config", "diffusers_config", Bytes(1, '\0') + ddpm::unet::config_to_diffusers(cfg).dump(1));
  seed("model_config", "scheduler", "\x01" + ddpm::run::diffusion_to_diffusers_scheduler(d).dump(1));
  // A text model's unet/config.json, as ddpm-export writes it (UNet2DConditionModel).
  ddpm::unet::UNetConfig context_cfg = cfg;
  context_cfg.context_dim = 8;
  seed("model_config", "diffusers_conditional_config",
       Bytes(1, '\0') + ddpm::unet::config_to_diffusers_conditional(context_cfg).dump(1));

  // TOML for --config: the shapes ddpm-train's flags take (numbers, strings, lists, flags).
  seed("toml_config", "train",
       "# a ddpm-train config\n"
       "data = \"toy\"\nsteps = 10\nbatch-size = 4\nlr = 2e-4\nchannel-mult = [1, 2]\n"
       "attention-resolutions = \"16,8\"\nlearn-sigma = true\nnoise-schedule = \"cosine\"\n"
       "device = \"cpu\"\nseed = 3\n");
  seed("toml_config", "sections", "[train]\nsteps = 2\n[other]\nkey = 'v'\n");

  // Post-hoc EMA snapshots (mode byte 0: step_4 beside a valid step_2, 1: the only snapshot).
  seed("posthoc", "step_4", Bytes(1, '\0') + ddpm::read_file(ddpm::fuzz::write_tiny_posthoc_snapshot(tmp + "/run", 4, 4, 0.5)));
  seed("posthoc", "step_1", "\x01" + ddpm::read_file(ddpm::fuzz::write_tiny_posthoc_snapshot(tmp + "/run", 1, 1, 2.0)));

  // trainer_state.json (mode byte 0: a checkpoint with power EMAs, 1: one without), as
  // save_checkpoint writes it.
  const std::string state = std::string("/") + ddpm::run::kTrainerStateFile;
  seed("trainer_state", "posthoc_ema",
       Bytes(1, '\0') + ddpm::read_file(ddpm::fuzz::write_tiny_checkpoint(tmp + "/ck_phema", true) + state));
  seed("trainer_state", "plain", "\x01" + ddpm::read_file(ddpm::fuzz::write_tiny_checkpoint(tmp + "/ck_plain", false) + state));

  // OUT.distill-state of a progressive run (mode byte 0: state.json, 1: state.safetensors), as
  // save_distill_state writes them ...
  const std::string distill = ddpm::fuzz::write_tiny_distill_state(tmp + "/distill/out");
  seed("distill_state", "state_json", Bytes(1, '\0') + ddpm::read_file(distill + "/" + ddpm::run::kDistillStateJson));
  seed("distill_state", "state_tensors",
       "\x01" + ddpm::read_file(distill + "/" + ddpm::run::kDistillStateTensors));
  // ... and a --method consistency run's (mode byte 2: state.json, 3: state.safetensors).
  const std::string cm = ddpm::fuzz::write_tiny_consistency_state(tmp + "/consistency/out");
  seed("distill_state", "consistency_json", "\x02" + ddpm::read_file(cm + "/" + ddpm::run::kDistillStateJson));
  seed("distill_state", "consistency_tensors", "\x03" + ddpm::read_file(cm + "/" + ddpm::run::kDistillStateTensors));

  // tokenizer.json as Tokenizer::save writes it, and a metadata.jsonl captioning the three
  // images fuzz_caption_metadata's folder has.
  ddpm::text::Tokenizer::build({"a dark coat", "a photo of an ankle boot", "t-shirt or top"}, 9).save(tmp + "/tok.json");
  seed("tokenizer", "built", ddpm::read_file(tmp + "/tok.json"));
  seed("caption_metadata", "three",
       "{\"file_name\": \"0001.png\", \"text\": \"a dark coat\"}\n"
       "{\"file_name\": \"./coat/0002.png\", \"text\": \"light coat\", \"extra\": [1, 2]}\n"
       "\n"
       "{\"text\": \"a photo of a coat\", \"file_name\": \"coat/0003.png\"}\n");

  fs::remove_all(tmp);
  return 0;
}
