#include "apps/common/cli.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <exception>

#include "engine/error.h"
#include "engine/math_mode.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/context.h"
#endif

namespace ddpm::cli {

namespace {
// Library messages carry " [path/file.cpp:123]" locations for developers; users see the
// sentences alone unless DDPM_DEBUG is set.
std::string user_message(const char* what) {
  const char* debug = std::getenv("DDPM_DEBUG");
  return debug && *debug ? std::string(what) : strip_source_locations(what);
}
}  // namespace

void add_common_flags(CLI::App& app, CommonFlags& flags) {
  app.add_option("--device", flags.device, "auto | cpu | cuda | cuda:N (auto picks CUDA when usable)")
      ->capture_default_str();
  app.add_option("--seed", flags.seed, "seed of every random draw (Philox: same numbers on CPU and CUDA)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--tf32", flags.tf32,
                 "TF32 tensor-core math in CUDA convolutions and GEMMs (true | false; ~1e-3 relative error)")
      ->default_str("true");
  app.add_option("--conv-algo", flags.conv_algo,
                 "cuDNN algorithm choice: benchmark (time each once per shape) | heuristic (same choice in every process)")
      ->check(CLI::IsMember({"benchmark", "heuristic"}))
      ->capture_default_str();
  app.set_config("--config", "", "read flags from a TOML file (keys are the long flag names, e.g. batch-size = 64)");
  app.allow_config_extras(CLI::config_extras_mode::error);
}

Device resolve_device(const CommonFlags& flags) {
  Device d = parse_device(flags.device);
  set_allow_tf32(flags.tf32);
  set_conv_algo_search(parse_conv_algo_search(flags.conv_algo.c_str()));
#if DDPM_HAVE_CUDA
  if (d.is_cuda()) cuda::set_device(d.index);
#endif
  return d;
}

int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  const std::string name = app.get_name();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: %s\nRun with --help for the flags.\n", name.c_str(), e.what());
    return 2;
  }
  try {
    return body();
  } catch (const ValueError& e) {
    std::fprintf(stderr, "%s: error: %s\n", name.c_str(), user_message(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name.c_str(), user_message(e.what()).c_str());
    return 1;
  }
}

void require_positive(const char* flag, double value) {
  DDPM_CHECK(value > 0, flag << " must be positive, got " << value);
}

void require_in_range(const char* flag, double value, double lo, double hi) {
  DDPM_CHECK(value >= lo && value <= hi, flag << " must be in [" << lo << ", " << hi << "], got " << value);
}

}  // namespace ddpm::cli
