// engine/io/bitmap_font.h: a tiny built-in bitmap font to write labels into images (chart
// axes, captions), so no font file or library is needed.
//
// Glyphs are 5 pixels wide and 8 rows tall: rows 0-6 hold capitals, digits and the bodies of
// lower-case letters (the baseline lies under row 6); row 7 is only used by the descenders
// of g, j, p, q, y and the comma. Each character advances the pen by kAdvance = 6 pixels (the
// glyph and one blank column), so a string of n characters is exactly n * 6 * scale pixels
// wide (the blank column after the last glyph included) and 8 * scale pixels tall. `scale`
// repeats each font pixel scale x scale times.
//
// Covered: digits, lower-case a-z, the capitals E M N, space and . , - + ( ) : / = %.
// Anything else is drawn as a hollow box, so a missing glyph is visible, not silently blank.
//
// Images are row-major HWC uint8 like engine/io/png.h: pixel (y, x) channel c is
// pixels[(y * width + x) * channels + c]. Drawing is clipped to the image.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace ddpm::bitmap_font {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 8;  // 7 rows above the baseline + 1 descender row
inline constexpr int kAdvance = 6;      // glyph width + one blank column

// Whether c has a glyph of its own (otherwise it is drawn as a box).
bool has_glyph(char c);

// Row `row` (0 = top, 0..7) of c's glyph as 5 bits: bit 4 is the leftmost column.
std::uint8_t glyph_row(char c, int row);

// text.size() * kAdvance * scale: the pen advance of the whole string.
int text_width(const std::string& text, int scale);
// kGlyphHeight * scale.
int text_height(int scale);

enum class Direction {
  kRight,  // ordinary text: (x, y) is the top-left corner of the text box
  kUp,     // rotated 90 degrees counter-clockwise, read from bottom to top (a y-axis title):
           // (x, y) is the box's bottom-left corner; the box spans columns [x, x + height)
           // and rows [y - width, y), the top of the letters facing left.
};

// Draws text in `color` (its first `channels` entries are used; channels is 1 or 3).
void draw_text(std::uint8_t* pixels, int height, int width, int channels, int x, int y, const std::string& text,
               int scale, std::array<std::uint8_t, 3> color, Direction direction = Direction::kRight);

}  // namespace ddpm::bitmap_font
