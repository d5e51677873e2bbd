// engine/io/npz.cpp: .npy encoding and the stored (uncompressed) zip writer behind .npz.
// Zip structures follow PKWARE's APPNOTE.TXT (sections 4.3.7 local file header, 4.3.12
// central directory header, 4.3.16 end of central directory record); all little-endian.
#include "engine/io/npz.h"

#include <zlib.h>

#include <set>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm {

namespace {

void put_u16(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
}
void put_u32(std::string& out, std::uint32_t v) {
  put_u16(out, v & 0xffff);
  put_u16(out, v >> 16);
}

std::uint32_t crc32_of(const std::string& bytes) {
  // zlib's crc32 takes a uInt length: feed it in chunks.
  uLong crc = crc32(0L, Z_NULL, 0);
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t n = std::min<std::size_t>(bytes.size() - pos, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + pos), static_cast<uInt>(n));
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

constexpr std::uint32_t kLimit = 0xffffffffu;  // no zip64: sizes and offsets fit 32 bits
constexpr std::uint16_t kDosTime = 0;          // 00:00:00
constexpr std::uint16_t kDosDate = (0 << 9) | (1 << 5) | 1;  // 1980-01-01

}  // namespace

std::size_t npy_itemsize(const std::string& descr) {
  if (descr == "|u1" || descr == "<u1") return 1;
  if (descr == "<i8" || descr == "<f8") return 8;
  if (descr == "<f4") return 4;
  DDPM_THROW(ValueError, "npy: dtype descr '" << descr << "' is not supported (use '|u1', '<i8', '<f4' or '<f8')");
}

std::string npy_bytes(const NpyArray& a) {
  std::size_t count = 1;
  for (std::int64_t d : a.shape) {
    DDPM_CHECK(d >= 0, "npy: array '" << a.name << "' has a negative dimension " << d);
    count *= static_cast<std::size_t>(d);
  }
  const std::size_t expected = count * npy_itemsize(a.descr);
  DDPM_CHECK(a.nbytes == expected, "npy: array '" << a.name << "' of shape " << shape_tuple(a.shape) << " and dtype "
                                                  << a.descr << " needs " << expected << " bytes, got " << a.nbytes);
  DDPM_CHECK(a.nbytes == 0 || a.data != nullptr, "npy: array '" << a.name << "' has no data pointer");

  std::string dict = "{'descr': '" + a.descr + "', 'fortran_order': False, 'shape': " + shape_tuple(a.shape) + ", }";
  // Pad with spaces so that magic (6) + version (2) + length (2) + dict + '\n' is a multiple of 64.
  std::size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  DDPM_CHECK(dict.size() <= 0xffff, "npy: header of array '" << a.name << "' is too long for format 1.0");

  std::string out("\x93NUMPY\x01\x00", 8);
  put_u16(out, static_cast<std::uint32_t>(dict.size()));
  out += dict;
  out.append(static_cast<const char*>(a.data), a.nbytes);
  return out;
}

std::string npz_bytes(const std::vector<NpyArray>& arrays) {
  std::set<std::string> names;
  std::string body;     // local headers + member data
  std::string central;  // central directory
  for (const NpyArray& a : arrays) {
    DDPM_CHECK(!a.name.empty(), "npz: an array has an empty name");
    DDPM_CHECK(names.insert(a.name).second, "npz: the array name '" << a.name << "' is used twice");
    const std::string member = a.name + ".npy";
    const std::string data = npy_bytes(a);
    DDPM_CHECK_AS(data.size() < kLimit && body.size() < kLimit, IoError,
                  "npz: array '" << a.name << "' makes the archive larger than 4 GiB (zip64 is not written)");
    const std::uint32_t crc = crc32_of(data);
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

void write_npz(const std::string& path, const std::vector<NpyArray>& arrays) {
  const std::string bytes = npz_bytes(arrays);
  write_file_atomic(path, bytes);
}

}  // namespace ddpm
