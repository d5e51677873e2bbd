#include "models/data/loader.h"

#include <numeric>

#include "engine/error.h"
#include "kernels/common/philox.h"

namespace ddpm {

namespace {

// Counter word 3 separates the uses of the (seed, epoch) streams.
constexpr std::uint32_t kShuffleStream = 0, kFlipStream = 1;

// 32 random bits number i of stream (seed, epoch, tag): word i % 4 of block i / 4.
std::uint32_t random_word(std::uint64_t seed, std::int64_t epoch, std::uint32_t tag, std::uint64_t i) {
  const std::uint64_t block = i / 4;
  philox::U32x4 r = philox::philox4x32_10(static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                          static_cast<std::uint32_t>(epoch), tag, static_cast<std::uint32_t>(seed),
                                          static_cast<std::uint32_t>(seed >> 32));
  return r.v[i % 4];
}

}  // namespace

BatchLoader::BatchLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : data_(std::move(dataset)), opt_(options) {
  DDPM_CHECK(data_ != nullptr, "BatchLoader: no dataset");
  data_->validate();
  DDPM_CHECK(opt_.batch_size > 0, "BatchLoader: batch_size must be positive, got " << opt_.batch_size);
  DDPM_CHECK(data_->n > 0, "BatchLoader: dataset '" << data_->name << "' is empty");
  DDPM_CHECK(!opt_.drop_last || opt_.batch_size <= data_->n,
             "BatchLoader: batch_size " << opt_.batch_size << " is larger than dataset '" << data_->name << "' ("
                                        << data_->n << " images), so drop_last would leave no batch");
}

std::int64_t BatchLoader::batches_per_epoch() const {
  const std::int64_t n = data_->n, b = opt_.batch_size;
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<std::int64_t> BatchLoader::epoch_order(std::int64_t epoch) const {
  std::vector<std::int64_t> order(static_cast<std::size_t>(data_->n));
  std::iota(order.begin(), order.end(), 0);
  if (!opt_.shuffle) return order;
  // Fisher-Yates: for i = n-1 .. 1 swap order[i] with order[j], j uniform in [0, i].
  // j = floor(r * (i + 1) / 2^32) for a 32-bit random r (Lemire's multiply-shift; its bias,
  // at most (i + 1) / 2^32, is far below anything a training run could notice).
  for (std::int64_t i = data_->n - 1; i > 0; --i) {
    const std::uint64_t r = random_word(opt_.seed, epoch, kShuffleStream, static_cast<std::uint64_t>(i));
    const auto j = static_cast<std::int64_t>((r * static_cast<std::uint64_t>(i + 1)) >> 32);
    std::swap(order[i], order[j]);
  }
  return order;
}

bool BatchLoader::flip_at(std::int64_t epoch, std::int64_t index) const {
  return opt_.random_flip && (random_word(opt_.seed, epoch, kFlipStream, static_cast<std::uint64_t>(index)) >> 31);
}

void BatchLoader::set_position(const LoaderPosition& pos) {
  const std::int64_t per_epoch = batches_per_epoch() * opt_.batch_size;
  DDPM_CHECK(pos.epoch >= 0 && pos.index >= 0 && pos.index % opt_.batch_size == 0 &&
                 pos.index < std::max<std::int64_t>(per_epoch, 1) && pos.index < data_->n,
             "BatchLoader: position (epoch " << pos.epoch << ", index " << pos.index
                                             << ") is not one this loader can be at (batch size " << opt_.batch_size
                                             << ", " << data_->n << " images)");
  pos_ = pos;
}

Batch first_frame_batch(const Dataset& data, const std::vector<std::int64_t>& indices,
                        const std::vector<std::uint8_t>& flipped, Device device) {
  const auto m = static_cast<std::int64_t>(indices.size());
  DDPM_CHECK(data.is_video() && m >= 1, "first_frame_batch: " << data.describe() << " is not a set of clips, or no "
                                                                 "clip was asked for (" << m << " indices)");
  DDPM_CHECK(flipped.empty() || flipped.size() == indices.size(),
             "first_frame_batch: " << flipped.size() << " flip decisions for " << m << " clips");
  const std::int64_t h = data.height, w = data.width, c = data.channels;
  Batch batch;
  Tensor host = Tensor::empty({m, 1, h, w, c}, DType::f32);  // [M, 1, H, W, C]
  float* out = host.data<float>();
  for (std::int64_t k = 0; k < m; ++k) {
    const std::int64_t i = indices[static_cast<std::size_t>(k)];
    DDPM_CHECK(i >= 0 && i < data.n, "first_frame_batch: clip index " << i << " is outside [0, " << data.n << ")");
    const bool flip = !flipped.empty() && flipped[static_cast<std::size_t>(k)] != 0;
    batch.indices.push_back(i);
    batch.flipped.push_back(flip ? 1 : 0);
    if (data.has_labels()) batch.labels.push_back(data.labels[static_cast<std::size_t>(i)]);
    const std::uint8_t* src = data.image(i);  // frame 0 comes first in a clip's bytes
    float* dst = out + k * h * w * c;
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x) {
        const std::int64_t sx = flip ? w - 1 - x : x;
        for (std::int64_t ch = 0; ch < c; ++ch)
          dst[(y * w + x) * c + ch] = static_cast<float>(src[(y * w + sx) * c + ch] / 127.5 - 1.0);
      }
  }
  batch.images = device.is_cpu() ? host : host.to(device);
  batch.host_images = host;
  return batch;
}

Batch BatchLoader::next() {
  if (order_epoch_ != pos_.epoch) {
    order_ = epoch_order(pos_.epoch);
    order_epoch_ = pos_.epoch;
  }
  const Dataset& ds = *data_;
  const std::int64_t b = std::min(opt_.batch_size, ds.n - pos_.index);
  const std::int64_t f = ds.frames, h = ds.height, w = ds.width, c = ds.channels;
  Batch batch;
  batch.position = pos_;
  // [B, H, W, C] for images; [B, F, H, W, C] for clips (the same bytes, frames contiguous).
  Tensor host = ds.is_video() ? Tensor::empty({b, f, h, w, c}, DType::f32) : Tensor::empty({b, h, w, c}, DType::f32);
  float* out = host.data<float>();
  for (std::int64_t k = 0; k < b; ++k) {
    const std::int64_t src_index = order_[static_cast<std::size_t>(pos_.index + k)];
    const bool flip = flip_at(pos_.epoch, pos_.index + k);
    batch.indices.push_back(src_index);
    batch.flipped.push_back(flip ? 1 : 0);
    if (ds.has_labels()) batch.labels.push_back(ds.labels[static_cast<std::size_t>(src_index)]);
    // One flip decision per sample: all f frames of a clip are mirrored alike.
    for (std::int64_t fr = 0; fr < f; ++fr) {
      const std::uint8_t* src = ds.image(src_index) + fr * h * w * c;
      float* dst = out + (k * f + fr) * h * w * c;
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x) {
          const std::int64_t sx = flip ? w - 1 - x : x;  // horizontal flip mirrors the x axis
          for (std::int64_t ch = 0; ch < c; ++ch)
            dst[(y * w + x) * c + ch] = static_cast<float>(src[(y * w + sx) * c + ch] / 127.5 - 1.0);
        }
    }
  }
  batch.images = opt_.device.is_cpu() ? host : host.to(opt_.device);
  batch.host_images = host;

  // Advance; an epoch ends when the next full (drop_last) or non-empty batch would not fit.
  pos_.index += b;
  const std::int64_t remaining = ds.n - pos_.index;
  if (remaining <= 0 || (opt_.drop_last && remaining < opt_.batch_size)) {
    pos_.epoch += 1;
    pos_.index = 0;
  }
  return batch;
}

}  // namespace ddpm
