// Where the test fixtures live: tests/data in the source tree, fixed at build time, or
// the directory named by the environment variable DDPM_TEST_DATA_DIR. The override lets a
// prebuilt test binary run from another checkout (scripts/gpu-pack.sh carries binaries to
// a GPU machine whose copy of the tree sits at a different path).
#pragma once
#include <cstdlib>
#include <string>

namespace ddpm::test {

inline std::string data_dir() {
  if (const char* env = std::getenv("DDPM_TEST_DATA_DIR"); env && *env) return env;
  return DDPM_TEST_DATA_DIR;
}

}  // namespace ddpm::test
