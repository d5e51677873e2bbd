// tests/fuzz/fuzz_trainer_state.cpp: trainer_state.json, read on ddpm-train --resume and
// ddpm-control --resume (models/run/checkpoint.h): load_checkpoint parses and checks it,
// restore_trainer_state and checkpoint_loader_position take the step, AdamW step count,
// generator, loader position and the "posthoc_ema" profiles from it, and the resume reads its
// "importance_history" and "metrics" as models/run/train_run.cpp does.
//
// The first byte picks the checkpoint whose trainer_state.json gets the rest of the bytes;
// both are valid step_3 folders of a tiny UNet written once by save_checkpoint:
//   even: with power_ema.safetensors (two tracked power-function EMAs), so that "posthoc_ema"
//         reaches the per-profile reads of the power EMAs;
//   odd:  without it, as a run without --posthoc-ema leaves.
#include <vector>

#include "tests/fuzz/fuzz_runs.h"
#include "tests/fuzz/fuzz_support.h"
#include "models/data/loader.h"
#include "models/train/trainer.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool with_power_ema = (data[0] & 1) == 0;
  static const std::string with_dir =
      ddpm::fuzz::write_tiny_checkpoint(ddpm::fuzz::scratch_dir() + "/run_phema", true);
  static const std::string without_dir =
      ddpm::fuzz::write_tiny_checkpoint(ddpm::fuzz::scratch_dir() + "/run_plain", false);
  const std::string& dir = with_power_ema ? with_dir : without_dir;
  const std::string rel = (with_power_ema ? "run_phema" : "run_plain") + std::string("/checkpoints/step_3/") +
                          ddpm::run::kTrainerStateFile;
  ddpm::fuzz::write_scratch(rel, data + 1, size - 1);
  ddpm::fuzz::expect_accept_or_refuse([&] {
    const ddpm::run::Checkpoint ck = ddpm::run::load_checkpoint(dir);
    ddpm::train::TrainerState st = ddpm::run::restore_trainer_state(
        ck, dir, ddpm::fuzz::tiny_checkpoint_net(), ddpm::fuzz::tiny_checkpoint_slab(), ddpm::Device::cpu());
    const ddpm::LoaderPosition pos = ddpm::run::checkpoint_loader_position(ck);
    if (st.step < 0 || st.adam_step < 0 || st.adam_step > st.step || pos.epoch < 0 || pos.index < 0) std::abort();
    const nlohmann::json& js = ck.trainer_state;
    if (js.contains("importance_history"))
      (void)js.at("importance_history").get<std::vector<std::vector<double>>>();
    (void)js.value("metrics", nlohmann::json::object());
  });
  return 0;
}
