// models/eval/npz.cpp: the .npz / .npy reader (see npz.h).
#include "models/eval/npz.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include <zlib.h>

#include "engine/error.h"

namespace ddpm::eval {

namespace {

using Bytes = std::vector<std::uint8_t>;

std::uint64_t le(const Bytes& b, std::size_t at, int n, const std::string& path) {
  DDPM_CHECK_AS(at + n <= b.size(), IoError, path << ": truncated zip archive (a record runs past the end)");
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}

std::size_t dtype_size(NpyDType t) { return t == NpyDType::u8 ? 1 : t == NpyDType::f32 ? 4 : 8; }
const char* dtype_name(NpyDType t) {
  switch (t) {
    case NpyDType::u8: return "uint8";
    case NpyDType::i64: return "int64";
    case NpyDType::f32: return "float32";
    case NpyDType::f64: return "float64";
  }
  return "?";
}

// The text after 'key': in the header dict, up to the next ',' or ')' group.
std::string dict_value(const std::string& header, const std::string& key, const std::string& what) {
  const std::size_t k = header.find("'" + key + "'");
  DDPM_CHECK_AS(k != std::string::npos, IoError, what << ": .npy header has no '" << key << "': " << header);
  std::size_t v = header.find(':', k);
  DDPM_CHECK_AS(v != std::string::npos, IoError, what << ": bad .npy header: " << header);
  ++v;
  while (v < header.size() && header[v] == ' ') ++v;
  if (v < header.size() && header[v] == '(') return header.substr(v, header.find(')', v) - v + 1);
  std::size_t end = v;
  while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  return header.substr(v, end - v);
}

Bytes inflate_raw(const std::uint8_t* src, std::size_t n, std::size_t out_size, const std::string& what) {
  Bytes out(out_size);
  z_stream zs{};
  DDPM_CHECK_AS(inflateInit2(&zs, -MAX_WBITS) == Z_OK, IoError, what << ": zlib inflateInit2 failed");
  zs.next_in = const_cast<Bytef*>(src);
  zs.avail_in = static_cast<uInt>(n);
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out_size);
  const int rc = inflate(&zs, Z_FINISH);
  const std::size_t produced = zs.total_out;
  inflateEnd(&zs);
  DDPM_CHECK_AS(rc == Z_STREAM_END && produced == out_size, IoError,
                what << ": damaged deflate stream (zlib code " << rc << ", " << produced << " of " << out_size
                     << " bytes)");
  return out;
}

}  // namespace

