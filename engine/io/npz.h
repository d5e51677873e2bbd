// engine/io/npz.h: writing NumPy .npy arrays and .npz archives (numpy.load reads them).
//
// .npy (format version 1.0, numpy's NEP 1):
//   bytes [0, 6)   magic "\x93NUMPY"
//   bytes [6, 8)   version 1, 0
//   bytes [8, 10)  header length L, unsigned 16-bit little-endian
//   bytes [10, 10 + L)  an ASCII Python dict literal
//                    {'descr': '|u1', 'fortran_order': False, 'shape': (N, H, W, C), }
//                  padded with spaces and ended by '\n' so that 10 + L is a multiple of 64
//                  (the data then starts aligned, as numpy itself writes it)
//   then the elements in C (row-major) order.
// descr is numpy's dtype string: '|u1' for uint8 (byte order does not apply to one byte,
// which is what numpy writes; it also reads '<u1'), '<i8' int64, '<f4' float32, '<f8' float64.
//
// .npz: a zip archive of "<name>.npy" members, written here "stored" (no compression, as
// numpy.savez does), each with its CRC-32 (zlib) in the local header and in the central
// directory; no zip64, so each member and the archive must stay under 4 GiB (an IoError
// otherwise). Timestamps are fixed (1980-01-01 00:00) so equal arrays give equal bytes.
// Images from the samplers are saved like improved-diffusion's samples: "arr_0" uint8
// [N, H, W, C] and, for class-conditional models, "arr_1" int64 [N] labels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// One array to store: `data` points at shape-product elements of the dtype named by descr.
struct NpyArray {
  std::string name;                 // member name without ".npy"
  std::string descr;                // '|u1', '<u1', '<i8', '<f4' or '<f8'
  std::vector<std::int64_t> shape;  // () for a scalar
  const void* data = nullptr;
  std::size_t nbytes = 0;           // must equal product(shape) * itemsize(descr)
};

// Bytes per element for a supported descr; ValueError otherwise.
std::size_t npy_itemsize(const std::string& descr);

// The full .npy file bytes for one array (header + data). ValueError when nbytes does not
// match the shape, a dimension is negative, or the descr is not supported.
std::string npy_bytes(const NpyArray& array);

// The .npz archive bytes for the arrays (names unique, non-empty).
std::string npz_bytes(const std::vector<NpyArray>& arrays);

// Writes the archive atomically (engine/io/atomic_file.h).
void write_npz(const std::string& path, const std::vector<NpyArray>& arrays);

}  // namespace ddpm
