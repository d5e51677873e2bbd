// engine/io/gif.cpp: the GIF89a writer and reader (contract in gif.h). Byte layout from
// the GIF89a specification (CompuServe 1990): all integers are 16-bit little-endian, LZW
// codes are packed least-significant bit first and carried in sub-blocks of <= 255 bytes.
#include "engine/io/gif.h"

#include <algorithm>
#include <cstring>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm {

namespace {

constexpr int kMaxCodes = 4096;  // 12-bit LZW codes
constexpr int kMinCodeSize = 8;  // the writer's pixels are 8-bit palette indices

// The 6x7x6 cube: level k of a channel with n levels is round(k * 255 / (n - 1)).
constexpr int kCubeLevels[3] = {6, 7, 6};
int cube_level(int k, int n) { return (k * 255 * 2 + (n - 1)) / (2 * (n - 1)); }
// Nearest level index of v: round(v * (n - 1) / 255).
int nearest_level(int v, int n) { return (v * (n - 1) * 2 + 255) / (2 * 255); }

void put_u16(std::string* out, int v) {
  out->push_back(static_cast<char>(v & 0xFF));
  out->push_back(static_cast<char>((v >> 8) & 0xFF));
}

// Packs codes LSB-first and cuts the bytes into sub-blocks (length byte + up to 255 bytes,
// then a 0 terminator).
class CodeWriter {
 public:
  void put(int code, int width) {
    acc_ |= static_cast<std::uint32_t>(code) << nbits_;
    nbits_ += width;
    while (nbits_ >= 8) {
      bytes_.push_back(static_cast<std::uint8_t>(acc_ & 0xFF));
      acc_ >>= 8;
      nbits_ -= 8;
    }
  }
  void finish_into(std::string* out) {
    if (nbits_ > 0) bytes_.push_back(static_cast<std::uint8_t>(acc_ & 0xFF));
    for (std::size_t i = 0; i < bytes_.size(); i += 255) {
      const std::size_t n = std::min<std::size_t>(255, bytes_.size() - i);
      out->push_back(static_cast<char>(n));
      out->append(reinterpret_cast<const char*>(bytes_.data() + i), n);
    }
    out->push_back('\0');
  }

 private:
  std::vector<std::uint8_t> bytes_;
  std::uint32_t acc_ = 0;
  int nbits_ = 0;
};

// LZW (Welch 1984) as GIF uses it. The table maps (prefix code, next index) to a code; a
// string not in the table emits its longest known prefix and becomes the next code. The
// code width grows when the next code to assign needs one more bit, exactly when the
// decoder, which assigns each code one step later, grows its own.
void lzw_encode(const std::uint8_t* indices, std::size_t n, std::string* out) {
  const int clear = 1 << kMinCodeSize, end = clear + 1;
  std::vector<std::int16_t> child(static_cast<std::size_t>(kMaxCodes) * 256, -1);  // [prefix, index] -> code
  std::vector<std::size_t> used;  // entries of child set since the last clear
  CodeWriter w;
  int width = kMinCodeSize + 1, next = clear + 2;
  w.put(clear, width);
  int cur = indices[0];
  for (std::size_t i = 1; i < n; ++i) {
    const int p = indices[i];
    const std::size_t key = static_cast<std::size_t>(cur) * 256 + p;
    if (child[key] >= 0) {
      cur = child[key];
      continue;
    }
    w.put(cur, width);
    child[key] = static_cast<std::int16_t>(next);
    used.push_back(key);
    if (next == (1 << width)) ++width;  // codes up to `next` may come next
    if (++next == kMaxCodes) {  // table full: start over
      w.put(clear, width);
      for (std::size_t k : used) child[k] = -1;
      used.clear();
      width = kMinCodeSize + 1;
      next = clear + 2;
    }
    cur = p;
  }
  w.put(cur, width);
  // The decoder assigns a code on reading `cur` and may widen before the end code.
  if (next < kMaxCodes && next == (1 << width) && width < 12) ++width;
  w.put(end, width);
  w.finish_into(out);
}

}  // namespace

