// models/eval/npz.h: a minimal reader of NumPy .npz archives (what numpy.savez and
// numpy.savez_compressed write), for generated samples and their labels.
//
// An .npz is a zip archive with one "<name>.npy" member per array. The reader walks the
// zip's central directory (PKWARE APPNOTE 4.3.12; ZIP64 records 4.3.14-4.3.15 and extra
// field 0x0001, which numpy always writes), accepts stored (method 0) and deflated (method
// 8, via zlib) members, and checks each member's CRC-32. A .npy member is
//   "\x93NUMPY" major minor, header length (2 bytes in v1, 4 in v2/v3, little-endian),
//   a Python dict literal {'descr': '<i8', 'fortran_order': False, 'shape': (N, H, W, C), }
//   then the elements in C order.
// Supported dtypes: uint8 ('|u1'), int64 ('<i8'), float32 ('<f4'), float64 ('<f8').
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ddpm::eval {

enum class NpyDType { u8, i64, f32, f64 };

struct NpyArray {
  std::string name;  // the member name without ".npy"
  NpyDType dtype = NpyDType::u8;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;  // elements in C order, little-endian
  std::int64_t numel() const;
  std::string describe() const;              // "uint8 [16, 32, 32, 3]"
  std::vector<std::int64_t> as_int64() const;  // an integer array's values
};

struct NpzFile {
  std::string path;
  std::vector<NpyArray> arrays;  // in archive order
  bool contains(const std::string& name) const;
  // IoError naming the file, the missing array and the arrays present.
  const NpyArray& get(const std::string& name) const;
};

// IoError naming the file for anything that is not a well-formed .npz of the dtypes above.
NpzFile load_npz(const std::string& path);
// Parses one .npy blob (exposed for tests); `what` names it in errors.
NpyArray parse_npy(const std::vector<std::uint8_t>& blob, const std::string& what);

}  // namespace ddpm::eval
