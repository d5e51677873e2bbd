// tests/fuzz/fuzz_cifar.cpp: load_cifar10 (models/data/cifar10.h): the folder layout and the
// 3073-byte records of a batch file. The bytes become test_batch.bin of a folder, so the
// production path (file lookup, size check, label range, CHW -> HWC) runs whole.
#include "models/data/cifar10.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ddpm::fuzz::write_scratch("test_batch.bin", data, size);
  ddpm::fuzz::expect_accept_or_refuse([&] {
    ddpm::Dataset ds = ddpm::load_cifar10(ddpm::fuzz::scratch_dir(), "test");
    (void)ds;
  });
  return 0;
}
