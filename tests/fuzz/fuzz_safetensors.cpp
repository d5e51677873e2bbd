// tests/fuzz/fuzz_safetensors.cpp: load_safetensors (engine/io/safetensors.h), the checkpoint
// reader: the 8-byte header length, the JSON header, data offsets, dtypes, the CRC-32.
#include "engine/io/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = ddpm::fuzz::write_scratch("input.safetensors", data, size);
  ddpm::fuzz::expect_accept_or_refuse([&] {
    ddpm::SafetensorsFile f = ddpm::load_safetensors(path);
    for (const auto& [name, t] : f.tensors) (void)t.numel();
  });
  return 0;
}
