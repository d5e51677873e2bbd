// Tests for engine/io/npz, both directions:
//   the writer's archive is read back by a small independent zip + npy reader written here
//     from the format descriptions (local headers, CRC-32, the npy dict);
//   the reader is fed archives laid out the way numpy writes them (tests/support/
//     npz_fixtures.h: stored, ZIP64 local headers, deflated) and damaged ones;
//   the writer's archives go through the reader unchanged: every dtype, a scalar, an empty
//     array, the names and their order.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "support/npz_fixtures.h"
#include "support/temp_dir.h"

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
  const std::string path = testing::temp_path("npz_roundtrip.npz");
  write_npz(path, {npy_view("arr_0", {2, 3, 4, 3}, images), npy_view("arr_1", {2}, labels)});
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
  auto members = read_npz(npz_bytes({{"s", NpyDType::f64, {}, &v, 8}, {"e", NpyDType::f32, {0, 3}, nullptr, 0}}));
  EXPECT_EQ(members.at("s.npy").shape, "()");
  EXPECT_EQ(members.at("e.npy").shape, "(0, 3)");
  EXPECT_EQ(members.at("e.npy").data.size(), 0u);
}

TEST(Npz, SameArraysGiveSameBytes) {
  std::uint8_t px[4] = {1, 2, 3, 4};
  EXPECT_EQ(npz_bytes({{"a", NpyDType::u8, {4}, px, 4}}), npz_bytes({{"a", NpyDType::u8, {4}, px, 4}}));
}

TEST(Npz, BadArraysAreValueErrors) {
  std::uint8_t px[4] = {};
  const NpyDType u8 = NpyDType::u8;
  EXPECT_THROW(npz_bytes({{"a", u8, {5}, px, 4}}), ValueError);                        // size mismatch
  EXPECT_THROW(npz_bytes({{"a", static_cast<NpyDType>(7), {2}, px, 4}}), ValueError);  // not a dtype
  EXPECT_THROW(npz_bytes({{"a", u8, {4}, px, 4}, {"a", u8, {4}, px, 4}}), ValueError);  // duplicate
  EXPECT_THROW(npz_bytes({{"", u8, {4}, px, 4}}), ValueError);                          // no name
  EXPECT_THROW(npz_bytes({{"a", u8, {-1}, px, 0}}), ValueError);                        // negative
  EXPECT_THROW(npz_bytes({{"a", u8, {4}, nullptr, 4}}), ValueError);                    // no data
}

// --- the reader ---------------------------------------------------------------------------

std::vector<std::uint8_t> as_blob(const std::string& b) { return std::vector<std::uint8_t>(b.begin(), b.end()); }

