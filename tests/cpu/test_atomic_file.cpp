// Atomic file and folder writes: the destination holds either the old or the complete new
// contents, and no temporary is left behind, whether the write succeeds or fails.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "support/temp_dir.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(AtomicFile, WritesAndReplacesWithoutLeavingTemporaries) {
  TempDir dir;
  const std::string f = dir.path + "/out.bin";
  write_file_atomic(f, std::string("first"));
  EXPECT_EQ(read_file(f), "first");
  write_file_atomic(f, std::string("second, longer"));
  EXPECT_EQ(read_file(f), "second, longer");
  EXPECT_EQ(entries(dir.path), std::vector<std::string>{"out.bin"});
  EXPECT_EQ(fs::status(f).permissions() & fs::perms::others_read, fs::perms::others_read);
}

TEST(AtomicFile, AnExceptionDuringTheWriteKeepsTheOldFile) {
  TempDir dir;
  const std::string f = dir.path + "/model.bin";
  write_file_atomic(f, std::string("old contents"));
  try {
    AtomicFileWriter w(f);
    w.write("new", 3);
    EXPECT_TRUE(fs::exists(w.temp_path()));
    throw std::runtime_error("copy failed half way");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read_file(f), "old contents");
  EXPECT_EQ(entries(dir.path), std::vector<std::string>{"model.bin"});
}

TEST(AtomicFile, MissingFolderOrFolderPathIsAClearError) {
  TempDir dir;
  try {
    write_file_atomic(dir.path + "/no/such/folder/x.bin", std::string("x"));
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no/such/folder"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_file_atomic(dir.path, std::string("x")), IoError);
  EXPECT_THROW(read_file(dir.path + "/absent"), IoError);
  EXPECT_TRUE(entries(dir.path).empty());
}

TEST(AtomicFile, PublishDirectoryMakesMissingParents) {
  TempDir dir;
  const std::string deep = dir.path + "/runs/a/b";
  publish_directory(deep, [](const std::string& tmp) { write_file_atomic(tmp + "/x.txt", std::string("x")); });
  EXPECT_EQ(read_file(deep + "/x.txt"), "x");
  EXPECT_EQ(entries(dir.path + "/runs/a"), std::vector<std::string>{"b"});  // no temporary left beside it
  // A parent that is a file cannot be made: a clear error, nothing written.
  write_file_atomic(dir.path + "/file", std::string("f"));
  try {
    publish_directory(dir.path + "/file/sub", [](const std::string&) {});
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("could not be made"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(dir.path + "/file"), "f");
  // An existing empty folder counts as absent, even with IfExists::fail.
  fs::create_directories(dir.path + "/empty");
  publish_directory(dir.path + "/empty", [](const std::string& tmp) { write_file_atomic(tmp + "/y", std::string("y")); });
  EXPECT_EQ(read_file(dir.path + "/empty/y"), "y");
}

TEST(AtomicFile, PublishDirectoryCreatesRefusesAndReplaces) {
  TempDir dir;
  const std::string ckpt = dir.path + "/ckpt-100";
  publish_directory(ckpt, [](const std::string& tmp) {
    EXPECT_TRUE(fs::is_directory(tmp));
    write_file_atomic(tmp + "/a.txt", std::string("A1"));
    write_file_atomic(tmp + "/b.txt", std::string("B1"));
  });
  EXPECT_EQ(entries(ckpt), (std::vector<std::string>{"a.txt", "b.txt"}));

  // An existing folder is never overwritten by default; fill is not even called.
  bool called = false;
  try {
    publish_directory(ckpt, [&](const std::string&) { called = true; });
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(called);

  // Replace swaps in the new folder and removes the old one.
  publish_directory(
      ckpt, [](const std::string& tmp) { write_file_atomic(tmp + "/c.txt", std::string("C2")); }, IfExists::replace);
  EXPECT_EQ(entries(ckpt), std::vector<std::string>{"c.txt"});
  EXPECT_EQ(read_file(ckpt + "/c.txt"), "C2");
  EXPECT_EQ(entries(dir.path), std::vector<std::string>{"ckpt-100"});
}

TEST(AtomicFile, PublishDirectoryFailureLeavesNothingBehind) {
  TempDir dir;
  const std::string ckpt = dir.path + "/ckpt";
  publish_directory(ckpt, [](const std::string& tmp) { write_file_atomic(tmp + "/w", std::string("old")); });
  EXPECT_THROW(publish_directory(
                   ckpt,
                   [](const std::string& tmp) {
                     write_file_atomic(tmp + "/w", std::string("new"));
                     throw IoError("disk full (simulated)");
                   },
                   IfExists::replace),
               IoError);
  EXPECT_EQ(read_file(ckpt + "/w"), "old");
  EXPECT_EQ(entries(dir.path), std::vector<std::string>{"ckpt"});
  // A new folder whose fill fails does not appear at all.
  EXPECT_THROW(publish_directory(dir.path + "/fresh", [](const std::string&) { throw IoError("boom"); }), IoError);
  EXPECT_EQ(entries(dir.path), std::vector<std::string>{"ckpt"});
  // The parent path is a file: refused before anything is made.
  EXPECT_THROW(publish_directory(dir.path + "/ckpt/w/sub", [](const std::string&) {}), IoError);
  EXPECT_EQ(read_file(ckpt + "/w"), "old");
}

}  // namespace
}  // namespace ddpm