void write_gif(const std::string& path, const std::uint8_t* frames, int num_frames, int height, int width,
               int channels, int delay_cs, bool loop) {
  DDPM_CHECK(channels == 1 || channels == 3,
             "write_gif('" << path << "'): channels must be 1 (grey) or 3 (RGB), got " << channels);
  DDPM_CHECK(num_frames > 0, "write_gif('" << path << "'): num_frames must be positive, got " << num_frames);
  DDPM_CHECK(height > 0 && width > 0 && height <= 65535 && width <= 65535,
             "write_gif('" << path << "'): the frame size must be between 1 and 65535 pixels per side, got "
                           << height << "x" << width);
  DDPM_CHECK(delay_cs >= 0 && delay_cs <= 65535,
             "write_gif('" << path << "'): delay_cs must be in [0, 65535] hundredths of a second, got "
                           << delay_cs);
  DDPM_CHECK(frames != nullptr, "write_gif('" << path << "'): no frames");

  std::string out = "GIF89a";
  // Logical screen descriptor: size, then packed = global palette present (0x80), colour
  // resolution 8 bits (7 << 4), palette of 2^(7 + 1) = 256 entries (7); background 0,
  // aspect ratio 0 (unspecified).
  put_u16(&out, width);
  put_u16(&out, height);
  out.push_back(static_cast<char>(0x80 | (7 << 4) | 7));
  out.push_back('\0');
  out.push_back('\0');
  for (int i = 0; i < 256; ++i) {  // global palette: 256 RGB triples
    std::uint8_t rgb[3] = {static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i)};
    if (channels == 3) {  // index = (r * 7 + g) * 6 + b; entries 252..255 black
      const int r = i / 42, g = (i / 6) % 7, b = i % 6;
      for (int c = 0; c < 3; ++c) rgb[c] = 0;
      if (i < 252) {
        rgb[0] = static_cast<std::uint8_t>(cube_level(r, kCubeLevels[0]));
        rgb[1] = static_cast<std::uint8_t>(cube_level(g, kCubeLevels[1]));
        rgb[2] = static_cast<std::uint8_t>(cube_level(b, kCubeLevels[2]));
      }
    }
    out.append(reinterpret_cast<const char*>(rgb), 3);
  }
  if (loop) {  // NETSCAPE2.0: sub-block {1, loop count (0 = forever)}
    out += "\x21\xFF\x0B" "NETSCAPE2.0" "\x03\x01";
    put_u16(&out, 0);
    out.push_back('\0');
  }
  const std::size_t area = static_cast<std::size_t>(height) * width;
  std::vector<std::uint8_t> indices(area);
  for (int f = 0; f < num_frames; ++f) {
    const std::uint8_t* px = frames + static_cast<std::size_t>(f) * area * channels;
    for (std::size_t p = 0; p < area; ++p) {
      if (channels == 1) {
        indices[p] = px[p];
      } else {
        const int r = nearest_level(px[3 * p], 6), g = nearest_level(px[3 * p + 1], 7),
                  b = nearest_level(px[3 * p + 2], 6);
        indices[p] = static_cast<std::uint8_t>((r * 7 + g) * 6 + b);
      }
    }
    // Graphic control extension: packed = disposal 1 "do not dispose" (1 << 2), no
    // transparency; delay; transparent index (unused); terminator.
    out += "\x21\xF9\x04\x04";
    put_u16(&out, delay_cs);
    out.push_back('\0');
    out.push_back('\0');
    // Image descriptor: the whole canvas, no local palette, not interlaced.
    out.push_back('\x2C');
    put_u16(&out, 0);
    put_u16(&out, 0);
    put_u16(&out, width);
    put_u16(&out, height);
    out.push_back('\0');
    out.push_back(static_cast<char>(kMinCodeSize));
    lzw_encode(indices.data(), area, &out);
  }
  out.push_back('\x3B');  // trailer
  write_file_atomic(path, out);
}

namespace {

constexpr std::size_t kMaxCanvas = std::size_t{4096} * 4096;
constexpr std::size_t kMaxDecodedBytes = std::size_t{256} << 20;

// Bounds-checked reading of the file's bytes; every failure names the file.
struct Reader {
  const std::string& path;
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos = 0;

