// engine/io/safetensors.h: reading and writing .safetensors files (the checkpoint format).
//
// Layout of a file (https://github.com/huggingface/safetensors, "Format"):
//   bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
//   bytes [8, 8 + N)    the header: a UTF-8 JSON object
//                         { "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                           ...,
//                           "__metadata__": {"<key>": "<string value>", ...} }
//                       (may be padded at the end with spaces; we pad to a multiple of 8 so
//                       the data buffer starts 8-byte aligned)
//   bytes [8 + N, end)  the data buffer. Offsets are relative to its start; the tensors tile
//                       it exactly: sorted by begin, each begins where the previous ended,
//                       the first at 0 and the last at the end of the file. Each tensor's
//                       bytes are its elements in row-major order, little-endian.
//
// Our files also carry "ddpm.crc32" in __metadata__: the zlib CRC-32 of the whole data
// buffer as 8 lowercase hex digits, checked on load so a flipped bit is an error instead of
// a silently wrong model. Files without it (written by PyTorch) load without the check.
//
// Files written here load with safetensors.torch.load_file in Python, and vice versa for
// the dtypes this engine has (F32, F64, F16, BF16).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace ddpm {

// The metadata key holding the CRC-32 of the data buffer.
inline constexpr const char* kSafetensorsCrcKey = "ddpm.crc32";

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  // CPU tensors in the order of their data in the file.
  std::vector<std::pair<std::string, Tensor>> tensors;

  // The tensor called `name`; IoError naming the file and the missing name when absent.
  const Tensor& get(const std::string& name) const;
  bool contains(const std::string& name) const;
  std::string path;  // where it was loaded from (for messages)
};

// Writes `tensors` (any device: CUDA tensors are copied to the host first) with `metadata`
// to `path` atomically (engine/io/atomic_file.h), adding (or replacing) the "ddpm.crc32"
// entry. Names must be unique, non-empty, valid UTF-8 and not "__metadata__" (ValueError
// otherwise); nothing is written unless every tensor could be copied.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a file, checking every rule of the format above (each violation is an IoError that
// names the file, what was expected and what was found) and the CRC-32 when present.
// F32 and F64 load as such; F16 and BF16 load as raw tensors of that dtype.
SafetensorsFile load_safetensors(const std::string& path);
// The "__metadata__" alone, from the header (its rules checked as above); the tensors and
// the data are not read, so the CRC is not checked. For listing many files cheaply.
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);

// Encodes a header object (already containing every entry) as safetensors bytes: the
// 8-byte length, the JSON padded with spaces to a multiple of 8. Exposed for tests that
// build malformed files.
std::string safetensors_header_bytes(const std::string& json_text);

}  // namespace ddpm
