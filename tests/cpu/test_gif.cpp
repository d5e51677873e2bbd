// Animated GIF (engine/io/gif.h): round trips, the byte layout checked by hand against the
// GIF89a spec, the reader on hand-made files (local palettes, interlacing, offsets,
// disposal, transparency, delays), and damaged files.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/gif.h"
#include "support/temp_dir.h"

namespace ddpm {
namespace {

using testing::TempDir;
using Bytes = std::vector<std::uint8_t>;

Bytes file_bytes(const std::string& path) {
  const std::string s = read_file(path);
  return Bytes(s.begin(), s.end());
}

// A plain write (no fsync): the damaged-file test writes two thousand files. Removing the
// old file first is much faster than truncating it on some file systems (overlayfs).
void put_bytes(const std::string& path, const Bytes& b) {
  std::remove(path.c_str());
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(b.data()), b.size());
}

void u16(Bytes* b, int v) {
  b->push_back(static_cast<std::uint8_t>(v & 0xFF));
  b->push_back(static_cast<std::uint8_t>(v >> 8));
}

// LZW data written the simplest legal way, independently of the writer under test: with
// minimum code size 2 every code is 3 bits wide if a clear code follows every two literal
// indices (the decoder's table then never reaches code 8, where the width would grow).
Bytes literal_lzw(const std::vector<int>& indices) {
  std::vector<int> codes{4};  // clear
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (i > 0 && i % 2 == 0) codes.push_back(4);
    codes.push_back(indices[i]);
  }
  codes.push_back(5);  // end
  Bytes packed((codes.size() * 3 + 7) / 8, 0);
  for (std::size_t k = 0; k < codes.size(); ++k)
    for (int b = 0; b < 3; ++b)
      if ((codes[k] >> b) & 1) packed[(k * 3 + b) / 8] |= static_cast<std::uint8_t>(1 << ((k * 3 + b) % 8));
  Bytes out;
  out.push_back(2);                                          // min code size
  out.push_back(static_cast<std::uint8_t>(packed.size()));  // one sub-block
  out.insert(out.end(), packed.begin(), packed.end());
  out.push_back(0);
  return out;
}

TEST(Gif, GreyRoundTripIsExact) {
  TempDir dir;
  // Noise 64x64: 4096 nearly incompressible pixels per frame need more codes than the
  // 4096 - 258 the table holds, so the writer fills it and emits clear codes.
  std::mt19937 rng(7);
  for (auto [f, h, w] : {std::tuple{1, 1, 1}, std::tuple{3, 5, 7}, std::tuple{5, 64, 64}}) {
    Bytes px(static_cast<std::size_t>(f) * h * w);
    for (std::size_t i = 0; i < px.size(); ++i)
      px[i] = h == 64 ? static_cast<std::uint8_t>(rng()) : static_cast<std::uint8_t>(i * 37 + 11);
    const std::string path = dir.path + "/g.gif";
    write_gif(path, px.data(), f, h, w, 1, 9);
    Gif g = read_gif(path);
    EXPECT_EQ(g.num_frames, f);
    EXPECT_EQ(g.height, h);
    EXPECT_EQ(g.width, w);
    EXPECT_EQ(g.channels, 1);
    EXPECT_EQ(g.frames, px) << f << "x" << h << "x" << w;
    EXPECT_EQ(g.delays_cs, std::vector<int>(f, 9));
  }
}

TEST(Gif, LongRunsRoundTrip) {
  // A constant frame builds ever longer strings (codes for runs of 1, 2, 3, ... pixels),
  // the KwKwK case of LZW at every step; a ramp repeats short strings.
  TempDir dir;
  Bytes px(2 * 100 * 90);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = i < px.size() / 2 ? 200 : static_cast<std::uint8_t>(i % 7);
  write_gif(dir.path + "/r.gif", px.data(), 2, 100, 90, 1);
  EXPECT_EQ(read_gif(dir.path + "/r.gif").frames, px);
}

TEST(Gif, RgbRoundTripWithinThePaletteError) {
  TempDir dir;
  // Frame 0 walks every value 0..255 in each channel, so the worst case is reached;
  // frame 1 is random.
  const int h = 16, w = 16;
  Bytes px(2 * h * w * 3);
  std::mt19937 rng(3);
  for (int p = 0; p < h * w; ++p)
    for (int c = 0; c < 3; ++c) {
      px[p * 3 + c] = static_cast<std::uint8_t>((p + 85 * c) % 256);
      px[(h * w + p) * 3 + c] = static_cast<std::uint8_t>(rng());
    }
  write_gif(dir.path + "/c.gif", px.data(), 2, h, w, 3);
  Gif g = read_gif(dir.path + "/c.gif");
  ASSERT_EQ(g.channels, 3);
  ASSERT_EQ(g.frames.size(), px.size());
  int worst[3] = {0, 0, 0};
  for (std::size_t i = 0; i < px.size(); ++i) {
    const int c = static_cast<int>(i % 3);
    worst[c] = std::max(worst[c], std::abs(g.frames[i] - px[i]));
  }
  for (int c = 0; c < 3; ++c) EXPECT_EQ(worst[c], kGifRgbMaxError[c]) << "channel " << c;
}

