// PNG: round trips, conversions of other PNG kinds to 8-bit grey / RGB, errors, make_grid.
#include <gtest/gtest.h>
#include <png.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "support/temp_dir.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

// Writes a PNG of any colour type / bit depth with libpng's low-level API (no gAMA chunk),
// to exercise the reader's conversions. `rows` holds the raw big-endian row bytes.
void write_raw_png(const std::string& path, int w, int h, int color_type, int bit_depth,
                   const std::vector<std::vector<png_byte>>& rows, const std::vector<png_color>& palette = {}) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, w, h, bit_depth, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!palette.empty()) png_set_PLTE(png, info, palette.data(), static_cast<int>(palette.size()));
  png_write_info(png, info);
  for (const auto& row : rows) png_write_row(png, row.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

void expect_io_error(const std::string& path, const std::string& needle) {
  try {
    read_png(path);
    ADD_FAILURE() << "expected an IoError mentioning \"" << needle << "\"";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Png, GreyAndRgbRoundTrip) {
  TempDir dir;
  for (int c : {1, 3}) {
    const int h = 5, w = 7;
    std::vector<std::uint8_t> px(h * w * c);
    for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>(i * 37 + 11);
    const std::string f = dir.path + "/img" + std::to_string(c) + ".png";
    write_png(f, px.data(), h, w, c);
    Image img = read_png(f);
    EXPECT_EQ(img.height, h);
    EXPECT_EQ(img.width, w);
    EXPECT_EQ(img.channels, c);
    EXPECT_EQ(img.pixels, px);
  }
  std::uint8_t one = 0;
  EXPECT_THROW(write_png(dir.path + "/x.png", &one, 1, 1, 2), ValueError);
  EXPECT_THROW(write_png(dir.path + "/missing/x.png", &one, 1, 1, 1), IoError);
}

TEST(Png, OtherKindsConvertTo8BitGreyOrRgb) {
  TempDir dir;
  // 16-bit grey: 8-bit value = round(v * 255 / 65535).
  const std::string g16 = dir.path + "/g16.png";
  write_raw_png(g16, 4, 1, PNG_COLOR_TYPE_GRAY, 16, {{0x00, 0x00, 0xff, 0xff, 0x80, 0x80, 0x12, 0x34}});
  Image a = read_png(g16);
  EXPECT_EQ(a.channels, 1);
  EXPECT_EQ(a.pixels, (std::vector<std::uint8_t>{0, 255, 128, 18}));

  // Grey + alpha: opaque pixels keep their value, transparent ones become black.
  const std::string ga = dir.path + "/ga.png";
  write_raw_png(ga, 2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, {{200, 255, 200, 0}});
  Image b = read_png(ga);
  EXPECT_EQ(b.channels, 1);
  EXPECT_EQ(b.pixels, (std::vector<std::uint8_t>{200, 0}));

  // Palette: indices become RGB.
  const std::string pal = dir.path + "/pal.png";
  write_raw_png(pal, 3, 1, PNG_COLOR_TYPE_PALETTE, 8, {{1, 0, 1}}, {{255, 0, 0}, {0, 10, 250}});
  Image c = read_png(pal);
  EXPECT_EQ(c.channels, 3);
  EXPECT_EQ(c.pixels, (std::vector<std::uint8_t>{0, 10, 250, 255, 0, 0, 0, 10, 250}));

  // 16-bit RGB.
  const std::string rgb16 = dir.path + "/rgb16.png";
  write_raw_png(rgb16, 1, 1, PNG_COLOR_TYPE_RGB, 16, {{0xff, 0xff, 0x00, 0x00, 0x40, 0x00}});
  Image d = read_png(rgb16);
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.pixels, (std::vector<std::uint8_t>{255, 0, 64}));
}

TEST(Png, UnreadableFilesAreClearErrors) {
  TempDir dir;
  expect_io_error(dir.path + "/absent.png", "cannot open");
  write_file_atomic(dir.path + "/text.png", std::string("hello, not an image"));
  expect_io_error(dir.path + "/text.png", "not a PNG");
  std::vector<std::uint8_t> px(32 * 32 * 3, 99);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>(i * 7919 % 251);
  write_png(dir.path + "/full.png", px.data(), 32, 32, 3);
  std::string bytes = read_file(dir.path + "/full.png");
  write_file_atomic(dir.path + "/cut.png", bytes.substr(0, bytes.size() / 2));
  expect_io_error(dir.path + "/cut.png", "could not read PNG");
}

TEST(Png, MakeGridTilesWithPadding) {
  // Three 2x2 grey images valued 10, 20, 30; two per row; padding 1 of value 255.
  std::vector<std::uint8_t> imgs;
  for (int v : {10, 20, 30}) imgs.insert(imgs.end(), 4, static_cast<std::uint8_t>(v));
  Image g = make_grid(imgs.data(), 3, 2, 2, 1, 2, 1, 255);
  ASSERT_EQ(g.height, 7);
  ASSERT_EQ(g.width, 7);
  auto at = [&](int y, int x) { return int(g.pixels[y * g.width + x]); };
  EXPECT_EQ(at(0, 0), 255);
  EXPECT_EQ(at(1, 1), 10);
  EXPECT_EQ(at(2, 2), 10);
  EXPECT_EQ(at(1, 3), 255);
  EXPECT_EQ(at(1, 4), 20);
  EXPECT_EQ(at(5, 2), 30);
  EXPECT_EQ(at(4, 4), 255);  // the empty slot stays padding
  EXPECT_EQ(at(6, 6), 255);
  // RGB, one row, no padding: images side by side.
  std::vector<std::uint8_t> rgb = {1, 2, 3, 4, 5, 6};  // two 1x1 RGB images
  Image r = make_grid(rgb.data(), 2, 1, 1, 3, 8, 0);
  EXPECT_EQ(r.height, 1);
  EXPECT_EQ(r.width, 2);
  EXPECT_EQ(r.pixels, rgb);
  EXPECT_THROW(make_grid(rgb.data(), 2, 1, 1, 3, 0, 0), ValueError);
}

}  // namespace
}  // namespace ddpm
