// tests/fuzz/fuzz_npz.cpp: load_npz (engine/io/npz.h): the zip central directory, ZIP64
// records, stored and deflated members, CRC-32s, and parse_npy on every member. The first
// byte chooses between the whole archive reader and parse_npy on the rest of the bytes, so
// the .npy header parser is also reached without a valid zip around it.
#include "engine/io/npz.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool bare_npy = (data[0] & 1) != 0;
  ddpm::fuzz::expect_accept_or_refuse([&] {
    if (bare_npy) {
      ddpm::NpyArray a = ddpm::parse_npy(std::vector<std::uint8_t>(data + 1, data + size), "input.npy");
      if (a.bytes.size() != static_cast<std::size_t>(a.numel()) * ddpm::npy_itemsize(a.dtype)) std::abort();
    } else {
      const std::string path = ddpm::fuzz::write_scratch("input.npz", data + 1, size - 1);
      ddpm::NpzFile f = ddpm::load_npz(path);
      for (const ddpm::NpyArray& a : f.arrays)
        if (a.bytes.size() != static_cast<std::size_t>(a.numel()) * ddpm::npy_itemsize(a.dtype)) std::abort();
    }
  });
  return 0;
}
