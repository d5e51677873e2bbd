// engine/io/npz.h: NumPy .npy arrays and .npz archives, both directions: the writer behind
// ddpm-sample's samples.npz and the reader behind ddpm-eval's --samples.
//
// .npy (numpy's NEP 1):
//   bytes [0, 6)   magic "\x93NUMPY"
//   bytes [6, 8)   version major, minor (written 1.0; read 1.x, 2.x, 3.x)
//   then the header length L, little-endian: 2 bytes in version 1, 4 bytes in versions 2 and 3
//   then L bytes of an ASCII Python dict literal
//                    {'descr': '|u1', 'fortran_order': False, 'shape': (N, H, W, C), }
//                  written padded with spaces and ended by '\n' so that 10 + L is a multiple
//                  of 64 (the data then starts aligned, as numpy itself writes it)
//   then the elements in C (row-major) order, little-endian.
// Four dtypes, by numpy's descr: '|u1' uint8 (byte order does not apply to one byte, which
// is what numpy writes; '<u1' is read too), '<i8' int64, '<f4' float32, '<f8' float64.
// Fortran-ordered arrays and other dtypes are refused (IoError) when read.
//
// .npz: a zip archive of "<name>.npy" members (PKWARE APPNOTE.TXT).
//   Written "stored" (no compression, as numpy.savez does), each member with its CRC-32
//   (zlib) in the local header and the central directory; no zip64, so each member and the
//   archive must stay under 4 GiB (an IoError otherwise). Timestamps are fixed (1980-01-01
//   00:00) so equal arrays give equal bytes.
//   Read: the central directory is walked (APPNOTE 4.3.12), with the ZIP64 end records
//   (4.3.14-4.3.15) and extra field 0x0001 that numpy.savez always writes; members stored
//   (method 0) or deflated (method 8, numpy.savez_compressed, via zlib); every member's
//   CRC-32 is checked.
// Sample images are saved like improved-diffusion's: "arr_0" uint8 [N, H, W, C] and, for
// class-conditional models, "arr_1" int64 [N] labels (models/run/sample_run.cpp); the
// reader also takes named "images" / "labels" (models/eval/features.cpp).
//
// Two array types, one per direction, sharing NpyDType and the shape convention:
//   NpyArray owns its bytes: what the reader returns (the file is gone once load_npz ends).
//   NpyView points at bytes someone else owns: what the writer takes, so that a sampler's
//   50,000 images are not copied once more only to be encoded (the archive string already
//   holds one copy). NpyArray::view() and npy_view(name, shape, std::vector<T>) make views;
//   the latter derives the dtype and the byte count from T, so they cannot disagree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ddpm {

enum class NpyDType { u8, i64, f32, f64 };

std::size_t npy_itemsize(NpyDType dtype);  // 1, 8, 4, 8; ValueError for a value outside the enum
const char* npy_descr(NpyDType dtype);     // what the writer puts in the header: "|u1", "<i8", "<f4", "<f8"
const char* npy_dtype_name(NpyDType dtype);  // numpy's name: "uint8", "int64", "float32", "float64"

// The dtype of a C++ element type (only the four above have one).
template <typename T>
struct NpyDTypeOf;
template <>
struct NpyDTypeOf<std::uint8_t> { static constexpr NpyDType value = NpyDType::u8; };
template <>
struct NpyDTypeOf<std::int64_t> { static constexpr NpyDType value = NpyDType::i64; };
template <>
struct NpyDTypeOf<float> { static constexpr NpyDType value = NpyDType::f32; };
template <>
struct NpyDTypeOf<double> { static constexpr NpyDType value = NpyDType::f64; };

// An array to write: `data` points at product(shape) elements of `dtype`, owned elsewhere
// and alive until the writer returns.
struct NpyView {
  std::string name;                 // member name without ".npy"
  NpyDType dtype = NpyDType::u8;
  std::vector<std::int64_t> shape;  // () for a scalar
  const void* data = nullptr;
  std::size_t nbytes = 0;           // must equal product(shape) * npy_itemsize(dtype)
};

// An array read back (or built to be written: see view()).
struct NpyArray {
  std::string name;  // the member name without ".npy"
  NpyDType dtype = NpyDType::u8;
  std::vector<std::int64_t> shape;  // () for a scalar
  std::vector<std::uint8_t> bytes;  // elements in C order, little-endian
  std::int64_t numel() const;       // product(shape); 1 for a scalar
  std::string describe() const;     // "uint8 [16, 32, 32, 3]"
  std::vector<std::int64_t> as_int64() const;  // an integer array's values; IoError for floats
  NpyView view() const;             // valid while this array lives and is not changed
};

// A view of a whole vector, the dtype taken from T: npy_view("arr_1", {N}, labels).
template <typename T>
NpyView npy_view(std::string name, std::vector<std::int64_t> shape, const std::vector<T>& values) {
  return {std::move(name), NpyDTypeOf<T>::value, std::move(shape), values.data(), values.size() * sizeof(T)};
}

// --- writing ------------------------------------------------------------------------------

// The full .npy file bytes for one array (header + data). ValueError when nbytes does not
// match the shape, a dimension is negative, or the dtype is not one of the enum's.
std::string npy_bytes(const NpyView& array);

// The .npz archive bytes for the arrays (names unique, non-empty; ValueError otherwise).
std::string npz_bytes(const std::vector<NpyView>& arrays);

// Writes the archive atomically (engine/io/atomic_file.h).
void write_npz(const std::string& path, const std::vector<NpyView>& arrays);

// --- reading ------------------------------------------------------------------------------

struct NpzFile {
  std::string path;
  std::vector<NpyArray> arrays;  // in archive order
  bool contains(const std::string& name) const;
  // IoError naming the file, the missing array and the arrays present.
  const NpyArray& get(const std::string& name) const;
};

// IoError naming the file for anything that is not a well-formed .npz of the dtypes above.
NpzFile load_npz(const std::string& path);

// Parses one .npy blob (exposed for tests); `what` names it in errors (IoError).
NpyArray parse_npy(const std::vector<std::uint8_t>& blob, const std::string& what);

}  // namespace ddpm