TEST(Gif, ByteLayoutOfATiny2x2File) {
  TempDir dir;
  const Bytes px{0, 1, 2, 3};
  write_gif(dir.path + "/t.gif", px.data(), 1, 2, 2, 1, 7, /*loop=*/false);
  const Bytes b = file_bytes(dir.path + "/t.gif");
  Bytes want{'G', 'I', 'F', '8', '9', 'a',
             2, 0, 2, 0,  // logical screen 2x2
             0xF7,        // global palette, colour resolution 8 bits, 2^(7+1) = 256 entries
             0, 0};       // background index, aspect ratio
  for (int i = 0; i < 256; ++i) want.insert(want.end(), 3, static_cast<std::uint8_t>(i));
  // Graphic control: size 4, disposal 1 (do not dispose), delay 7, no transparency.
  want.insert(want.end(), {0x21, 0xF9, 4, 0x04, 7, 0, 0, 0});
  // Image descriptor at (0, 0), 2x2, no local palette, not interlaced.
  want.insert(want.end(), {0x2C, 0, 0, 0, 0, 2, 0, 2, 0, 0});
  // LZW min code size 8; codes of 9 bits, LSB first: clear 256, 0, 1, 2, 3, end 257 =
  // 54 bits: bit 8 (clear), bit 18 (1), bit 28 (2), bits 36-37 (3), bits 45 and 53 (257).
  want.insert(want.end(), {8, 7, 0x00, 0x01, 0x04, 0x10, 0x30, 0x20, 0x20, 0});
  want.push_back(0x3B);  // trailer
  EXPECT_EQ(b, want);

  // Looping adds the NETSCAPE2.0 application extension (loop count 0 = forever) after the palette.
  write_gif(dir.path + "/l.gif", px.data(), 1, 2, 2, 1, 7, /*loop=*/true);
  const Bytes l = file_bytes(dir.path + "/l.gif");
  const Bytes netscape{0x21, 0xFF, 11, 'N', 'E', 'T', 'S', 'C', 'A', 'P', 'E', '2', '.', '0', 3, 1, 0, 0, 0};
  ASSERT_EQ(l.size(), b.size() + netscape.size());
  EXPECT_EQ(Bytes(l.begin() + 781, l.begin() + 781 + netscape.size()), netscape);
}

// A 4x3 canvas with a 4-colour global palette (black, red, green, blue), background 3.
Bytes hand_made_header() {
  Bytes b{'G', 'I', 'F', '8', '9', 'a'};
  u16(&b, 4);
  u16(&b, 3);
  b.insert(b.end(), {0x81, 3, 0});  // global palette of 2^(1+1) = 4 entries, background 3
  b.insert(b.end(), {0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255});
  return b;
}

void image(Bytes* b, int left, int top, int w, int h, int flags) {
  b->push_back(0x2C);
  u16(b, left);
  u16(b, top);
  u16(b, w);
  u16(b, h);
  b->push_back(static_cast<std::uint8_t>(flags));
}

void gce(Bytes* b, int disposal, int delay, int transparent) {
  b->insert(b->end(), {0x21, 0xF9, 4, static_cast<std::uint8_t>((disposal << 2) | (transparent >= 0 ? 1 : 0))});
  u16(b, delay);
  b->insert(b->end(), {static_cast<std::uint8_t>(transparent >= 0 ? transparent : 0), 0});
}

TEST(Gif, ReadsOffsetsLocalPalettesInterlacingDisposalAndTransparency) {
  TempDir dir;
  Bytes b = hand_made_header();
  b.insert(b.end(), {0x21, 0xFE, 2, 'h', 'i', 0});  // a comment, skipped
  // Frame 0: the whole canvas red, kept (disposal 1), delay 3.
  gce(&b, 1, 3, -1);
  image(&b, 0, 0, 4, 3, 0);
  Bytes lzw = literal_lzw(std::vector<int>(12, 1));
  b.insert(b.end(), lzw.begin(), lzw.end());
  // Frame 1: 1x3 at (2, 0), interlaced, a local palette {white, grey 128}, index 1 transparent
  // in the middle stored row; restored to the background (blue) afterwards. Stored rows of
  // an interlaced 3-row image are canvas rows 0, 2, 1.
  gce(&b, 2, 250, 1);
  image(&b, 2, 0, 1, 3, 0x80 | 0x40 | 0);
  b.insert(b.end(), {255, 255, 255, 128, 128, 128});
  lzw = literal_lzw({0, 1, 0});
  b.insert(b.end(), lzw.begin(), lzw.end());
  // Frame 2 (no GCE): 1x1 green at (0, 2).
  image(&b, 0, 2, 1, 1, 0);
  lzw = literal_lzw({2});
  b.insert(b.end(), lzw.begin(), lzw.end());
  b.push_back(0x3B);
  put_bytes(dir.path + "/h.gif", b);

  Gif g = read_gif(dir.path + "/h.gif");
  ASSERT_EQ(g.num_frames, 3);
  ASSERT_EQ(g.channels, 3);
  EXPECT_EQ(g.delays_cs, (std::vector<int>{3, 250, 0}));
  auto px = [&](int f, int y, int x) {
    const std::uint8_t* p = &g.frames[((f * 3 + y) * 4 + x) * 3];
    return std::vector<int>{p[0], p[1], p[2]};
  };
  const std::vector<int> red{255, 0, 0}, green{0, 255, 0}, blue{0, 0, 255}, white{255, 255, 255};
  EXPECT_EQ(px(0, 1, 1), red);
  EXPECT_EQ(px(1, 0, 2), white);  // stored row 0 -> canvas row 0
  EXPECT_EQ(px(1, 2, 2), red);    // stored row 1 (transparent) -> canvas row 2: red shows through
  EXPECT_EQ(px(1, 1, 2), white);  // stored row 2 -> canvas row 1
  EXPECT_EQ(px(1, 1, 1), red);
  EXPECT_EQ(px(2, 0, 2), blue);   // frame 1's rectangle restored to the background
  EXPECT_EQ(px(2, 2, 2), blue);
  EXPECT_EQ(px(2, 2, 0), green);
  EXPECT_EQ(px(2, 0, 0), red);
}

