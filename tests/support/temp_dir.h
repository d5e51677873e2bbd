// tests/support/temp_dir.h: where tests write files. Every test process gets one root folder
// of its own, made by mkdtemp under the test temp dir (::testing::TempDir(): $TEST_TMPDIR, or
// /tmp) on first use and removed with everything in it when the process exits.
//
// Why a root per process: ctest runs every test in its own process, two at a time
// (CMakePresets.json "jobs": 2, scripts/run-tests.sh), and before this many tests wrote fixed
// names such as <tmp>/sample_run_a or <tmp>/ckpt_roundtrip. Two tests that pick the same name
// then meet in one folder, and the remove_all each does to start clean deletes the other's
// files mid-run (CI failed that way once). Under a per-process root the same names never meet,
// and a name reused by two tests of one process (the whole suite run as one binary) is still
// emptied by temp_path before each use.
//
//   process_temp_root()   this process's root (absolute, no trailing slash)
//   temp_path(name)       <root>/<name> with nothing there: the caller creates it, or lets the
//                         code under test do so (run folders are published atomically)
//   fresh_temp_dir(name)  temp_path(name), created as an empty folder
//   TempDir               a mkdtemp folder inside the root, removed when it goes out of scope
//   ScopedTmpdir          $TMPDIR pointed at a TempDir while it lives
//
// No test writes outside its process root; the library's own mkdtemp scratch folders (in
// std::filesystem::temp_directory_path()) are unique by construction, and a test that counts
// them points $TMPDIR at a folder of its own first (ScopedTmpdir), so that another process's
// scratch folders, appearing and vanishing meanwhile, are not counted.
#pragma once

#include <gtest/gtest.h>

#include <stdlib.h>  // mkdtemp, setenv, unsetenv (POSIX)
#include <unistd.h>  // getpid

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

namespace ddpm::testing {

namespace detail {

inline std::string make_unique_dir(const std::filesystem::path& parent, const std::string& prefix) {
  std::string tmpl = (parent / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
  return tmpl;
}

// The process that made the root; a forked child that exits (a death test) leaves it alone.
inline pid_t& root_owner() {
  static pid_t pid = 0;
  return pid;
}

}  // namespace detail

inline const std::string& process_temp_root() {
  static const std::string root = [] {
    detail::root_owner() = ::getpid();
    return detail::make_unique_dir(::testing::TempDir(), "ddpm-tests");
  }();
  // Registered after `root` is constructed, so it runs before root's destructor at exit.
  static const bool removed_at_exit = [] {
    std::atexit([] {
      if (::getpid() != detail::root_owner()) return;
      std::error_code ignored;
      std::filesystem::remove_all(process_temp_root(), ignored);
    });
    return true;
  }();
  (void)removed_at_exit;
  return root;
}

inline std::string temp_path(const std::string& name) {
  const std::filesystem::path p = std::filesystem::path(process_temp_root()) / name;
  std::filesystem::remove_all(p);
  return p.string();
}

inline std::string fresh_temp_dir(const std::string& name) {
  const std::string p = temp_path(name);
  std::filesystem::create_directories(p);
  return p;
}

struct TempDir {
  std::string path;  // absolute, without a trailing slash

  // The folder is <process root>/<prefix>-XXXXXX, made by mkdtemp (mode 0700, a unique name).
  explicit TempDir(const std::string& prefix = "ddpm-test") : path(detail::make_unique_dir(process_temp_root(), prefix)) {}
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// While it lives, $TMPDIR (and so std::filesystem::temp_directory_path()) is a fresh TempDir;
// the previous value, or its absence, comes back when it goes out of scope.
struct ScopedTmpdir {
  TempDir dir{"tmpdir"};
  std::optional<std::string> saved;

  ScopedTmpdir() {
    if (const char* old = std::getenv("TMPDIR")) saved = old;
    ::setenv("TMPDIR", dir.path.c_str(), 1);
  }
  ~ScopedTmpdir() {
    if (saved)
      ::setenv("TMPDIR", saved->c_str(), 1);
    else
      ::unsetenv("TMPDIR");
  }
  ScopedTmpdir(const ScopedTmpdir&) = delete;
  ScopedTmpdir& operator=(const ScopedTmpdir&) = delete;
};

}  // namespace ddpm::testing
