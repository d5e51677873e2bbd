// apps/common/cli: exit codes, the TOML config file (unknown keys are errors), and the
// one-line error messages every ddpm-* program prints.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "apps/common/cli.h"
#include "engine/error.h"
#include "engine/math_mode.h"
#include "support/temp_dir.h"

namespace ddpm::cli {
namespace {

struct Argv {
  std::vector<std::string> args;
  std::vector<char*> ptrs;
  explicit Argv(std::vector<std::string> a) : args(std::move(a)) {
    for (auto& s : args) ptrs.push_back(s.data());
  }
  int argc() { return static_cast<int>(ptrs.size()); }
  char** argv() { return ptrs.data(); }
};

int run_with(std::vector<std::string> args, int* batch_out = nullptr,
             const std::function<int()>& body = [] { return 0; }) {
  CLI::App app("test app", "ddpm-test");
  CommonFlags flags;
  add_common_flags(app, flags);
  int batch = 8;
  app.add_option("--batch-size", batch, "batch size");
  Argv a(std::move(args));
  int rc = run(app, a.argc(), a.argv(), [&] {
    if (batch_out) *batch_out = batch;
    return body();
  });
  return rc;
}

TEST(Cli, ExitCodes) {
  EXPECT_EQ(run_with({"ddpm-test"}), 0);
  EXPECT_EQ(run_with({"ddpm-test", "--no-such-flag"}), 2);
  EXPECT_EQ(run_with({"ddpm-test", "--batch-size", "abc"}), 2);
  EXPECT_EQ(run_with({"ddpm-test"}, nullptr, [] () -> int { DDPM_THROW(ValueError, "bad value"); }), 2);
  EXPECT_EQ(run_with({"ddpm-test"}, nullptr, [] () -> int { DDPM_THROW(IoError, "missing file"); }), 1);
  EXPECT_EQ(run_with({"ddpm-test", "--help"}), 0);
  EXPECT_EQ(run_with({"ddpm-test", "--seed", "-1"}), 2);
}

TEST(Cli, ConfigFileSetsFlagsAndRejectsUnknownKeys) {
  std::string path = testing::temp_path("cli_config.toml");
  {
    std::ofstream f(path);
    f << "batch-size = 64\n";
  }
  int batch = 0;
  EXPECT_EQ(run_with({"ddpm-test", "--config", path}, &batch), 0);
  EXPECT_EQ(batch, 64);
  {
    std::ofstream f(path);
    f << "batch-size = 64\nbatch-sise = 3\n";
  }
  EXPECT_EQ(run_with({"ddpm-test", "--config", path}), 2);
  EXPECT_EQ(run_with({"ddpm-test", "--config", path + ".missing"}), 2);
}

TEST(Cli, DeviceResolution) {
  MathModeScope restore;  // resolve_device applies --tf32 and --conv-algo process-wide
  CommonFlags f;
  f.device = "cpu";
  EXPECT_TRUE(resolve_device(f).is_cpu());
  EXPECT_TRUE(allow_tf32());  // the apps' default
  f.tf32 = false;
  f.conv_algo = "heuristic";
  EXPECT_TRUE(resolve_device(f).is_cpu());
  EXPECT_FALSE(allow_tf32());
  EXPECT_EQ(conv_algo_search(), ConvAlgoSearch::heuristic);
  f.device = "gpu";
  EXPECT_THROW(resolve_device(f), ValueError);
  EXPECT_THROW(require_positive("--batch-size", 0), ValueError);
  EXPECT_THROW(require_in_range("--eta", 1.5, 0, 1), ValueError);
  EXPECT_NO_THROW(require_in_range("--eta", 0.5, 0, 1));
}

TEST(Cli, ErrorsArePrintedAsOneLineWithoutTheSourceLocation) {
  std::string path = testing::temp_path("cli_stderr.txt");
  std::fflush(stderr);
  int saved = ::dup(2);
  int file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(file, 0);
  ::dup2(file, 2);
  ::close(file);
  run_with({"ddpm-test"}, nullptr, [] () -> int {
    DDPM_THROW(IoError, "loading the run: cannot read data.idx [/src/models/data/idx.cpp:12]: it is short");
  });
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::ifstream f(path);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all, "ddpm-test: error: loading the run: cannot read data.idx: it is short\n");
}

// A message's own brackets are text: a half-open range "[0, 1)" before the appended location
// stays whole (the location alone goes), and so do closed ranges and indices.
TEST(Cli, StrippingLocationsKeepsTheMessagesOwnBrackets) {
  EXPECT_EQ(strip_source_locations("--p must be in [0, 1), got 1 [/src/models/run/train_options.cpp:131]"),
            "--p must be in [0, 1), got 1");
  EXPECT_EQ(strip_source_locations("--k must be in [1, 7], got 9 [a.cpp:3]"), "--k must be in [1, 7], got 9");
  EXPECT_EQ(strip_source_locations("x [i: 3] is bad [/src/x.cpp:10]: wrapped [/src/y.cpp:20]"),
            "x [i: 3] is bad: wrapped");
}

}  // namespace
}  // namespace ddpm::cli
