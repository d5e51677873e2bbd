// The built-in bitmap font: glyph patterns, text width, scaling, rotation and clipping.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/bitmap_font.h"

namespace ddpm {
namespace {

namespace font = bitmap_font;

// A grey image rendered as one string per row, '#' where the text put ink.
std::vector<std::string> render(const std::string& text, int scale, int h, int w, int x = 0, int y = 0,
                                font::Direction d = font::Direction::kRight) {
  std::vector<std::uint8_t> img(static_cast<std::size_t>(h) * w, 255);
  font::draw_text(img.data(), h, w, 1, x, y, text, scale, {0, 0, 0}, d);
  std::vector<std::string> rows(h, std::string(w, '.'));
  for (int r = 0; r < h; ++r)
    for (int c = 0; c < w; ++c)
      if (img[static_cast<std::size_t>(r) * w + c] == 0) rows[r][c] = '#';
  return rows;
}

TEST(BitmapFont, GlyphRowsOfADigitAndALetter) {
  const std::uint8_t one[8] = {0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0};
  const std::uint8_t e[8] = {0, 0, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110, 0};
  for (int r = 0; r < font::kGlyphHeight; ++r) {
    EXPECT_EQ(font::glyph_row('1', r), one[r]) << "row " << r;
    EXPECT_EQ(font::glyph_row('e', r), e[r]) << "row " << r;
  }
  EXPECT_NE(font::glyph_row('g', 7), 0) << "g has a descender";
  EXPECT_THROW(font::glyph_row('1', 8), ValueError);
}

TEST(BitmapFont, CoversTheChartCharacters) {
  for (char c : std::string("0123456789.-+ ekMabcdfghijlmnopqrstuvwxyz()"))
    EXPECT_TRUE(font::has_glyph(c)) << "'" << c << "'";
  EXPECT_FALSE(font::has_glyph('#'));
  // A missing glyph is a visible box, not blank.
  EXPECT_EQ(font::glyph_row('#', 0), 0b11111);
  EXPECT_EQ(font::glyph_row('#', 3), 0b10001);
}

TEST(BitmapFont, DrawsTheExpectedPixels) {
  const std::vector<std::string> expected = {
      "..#...#####.",  //
      ".##.......#.",  //
      "..#......#..",  //
      "..#.....#...",  //
      "..#....#....",  //
      "..#....#....",  //
      ".###...#....",  //
      "............",
  };
  EXPECT_EQ(render("17", 1, 8, 12), expected);
}

TEST(BitmapFont, ScaleRepeatsEachPixel) {
  const std::vector<std::string> one = render("1", 1, 8, 6), two = render("1", 2, 16, 12);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 12; ++c) EXPECT_EQ(two[r][c], one[r / 2][c / 2]) << r << "," << c;
}

TEST(BitmapFont, WidthIsGlyphCountTimesAdvance) {
  EXPECT_EQ(font::text_width("0.01", 1), 4 * font::kAdvance);
  EXPECT_EQ(font::text_width("loss (log scale)", 2), 16 * font::kAdvance * 2);
  EXPECT_EQ(font::text_width("", 3), 0);
  EXPECT_EQ(font::text_height(2), 16);
  // The ink stays inside [0, text_width - 1 blank column) and reaches its last column.
  const std::string s = "1500";
  const int w = font::text_width(s, 2);
  const std::vector<std::string> img = render(s, 2, 16, w + 10);
  bool last_ink_col = false;
  for (const std::string& row : img) {
    EXPECT_EQ(row.find('#', w - 2), std::string::npos);
    last_ink_col |= row[w - 3] == '#';
  }
  EXPECT_TRUE(last_ink_col);
}

TEST(BitmapFont, UpwardTextIsRotatedCounterClockwise) {
  // Glyph pixel (column c, row r) lands at (x + r, y - 1 - c).
  const std::vector<std::string> right = render("7", 1, 8, 6), up = render("7", 1, 8, 8, 0, 6, font::Direction::kUp);
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 5; ++c) EXPECT_EQ(up[6 - 1 - c][r], right[r][c]) << r << "," << c;
}

TEST(BitmapFont, ClipsAtTheImageEdges) {
  const std::vector<std::string> img = render("10", 1, 5, 7, -2, -3);
  // Rows 3..7 of the glyphs, columns 2.. of "1" then "0" (which starts at x = 6 - 2 = 4).
  EXPECT_EQ(img[0], "#...#.#");
  EXPECT_EQ(img[3], "##...##");
  EXPECT_EQ(img[4], ".......");
}

}  // namespace
}  // namespace ddpm
