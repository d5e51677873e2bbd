// Run-folder checkpoints: atomic publication, `latest`, CRC-verified loading, config diffs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/checkpoint.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using namespace ddpm;

namespace {

std::string fresh_dir(const std::string& name) { return ddpm::testing::fresh_temp_dir("ckpt_" + name); }

run::Checkpoint small_checkpoint(std::int64_t step, float v) {
  run::Checkpoint c;
  c.step = step;
  c.model = {{"conv_in.weight", Tensor::full({2, 1, 3, 3}, v)}, {"conv_in.bias", Tensor::full({2}, v)}};
  c.ema = c.model;
  c.optimizer = {{"exp_avg.conv_in.bias", Tensor::zeros({2})}, {"exp_avg_sq.conv_in.bias", Tensor::zeros({2})}};
  c.trainer_state = {{"adam_step", step}};
  return c;
}

}  // namespace

TEST(RunCheckpoint, SaveLoadRoundTripAndLatest) {
  const std::string run = fresh_dir("roundtrip");
  const std::string dir = run::save_checkpoint(run, small_checkpoint(3, 0.5f));
  EXPECT_EQ(dir, run::checkpoint_dir(run, 3));
  EXPECT_EQ(run::resolve_checkpoint(run, "latest"), dir);
  EXPECT_EQ(run::resolve_checkpoint(run, dir), dir);
  EXPECT_EQ(run::resolve_checkpoint(run, run), dir);  // a run folder resolves to its latest
  const run::Checkpoint c = run::load_checkpoint(dir);
  EXPECT_EQ(c.step, 3);
  ASSERT_EQ(c.model.size(), 2u);
  EXPECT_EQ(c.model[0].second.to_vector()[0], 0.5f);
  EXPECT_EQ(c.trainer_state.at("adam_step"), 3);
  EXPECT_TRUE(run::is_run_folder(run));
  EXPECT_FALSE(run::is_run_folder(fresh_dir("empty")));
}

TEST(RunCheckpoint, FailedWriteLeavesNoFolderAndLatestUnchanged) {
  const std::string run = fresh_dir("atomic");
  run::save_checkpoint(run, small_checkpoint(1, 1.0f));
  run::Checkpoint bad = small_checkpoint(2, 2.0f);
  bad.optimizer.emplace_back("", Tensor::zeros({1}));  // an empty name: save_safetensors refuses it
  EXPECT_THROW(run::save_checkpoint(run, bad), ValueError);
  EXPECT_FALSE(fs::exists(run::checkpoint_dir(run, 2)));
  EXPECT_EQ(read_file(run + "/checkpoints/latest"), "step_1\n");
  int entries = 0;
  for (const auto& e : fs::directory_iterator(run + "/checkpoints")) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 2);  // step_1 and latest: no temporary folder left behind
}

TEST(RunCheckpoint, DamagedFilesAreErrors) {
  const std::string run = fresh_dir("damaged");
  const std::string dir = run::save_checkpoint(run, small_checkpoint(4, 0.25f));
  {  // flip the last byte of the model's data: the CRC check catches it
    std::fstream f(dir + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    char ch = 0;
    f.read(&ch, 1);
    ch ^= 0x40;
    f.seekp(-1, std::ios::end);
    f.write(&ch, 1);
  }
  EXPECT_THROW(run::load_checkpoint(dir), IoError);
  fs::remove(dir + "/trainer_state.json");
  EXPECT_THROW(run::resolve_checkpoint(run, "latest"), IoError);
  EXPECT_THROW(run::resolve_checkpoint(fresh_dir("none"), "latest"), IoError);
  EXPECT_THROW(run::resolve_checkpoint(run, run + "/nowhere"), IoError);
}

TEST(RunCheckpoint, ConfigDifferencesNameEveryKey) {
  nlohmann::json a = {{"model", {{"model_channels", 8}, {"channel_mult", {1, 2}}}}, {"train", {{"lr", 1e-3}}}};
  nlohmann::json b = {{"model", {{"model_channels", 16}, {"channel_mult", {1, 2}}, {"dropout", 0.1}}},
                      {"train", {{"lr", 1e-3}}}};
  const auto d = run::config_differences(a, b);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0], "model.model_channels: 8 vs 16");
  EXPECT_EQ(d[1], "model.dropout: (absent) vs 0.1");
  EXPECT_TRUE(run::config_differences(a, a).empty());
}
