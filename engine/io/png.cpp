// engine/io/png.cpp: PNG through libpng. Writing uses the simplified API (png_image), which
// reports errors in image.message; reading uses the low-level API (see decode_png).
#include "engine/io/png.h"

#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm {

void write_png(const std::string& path, const std::uint8_t* pixels, int height, int width, int channels) {
  DDPM_CHECK(channels == 1 || channels == 3,
             "write_png('" << path << "'): channels must be 1 (grey) or 3 (RGB), got " << channels);
  DDPM_CHECK(height > 0 && width > 0,
             "write_png('" << path << "'): the image must have a positive size, got " << height << "x" << width);
  DDPM_CHECK(pixels != nullptr, "write_png('" << path << "'): no pixels");
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  const png_int_32 stride = width * channels;
  // First call measures, second call encodes into memory; then one atomic write.
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, pixels, stride, nullptr))
    DDPM_THROW(IoError, "could not encode PNG '" << path << "': " << image.message);
  std::vector<std::uint8_t> buffer(size);
  if (!png_image_write_to_memory(&image, buffer.data(), &size, 0, pixels, stride, nullptr))
    DDPM_THROW(IoError, "could not encode PNG '" << path << "': " << image.message);
  write_file_atomic(path, buffer.data(), size);
}

namespace {

// Reading uses libpng's low-level API: the simplified one treats 16-bit data as linear
// light and gamma-encodes it on the way to 8 bits, which would change pixel values; a
// dataset wants plain scaling, v8 = round(v16 * 255 / 65535).
//
// libpng reports errors by longjmp. Everything between setjmp and the jump is plain C:
// the buffers live in the caller's frame, so no C++ destructor is ever skipped.
struct PngReader {
  const unsigned char* data;
  std::size_t size;
  std::size_t pos;
  char error[256];
};

void png_read_from_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) png_error(png, "the file ends in the middle of the image (truncated)");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

void png_error_to_buffer(png_structp png, png_const_charp msg) {
  auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(r->error, sizeof r->error, "%s", msg);
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

// Decodes into raw (8-bit, 1..4 channels: grey, grey+alpha, RGB, RGBA). False on error,
// with reader->error set.
bool decode_png(PngReader* reader, std::vector<std::uint8_t>* raw, std::vector<png_bytep>* rows, int* height,
                int* width, int* channels) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, reader, png_error_to_buffer, png_ignore_warning);
  if (!png) {
    std::snprintf(reader->error, sizeof reader->error, "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (!info) png_error(png, "out of memory");
  png_set_read_fn(png, reader, png_read_from_memory);
  png_read_info(png, info);
  png_set_expand(png);    // palette -> RGB, grey of 1/2/4 bits -> 8 bits, tRNS -> alpha channel
  png_set_scale_16(png);  // 16 -> 8 bits, rounded
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *height = static_cast<int>(png_get_image_height(png, info));
  *width = static_cast<int>(png_get_image_width(png, info));
  *channels = png_get_channels(png, info);
  const std::size_t row_bytes = png_get_rowbytes(png, info);
  if (row_bytes != static_cast<std::size_t>(*width) * *channels) png_error(png, "unexpected row layout");
  raw->resize(row_bytes * *height);
  rows->resize(*height);
  for (int y = 0; y < *height; ++y) (*rows)[y] = raw->data() + y * row_bytes;
  png_read_image(png, rows->data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

}  // namespace

Image read_png(const std::string& path) {
  // Read the bytes ourselves so a missing file gets the system's reason (read_file).
  std::string bytes = read_file(path);
  DDPM_CHECK_AS(bytes.size() >= 8 && png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) == 0, IoError,
                "'" << path << "' is not a PNG file (it does not start with the PNG signature)");
  PngReader reader{reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), 0, {0}};
  std::vector<std::uint8_t> raw;
  std::vector<png_bytep> rows;
  int height = 0, width = 0, channels = 0;
  if (!decode_png(&reader, &raw, &rows, &height, &width, &channels))
    DDPM_THROW(IoError, "could not read PNG '" << path << "': " << reader.error << " (the file is damaged or truncated)");
  // Drop alpha by compositing on black in the stored (gamma-encoded) values: v * a / 255.
  const bool alpha = channels == 2 || channels == 4;
  Image out;
  out.height = height;
  out.width = width;
  out.channels = alpha ? channels - 1 : channels;
  if (!alpha) {
    out.pixels = std::move(raw);
    return out;
  }
  const std::size_t pixels = static_cast<std::size_t>(height) * width;
  out.pixels.resize(pixels * out.channels);
  for (std::size_t p = 0; p < pixels; ++p) {
    const unsigned a = raw[p * channels + out.channels];
    for (int c = 0; c < out.channels; ++c)
      out.pixels[p * out.channels + c] = static_cast<std::uint8_t>((raw[p * channels + c] * a + 127) / 255);
  }
  return out;
}

Image make_grid(const std::uint8_t* images, int n, int height, int width, int channels, int nrow, int padding,
                std::uint8_t pad_value) {
  DDPM_CHECK(n > 0 && height > 0 && width > 0 && (channels == 1 || channels == 3),
             "make_grid: images must be [N, H, W, C] with N, H, W > 0 and C in {1, 3}, got [" << n << ", " << height
                                                                                       << ", " << width << ", "
                                                                                       << channels << "]");
  DDPM_CHECK(nrow > 0 && padding >= 0, "make_grid: nrow must be positive and padding non-negative, got nrow=" << nrow
                                                                                                       << " padding="
                                                                                                       << padding);
  const int cols = std::min(n, nrow);
  const int rows = (n + nrow - 1) / nrow;
  Image grid;
  grid.channels = channels;
  grid.height = rows * (height + padding) + padding;
  grid.width = cols * (width + padding) + padding;
  grid.pixels.assign(static_cast<std::size_t>(grid.height) * grid.width * channels, pad_value);
  const std::size_t row_bytes = static_cast<std::size_t>(width) * channels;
  for (int i = 0; i < n; ++i) {
    const int top = (i / nrow) * (height + padding) + padding;
    const int left = (i % nrow) * (width + padding) + padding;
    const std::uint8_t* src = images + static_cast<std::size_t>(i) * height * row_bytes;
    for (int y = 0; y < height; ++y)
      std::copy(src + y * row_bytes, src + (y + 1) * row_bytes,
                grid.pixels.begin() + (static_cast<std::size_t>(top + y) * grid.width + left) * channels);
  }
  return grid;
}

}  // namespace ddpm