void expect_io_error(const std::string& path, const std::string& needle) {
  try {
    read_gif(path);
    ADD_FAILURE() << "expected an IoError mentioning \"" << needle << "\"";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Gif, RefusesWhatIsNotSupported) {
  TempDir dir;
  const std::string path = dir.path + "/u.gif";
  Bytes b = hand_made_header();
  image(&b, 3, 0, 2, 1, 0);  // reaches x = 5 on a 4-wide canvas
  Bytes lzw = literal_lzw({0, 0});
  b.insert(b.end(), lzw.begin(), lzw.end());
  b.push_back(0x3B);
  put_bytes(path, b);
  expect_io_error(path, "reaches outside the 4x3 canvas");

  b = hand_made_header();
  gce(&b, 5, 0, -1);
  put_bytes(path, b);
  expect_io_error(path, "disposal method 5");

  b = hand_made_header();
  b.push_back(0x3B);
  put_bytes(path, b);
  expect_io_error(path, "no image");

  put_bytes(path, Bytes{'G', 'I', 'F', '8', '8', 'a'});
  expect_io_error(path, "not a GIF file");
  expect_io_error(dir.path + "/missing.gif", "missing.gif");
}

TEST(Gif, CodesNotYetInTheTableAreRefused) {
  TempDir dir;
  const std::string path = dir.path + "/c.gif";
  Bytes b = hand_made_header();
  image(&b, 0, 0, 1, 1, 0);
  // Codes (3 bits): clear 4, then 7 although the next free code is 6.
  b.insert(b.end(), {2, 1, static_cast<std::uint8_t>(4 | (7 << 3)), 0, 0x3B});
  put_bytes(path, b);
  expect_io_error(path, "LZW code 7 is not in the table");
}

TEST(Gif, EveryTruncationAndCorruptionIsAnIoErrorOrAFile) {
  TempDir dir;
  Bytes px(3 * 6 * 5 * 3);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>(i * 53);
  write_gif(dir.path + "/s.gif", px.data(), 3, 6, 5, 3);
  const Bytes good = file_bytes(dir.path + "/s.gif");
  const std::string path = dir.path + "/bad.gif";
  for (std::size_t n = 0; n < good.size(); ++n) {
    put_bytes(path, Bytes(good.begin(), good.begin() + n));
    EXPECT_THROW(read_gif(path), IoError) << "truncated to " << n << " of " << good.size() << " bytes";
  }
  // Flipping any byte must give either some frames of the promised size or an IoError.
  for (std::size_t i = 0; i < good.size(); ++i) {
    Bytes bad = good;
    bad[i] ^= 0xA5;
    put_bytes(path, bad);
    try {
      Gif g = read_gif(path);
      EXPECT_EQ(g.frames.size(), static_cast<std::size_t>(g.num_frames) * g.height * g.width * g.channels);
      EXPECT_EQ(g.delays_cs.size(), static_cast<std::size_t>(g.num_frames));
    } catch (const IoError&) {
    }
  }
}

TEST(Gif, WriterRefusesBadArguments) {
  TempDir dir;
  const Bytes px(12, 0);
  const std::string path = dir.path + "/w.gif";
  EXPECT_THROW(write_gif(path, px.data(), 1, 2, 2, 2), ValueError);
  EXPECT_THROW(write_gif(path, px.data(), 0, 2, 2, 1), ValueError);
  EXPECT_THROW(write_gif(path, px.data(), 1, 0, 2, 1), ValueError);
  EXPECT_THROW(write_gif(path, px.data(), 1, 70000, 2, 1), ValueError);
  EXPECT_THROW(write_gif(path, px.data(), 1, 2, 2, 1, -1), ValueError);
  EXPECT_THROW(write_gif(dir.path + "/no/such/folder/w.gif", px.data(), 1, 2, 2, 1), IoError);
  try {
    write_gif(path, px.data(), 1, 2, 2, 4);
    ADD_FAILURE() << "channels 4 was accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("got 4"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ddpm
