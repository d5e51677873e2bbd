// models/train/adamw_loop.cpp: the side networks' training step and log window (see
// adamw_loop.h).
#include "models/train/adamw_loop.h"

#include <algorithm>
#include <utility>

#include "engine/error.h"

namespace ddpm::train {
namespace {

LoaderOptions loader_options(std::int64_t batch_size, std::int64_t n, std::uint64_t seed, Device device) {
  LoaderOptions lo;
  lo.batch_size = std::min(batch_size, n);
  lo.seed = seed;
  lo.device = device;  // no flips: none of these networks trains with them
  return lo;
}

}  // namespace

AdamWLoop::AdamWLoop(const NamedTensors& params, const AdamWConfig& adamw, std::shared_ptr<const Dataset> data,
                     std::int64_t batch_size, std::uint64_t seed, Device device)
    : slab_(params),
      opt_(slab_, adamw),
      loader_(data, loader_options(batch_size, data->n, seed, device)) {}

double AdamWLoop::step(const Tensor& loss, double lr) {
  slab_.zero_grad();
  loss.backward();
  opt_.set_lr(lr);
  opt_.step();
  return loss.item();
}

LossWindow::LossWindow(std::int64_t total_steps, std::int64_t every)
    : total_(total_steps), every_(every), t0_(std::chrono::steady_clock::now()) {}

bool LossWindow::add(std::int64_t step, std::initializer_list<double> values) {
  if (closed_ || sums_.size() != values.size()) {
    sums_.assign(values.size(), 0.0);
    count_ = 0;
    closed_ = false;
  }
  std::size_t i = 0;
  for (double v : values) sums_[i++] += v;
  ++count_;
  closed_ = every_ > 0 && ((step + 1) % every_ == 0 || step + 1 == total_);
  return closed_;
}

double LossWindow::mean(std::size_t i) const {
  DDPM_CHECK(i < sums_.size() && count_ > 0, "LossWindow: no value " << i << " in the window");
  return sums_[i] / static_cast<double>(count_);
}

double LossWindow::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

}  // namespace ddpm::train
