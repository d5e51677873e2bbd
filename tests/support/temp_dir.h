// tests/support/temp_dir.h: a fresh folder under the system temporary directory for a test
// to write into, removed with everything in it when the TempDir goes out of scope.
#pragma once

#include <stdlib.h>  // mkdtemp (POSIX)

#include <filesystem>
#include <stdexcept>
#include <string>

namespace ddpm::testing {

struct TempDir {
  std::string path;  // absolute, without a trailing slash

  // The folder is <tmp>/<prefix>-XXXXXX, made by mkdtemp (mode 0700, a unique name).
  explicit TempDir(const std::string& prefix = "ddpm-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("TempDir: mkdtemp failed for " + tmpl);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace ddpm::testing
