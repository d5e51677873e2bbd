// models/run/distill_teacher.h: the teacher side every method of ddpm-distill shares
// (progressive and guided distillation, distill_run.h; consistency distillation,
// consistency_run.h): the teacher run's own config.json, its autoencoder when it is a latent
// diffusion model, and the data it was trained on, loaded the way ddpm-train loaded them.
//
// The data: --data when given, else the spec recorded in the teacher's config.json "data"
// section, with its padding (pad_to_32) and toy count, and the toy set's seed from "train".
// The images must be what the UNet takes (through the autoencoder: f times larger, with the
// autoencoder's image channels), and a class-conditional teacher needs labels that fit its
// classes. Every refusal is a ValueError naming --teacher or --data; nothing is written.
//
// The teacher itself is opened by open_teacher, which refuses a text-conditioned run
// (ddpm-train --text-cond): distilling one would need its captions and text encoder in every
// method (future work), and its UNet cannot run without a context.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "models/data/dataset.h"
#include "models/data/loader.h"
#include "models/run/data_spec.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/unet/unet.h"

namespace ddpm::run {

// open_model(teacher, device, EMA weights), refusing a text-conditioned teacher (ValueError
// naming --teacher) before any work.
ModelSource open_teacher(const std::string& teacher, Device device);

// The teacher's config.json in our format ({"model", "diffusion", ...}) when it is a folder
// with one (the one open_model reads: model_source.h). Empty otherwise (a diffusers folder or
// a bare model file).
nlohmann::json teacher_config(const std::string& teacher);

struct TeacherData {
  nlohmann::json config;        // teacher_config (empty when none)
  nlohmann::json data_section;  // its "data" section (an empty object when none)
  std::string autoencoder_dir;  // find_run_autoencoder's folder; "" for a pixel-space teacher
  std::unique_ptr<LatentCodec> latent;  // on the device, when autoencoder_dir is set
  std::string spec;             // the data spec used
  DataOptions options;          // how they were loaded: the teacher run's padding and toy count
  std::shared_ptr<Dataset> data;
  double class_dropout = 0.1;   // the teacher run's null-label probability (0.1 when unrecorded)

  int factor() const { return latent ? latent->factor() : 1; }
};

// `model` is the teacher's UNet config; `data_override` is --data ("" for the teacher's).
TeacherData open_teacher_data(const std::string& teacher, const unet::UNetConfig& model,
                              const std::string& data_override, Device device);

// The student's data, drawn alike by every method. The training loader goes over td.data in
// the order loader_seed gives, with the teacher run's random_flip, dropping the last short
// batch unless the whole set is smaller than one batch. The held-out examples are the first
// min(gap_samples, n) images of another order (gap_seed) of the same set; a latent teacher's
// are their posterior means, fixed like the images they encode.
struct StudentData {
  LoaderOptions loader;  // the training loader's options
  Batch held_out;        // the held-out images and their labels
  Tensor held_out_x0;    // their x_0: the images, or the latents' posterior means
};
StudentData student_data(const TeacherData& td, std::int64_t batch_size, std::int64_t gap_samples,
                         std::uint64_t loader_seed, std::uint64_t gap_seed, Device device);

// The "data" section of a student folder's config.json: the spec, the flip and the teacher
// run's padding and toy count, so ddpm-eval and a resume load the same images.
nlohmann::json student_data_section(const TeacherData& td, const LoaderOptions& loader);

}  // namespace ddpm::run
