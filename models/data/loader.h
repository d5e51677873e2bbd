// models/data/loader.h: batches of a Dataset for training, reproducible and resumable.
//
// Each epoch visits the images in an order that is a pure function of (seed, epoch): a
// Fisher-Yates shuffle driven by Philox4x32-10 (kernels/common/philox.h) with the key =
// seed and counter = (step, 0, epoch, 0). The optional horizontal flip of the sample at
// position p of an epoch is likewise a function of (seed, epoch, p) (counter word 3 = 1).
// The loader's whole state is therefore its position (epoch, index in epoch): saving it in
// a checkpoint and restoring it makes a resumed run see exactly the batches an
// uninterrupted run would have seen.
//
// A batch is
//   images  f32 [B, H, W, C] on the requested device, x = v / 127.5 - 1 in [-1, 1]
//           (f32 [B, F, H, W, C] for a video dataset, frames F > 1: B clips)
//   labels  int64 class indices [B] (empty for an unlabelled dataset), one per clip
// A flip is decided once per sample, so every frame of a clip is mirrored together (a clip
// never changes direction half-way through).
// With drop_last, an epoch yields floor(N / B) full batches; without it the last batch of
// an epoch holds the N mod B remaining images. Batches never span two epochs.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/tensor.h"
#include "models/data/dataset.h"

namespace ddpm {

struct LoaderOptions {
  std::int64_t batch_size = 64;
  std::uint64_t seed = 0;
  bool shuffle = true;
  bool random_flip = false;  // flip each image (each clip, all its frames) left-right with probability 1/2
  bool drop_last = true;
  Device device = Device::cpu();
};

// Where the loader is: the next batch starts at sample `index` of epoch `epoch`'s order.
struct LoaderPosition {
  std::int64_t epoch = 0;
  std::int64_t index = 0;
  bool operator==(const LoaderPosition& o) const { return epoch == o.epoch && index == o.index; }
};

struct Batch {
  Tensor images;                        // f32 [B, H, W, C] in [-1, 1]; [B, F, H, W, C] for clips
  Tensor host_images;                   // the same values on the CPU (images itself on a CPU loader)
  std::vector<std::int64_t> labels;     // [B] or empty
  std::vector<std::int64_t> indices;    // [B] dataset indices of the samples
  std::vector<std::uint8_t> flipped;    // [B] 1 where the image (all frames of the clip) was flipped
  LoaderPosition position;              // where this batch started
};

// The first frames of the clips `indices` of a video dataset as one-frame clips
// [M, 1, H, W, C] f32 in [-1, 1] on `device`, frame i mirrored left-right where
// flipped[i] != 0 (flipped is empty or holds M entries), with their labels (empty for an
// unlabelled dataset), indices and flips; position is unused. The still images of joint
// image-video training (models/train/trainer.h). ValueError for an image dataset, an index
// out of range or a flip list of another length.
Batch first_frame_batch(const Dataset& data, const std::vector<std::int64_t>& indices,
                        const std::vector<std::uint8_t>& flipped, Device device);

class BatchLoader {
 public:
  // ValueError when the batch size is not positive, or when drop_last leaves no batch.
  BatchLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);

  // The next batch; moves on to the next epoch after the last batch of one.
  Batch next();

  LoaderPosition position() const { return pos_; }
  // Resumes from a saved position (ValueError when it cannot be one this loader produced).
  void set_position(const LoaderPosition& pos);

  std::int64_t batches_per_epoch() const;
  const Dataset& dataset() const { return *data_; }
  const LoaderOptions& options() const { return opt_; }

  // The order in which epoch `epoch` visits the dataset (identity without shuffle).
  std::vector<std::int64_t> epoch_order(std::int64_t epoch) const;
  // Whether the sample at position `index` of epoch `epoch` is flipped.
  bool flip_at(std::int64_t epoch, std::int64_t index) const;

 private:
  std::shared_ptr<const Dataset> data_;
  LoaderOptions opt_;
  LoaderPosition pos_;
  std::int64_t order_epoch_ = -1;       // the epoch whose order is cached
  std::vector<std::int64_t> order_;
};

}  // namespace ddpm
