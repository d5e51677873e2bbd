// models/run/distill_teacher.cpp: see distill_teacher.h.
#include "models/run/distill_teacher.h"

#include <algorithm>
#include <filesystem>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/model_source.h"

namespace ddpm::run {

namespace fs = std::filesystem;

ModelSource open_teacher(const std::string& teacher, Device device) {
  ModelSource m = open_model(teacher, device, /*use_ema=*/true);
  refuse_vdm_or_ict_model(m, teacher, "distillation (--teacher)");
  refuse_video_model(m, teacher, "distillation (--teacher)");
  DDPM_CHECK(!m.text, "--teacher " << teacher
                                   << " is text-conditioned (ddpm-train --text-cond): ddpm-distill does not distil "
                                      "text models yet (none of progressive, guided or consistency distillation); "
                                      "distil a class-conditional or unconditional run");
  return m;
}

nlohmann::json teacher_config(const std::string& teacher) {
  std::error_code ec;
  const std::string cfg = model_config_path(teacher);
  if (!fs::is_directory(teacher, ec) || cfg.empty()) return {};
  const nlohmann::json j = nlohmann::json::parse(read_file(cfg), nullptr, false);
  return j.is_object() && j.contains("model") && j.contains("diffusion") ? j : nlohmann::json{};
}

TeacherData open_teacher_data(const std::string& teacher, const unet::UNetConfig& model,
                              const std::string& data_override, Device device) {
  TeacherData t;
  // A latent teacher: its autoencoder (the run's copy) maps the data to the latents it
  // diffuses, as in ddpm-train (latent_run.h).
  t.autoencoder_dir = find_run_autoencoder(teacher);
  if (!t.autoencoder_dir.empty()) {
    t.latent = std::make_unique<LatentCodec>(t.autoencoder_dir, device);
    DDPM_CHECK(t.latent->config().z_channels == model.in_channels,
               "--teacher " << teacher << ": its autoencoder " << t.autoencoder_dir << " has "
                            << t.latent->config().z_channels << " latent channels and the UNet takes "
                            << model.in_channels);
  }
  const int f = t.factor();
  const int image_channels = t.latent ? t.latent->config().in_channels : model.in_channels;

  t.config = teacher_config(teacher);
  t.data_section = t.config.value("data", nlohmann::json::object());
  t.spec = !data_override.empty() ? data_override : t.data_section.value("data", std::string());
  DDPM_CHECK(!t.spec.empty(), "--teacher " << teacher << " records no training data (not a ddpm-train run): give --data");
  DataOptions& dopt = t.options;
  dopt.pad_to_32 = t.data_section.value("pad_to_32", false);
  dopt.toy_count = t.data_section.value("toy_count", dopt.toy_count);
  dopt.seed = t.config.contains("train") ? t.config["train"].value("seed", std::uint64_t{0}) : 0;  // the toy set's
  t.data = std::make_shared<Dataset>(load_image_data(parse_data_spec(t.spec), dopt, "distillation"));
  const Dataset& d = *t.data;
  DDPM_CHECK(d.height == model.image_size * f && d.width == model.image_size * f && d.channels == image_channels,
             "--data " << t.spec << " has " << d.height << "x" << d.width << "x" << d.channels
                       << " images; the teacher takes " << model.image_size * f << "x" << model.image_size * f << "x"
                       << image_channels
                       << (t.latent ? " (through its autoencoder, f = " + std::to_string(f) + ")" : ""));
  DDPM_CHECK(model.num_classes == 0 || (d.has_labels() && d.num_classes <= model.num_classes),
             "the teacher is class-conditional (" << model.num_classes << " classes) and --data " << t.spec
                                                  << " has no labels that fit it");
  t.class_dropout = t.config.contains("train") ? t.config["train"].value("class_dropout", 0.1) : 0.1;
  return t;
}

StudentData student_data(const TeacherData& td, std::int64_t batch_size, std::int64_t gap_samples,
                         std::uint64_t loader_seed, std::uint64_t gap_seed, Device device) {
  StudentData s;
  s.loader.batch_size = batch_size;
  s.loader.seed = loader_seed;
  s.loader.random_flip = td.data_section.value("random_flip", false);
  s.loader.device = device;
  s.loader.drop_last = batch_size <= td.data->n;
  LoaderOptions held = s.loader;  // its own order, the same images
  held.batch_size = std::min<std::int64_t>(gap_samples, td.data->n);
  held.seed = gap_seed;
  held.drop_last = true;
  s.held_out = BatchLoader(td.data, held).next();
  s.held_out_x0 = td.latent ? td.latent->encode_mean(s.held_out.images) : s.held_out.images;
  return s;
}

nlohmann::json student_data_section(const TeacherData& td, const LoaderOptions& loader) {
  return {{"data", td.spec},
          {"random_flip", loader.random_flip},
          {"pad_to_32", td.options.pad_to_32},
          {"toy_count", td.options.toy_count}};
}

}  // namespace ddpm::run
