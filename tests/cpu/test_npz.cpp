// Tests for engine/io/npz: the archive is read back by a small independent zip + npy
// reader written here from the format descriptions (local headers, CRC-32, the npy dict).
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"

namespace ddpm {
namespace {

std::uint32_t u16(const std::string& b, std::size_t at) {
  return static_cast<std::uint8_t>(b[at]) | (static_cast<std::uint8_t>(b[at + 1]) << 8);
}
std::uint32_t u32(const std::string& b, std::size_t at) { return u16(b, at) | (u16(b, at + 2) << 16); }

struct Member {
  std::string descr, shape;  // shape as the tuple text from the header, e.g. "(2, 3, 4, 3)"
  std::string data;
};

// Walks the local file headers from the start of the archive, checking the stored method,
// the sizes and the CRC-32 of each member, then parses each .npy header.
std::map<std::string, Member> read_npz(const std::string& bytes) {
  std::map<std::string, Member> out;
  std::size_t at = 0;
  while (u32(bytes, at) == 0x04034b50) {
    EXPECT_EQ(u16(bytes, at + 8), 0u) << "method must be stored";
    const std::uint32_t crc = u32(bytes, at + 14), csize = u32(bytes, at + 18), usize = u32(bytes, at + 22);
    EXPECT_EQ(csize, usize);
    const std::uint32_t name_len = u16(bytes, at + 26), extra_len = u16(bytes, at + 28);
    std::string name = bytes.substr(at + 30, name_len);
    std::string npy = bytes.substr(at + 30 + name_len + extra_len, usize);
    EXPECT_EQ(crc32(0L, reinterpret_cast<const Bytef*>(npy.data()), static_cast<uInt>(npy.size())), crc) << name;
    at += 30 + name_len + extra_len + usize;

    EXPECT_EQ(npy.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    const std::uint32_t hlen = u16(npy, 8);
    EXPECT_EQ((10 + hlen) % 64, 0u);
    std::string header = npy.substr(10, hlen);
    EXPECT_EQ(header.back(), '\n');
    Member m;
    auto field = [&](const std::string& key, char open, char close) {
      std::size_t k = header.find("'" + key + "': ");
      EXPECT_NE(k, std::string::npos) << key;
      std::size_t b = header.find(open, k + key.size() + 3);
      std::size_t e = header.find(close, b + 1);
      return header.substr(b, e - b + 1);
    };
    m.descr = field("descr", '\'', '\'');
    m.shape = field("shape", '(', ')');
    EXPECT_NE(header.find("'fortran_order': False"), std::string::npos);
    m.data = npy.substr(10 + hlen);
    out[name] = m;
  }
  EXPECT_EQ(u32(bytes, at), 0x02014b50u) << "central directory follows the members";
  // End of central directory: the last 22 bytes (no comment).
  const std::size_t eocd = bytes.size() - 22;
  EXPECT_EQ(u32(bytes, eocd), 0x06054b50u);
  EXPECT_EQ(u16(bytes, eocd + 10), out.size());
  EXPECT_EQ(u32(bytes, eocd + 16), at) << "central directory offset";
  return out;
}

TEST(Npz, RoundTripImagesAndLabels) {
  std::vector<std::uint8_t> images(2 * 3 * 4 * 3);
  for (std::size_t i = 0; i < images.size(); ++i) images[i] = static_cast<std::uint8_t>(i * 7);
  std::vector<std::int64_t> labels{3, -1};
  const std::string path = ::testing::TempDir() + "/npz_roundtrip.npz";
  write_npz(path, {{"arr_0", "|u1", {2, 3, 4, 3}, images.data(), images.size()},
                   {"arr_1", "<i8", {2}, labels.data(), labels.size() * 8}});
  auto members = read_npz(read_file(path));
  ASSERT_EQ(members.size(), 2u);
  const Member& im = members.at("arr_0.npy");
  EXPECT_EQ(im.descr, "'|u1'");
  EXPECT_EQ(im.shape, "(2, 3, 4, 3)");
  ASSERT_EQ(im.data.size(), images.size());
  EXPECT_EQ(std::memcmp(im.data.data(), images.data(), images.size()), 0);
  const Member& lab = members.at("arr_1.npy");
  EXPECT_EQ(lab.descr, "'<i8'");
  EXPECT_EQ(lab.shape, "(2,)");
  ASSERT_EQ(lab.data.size(), 16u);
  std::int64_t back[2];
  std::memcpy(back, lab.data.data(), 16);
  EXPECT_EQ(back[0], 3);
  EXPECT_EQ(back[1], -1);
}

TEST(Npz, ScalarAndEmptyArrays) {
  double v = 2.5;
  auto members = read_npz(npz_bytes({{"s", "<f8", {}, &v, 8}, {"e", "<f4", {0, 3}, nullptr, 0}}));
  EXPECT_EQ(members.at("s.npy").shape, "()");
  EXPECT_EQ(members.at("e.npy").shape, "(0, 3)");
  EXPECT_EQ(members.at("e.npy").data.size(), 0u);
}

TEST(Npz, SameArraysGiveSameBytes) {
  std::uint8_t px[4] = {1, 2, 3, 4};
  EXPECT_EQ(npz_bytes({{"a", "|u1", {4}, px, 4}}), npz_bytes({{"a", "|u1", {4}, px, 4}}));
}

TEST(Npz, BadArraysAreValueErrors) {
  std::uint8_t px[4] = {};
  EXPECT_THROW(npz_bytes({{"a", "|u1", {5}, px, 4}}), ValueError);           // size mismatch
  EXPECT_THROW(npz_bytes({{"a", "<u2", {2}, px, 4}}), ValueError);           // unsupported dtype
  EXPECT_THROW(npz_bytes({{"a", "|u1", {4}, px, 4}, {"a", "|u1", {4}, px, 4}}), ValueError);  // duplicate
  EXPECT_THROW(npz_bytes({{"", "|u1", {4}, px, 4}}), ValueError);
  EXPECT_THROW(npz_bytes({{"a", "|u1", {-1}, px, 0}}), ValueError);
}

}  // namespace
}  // namespace ddpm
