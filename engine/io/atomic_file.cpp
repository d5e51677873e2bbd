// engine/io/atomic_file.cpp: temporary file + fsync + rename + fsync of the folder (POSIX).
#include "engine/io/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2 (glibc >= 2.28)
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "engine/error.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {

std::string sys_error() { return std::strerror(errno); }

// "a/b/c.bin" -> "a/b"; "c.bin" -> "."
std::string parent_of(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

std::string base_of(const std::string& path) { return fs::path(path).filename().string(); }

// Makes a directory entry (a rename, a new file) durable. Some file systems refuse fsync on
// a folder (EINVAL); there is nothing more to do on those.
void fsync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DDPM_CHECK_AS(fd >= 0, IoError, "could not open folder '" << dir << "' to flush it to disk: " << sys_error());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  DDPM_CHECK_AS(rc == 0 || err == EINVAL, IoError,
                "could not flush folder '" << dir << "' to disk: " << std::strerror(err));
}

// rename(from, to) that fails when `to` exists (renameat2 RENAME_NOREPLACE); on file
// systems without it, a check followed by a plain rename.
bool rename_no_replace(const std::string& from, const std::string& to) {
#ifdef RENAME_NOREPLACE
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return true;
  if (errno != EINVAL && errno != ENOSYS) return false;
#endif
  struct stat st;
  if (::lstat(to.c_str(), &st) == 0) {
    errno = EEXIST;
    return false;
  }
  return ::rename(from.c_str(), to.c_str()) == 0;
}

}  // namespace

// --- AtomicFileWriter --------------------------------------------------------------------

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  DDPM_CHECK_AS(!path.empty(), IoError, "cannot write a file with an empty path");
  std::error_code ec;
  DDPM_CHECK_AS(!fs::is_directory(path, ec), IoError,
                "cannot write file '" << path << "': a folder with that name exists");
  std::string dir = parent_of(path);
  DDPM_CHECK_AS(fs::is_directory(dir, ec), IoError,
                "cannot write file '" << path << "': the folder '" << dir << "' does not exist");
  std::string tmpl = dir + "/." + base_of(path) + ".tmp-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  DDPM_CHECK_AS(fd_ >= 0, IoError,
                "cannot write file '" << path << "': could not create a temporary file in '" << dir
                                      << "': " << sys_error());
  temp_path_ = buf.data();
  // mkstemp creates the file readable by its owner only; a result file is rw-r--r--.
  ::fchmod(fd_, 0644);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) discard();
}

void AtomicFileWriter::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  temp_path_.clear();
}

