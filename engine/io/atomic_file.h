// engine/io/atomic_file.h: writing files and folders so that a crash, a full disk or a
// thrown exception never leaves a half-written result behind.
//
// A file is written to a temporary name in the destination's own folder (a rename is only
// atomic within one file system), flushed to disk with fsync, renamed over the destination,
// and then the folder itself is fsynced so the rename survives a power cut. Readers see
// either the old file or the complete new one, never a mixture.
//
// A folder (a checkpoint: weights, optimizer state, config.json) is filled under a
// temporary name beside its destination and then renamed into place in one step.
//
// On any failure the temporary is removed, the destination is untouched, and an IoError
// names the path and the system's reason (strerror).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace ddpm {

// A file being written atomically. Write the bytes, then commit(); destroying the writer
// without commit() (an exception on the way) removes the temporary file.
//
//   AtomicFileWriter w("run/model.safetensors");
//   w.write(header.data(), header.size());
//   w.commit();
class AtomicFileWriter {
 public:
  // Creates the temporary file beside `path`. Throws IoError when the folder is missing
  // or not writable, or when `path` is an existing folder.
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, std::size_t nbytes);
  // fsync, close, rename over the destination, fsync the folder. Call once.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  void discard() noexcept;  // close and unlink the temporary

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes `nbytes` bytes to `path` atomically.
void write_file_atomic(const std::string& path, const void* data, std::size_t nbytes);
void write_file_atomic(const std::string& path, const std::string& contents);

// Reads a whole file; IoError naming the path when it cannot be opened or read.
std::string read_file(const std::string& path);

// What publish_directory does when the destination folder already exists.
enum class IfExists {
  fail,     // throw IoError and leave both the old folder and nothing new behind
  replace,  // move the old folder aside, rename the new one in, then delete the old one
};

// Publishes a folder atomically: makes `dir`'s missing parent folders (an existing empty
// folder at `dir` counts as absent), creates an empty temporary folder beside `dir`, calls
// fill(temp_dir) to write its contents (use write_file_atomic or AtomicFileWriter for the
// files: they are fsynced), fsyncs it, renames it to `dir` and fsyncs the parent. When
// fill throws, the temporary folder is deleted and the exception propagates.
//
// With IfExists::replace there is a short window in which `dir` is absent (between moving
// the old folder aside and renaming the new one in); a crash there leaves the complete old
// folder under "<dir>.old-XXXXXX" and the complete new one under its temporary name.
void publish_directory(const std::string& dir, const std::function<void(const std::string& temp_dir)>& fill,
                       IfExists if_exists = IfExists::fail);

}  // namespace ddpm