std::string temp_file(const std::string& name, const std::string& bytes) {
  const std::string path = testing::temp_path(name);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

TEST(Npz, ParsesOneNpyBlob) {
  const double f[3] = {1.5, -2, 0.25};
  const NpyArray a = parse_npy(as_blob(testing::npy_blob("<f8", {3}, f, sizeof f)), "f.npy");
  EXPECT_EQ(a.dtype, NpyDType::f64);
  EXPECT_EQ(a.describe(), "float64 [3]");
  ASSERT_EQ(a.bytes.size(), sizeof f);
  EXPECT_EQ(std::memcmp(a.bytes.data(), f, sizeof f), 0);
  EXPECT_THROW(a.as_int64(), IoError);  // floats are not integers

  const std::uint8_t px[2] = {7, 200};
  const NpyArray b = parse_npy(as_blob(testing::npy_blob("<u1", {2}, px, 2)), "u.npy");  // '<u1' is read as uint8
  EXPECT_EQ(b.describe(), "uint8 [2]");
  EXPECT_EQ(b.as_int64(), (std::vector<std::int64_t>{7, 200}));
}

TEST(Npz, ReadsNumpyLayouts) {
  std::vector<std::uint8_t> images(3 * 5 * 5);
  for (std::size_t i = 0; i < images.size(); ++i) images[i] = static_cast<std::uint8_t>(i % 13);
  const std::vector<std::int64_t> labels{4, 0, 9};
  const std::vector<std::pair<std::string, std::string>> members{
      {"images.npy", testing::npy_blob("|u1", {3, 5, 5}, images.data(), images.size())},
      {"labels.npy", testing::npy_blob("<i8", {3}, labels.data(), 24)}};
  // numpy.savez (stored; its ZIP64 local headers) and numpy.savez_compressed (deflate).
  for (testing::ZipLayout layout : {testing::ZipLayout{false, false}, testing::ZipLayout{true, false},
                                    testing::ZipLayout{false, true}, testing::ZipLayout{true, true}}) {
    SCOPED_TRACE(std::string("zip64 local ") + (layout.zip64_local ? "yes" : "no") + ", deflate " +
                 (layout.deflate ? "yes" : "no"));
    const std::string path = temp_file("layout.npz", testing::zip_archive(members, layout));
    const NpzFile npz = load_npz(path);
    ASSERT_EQ(npz.arrays.size(), 2u);
    EXPECT_EQ(npz.arrays[0].name, "images");
    EXPECT_EQ(npz.arrays[1].name, "labels");
    EXPECT_TRUE(npz.contains("labels"));
    EXPECT_FALSE(npz.contains("labels.npy"));
    EXPECT_EQ(npz.get("images").describe(), "uint8 [3, 5, 5]");
    EXPECT_EQ(npz.get("images").bytes, images);
    EXPECT_EQ(npz.get("labels").as_int64(), labels);
  }
}

TEST(Npz, ReaderErrorsAreIoErrorsThatSayWhy) {
  const std::int64_t x = 3;
  auto load_one = [&](const std::string& npy) {
    return load_npz(temp_file("bad_reader.npz", testing::zip_archive({{"a.npy", npy}})));
  };
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const IoError& e) {
      return std::string(e.what());
    }
    return std::string("no IoError");
  };
  EXPECT_NE(message([&] { load_one(testing::npy_blob("<u2", {1}, &x, 2)); }).find("unsupported dtype"),
            std::string::npos);
  std::string fortran = testing::npy_blob("<i8", {1}, &x, 8);
  fortran.replace(fortran.find("False"), 5, "True ");
  EXPECT_NE(message([&] { load_one(fortran); }).find("Fortran"), std::string::npos);
  std::string short_data = testing::npy_blob("<i8", {2}, &x, 8);  // 8 bytes for two int64s
  EXPECT_NE(message([&] { load_one(short_data); }).find("needs 16 bytes"), std::string::npos);

  std::string archive = testing::zip_archive({{"a.npy", testing::npy_blob("<i8", {1}, &x, 8)}});
  archive[archive.find("PK\x01\x02") - 1] ^= 0x01;  // the last data byte, just before the central directory
  EXPECT_NE(message([&] { load_npz(temp_file("bad_crc.npz", archive)); }).find("CRC-32"), std::string::npos);
  EXPECT_NE(message([&] { load_npz(temp_file("not_zip.npz", std::string(64, 'z'))); }).find("not a zip"),
            std::string::npos);
  EXPECT_THROW(load_npz(testing::temp_path("no_such_file.npz")), IoError);

  const NpzFile npz = load_one(testing::npy_blob("<i8", {1}, &x, 8));
  const std::string missing = message([&] { npz.get("labels"); });
  EXPECT_NE(missing.find("\"labels\""), std::string::npos) << missing;
  EXPECT_NE(missing.find("it holds: a"), std::string::npos) << missing;
}

// --- writer -> reader ---------------------------------------------------------------------

TEST(Npz, WriterAndReaderRoundTrip) {
  const std::vector<std::uint8_t> u8{0, 1, 127, 128, 255, 42};
  const std::vector<std::int64_t> i64{std::numeric_limits<std::int64_t>::min(), -1, 0, 1,
                                    std::numeric_limits<std::int64_t>::max()};
  const std::vector<float> f32{-0.0f, 1.0f / 3.0f, 3.4e38f, -1e-45f};  // a subnormal too
  const std::vector<double> f64{2.5, -1e-300, 1.0 / 3.0};
  const std::vector<double> scalar{6.25};
  const std::vector<float> empty;
  const std::vector<NpyView> written{npy_view("arr_0", {2, 3}, u8),      npy_view("labels", {5}, i64),
                                     npy_view("w.ema", {2, 1, 2}, f32),  npy_view("x_0", {3}, f64),
                                     npy_view("scalar", {}, scalar),     npy_view("empty", {0, 4}, empty)};
  const std::string path = testing::temp_path("npz_writer_reader.npz");
  write_npz(path, written);
  const NpzFile npz = load_npz(path);
  EXPECT_EQ(npz.path, path);
  ASSERT_EQ(npz.arrays.size(), written.size());
  for (std::size_t i = 0; i < written.size(); ++i) {
    const NpyView& w = written[i];
    const NpyArray& r = npz.arrays[i];
    SCOPED_TRACE(w.name);
    EXPECT_EQ(r.name, w.name);  // and in the order written
    EXPECT_EQ(r.dtype, w.dtype);
    EXPECT_EQ(r.shape, w.shape);
    ASSERT_EQ(r.bytes.size(), w.nbytes);
    if (w.nbytes) {
      EXPECT_EQ(std::memcmp(r.bytes.data(), w.data, w.nbytes), 0);  // bit-exact, -0.0 included
    }
  }
  EXPECT_EQ(npz.get("scalar").describe(), "float64 []");
  EXPECT_EQ(npz.get("scalar").numel(), 1);
  EXPECT_EQ(npz.get("empty").numel(), 0);
  EXPECT_EQ(npz.get("labels").as_int64(), i64);

  // An array read back writes the same bytes again (view() of the owning type).
  std::vector<NpyView> again;
  for (const NpyArray& a : npz.arrays) again.push_back(a.view());
  EXPECT_EQ(npz_bytes(again), npz_bytes(written));
}

}  // namespace
}  // namespace ddpm