void AtomicFileWriter::write(const void* data, std::size_t nbytes) {
  DDPM_CHECK_AS(fd_ >= 0, IoError, "write to '" << path_ << "' after it was committed or discarded");
  const char* p = static_cast<const char*>(data);
  while (nbytes > 0) {
    ssize_t n = ::write(fd_, p, nbytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = n < 0 ? sys_error() : "no progress";
      discard();
      DDPM_THROW(IoError, "could not write file '" << path_ << "': " << why << "; the old file (if any) is untouched");
    }
    p += n;
    nbytes -= static_cast<std::size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  DDPM_CHECK_AS(fd_ >= 0 && !committed_, IoError, "commit of '" << path_ << "' twice or after a failed write");
  auto fail = [&](const char* step) {
    std::string why = sys_error();
    discard();
    DDPM_THROW(IoError, "could not write file '" << path_ << "': " << step << " failed: " << why
                                                 << "; the old file (if any) is untouched");
  };
  if (::fsync(fd_) != 0) fail("fsync");
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("close");
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("rename");
  committed_ = true;
  temp_path_.clear();
  fsync_directory(parent_of(path_));
}

void write_file_atomic(const std::string& path, const void* data, std::size_t nbytes) {
  AtomicFileWriter w(path);
  w.write(data, nbytes);
  w.commit();
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_file_atomic(path, contents.data(), contents.size());
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  DDPM_CHECK_AS(!fs::is_directory(path, ec), IoError, "cannot read '" << path << "': it is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  DDPM_CHECK_AS(in.good(), IoError, "cannot open file '" << path << "': " << sys_error());
  std::ostringstream ss;
  ss << in.rdbuf();
  DDPM_CHECK_AS(!in.bad(), IoError, "could not read file '" << path << "'");
  return ss.str();
}

// --- publish_directory --------------------------------------------------------------------

void publish_directory(const std::string& dir, const std::function<void(const std::string&)>& fill,
                       IfExists if_exists) {
  std::string clean = fs::path(dir).lexically_normal().string();
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  DDPM_CHECK_AS(!clean.empty() && clean != "." && clean != "/", IoError, "cannot publish folder '" << dir << "'");
  std::string parent = parent_of(clean);
  std::error_code ec;
  // Missing parents are made first (mkdir -p): `--out runs/a/b` should not fail after an hour
  // of training because runs/a is absent. They are ordinary, empty folders, so a crash
  // leaves nothing half-written.
  if (!fs::exists(parent, ec)) fs::create_directories(parent, ec);
  DDPM_CHECK_AS(fs::is_directory(parent, ec), IoError,
                "cannot create folder '" << dir << "': its parent '" << parent
                                         << "' does not exist and could not be made");
  // An existing EMPTY folder counts as absent (a user's `mkdir out` first, or a folder a
  // previous refusal created): it holds nothing to lose, so it is removed and published into.
  if (fs::is_directory(clean, ec) && fs::is_empty(clean, ec)) fs::remove(clean, ec);
  bool exists = fs::exists(clean, ec);
  DDPM_CHECK_AS(!exists || if_exists == IfExists::replace, IoError,
                "refusing to overwrite '" << dir << "': it already exists");
  DDPM_CHECK_AS(!exists || fs::is_directory(clean, ec), IoError,
                "cannot publish folder '" << dir << "': a file with that name exists");

  auto make_temp_dir = [&](const std::string& tmpl) {
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    DDPM_CHECK_AS(::mkdtemp(buf.data()) != nullptr, IoError,
                  "cannot create folder '" << dir << "': could not make a temporary folder in '" << parent
                                           << "': " << sys_error());
    return std::string(buf.data());
  };
  std::string temp = make_temp_dir(parent + "/." + base_of(clean) + ".tmp-XXXXXX");
  auto remove_quietly = [](const std::string& p) {
    std::error_code ignored;
    fs::remove_all(p, ignored);
  };
  try {
    ::chmod(temp.c_str(), 0755);
    fill(temp);
    fsync_directory(temp);
    if (if_exists == IfExists::fail || !fs::exists(clean, ec)) {
      DDPM_CHECK_AS(rename_no_replace(temp, clean), IoError,
                    "could not publish folder '" << dir << "': " << (errno == EEXIST || errno == ENOTEMPTY
                                                                         ? std::string("it appeared while writing")
                                                                         : sys_error()));
    } else {
      // Replace: move the old folder aside (onto an empty placeholder, which rename may
      // replace), move the new one in, then delete the old one.
      std::string old = make_temp_dir(clean + ".old-XXXXXX");
      if (::rename(clean.c_str(), old.c_str()) != 0) {
        std::string why = sys_error();
        remove_quietly(old);
        DDPM_THROW(IoError, "could not replace folder '" << dir << "': moving the old one aside failed: " << why);
      }
      if (::rename(temp.c_str(), clean.c_str()) != 0) {
        std::string why = sys_error();
        ::rename(old.c_str(), clean.c_str());  // put the old one back
        DDPM_THROW(IoError, "could not replace folder '" << dir << "': " << why << "; the old folder is kept");
      }
      fsync_directory(parent);
      remove_quietly(old);
    }
  } catch (...) {
    remove_quietly(temp);
    throw;
  }
  fsync_directory(parent);
}

}  // namespace ddpm