std::int64_t NpyArray::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::string NpyArray::describe() const {
  std::ostringstream s;
  s << dtype_name(dtype) << " [";
  for (std::size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

std::vector<std::int64_t> NpyArray::as_int64() const {
  std::vector<std::int64_t> out(static_cast<std::size_t>(numel()));
  if (dtype == NpyDType::i64) {
    std::memcpy(out.data(), bytes.data(), out.size() * 8);
  } else {
    DDPM_CHECK_AS(dtype == NpyDType::u8, IoError, "array " << name << " is " << describe() << ", not integers");
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = bytes[i];
  }
  return out;
}

bool NpzFile::contains(const std::string& name) const {
  for (const NpyArray& a : arrays)
    if (a.name == name) return true;
  return false;
}

const NpyArray& NpzFile::get(const std::string& name) const {
  std::string present;
  for (const NpyArray& a : arrays) {
    if (a.name == name) return a;
    present += (present.empty() ? "" : ", ") + a.name;
  }
  throw IoError(path + ": no array \"" + name + "\" (it holds: " + (present.empty() ? "nothing" : present) + ")");
}

NpyArray parse_npy(const Bytes& b, const std::string& what) {
  DDPM_CHECK_AS(b.size() >= 10 && std::memcmp(b.data(), "\x93NUMPY", 6) == 0, IoError,
                what << ": not a .npy array (bad magic)");
  const int major = b[6];
  DDPM_CHECK_AS(major >= 1 && major <= 3, IoError, what << ": unsupported .npy version " << major);
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  const std::size_t header_len = le(b, 8, static_cast<int>(len_bytes), what);
  const std::size_t data_at = 8 + len_bytes + header_len;
  DDPM_CHECK_AS(data_at <= b.size(), IoError, what << ": truncated .npy header");
  const std::string header(b.begin() + 8 + len_bytes, b.begin() + data_at);
  NpyArray a;
  const std::string descr = dict_value(header, "descr", what);
  if (descr == "'|u1'" || descr == "'<u1'") a.dtype = NpyDType::u8;
  else if (descr == "'<i8'") a.dtype = NpyDType::i64;
  else if (descr == "'<f4'") a.dtype = NpyDType::f32;
  else if (descr == "'<f8'") a.dtype = NpyDType::f64;
  else throw IoError(what + ": unsupported dtype " + descr + " (uint8, int64, float32 and float64 are read)");
  DDPM_CHECK_AS(dict_value(header, "fortran_order", what) == "False", IoError,
                what << ": Fortran-ordered arrays are not supported");
  const std::string shape = dict_value(header, "shape", what);  // "(2, 3)" or "(5,)" or "()"
  std::string num;
  for (char c : shape) {
    if (c >= '0' && c <= '9') {
      num += c;
    } else if (!num.empty()) {
      a.shape.push_back(std::stoll(num));
      num.clear();
    }
  }
  const std::size_t expect = static_cast<std::size_t>(a.numel()) * dtype_size(a.dtype);
  DDPM_CHECK_AS(b.size() - data_at == expect, IoError,
                what << ": " << a.describe() << " needs " << expect << " bytes of data, found " << b.size() - data_at);
  a.bytes.assign(b.begin() + data_at, b.end());
  return a;
}

NpzFile load_npz(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DDPM_CHECK_AS(in.good(), IoError, "cannot open " << path);
  const Bytes b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // End of central directory: signature 0x06054b50, searched backwards over the comment.
  DDPM_CHECK_AS(b.size() >= 22, IoError, path << ": not a zip archive (too short)");
  std::size_t eocd = std::string::npos;
  for (std::size_t i = b.size() - 22 + 1; i-- > 0 && b.size() - i <= 22 + 65535;)
    if (le(b, i, 4, path) == 0x06054b50) {
      eocd = i;
      break;
    }
  DDPM_CHECK_AS(eocd != std::string::npos, IoError, path << ": not a zip archive (no end-of-central-directory)");
  std::uint64_t entries = le(b, eocd + 10, 2, path), cd_offset = le(b, eocd + 16, 4, path);
  if ((entries == 0xFFFF || cd_offset == 0xFFFFFFFF) && eocd >= 20 && le(b, eocd - 20, 4, path) == 0x07064b50) {
    const std::size_t z64 = le(b, eocd - 20 + 8, 8, path);  // ZIP64 end of central directory record
    DDPM_CHECK_AS(le(b, z64, 4, path) == 0x06064b50, IoError, path << ": bad ZIP64 end-of-central-directory");
    entries = le(b, z64 + 32, 8, path);
    cd_offset = le(b, z64 + 48, 8, path);
  }
  NpzFile out;
  out.path = path;
  std::size_t at = cd_offset;
  for (std::uint64_t e = 0; e < entries; ++e) {
    DDPM_CHECK_AS(le(b, at, 4, path) == 0x02014b50, IoError, path << ": bad central directory entry " << e);
    const std::uint64_t method = le(b, at + 10, 2, path), crc = le(b, at + 16, 4, path);
    std::uint64_t csize = le(b, at + 20, 4, path), usize = le(b, at + 24, 4, path);
    const std::size_t name_len = le(b, at + 28, 2, path), extra_len = le(b, at + 30, 2, path),
                      comment_len = le(b, at + 32, 2, path);
    std::uint64_t local = le(b, at + 42, 4, path);
    DDPM_CHECK_AS(at + 46 + name_len <= b.size(), IoError, path << ": truncated central directory");
    const std::string name(b.begin() + at + 46, b.begin() + at + 46 + name_len);
    // ZIP64 extra field: the 64-bit values of whichever fields hold 0xFFFFFFFF, in order.
    for (std::size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const std::uint64_t id = le(b, x, 2, path), size = le(b, x + 2, 2, path);
      if (id == 0x0001) {
        std::size_t f = x + 4;
        if (usize == 0xFFFFFFFF) usize = le(b, f, 8, path), f += 8;
        if (csize == 0xFFFFFFFF) csize = le(b, f, 8, path), f += 8;
        if (local == 0xFFFFFFFF) local = le(b, f, 8, path);
      }
      x += 4 + size;
    }
    at += 46 + name_len + extra_len + comment_len;
    DDPM_CHECK_AS(le(b, local, 4, path) == 0x04034b50, IoError, path << ": bad local header of " << name);
    const std::size_t data = local + 30 + le(b, local + 26, 2, path) + le(b, local + 28, 2, path);
    DDPM_CHECK_AS(data + csize <= b.size(), IoError, path << ": member " << name << " runs past the end of the file");
    Bytes blob;
    if (method == 0) {
      DDPM_CHECK_AS(csize == usize, IoError, path << ": stored member " << name << " has mismatched sizes");
      blob.assign(b.begin() + data, b.begin() + data + csize);
    } else if (method == 8) {
      blob = inflate_raw(b.data() + data, csize, usize, path + ": " + name);
    } else {
      throw IoError(path + ": member " + name + " uses compression method " + std::to_string(method) +
                    " (only stored and deflate are read)");
    }
    const std::uint64_t actual = crc32(0L, blob.data(), static_cast<uInt>(blob.size()));
    DDPM_CHECK_AS(actual == crc, IoError, path << ": CRC-32 mismatch in member " << name << " (damaged file)");
    DDPM_CHECK_AS(name.size() > 4 && name.substr(name.size() - 4) == ".npy", IoError,
                  path << ": member " << name << " is not a .npy array");
    NpyArray a = parse_npy(blob, path + ": " + name);
    a.name = name.substr(0, name.size() - 4);
    out.arrays.push_back(std::move(a));
  }
  return out;
}

}  // namespace ddpm::eval
