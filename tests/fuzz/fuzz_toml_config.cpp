// tests/fuzz/fuzz_toml_config.cpp: --config FILE, the TOML file every app reads (apps/common
// cli.h add_common_flags: CLI11's config reader, unknown keys refused), here with ddpm-train's
// flags (models/run/train_flags.h add_train_flags), the largest set, so values reach their
// validators and the option callbacks.
//
// Expected outcomes are what the apps map to exit 2: CLI::ParseError (cli::run catches it)
// and ddpm::Error. Anything else escaping app.parse would end an app with an uncaught
// exception instead of one line of error.
#include <CLI/CLI.hpp>

#include "apps/common/cli.h"
#include "models/run/train_flags.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = ddpm::fuzz::write_scratch("config.toml", data, size);
  CLI::App app{"fuzz", "ddpm-train"};
  ddpm::cli::CommonFlags common;
  ddpm::run::TrainOptions options;
  ddpm::cli::add_common_flags(app, common);
  ddpm::run::add_train_flags(app, options);
  std::string config_flag = "--config", program = "ddpm-train";
  std::string path_arg = path;
  char* argv[] = {program.data(), config_flag.data(), path_arg.data()};
  ddpm::fuzz::expect_accept_or_refuse([&] {
    try {
      app.parse(3, argv);
    } catch (const CLI::ParseError&) {
    }
  });
  return 0;
}
