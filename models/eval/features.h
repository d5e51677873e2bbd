// models/eval/features.h: images -> the classifier's feature vectors, and the sample sets
// the metrics compare.
//
// Every image set is a uint8 NHWC Dataset (models/data/dataset.h): real splits, generated
// samples read from .npz (engine/io/npz.h) or from a folder of PNGs. Before the
// classifier sees a set, `conform` brings it to the classifier's input size the way the
// diffusion models see the data: images smaller than the classifier's input are centred on
// a zero canvas (pad_to, like 28x28 Fashion-MNIST -> 32x32); larger ones, or a channel
// mismatch, are a ValueError.
#pragma once

#include <cstdint>
#include <string>

#include "models/data/dataset.h"
#include "models/eval/classifier.h"
#include "models/eval/metrics.h"

namespace ddpm::eval {

// ds brought to the classifier's H x W x C (see above); `what` names the set in errors.
Dataset conform(const Dataset& ds, const ClassifierConfig& cfg, const std::string& what);

// The penultimate features [n, feature_dim] of every image of ds (conformed first),
// batch by batch without a tape, as doubles.
FeatureMatrix extract_features(const Classifier& cls, const Dataset& ds, std::int64_t batch_size = 256);

// Generated samples: a .npz file (arrays "images" uint8 [N, H, W, C] and optionally
// "labels" int64 [N], or the same as numpy.savez's arr_0 and arr_1, as ddpm-sample writes
// them) or a folder of PNGs (models/data/image_folder.h; class sub-folders
// give labels). IoError naming the path otherwise.
Dataset load_samples(const std::string& path);

}  // namespace ddpm::eval
