// tests/fuzz/fuzz_runs.h: the small valid run files that fuzz_posthoc, fuzz_trainer_state and
// fuzz_distill_state put beside their fuzzed bytes, and that make_seeds writes as their seeds. Both programs
// build them here, with the library's own writers, so a seed and the valid files beside it
// agree on tensor names and shapes and a mutated seed reaches the deep end of the reader.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/ops/elementwise.h"
#include "engine/tensor.h"
#include "models/run/checkpoint.h"
#include "models/run/consistency_state.h"
#include "models/run/distill_state.h"
#include "models/run/posthoc_export.h"
#include "models/train/posthoc_ema.h"
#include "models/unet/model_io.h"

namespace ddpm::fuzz {

// A 2-level UNet of 8 channels on 8x8 images without attention (a few kB of weights): the
// network behind the fuzzed checkpoints and diffusers folders.
inline unet::UNetConfig tiny_unet_config() {
  unet::UNetConfig cfg;
  cfg.image_size = 8;
  cfg.in_channels = 1;
  cfg.model_channels = 8;
  cfg.channel_mult = {1, 2};
  cfg.num_res_blocks = 1;
  cfg.attention_resolutions = {};
  cfg.norm_groups = 4;
  cfg.dropout = 0;
  return cfg;
}

// The widths the runs track (EDM2's pair).
inline const std::vector<double>& tracked_sigma_rels() {
  static const std::vector<double> s{0.05, 0.10};
  return s;
}

// A two-tensor parameter slab (a 3x3 convolution and its bias): what a post-hoc snapshot
// stores per profile, "phema<i>.conv.weight" (OIHW) and "phema<i>.conv.bias".
inline ParameterSlab& posthoc_slab() {
  static ParameterSlab slab = [] {
    std::vector<float> w(2 * 1 * 3 * 3), b{0.25f, -0.5f};
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.1f * static_cast<float>(i) - 0.4f;
    ParameterSlab s;
    s.pack({{"conv.weight", Tensor::from_vector(w, {2, 1, 3, 3})}, {"conv.bias", Tensor::from_vector(b, {2})}});
    return s;
  }();
  return slab;
}

// Writes RUN/posthoc/step_<step>.safetensors (with `updates` AdamW updates) of the tracked
// profiles over posthoc_slab(), scaled by `factor` so that snapshots differ; returns its path.
inline std::string write_tiny_posthoc_snapshot(const std::string& run_dir, std::int64_t step, std::int64_t updates,
                                               double factor) {
  ParameterSlab& slab = posthoc_slab();
  std::vector<train::PowerEma> emas;
  for (double s : tracked_sigma_rels()) emas.emplace_back(slab, s);
  for (train::PowerEma& e : emas) e.load(factor * slab.values());
  return run::write_posthoc_snapshot(run_dir, step, updates, emas, slab);
}

// A 2-level UNet of 8 channels on 8x8 images (a few kB of weights), the model of the
// checkpoints below; built once, its parameters packed into tiny_checkpoint_slab().
inline unet::UNet& tiny_checkpoint_net() {
  static unet::UNet net = [] {
    Generator gen(0);
    return unet::UNet(tiny_unet_config(), gen, Device::cpu());
  }();
  return net;
}
inline ParameterSlab& tiny_checkpoint_slab() {
  static ParameterSlab slab(tiny_checkpoint_net().named_parameters());
  return slab;
}

// Publishes RUN/checkpoints/step_3 as ddpm-train would (trainer_checkpoint's layout: model,
// EMA, AdamW moments, trainer_state.json with every key a resume reads) and returns the
// folder; with_power_ema adds the two tracked power EMAs (power_ema.safetensors and
// trainer_state "posthoc_ema").
inline std::string write_tiny_checkpoint(const std::string& run_dir, bool with_power_ema) {
  unet::UNet& net = tiny_checkpoint_net();
  ParameterSlab& slab = tiny_checkpoint_slab();
  run::Checkpoint ck;
  ck.step = 3;
  ck.model = unet::export_state_dict(net);
  ck.ema = ck.model;
  const Tensor moments = 0.01 * slab.values();
  run::append_slab(moments, "exp_avg.", slab, ck.optimizer);
  run::append_slab(moments, "exp_avg_sq.", slab, ck.optimizer);
  ck.trainer_state = {{"step", 3},
                      {"adam_step", 3},
                      {"generator", {{"seed", 7}, {"offset", 96}}},
                      {"loader", {{"epoch", 0}, {"index", 12}}},
                      {"metrics", {{"loss", 0.5}}},
                      {"importance_history", nlohmann::json::parse("[[0.1, 0.2], [0.3]]")}};
  if (with_power_ema) {
    nlohmann::json profiles = nlohmann::json::array();
    for (std::size_t i = 0; i < tracked_sigma_rels().size(); ++i) {
      run::append_slab(slab.values(), train::power_ema_prefix(i), slab, ck.power_ema);
      const double s = tracked_sigma_rels()[i];
      profiles.push_back({{"sigma_rel", s}, {"gamma", train::gamma_from_sigma_rel(s)}});
    }
    ck.trainer_state["posthoc_ema"] = profiles;
  }
  return run::save_checkpoint(run_dir, ck);
}

// Publishes OUT.distill-state as ddpm-distill saves round 2 of a guided run of 3 rounds after
// 2 of its steps (round_0 and round_1 published; every key a resume reads), over
// posthoc_slab() (a convolution and its bias) for the student, EMA, AdamW moments and
// teacher; returns the state folder. OUT itself is not written.
inline std::string write_tiny_distill_state(const std::string& out) {
  ParameterSlab& slab = posthoc_slab();
  run::DistillOptions o;
  o.teacher = "teacher";
  o.teacher_steps = 16;
  o.rounds = 3;
  o.guided = "1,3";
  run::DistillState st;
  st.options = run::distill_options_json(o);
  st.round = 2;
  st.step = 2;
  st.adam_step = 2;
  st.generators = {{"draws", Generator(11, 640)}, {"dropout", Generator(12, 96)}};
  st.loader = {0, 8};
  st.gap_before = 0.25;
  st.has_gap_before = true;
  st.final_loss = 0.5;
  st.window_sum = 0.75;
  st.window_n = 1;
  st.losses = {0.5, 0.75};
  st.seconds = 1.5;
  nlohmann::json rounds = nlohmann::json::array();
  for (int r : {0, 1})
    rounds.push_back({{"round", r}, {"folder", "round_" + std::to_string(r)}, {"teacher_steps", 16 >> r},
                      {"student_steps", r == 0 ? 16 : 8}, {"final_loss", 0.5}, {"gap_before", 0.1},
                      {"gap_after", nullptr}, {"seconds", 2.0}});
  st.record = {{"rounds", rounds}, {"rounds_done", 1}, {"complete", false},
               {"resumed", nlohmann::json::array({{{"round", 1}, {"step", 1}}})}};
  const Tensor moments = 0.01 * slab.values();
  st.flats = {{"student", slab.values(), &slab}, {"ema", slab.values(), &slab}, {"exp_avg", moments, &slab},
              {"exp_avg_sq", moments, &slab}, {"teacher", slab.values(), &slab}};
  run::save_distill_state(out, st);
  return run::distill_state_dir(out);
}

// Publishes OUT.distill-state as ddpm-distill --method consistency saves a run of 8 steps
// after 3 (one skipped: a null loss; no window logged yet: a null final loss), over
// posthoc_slab() for the student, EMA, AdamW moments and target network ("method":
// "consistency", no round, no record); returns the state folder. OUT itself is not written.
inline std::string write_tiny_consistency_state(const std::string& out) {
  ParameterSlab& slab = posthoc_slab();
  run::ConsistencyOptions o;
  o.teacher = "teacher";
  o.levels = 4;
  o.steps = 8;
  o.target_ema = 0.5;
  run::DistillState st;
  st.method = run::kConsistencyMethod;
  st.options = run::consistency_options_json(o);
  st.step = 3;
  st.adam_step = 2;
  st.generators = {{"draws", Generator(21, 320)}, {"dropout", Generator(22, 48)}};
  st.loader = {1, 4};
  st.gap_before = 0.375;
  st.has_gap_before = true;
  st.final_loss = NAN;  // no window logged yet: null
  st.window_sum = 1.25;
  st.window_n = 2;
  st.losses = {0.5, NAN, 0.75};
  st.seconds = 0.5;
  const Tensor moments = 0.01 * slab.values();
  st.flats = {{"student", slab.values(), &slab}, {"ema", slab.values(), &slab}, {"exp_avg", moments, &slab},
              {"exp_avg_sq", moments, &slab}, {"target", 0.5 * slab.values(), &slab}};
  run::save_distill_state(out, st);
  return run::distill_state_dir(out);
}

}  // namespace ddpm::fuzz
