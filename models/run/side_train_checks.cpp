// models/run/side_train_checks.cpp: see side_train_checks.h.
#include "models/run/side_train_checks.h"

#include <cmath>
#include <filesystem>
#include <system_error>

#include "engine/error.h"

namespace ddpm::run {

namespace fs = std::filesystem;

void check_out_may_be_written(const std::string& out, bool overwrite) {
  std::error_code ec;
  DDPM_CHECK(overwrite || !fs::exists(out, ec) || (fs::is_directory(out, ec) && fs::is_empty(out, ec)),
             "--out " << out << " exists; pass --overwrite to replace it");
}

void check_steps_batch_lr(std::int64_t steps, std::int64_t batch_size, double lr) {
  DDPM_CHECK(steps >= 1, "--steps must be positive, got " << steps);
  DDPM_CHECK(batch_size >= 1, "--batch-size must be positive, got " << batch_size);
  DDPM_CHECK(lr > 0 && std::isfinite(lr), "--lr must be positive, got " << lr);
}

}  // namespace ddpm::run