  [[noreturn]] void fail(const std::string& what) const {
    DDPM_THROW(IoError, "could not read GIF '" << path << "': " << what << " (at byte " << pos << ")");
  }
  void need(std::size_t n, const char* what) const {
    if (n > size - pos) fail(std::string("the file ends inside ") + what + " (truncated)");
  }
  int u8(const char* what) {
    need(1, what);
    return data[pos++];
  }
  int u16(const char* what) {
    need(2, what);
    const int v = data[pos] | (data[pos + 1] << 8);
    pos += 2;
    return v;
  }
  // Concatenates a chain of sub-blocks up to its 0 terminator.
  void sub_blocks(std::vector<std::uint8_t>* out, const char* what) {
    for (int n = u8(what); n != 0; n = u8(what)) {
      need(static_cast<std::size_t>(n), what);
      if (out) out->insert(out->end(), data + pos, data + pos + n);
      pos += static_cast<std::size_t>(n);
    }
  }
  std::vector<std::uint8_t> palette(int entries, const char* what) {
    need(static_cast<std::size_t>(entries) * 3, what);
    std::vector<std::uint8_t> p(data + pos, data + pos + entries * 3);
    pos += static_cast<std::size_t>(entries) * 3;
    return p;
  }
};

// Decodes n palette indices from LZW data; false (with *error set) on a damaged stream.
bool lzw_decode(const std::vector<std::uint8_t>& in, int min_code_size, std::size_t n, std::vector<std::uint8_t>* out,
                std::string* error) {
  const int clear = 1 << min_code_size, end = clear + 1;
  std::vector<std::int16_t> prefix(kMaxCodes, -1);
  std::vector<std::uint8_t> suffix(kMaxCodes), first(kMaxCodes);
  std::vector<std::uint16_t> length(kMaxCodes, 1);
  for (int c = 0; c < clear; ++c) suffix[c] = first[c] = static_cast<std::uint8_t>(c);
  out->clear();
  out->reserve(n);
  int width = min_code_size + 1, next = clear + 2, prev = -1;
  std::size_t bitpos = 0;
  const std::size_t nbits = in.size() * 8;
  std::vector<std::uint8_t> string(kMaxCodes);
  while (out->size() < n) {
    if (bitpos + width > nbits) {
      *error = "the image data ends before all " + std::to_string(n) + " pixels are decoded";
      return false;
    }
    int code = 0;
    for (int b = 0; b < width; ++b, ++bitpos) code |= ((in[bitpos >> 3] >> (bitpos & 7)) & 1) << b;
    if (code == clear) {
      width = min_code_size + 1;
      next = clear + 2;
      prev = -1;
      continue;
    }
    if (code == end) {
      *error = "the image data ends (end code) before all " + std::to_string(n) + " pixels are decoded";
      return false;
    }
    if (code > next || (code == next && prev < 0)) {  // not in the table yet
      *error = "LZW code " + std::to_string(code) + " is not in the table yet (next free code " +
               std::to_string(next) + ")";
      return false;
    }
    if (prev >= 0 && next < kMaxCodes) {  // the entry the encoder made one step earlier
      prefix[next] = static_cast<std::int16_t>(prev);
      first[next] = first[prev];
      suffix[next] = code == next ? first[prev] : first[code];  // code == next: KwKwK
      length[next] = static_cast<std::uint16_t>(length[prev] + 1);
      ++next;
      if (next == (1 << width) && width < 12) ++width;
    }
    // Walk the prefix chain backwards into `string`, then append it.
    const int len = length[code];
    int c = code;
    for (int k = len - 1; k >= 0; --k, c = prefix[c]) string[k] = suffix[c];
    const std::size_t take = std::min<std::size_t>(len, n - out->size());
    out->insert(out->end(), string.begin(), string.begin() + take);
    prev = code;
  }
  return true;
}

// Row order of an interlaced image (spec appendix E): every 8th row from 0, every 8th
// from 4, every 4th from 2, every 2nd from 1.
std::vector<int> interlaced_rows(int h) {
  std::vector<int> rows;
  const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
  for (int pass = 0; pass < 4; ++pass)
    for (int y = start[pass]; y < h; y += step[pass]) rows.push_back(y);
  return rows;
}

}  // namespace

