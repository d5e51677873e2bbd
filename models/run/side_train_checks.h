// models/run/side_train_checks.h: the first checks of the side networks' training commands
// (ddpm-classifier train, ddpm-autoencoder train and finetune-temporal), in one place so their
// messages stay the same. ValueError (exit 2) naming the flag and the value.
#pragma once

#include <cstdint>
#include <string>

namespace ddpm::run {

// --out OUT may be published: it does not exist, is an empty folder, or overwrite is set.
void check_out_may_be_written(const std::string& out, bool overwrite);

// --steps and --batch-size at least 1, --lr positive and finite.
void check_steps_batch_lr(std::int64_t steps, std::int64_t batch_size, double lr);

}  // namespace ddpm::run
