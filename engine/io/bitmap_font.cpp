// engine/io/bitmap_font.cpp: the glyph table and the text rasteriser.
//
// The glyphs are drawn here as 5-character strings, '#' for an ink pixel and '.' for a
// blank one, one string per row; an omitted last row (the descender row 7) is blank. This
// keeps the table reviewable by eye. glyph_row() turns a string into 5 bits on lookup (a
// linear search over ~60 entries: labels are a few dozen characters, so it costs nothing).
#include "engine/io/bitmap_font.h"

#include "engine/error.h"

namespace ddpm::bitmap_font {
namespace {

struct Glyph {
  char c;
  const char* rows[kGlyphHeight];  // nullptr rows are blank
};

// clang-format off
const Glyph kGlyphs[] = {
  {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
  {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
  {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
  {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
  {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
  {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
  {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
  {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
  {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
  {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
  {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
  {',', {".....", ".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
  {'-', {".....", ".....", ".....", ".###.", ".....", ".....", "....."}},
  {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
  {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
  {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
  {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
  {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
  {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
  {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
  {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
  {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
  {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
  {'a', {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}},
  {'b', {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."}},
  {'c', {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}},
  {'d', {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"}},
  {'e', {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}},
  {'f', {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}},
  {'g', {".....", ".....", ".####", "#...#", "#...#", ".####", "....#", ".###."}},
  {'h', {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
  {'i', {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}},
  {'j', {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
  {'k', {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}},
  {'l', {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'m', {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"}},
  {'n', {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
  {'o', {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}},
  {'p', {".....", ".....", "####.", "#...#", "#...#", "####.", "#....", "#...."}},
  {'q', {".....", ".....", ".####", "#...#", "#...#", ".####", "....#", "....#"}},
  {'r', {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}},
  {'s', {".....", ".....", ".####", "#....", ".###.", "....#", "####."}},
  {'t', {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}},
  {'u', {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}},
  {'v', {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
  {'w', {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}},
  {'x', {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}},
  {'y', {".....", ".....", "#...#", "#...#", "#...#", ".####", "....#", ".###."}},
  {'z', {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}},
};
// clang-format on

// The stand-in for characters without a glyph: a hollow 5x7 box.
const Glyph kMissing = {'\0', {"#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####"}};

const Glyph* find_glyph(char c) {
  for (const Glyph& g : kGlyphs)
    if (g.c == c) return &g;
  return nullptr;
}

}  // namespace

bool has_glyph(char c) { return find_glyph(c) != nullptr; }

std::uint8_t glyph_row(char c, int row) {
  DDPM_CHECK(row >= 0 && row < kGlyphHeight, "bitmap_font::glyph_row: row " << row << " is outside 0.." << kGlyphHeight - 1);
  const Glyph* g = find_glyph(c);
  const char* s = (g != nullptr ? g : &kMissing)->rows[row];
  std::uint8_t bits = 0;
  if (s != nullptr)
    for (int i = 0; i < kGlyphWidth; ++i) bits = static_cast<std::uint8_t>((bits << 1) | (s[i] == '#' ? 1 : 0));
  return bits;
}

int text_width(const std::string& text, int scale) { return static_cast<int>(text.size()) * kAdvance * scale; }
int text_height(int scale) { return kGlyphHeight * scale; }

void draw_text(std::uint8_t* pixels, int height, int width, int channels, int x, int y, const std::string& text,
               int scale, std::array<std::uint8_t, 3> color, Direction direction) {
  DDPM_CHECK(channels == 1 || channels == 3, "bitmap_font::draw_text: channels must be 1 or 3, got " << channels);
  DDPM_CHECK(scale >= 1, "bitmap_font::draw_text: scale must be at least 1, got " << scale);
  auto put = [&](int px, int py) {
    if (px < 0 || px >= width || py < 0 || py >= height) return;
    std::uint8_t* p = pixels + (static_cast<std::size_t>(py) * width + px) * channels;
    for (int c = 0; c < channels; ++c) p[c] = color[c];
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const int pen = static_cast<int>(i) * kAdvance * scale;  // along the reading direction
    for (int row = 0; row < kGlyphHeight; ++row) {
      const std::uint8_t bits = glyph_row(text[i], row);
      for (int col = 0; col < kGlyphWidth; ++col) {
        if (((bits >> (kGlyphWidth - 1 - col)) & 1) == 0) continue;
        for (int dy = 0; dy < scale; ++dy)
          for (int dx = 0; dx < scale; ++dx) {
            const int along = pen + col * scale + dx, across = row * scale + dy;
            if (direction == Direction::kRight)
              put(x + along, y + across);
            else  // rotated counter-clockwise: reading goes up, the glyph's top faces left
              put(x + across, y - 1 - along);
          }
      }
    }
  }
}

}  // namespace ddpm::bitmap_font
