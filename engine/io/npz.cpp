// engine/io/npz.cpp: the .npy encoding and parsing, the stored zip writer and the zip reader
// behind .npz (see npz.h). Zip structures follow PKWARE's APPNOTE.TXT (4.3.7 local file
// header, 4.3.12 central directory header, 4.3.14-4.3.16 the ZIP64 and classic end of
// central directory records, 4.5.3 the ZIP64 extra field); every integer is little-endian.
#include "engine/io/npz.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm {

namespace {

using Bytes = std::vector<std::uint8_t>;

// The zip CRC-32 (zlib's); zlib takes a uInt length, so long buffers go in 1 GiB chunks.
std::uint32_t crc32_of(const void* data, std::size_t nbytes) {
  const auto* p = static_cast<const Bytef*>(data);
  uLong crc = crc32(0L, Z_NULL, 0);
  for (std::size_t pos = 0; pos < nbytes;) {
    const std::size_t n = std::min<std::size_t>(nbytes - pos, std::size_t{1} << 30);
    crc = crc32(crc, p + pos, static_cast<uInt>(n));
    pos += n;
  }
  return static_cast<std::uint32_t>(crc);
}

// Python's repr of a shape tuple: (), (5,), (2, 3).
std::string shape_tuple(const std::vector<std::int64_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

}  // namespace

// --- dtypes and arrays --------------------------------------------------------------------

std::size_t npy_itemsize(NpyDType dtype) {
  switch (dtype) {
    case NpyDType::u8: return 1;
    case NpyDType::i64: return 8;
    case NpyDType::f32: return 4;
    case NpyDType::f64: return 8;
  }
  DDPM_THROW(ValueError, "npy: dtype code " << static_cast<int>(dtype) << " is not one of uint8, int64, float32, "
                                            << "float64");
}

const char* npy_descr(NpyDType dtype) {
  switch (dtype) {
    case NpyDType::u8: return "|u1";
    case NpyDType::i64: return "<i8";
    case NpyDType::f32: return "<f4";
    case NpyDType::f64: return "<f8";
  }
  return "?";
}

const char* npy_dtype_name(NpyDType dtype) {
  switch (dtype) {
    case NpyDType::u8: return "uint8";
    case NpyDType::i64: return "int64";
    case NpyDType::f32: return "float32";
    case NpyDType::f64: return "float64";
  }
  return "?";
}

std::int64_t NpyArray::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::string NpyArray::describe() const {
  std::ostringstream s;
  s << npy_dtype_name(dtype) << " [";
  for (std::size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

std::vector<std::int64_t> NpyArray::as_int64() const {
  std::vector<std::int64_t> out(static_cast<std::size_t>(numel()));
  if (dtype == NpyDType::i64) {
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * 8);
  } else {
    DDPM_CHECK_AS(dtype == NpyDType::u8, IoError, "array " << name << " is " << describe() << ", not integers");
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = bytes[i];
  }
  return out;
}

NpyView NpyArray::view() const { return {name, dtype, shape, bytes.data(), bytes.size()}; }

// --- writing ------------------------------------------------------------------------------

namespace {

void put_u16(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
}
void put_u32(std::string& out, std::uint32_t v) {
  put_u16(out, v & 0xffff);
  put_u16(out, v >> 16);
}

constexpr std::uint32_t kLimit = 0xffffffffu;  // no zip64: sizes and offsets fit 32 bits
constexpr std::uint16_t kDosTime = 0;          // 00:00:00
constexpr std::uint16_t kDosDate = (0 << 9) | (1 << 5) | 1;  // 1980-01-01

}  // namespace

std::string npy_bytes(const NpyView& a) {
  std::size_t count = 1;
  for (std::int64_t d : a.shape) {
    DDPM_CHECK(d >= 0, "npy: array '" << a.name << "' has a negative dimension " << d);
    count *= static_cast<std::size_t>(d);
  }
  const std::size_t expected = count * npy_itemsize(a.dtype);
  DDPM_CHECK(a.nbytes == expected, "npy: array '" << a.name << "' of shape " << shape_tuple(a.shape) << " and dtype "
                                                  << npy_dtype_name(a.dtype) << " needs " << expected
                                                  << " bytes, got " << a.nbytes);
  DDPM_CHECK(a.nbytes == 0 || a.data != nullptr, "npy: array '" << a.name << "' has no data pointer");

  std::string dict = std::string("{'descr': '") + npy_descr(a.dtype) +
                     "', 'fortran_order': False, 'shape': " + shape_tuple(a.shape) + ", }";
  // Pad with spaces so that magic (6) + version (2) + length (2) + dict + '\n' is a multiple of 64.
  const std::size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  DDPM_CHECK(dict.size() <= 0xffff, "npy: header of array '" << a.name << "' is too long for format 1.0");

  std::string out("\x93NUMPY\x01\x00", 8);
  put_u16(out, static_cast<std::uint32_t>(dict.size()));
  out += dict;
  if (a.nbytes) out.append(static_cast<const char*>(a.data), a.nbytes);
  return out;
}

std::string npz_bytes(const std::vector<NpyView>& arrays) {
  std::set<std::string> names;
  std::string body;     // local headers + member data
  std::string central;  // central directory
  for (const NpyView& a : arrays) {
    DDPM_CHECK(!a.name.empty(), "npz: an array has an empty name");
    DDPM_CHECK(names.insert(a.name).second, "npz: the array name '" << a.name << "' is used twice");
    const std::string member = a.name + ".npy";
    const std::string data = npy_bytes(a);
    DDPM_CHECK_AS(data.size() < kLimit && body.size() < kLimit, IoError,
                  "npz: array '" << a.name << "' makes the archive larger than 4 GiB (zip64 is not written)");
    const std::uint32_t crc = crc32_of(data.data(), data.size());
    const auto size = static_cast<std::uint32_t>(data.size());
    const auto offset = static_cast<std::uint32_t>(body.size());
    const auto name_len = static_cast<std::uint32_t>(member.size());

    // Local file header (APPNOTE 4.3.7).
    put_u32(body, 0x04034b50);
    put_u16(body, 20);        // version needed to extract: 2.0
    put_u16(body, 0);         // flags
    put_u16(body, 0);         // method: stored
    put_u16(body, kDosTime);
    put_u16(body, kDosDate);
    put_u32(body, crc);
    put_u32(body, size);      // compressed size
    put_u32(body, size);      // uncompressed size
    put_u16(body, name_len);
    put_u16(body, 0);         // extra field length
    body += member;
    body += data;

    // Central directory header (APPNOTE 4.3.12).
    put_u32(central, 0x02014b50);
    put_u16(central, 20);     // version made by
    put_u16(central, 20);     // version needed
    put_u16(central, 0);
    put_u16(central, 0);
    put_u16(central, kDosTime);
    put_u16(central, kDosDate);
    put_u32(central, crc);
    put_u32(central, size);
    put_u32(central, size);
    put_u16(central, name_len);
    put_u16(central, 0);      // extra
    put_u16(central, 0);      // comment
    put_u16(central, 0);      // disk number start
    put_u16(central, 0);      // internal attributes
    put_u32(central, 0);      // external attributes
    put_u32(central, offset); // offset of the local header
    central += member;
  }
  DDPM_CHECK_AS(body.size() + central.size() < kLimit && arrays.size() < 0xffff, IoError,
                "npz: the archive would be larger than 4 GiB or hold too many arrays (zip64 is not written)");
  // End of central directory record (APPNOTE 4.3.16).
  std::string end;
  put_u32(end, 0x06054b50);
  put_u16(end, 0);  // this disk
  put_u16(end, 0);  // disk with the central directory
  put_u16(end, static_cast<std::uint32_t>(arrays.size()));
  put_u16(end, static_cast<std::uint32_t>(arrays.size()));
  put_u32(end, static_cast<std::uint32_t>(central.size()));
  put_u32(end, static_cast<std::uint32_t>(body.size()));
  put_u16(end, 0);  // comment length
  return body + central + end;
}

void write_npz(const std::string& path, const std::vector<NpyView>& arrays) {
  const std::string bytes = npz_bytes(arrays);
  write_file_atomic(path, bytes);
}

// --- reading ------------------------------------------------------------------------------

namespace {

// The n-byte little-endian integer at `at`; IoError when it runs past the end.
std::uint64_t le(const Bytes& b, std::size_t at, int n, const std::string& what) {
  // Written so that it cannot wrap: `at` may come from a 64-bit ZIP64 field.
  DDPM_CHECK_AS(at <= b.size() && static_cast<std::size_t>(n) <= b.size() - at, IoError, what << ": truncated zip archive (a record runs past the end)");
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}

// The text after 'key': in the header dict, up to the next ',' or '}', or the whole
// parenthesised tuple.
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

// A raw deflate stream (no zlib header: zip's method 8) of known inflated size.
// The size comes from the archive, so it is checked before it is allocated: deflate cannot
// expand data by more than 1032:1 (a 258-byte match, its longest, costs at least 2 bits
// when both codes are 1 bit long: 258 * 8 / 2 = 1032; "zlib technical details", zlib.net), and zlib
// counts in 32 bits here. A member claiming more than that is damaged; without the check a
// 100-byte archive asked for gigabytes (found by tests/fuzz/fuzz_npz).
Bytes inflate_raw(const std::uint8_t* src, std::size_t n, std::size_t out_size, const std::string& what) {
  constexpr std::size_t kMaxDeflateRatio = 1032;
  DDPM_CHECK_AS(out_size / kMaxDeflateRatio <= n + 1 && out_size <= std::numeric_limits<uInt>::max() &&
                    n <= std::numeric_limits<uInt>::max(),
                IoError,
                what << ": damaged deflate member: " << n << " compressed bytes cannot inflate to the " << out_size
                     << " bytes its header announces");
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
  // Dimensions are read digit by digit with an overflow check, and their product (times the
  // item size) must fit in 64 bits: a header's numbers are not trusted to be small (a
  // 30-digit dimension once escaped std::stoll as std::out_of_range, and dimensions whose
  // product wraps to the bytes present would have been accepted).
  constexpr std::int64_t kMaxDim = std::numeric_limits<std::int64_t>::max();
  std::int64_t dim = 0;
  bool in_number = false;
  for (char c : shape) {
    if (c >= '0' && c <= '9') {
      DDPM_CHECK_AS(dim <= (kMaxDim - (c - '0')) / 10, IoError,
                    what << ": .npy shape " << shape << " has a dimension too large for 64 bits");
      dim = dim * 10 + (c - '0');
      in_number = true;
    } else if (in_number) {
      a.shape.push_back(dim);
      dim = 0;
      in_number = false;
    }
  }
  std::int64_t count = 1;
  for (std::int64_t d : a.shape)
    DDPM_CHECK_AS(!__builtin_mul_overflow(count, d, &count), IoError,
                  what << ": .npy shape " << shape << " has more elements than 64 bits can count");
  std::size_t expect = 0;
  DDPM_CHECK_AS(!__builtin_mul_overflow(static_cast<std::size_t>(count), npy_itemsize(a.dtype), &expect), IoError,
                what << ": .npy shape " << shape << " needs more bytes than 64 bits can count");
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
    DDPM_CHECK_AS(data <= b.size() && csize <= b.size() - data, IoError, path << ": member " << name << " runs past the end of the file");
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
    DDPM_CHECK_AS(crc32_of(blob.data(), blob.size()) == crc, IoError,
                  path << ": CRC-32 mismatch in member " << name << " (damaged file)");
    DDPM_CHECK_AS(name.size() > 4 && name.substr(name.size() - 4) == ".npy", IoError,
                  path << ": member " << name << " is not a .npy array");
    NpyArray a = parse_npy(blob, path + ": " + name);
    a.name = name.substr(0, name.size() - 4);
    out.arrays.push_back(std::move(a));
  }
  return out;
}

}  // namespace ddpm
