// engine/io/sha256.h: the SHA-256 digest (FIPS 180-4) of bytes and of files, as 64 lowercase
// hex digits, the form `sha256sum` prints. Fine-tune and LoRA runs record the digests of the
// weight files they start from (models/run/finetune.h) and check them on every reopen, so a
// base file replaced under a run is noticed instead of silently used.
#pragma once

#include <string>

namespace ddpm {

std::string sha256_hex(const std::string& bytes);
// IoError naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace ddpm
