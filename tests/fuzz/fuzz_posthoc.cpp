// tests/fuzz/fuzz_posthoc.cpp: the post-hoc EMA snapshots of a run (models/run/posthoc_export.h):
// the safetensors header read for the metadata (ddpm.step, ddpm.updates, ddpm.posthoc_ema),
// the listing of RUN/posthoc/, the least-squares reconstruction and the weighted sum of the
// snapshots' tensors (load_safetensors with its CRC).
//
// The first byte picks the run folder that gets the rest of the bytes as a snapshot:
//   even: RUN/posthoc/step_4.safetensors beside a valid step_2 (written once by
//         write_posthoc_snapshot): an accepted snapshot makes the two that a reconstruction
//         needs, so the solve and the weighted sum run on what it claims.
//   odd:  the only snapshot of another run: the header and metadata readers alone (one
//         snapshot is refused before the reconstruction).
// The entry point is what ddpm-export --posthoc-ema calls: list_posthoc_snapshots, then
// reconstruct_posthoc_ema at sigma_rel 0.07. A reconstruction's inner products cost O(t) for
// t updates (models/train/posthoc_ema.h): a snapshot claiming a billion steps is a long but
// legitimate run, not a finding, so the target asks for the EMA at a step of at most 10^5.
#include <filesystem>

#include "models/run/posthoc_export.h"
#include "tests/fuzz/fuzz_runs.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kMaxFuzzStep = 100'000;

std::string make_run(const std::string& name, bool with_valid_snapshot) {
  const std::string dir = ddpm::fuzz::scratch_dir() + "/" + name;
  fs::create_directories(dir + "/" + ddpm::run::kPosthocFolder);
  if (with_valid_snapshot) ddpm::fuzz::write_tiny_posthoc_snapshot(dir, 2, 2, 1.0);
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool alone = (data[0] & 1) != 0;
  static const std::string beside_run = make_run("run_beside", true);
  static const std::string alone_run = make_run("run_alone", false);
  const std::string& run = alone ? alone_run : beside_run;
  ddpm::fuzz::write_scratch((alone ? "run_alone/posthoc/step_1.safetensors" : "run_beside/posthoc/step_4.safetensors"),
                            data + 1, size - 1);
  ddpm::fuzz::expect_accept_or_refuse([&] {
    const std::vector<ddpm::run::PosthocSnapshot> all = ddpm::run::list_posthoc_snapshots(run);
    const std::int64_t step = all.back().step <= kMaxFuzzStep ? 0 : kMaxFuzzStep;
    const ddpm::run::PosthocResult r = ddpm::run::reconstruct_posthoc_ema(run, 0.07, step);
    // What a caller relies on: one coefficient per basis profile, every tensor of the
    // first snapshot reconstructed with its shape.
    if (r.solution.coefficients.size() != r.basis.size() || r.weights.empty()) std::abort();
    for (const auto& [name, t] : r.weights)
      if (!t.defined() || t.dtype() != ddpm::DType::f32) std::abort();
  });
  return 0;
}
