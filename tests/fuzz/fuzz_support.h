// tests/fuzz/fuzz_support.h: what every libFuzzer target in this folder shares.
//
// A target hands the fuzzer's bytes to one real reader of the library. The reader may accept
// them or refuse them with the library's own error (ddpm::Error, engine/error.h): both are
// expected outcomes. Everything else is a finding that libFuzzer reports and saves as a
// reproducer: a crash, an AddressSanitizer or UndefinedBehaviorSanitizer report, an exception
// of another type escaping (std::terminate aborts), std::bad_alloc or a malloc above
// -malloc_limit_mb (a size field believed blindly), a run above -timeout (a hang).
//
// Readers that take a path get the bytes through a file in /dev/shm (or $TMPDIR), one per
// process, rewritten for every input, so the exact production code path runs.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/error.h"

namespace ddpm::fuzz {

// A folder private to this process, created on first use and kept until exit.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string root = (access("/dev/shm", W_OK) == 0) ? "/dev/shm" : (base && *base ? base : "/tmp");
    std::string tmpl = root + "/ddpm-fuzz-XXXXXX";
    if (!mkdtemp(tmpl.data())) {
      std::perror("ddpm fuzz: mkdtemp");
      std::abort();
    }
    return tmpl;
  }();
  return dir;
}

// Writes `size` bytes to `name` inside scratch_dir() and returns the full path. A failure
// to write is an environment problem, not a finding of the reader: it aborts loudly.
inline std::string write_scratch(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(("ddpm fuzz: writing " + path).c_str());
    std::abort();
  }
  return path;
}

// Runs `read`; a ddpm::Error is a refusal, the expected outcome for damaged bytes.
template <class F>
void expect_accept_or_refuse(F&& read) {
  try {
    read();
  } catch (const ddpm::Error&) {
  }
}

}  // namespace ddpm::fuzz
