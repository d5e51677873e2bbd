// models/eval/fvd.h: the Frechet Video Distance modes of ddpm-eval, train-video-classifier and
// fvd, on the features of the home-made video network (models/eval/video_classifier.h).
//
//   FVD (Unterthiner et al. 2018) = FID's Frechet distance (metrics.h frechet_distance, Heusel
//   et al. 2017 eq. 6) between Gaussians fitted to the features of real and generated clips:
//     FVD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})
//   KVD is the kernel analogue, as KID is FID's: metrics.h's KID (Binkowski et al. 2018), the
//   unbiased MMD^2 with the cubic polynomial kernel, on the same features.
// Both come from compare_features (eval_run.h), the code FID uses: nothing is computed twice.
// The features are not I3D's, so the numbers are comparable only between runs scored with the
// same video classifier folder, never with published FVD.
//
// Real clips: the moving-* datasets have no test split of their own, so ddpm-eval builds one
// from the source's split (load_eval_clips): moving-fashion-mnist's "test" clips move
// Fashion-MNIST's test images, moving-toy's move the toy set's test shapes (ddpm-eval's toy
// split, seed 2). The trajectories of split s are drawn with clip seed 2 * seed + (s == test),
// so the two splits share neither images nor paths.
//
// fvd prints three lines against the reference (the --split clips):
//   samples               the generated clips
//   real (other split)    as many clips of the other split: the floor, what two disjoint real
//                         sets score (FID's real-vs-real line)
//   shuffled real         the same floor clips with each clip's frames permuted: every frame
//                         real, the order not. It must score clearly worse than the floor, or
//                         the features do not see temporal order.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "engine/device.h"
#include "models/eval/eval_run.h"
#include "models/eval/video_classifier.h"
#include "models/run/data_spec.h"

namespace ddpm::eval {

// The clip flags, as ddpm-train's (run::DataOptions').
struct EvalClipOptions {
  int frames = run::DataOptions{}.frames, canvas = run::DataOptions{}.canvas;
  int item_size = run::DataOptions{}.item_size, moving_items = run::DataOptions{}.moving_items;
};

// count clips (0: one per source image of the split) of the `split` ("train" or "test") of a
// moving-* --data (see above), with their direction labels. ValueError naming --data when it
// holds still images; make_moving_clips' ValueError for bad clip options.
LabelledClips load_eval_clips(const std::string& data, const std::string& split, const EvalClipOptions& o,
                              std::int64_t count, std::uint64_t seed);

// Each clip's frames in a random order (std::mt19937_64 seeded with `seed`, one draw per clip),
// never the identity and, for F >= 3, never the reversal (a reversed moving-* clip is a real
// clip moving the other way). Labels and captions are kept. ValueError for F < 2.
Dataset permute_clip_frames(const Dataset& clips, std::uint64_t seed);

struct TrainVideoClassifierArgs {
  std::string data = "moving-fashion-mnist", out;
  EvalClipOptions clips;
  int base_channels = 16, frame_dim = 64, temporal_dim = 64, feature_dim = 128;
  int epochs = 2;
  std::int64_t batch_size = 32;
  double lr = 2e-3, weight_decay = 1e-4;
  std::int64_t limit = 10000;      // training clips (0: one per training image)
  std::int64_t test_limit = 1000;  // test clips (0: one per test image)
  std::int64_t max_steps = 0;      // > 0: stop early (tests)
  bool overwrite = false;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};
struct TrainVideoClassifierResult {
  VideoAccuracy test;
  double seconds = 0;
  std::vector<double> losses;
};
// Trains the video classifier on the train split's clips, measures it on the test split's and
// publishes the folder --out (written beside it as OUT.partial, then renamed: a failed run
// leaves no half folder). Refused before any work (ValueError): an existing non-empty --out
// without overwrite, a still-image --data, a --canvas that is not a multiple of 8.
TrainVideoClassifierResult run_train_video_classifier(const TrainVideoClassifierArgs& a, std::ostream& out);

// data empty: the classifier's own dataset. The real clips take the classifier's clip options.
struct FvdArgs {
  std::string classifier, samples, data, split = "test";
  std::int64_t limit = 0;  // > 0: the first `limit` sample clips only
  std::int64_t batch_size = 64;
  int kid_subsets = 10;
  std::int64_t kid_subset_size = 1000;
  int k = 3;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};
struct FvdResult {
  QualityLine samples, real_vs_real, shuffled;  // fid holds the FVD, kid the KVD
};
// Refused (ValueError naming the flag and both shapes, before any feature is computed):
// samples whose clips are not the classifier's F x H x W x C, a still-image --data, fewer
// than k + 1 sample clips.
FvdResult run_fvd(const FvdArgs& a, std::ostream& out);

}  // namespace ddpm::eval
