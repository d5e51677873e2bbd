// Post-hoc EMA of a LATENT diffusion run (ddpm-train --autoencoder --posthoc-ema, then
// ddpm-export --posthoc-ema; models/run/posthoc_export.h): the exported folder carries the
// run's autoencoder, so it opens and samples as a latent model on its own.
//
// The independent computations:
//   - the weights the ddpm-export binary writes, and those open_model loads from its folder,
//     equal the in-process reconstruct_posthoc_ema of the same run and width, bit for bit;
//   - the folder's autoencoder/ equals the run's copy tensor for tensor, and find_run_autoencoder
//     finds it from the exported folder alone;
//   - run_sample on the folder (which finds and loads the autoencoder itself) draws the same
//     pixels as run_sample on the opened model with a LatentCodec of the RUN's autoencoder
//     passed in by hand: the second code path of the decode.
#include <gtest/gtest.h>

#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "engine/error.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/run/autoencoder_run.h"
#include "models/run/checkpoint.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/run/posthoc_export.h"
#include "models/run/sample_run.h"
#include "models/unet/model_io.h"
#include "support/temp_dir.h"
#include "support/tiny_autoencoder.h"
#include "support/tiny_run.h"

namespace fs = std::filesystem;

namespace ddpm::run {
namespace {

// The ddpm-export binary, built beside cpu_tests; empty when absent.
std::string ddpm_export_binary() {
  char buf[PATH_MAX] = {};
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  const fs::path p = fs::path(std::string(buf, static_cast<std::size_t>(n))).parent_path() / "ddpm-export";
  return fs::exists(p) ? p.string() : "";
}

TEST(PosthocLatent, ExportCarriesTheAutoencoderAndEqualsTheInProcessReconstruction) {
  TrainOptions o = testing::tiny_run(testing::temp_run("posthoc_latent"));
  o.autoencoder = testing::tiny_autoencoder("posthoc_latent_ae");
  o.attention_resolutions = "";  // a 4x4 latent UNet
  o.steps = 4;
  o.save_every = 4;
  o.posthoc_ema = "0.05,0.10";
  o.posthoc_snapshot_every = 2;  // snapshots at steps 2 and 4
  train_run(o);
  ASSERT_EQ(list_posthoc_snapshots(o.out).size(), 2u);

  const PosthocResult r = reconstruct_posthoc_ema(o.out, 0.08);
  EXPECT_EQ(r.step, 4);
  EXPECT_EQ(posthoc_gap_note(r), "");  // at a snapshot

  const std::string bin = ddpm_export_binary();
  ASSERT_FALSE(bin.empty()) << "ddpm-export is not built beside cpu_tests (build every target)";
  const std::string dir = testing::temp_path("posthoc_latent_export");
  fs::remove_all(dir);
  const std::string cmd = bin + " --checkpoint " + o.out + " --posthoc-ema 0.08 --out " + dir + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  // The weights: the binary's file and what open_model loads, against the in-process result.
  const SafetensorsFile written = load_safetensors(dir + "/" + kEmaFile);
  const ModelSource model = open_model(dir, Device::cpu());
  EXPECT_EQ(model.kind, "checkpoint folder");
  EXPECT_EQ(model.net->config().image_size, 4);  // the latent UNet, not a 16x16 pixel one
  const auto loaded = unet::export_state_dict(*model.net);
  ASSERT_EQ(loaded.size(), r.weights.size());
  ASSERT_EQ(written.tensors.size(), r.weights.size());
  for (const auto& [name, t] : r.weights) {
    EXPECT_EQ(written.get(name).to_vector(), t.to_vector()) << name;
    bool found = false;
    for (const auto& [n2, t2] : loaded)
      if (n2 == name) {
        EXPECT_EQ(t2.to_vector(), t.to_vector()) << name;
        found = true;
      }
    EXPECT_TRUE(found) << name;
  }

  // The autoencoder: found from the folder alone, the run's copy tensor for tensor.
  const std::string ae = find_run_autoencoder(dir);
  EXPECT_EQ(fs::path(ae).lexically_normal(), (fs::path(dir) / kRunAutoencoderFolder).lexically_normal());
  testing::expect_same_tensors(ae + "/" + autoencoder::kAutoencoderWeights,
                               o.out + "/" + kRunAutoencoderFolder + "/" + autoencoder::kAutoencoderWeights);
  EXPECT_THROW(refuse_latent_model(dir, "a pixel-only feature"), ValueError);

  // Sampling the folder decodes with its autoencoder: the same pixels as the opened model
  // decoded by the run's autoencoder handed over explicitly.
  SampleOptions s;
  s.checkpoint = dir;
  s.sampler = "ddim";
  s.sampling_steps = 5;
  s.num_samples = 2;
  s.batch_size = 2;
  s.seed = 5;
  s.out = testing::temp_run("posthoc_latent_sample");
  const SampleResult from_folder = run_sample(s);
  ASSERT_EQ(from_folder.shape, (Shape{2, 16, 16, 1}));  // decoded pixels
  const LatentCodec codec(o.out + "/" + kRunAutoencoderFolder, Device::cpu());
  s.out = testing::temp_run("posthoc_latent_sample_by_hand");
  EXPECT_EQ(run_sample(s, model, nullptr, &codec).pixels, from_folder.pixels);
}

}  // namespace
}  // namespace ddpm::run
