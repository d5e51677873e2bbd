// tests/support/npz_fixtures.h: .npy blobs and .npz archives laid out the way numpy writes
// them, built here from the format descriptions (NEP 1, PKWARE APPNOTE.TXT) independently
// of engine/io/npz, so that the reader is tested against bytes its own writer did not make:
// numpy.savez's ZIP64 local headers (force_zip64: sizes 0xFFFFFFFF and extra field 0x0001)
// and numpy.savez_compressed's deflated members.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ddpm::testing {

using NpzBytes = std::string;

inline void put_le(NpzBytes& b, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// A .npy blob (version 1.0) with the given descr and shape.
inline NpzBytes npy_blob(const std::string& descr, const std::vector<std::int64_t>& shape, const void* data,
                         std::size_t nbytes) {
  std::string dims;
  for (std::int64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);  // "(2, 3)" but "(5,)"
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  NpzBytes b = "\x93NUMPY";
  b += '\x01';
  b += '\x00';
  put_le(b, header.size(), 2);
  b += header;
  b.append(static_cast<const char*>(data), nbytes);
  return b;
}

// Raw deflate (no zlib header or trailer), what zip's method 8 stores.
inline NpzBytes deflate_raw(const NpzBytes& data) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  NpzBytes out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  return out;
}

struct ZipLayout {
  bool zip64_local = false;  // every local header: sizes 0xFFFFFFFF + a ZIP64 extra field
  bool deflate = false;      // method 8 instead of 0 (stored)
};

// A zip of the (member name, bytes) pairs, laid out like numpy.savez / savez_compressed.
inline NpzBytes zip_archive(const std::vector<std::pair<std::string, NpzBytes>>& members, ZipLayout layout = {}) {
  NpzBytes out, central;
  for (const auto& [name, data] : members) {
    const std::uint64_t crc = crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size()));
    const NpzBytes packed = layout.deflate ? deflate_raw(data) : data;
    const std::uint64_t offset = out.size();
    put_le(out, 0x04034b50, 4);
    put_le(out, 45, 2);
    put_le(out, 0, 2);
    put_le(out, layout.deflate ? 8 : 0, 2);  // method
    put_le(out, 0, 4);                       // time, date
    put_le(out, crc, 4);
    put_le(out, layout.zip64_local ? 0xFFFFFFFF : packed.size(), 4);
    put_le(out, layout.zip64_local ? 0xFFFFFFFF : data.size(), 4);
    put_le(out, name.size(), 2);
    put_le(out, layout.zip64_local ? 20 : 0, 2);
    out += name;
    if (layout.zip64_local) {
      put_le(out, 0x0001, 2);
      put_le(out, 16, 2);
      put_le(out, data.size(), 8);    // uncompressed first, as APPNOTE 4.5.3 orders them
      put_le(out, packed.size(), 8);
    }
    out += packed;
    put_le(central, 0x02014b50, 4);
    put_le(central, 45, 2);
    put_le(central, 45, 2);
    put_le(central, 0, 2);
    put_le(central, layout.deflate ? 8 : 0, 2);
    put_le(central, 0, 4);
    put_le(central, crc, 4);
    put_le(central, packed.size(), 4);
    put_le(central, data.size(), 4);
    put_le(central, name.size(), 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 4);
    put_le(central, offset, 4);
    central += name;
  }
  const std::uint64_t cd_offset = out.size();
  out += central;
  put_le(out, 0x06054b50, 4);
  put_le(out, 0, 4);
  put_le(out, members.size(), 2);
  put_le(out, members.size(), 2);
  put_le(out, central.size(), 4);
  put_le(out, cd_offset, 4);
  put_le(out, 0, 2);
  return out;
}

}  // namespace ddpm::testing