Gif read_gif(const std::string& path) {
  const std::string bytes = read_file(path);
  Reader r{path, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()};
  if (bytes.size() < 6 || (bytes.compare(0, 6, "GIF89a") != 0 && bytes.compare(0, 6, "GIF87a") != 0))
    DDPM_THROW(IoError, "'" << path << "' is not a GIF file (it does not start with GIF87a or GIF89a)");
  r.pos = 6;
  Gif gif;
  gif.width = r.u16("the logical screen descriptor");
  gif.height = r.u16("the logical screen descriptor");
  const int screen_flags = r.u8("the logical screen descriptor");
  const int background = r.u8("the logical screen descriptor");
  r.u8("the logical screen descriptor");  // pixel aspect ratio
  if (gif.width == 0 || gif.height == 0) r.fail("the canvas is empty (0 pixels wide or high)");
  const std::size_t area = static_cast<std::size_t>(gif.width) * gif.height;
  if (area > kMaxCanvas)
    r.fail("the canvas of " + std::to_string(gif.width) + "x" + std::to_string(gif.height) +
           " pixels is larger than the 4096x4096 supported");
  std::vector<std::uint8_t> global;
  if (screen_flags & 0x80) global = r.palette(2 << (screen_flags & 7), "the global palette");

  std::vector<std::uint8_t> canvas(area * 3, 0), saved;  // RGB
  if (!global.empty() && background < static_cast<int>(global.size() / 3))
    for (std::size_t p = 0; p < area; ++p) std::memcpy(&canvas[p * 3], &global[background * 3], 3);
  const std::vector<std::uint8_t> background_canvas = canvas;
  std::vector<std::uint8_t> rgb_frames, indices, lzw;
  int delay = 0, disposal = 0, transparent = -1;  // from the last graphic control extension
  for (;;) {
    const int block = r.u8("the block list (no trailer 0x3B)");
    if (block == 0x3B) break;
    if (block == 0x21) {  // extension: label, then sub-blocks
      const int label = r.u8("an extension");
      if (label == 0xF9) {  // graphic control: {4, packed, delay, transparent index}
        if (r.u8("a graphic control extension") != 4) r.fail("a graphic control extension is not 4 bytes long");
        const int flags = r.u8("a graphic control extension");
        delay = r.u16("a graphic control extension");
        const int t = r.u8("a graphic control extension");
        disposal = (flags >> 2) & 7;
        transparent = (flags & 1) ? t : -1;
        if (disposal > 3) r.fail("disposal method " + std::to_string(disposal) + " is reserved (not supported)");
      }
      r.sub_blocks(nullptr, "an extension");  // the rest (application, comment, plain text: skipped)
      continue;
    }
    if (block != 0x2C) r.fail("unknown block type " + std::to_string(block));
    const int left = r.u16("an image descriptor"), top = r.u16("an image descriptor");
    const int w = r.u16("an image descriptor"), h = r.u16("an image descriptor");
    const int flags = r.u8("an image descriptor");
    if (left + w > gif.width || top + h > gif.height)
      r.fail("an image of " + std::to_string(w) + "x" + std::to_string(h) + " at (" + std::to_string(left) + ", " +
             std::to_string(top) + ") reaches outside the " + std::to_string(gif.width) + "x" +
             std::to_string(gif.height) + " canvas (not supported)");
    std::vector<std::uint8_t> local;
    if (flags & 0x80) local = r.palette(2 << (flags & 7), "a local palette");
    const std::vector<std::uint8_t>& palette = local.empty() ? global : local;
    if (palette.empty()) r.fail("an image has neither a local nor a global palette");
    const int min_code_size = r.u8("an image's LZW minimum code size");
    if (min_code_size < 2 || min_code_size > 8)
      r.fail("LZW minimum code size " + std::to_string(min_code_size) + " is outside [2, 8]");
    lzw.clear();
    r.sub_blocks(&lzw, "an image's data");
    const std::size_t npix = static_cast<std::size_t>(w) * h;
    std::string error;
    if (!lzw_decode(lzw, min_code_size, npix, &indices, &error)) r.fail(error);
    if (rgb_frames.size() + area * 3 > kMaxDecodedBytes)
      r.fail("the decoded frames would exceed 256 MiB (not supported)");

    if (disposal == 3) saved = canvas;
    const std::vector<int> rows = (flags & 0x40) ? interlaced_rows(h) : std::vector<int>();
    const int colours = static_cast<int>(palette.size() / 3);
    for (int i = 0; i < h; ++i) {
      const int y = rows.empty() ? i : rows[i];  // the i-th stored row is canvas row top + y
      for (int x = 0; x < w; ++x) {
        const int idx = indices[static_cast<std::size_t>(i) * w + x];
        if (idx == transparent) continue;
        if (idx >= colours)
          r.fail("pixel index " + std::to_string(idx) + " is outside the palette of " + std::to_string(colours) +
                 " colours");
        std::memcpy(&canvas[(static_cast<std::size_t>(top + y) * gif.width + left + x) * 3], &palette[idx * 3], 3);
      }
    }
    rgb_frames.insert(rgb_frames.end(), canvas.begin(), canvas.end());
    gif.delays_cs.push_back(delay);
    ++gif.num_frames;
    // Disposal, before the next frame is drawn: 2 restores the image's rectangle to the
    // background, 3 restores the canvas as it was before this image.
    if (disposal == 2)
      for (int y = top; y < top + h; ++y)
        std::memcpy(&canvas[(static_cast<std::size_t>(y) * gif.width + left) * 3],
                    &background_canvas[(static_cast<std::size_t>(y) * gif.width + left) * 3],
                    static_cast<std::size_t>(w) * 3);
    if (disposal == 3) canvas = saved;
    // A graphic control extension applies to the next image only.
    delay = 0;
    disposal = 0;
    transparent = -1;
  }
  if (gif.num_frames == 0) r.fail("the file holds no image");

  bool grey = true;
  for (std::size_t p = 0; grey && p < rgb_frames.size(); p += 3)
    grey = rgb_frames[p] == rgb_frames[p + 1] && rgb_frames[p] == rgb_frames[p + 2];
  gif.channels = grey ? 1 : 3;
  if (!grey) {
    gif.frames = std::move(rgb_frames);
  } else {
    gif.frames.resize(rgb_frames.size() / 3);
    for (std::size_t p = 0; p < gif.frames.size(); ++p) gif.frames[p] = rgb_frames[p * 3];
  }
  return gif;
}

}  // namespace ddpm
