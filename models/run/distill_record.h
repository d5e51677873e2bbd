// models/run/distill_record.h: how a ddpm-distill student is meant to be sampled, as its
// round folder says it (models/run/distill_run.h writes it; ddpm-sample reads it).
//
// A progressive-distillation student (Salimans & Ho 2022, Algorithm 2) is trained to take in
// ONE eta = 0 DDIM step from level G_K[i] what its teacher took in two, on exactly the grid
// G_K of `ddpm-sample --sampler ddim --sampling-steps K` (progressive_distill.h). Off that
// grid (another K, DDPM's ancestral steps, Heun) the network is asked questions it was
// never trained to answer, and its samples degrade without any error. And its x_0
// estimates were trained against targets x~ (eq. 2) that leave [-1, 1] at high noise, so
// the sampler's default clamp of x^ would step it off the trajectory it learnt.
//
// So each round folder's config.json carries, beside the run's own sections,
//   "distillation": {"round": k, "sampling_steps": K, "sampler": "ddim", "clip_x0": false,
//                    "teacher": <what --teacher named>, "teacher_steps": 2K, ...}
// plus, for a guidance-distilled student (ddpm-distill --guided, guided_distill.h; round 0 is
// its stage 1), "guided": {"scale_min": S_MIN, "scale_max": S_MAX}, the trained range of
// ddpm-sample's --guidance-scale; and ddpm-sample (make_sampler_config) uses "clip_x0" as its default when neither
// --clip-x0 nor --dynamic-threshold is given (as latent runs default to no clip), and prints
// distillation_sampling_warning's single line when the sampler or the step count leaves the
// trained grid. A consistency model (consistency_run.h) records sampler "consistency", its
// K = 1 default and a "consistency" key with its levels (and "guided" when distilled with
// --guided); it gets no warning (any K of its
// levels is trained) and other samplers are refused instead. open_model and ddpm-eval ignore the section (they read "model" and
// "diffusion" only), so a round folder opens like any checkpoint folder.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace ddpm::run {

inline constexpr const char* kDistillationSection = "distillation";

// The trained range of guidance scales s of a guidance-distilled student (ddpm-sample's
// units; the network takes w = s - 1).
struct GuidedRange {
  double scale_min = 1.0, scale_max = 1.0;
};

struct DistillationRecord {
  int round = 0;                     // 1-based; 0: stage 1 of guided distillation
  std::int64_t sampling_steps = 0;   // K: the DDIM grid the student was trained for
  std::string sampler = "ddim";
  bool clip_x0 = false;              // the clamp of x^ the student was trained with
  std::string teacher;
  std::optional<GuidedRange> guided;  // set for a guidance-distilled student
};

// The section's keys above (the writer adds its loss and gap figures to them).
nlohmann::json distillation_record_json(const DistillationRecord& r);

// The record of the config.json that open_model would read for `checkpoint` (a folder's
// own, else two levels up as for RUN/checkpoints/step_N; beside a model file); nullopt when
// there is none, or it has no "distillation" section. ValueError naming the file when the
// section is there but lacks a key or has a key of the wrong type.
std::optional<DistillationRecord> read_distillation_record(const std::string& checkpoint);

// "" when `sampler` with `sampling_steps` (0: all T training steps) is the grid the student
// was trained for; else one line starting "warning: " that names the folder, the trained
// sampler and K, and what was asked.
std::string distillation_sampling_warning(const DistillationRecord& r, const std::string& checkpoint,
                                          const std::string& sampler, std::int64_t sampling_steps, std::int64_t T);

}  // namespace ddpm::run
