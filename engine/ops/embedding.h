// engine/ops/embedding.h: the UNet's conditioning inputs: the sinusoidal timestep
// embedding (no parameters, no gradient) and the class-label embedding table.
//
// Timestep embedding, t [N] -> [N, dim], half = dim / 2, i in [0, half):
//   freq_i = exp(-ln(max_period) * i / D)   arg = t * freq_i
//   ddpm:     D = half - 1, columns [sin(arg) | cos(arg)]   (Ho et al. 2020, original code)
//   improved: D = half,     columns [cos(arg) | sin(arg)]   (Nichol & Dhariwal 2021, and
//             guided diffusion)
// An odd dim gets a zero last column. A network trained with one style and run with the
// other gets wrong embeddings and no error, so the style is a config field of the model.
//
// diffusers' Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift) uses
// D = half - downscale_freq_shift and order [sin | cos], swapped to [cos | sin] by
// flip_sin_to_cos. Hence, when importing diffusers weights:
//   flip_sin_to_cos = false, downscale_freq_shift = 1  ==  TimestepEmbeddingStyle::ddpm
//   flip_sin_to_cos = true,  downscale_freq_shift = 0  ==  TimestepEmbeddingStyle::improved
// (UNet2DModel's defaults, flip_sin_to_cos = true and freq_shift = 0, are the improved
// style.) Other combinations are not representable and must be rejected by the importer.
//
// t holds float timesteps (respaced samplers pass non-integer values; the network always
// sees the original timestep scale). Arguments and sines are computed in double on both
// devices, then rounded to the output dtype (PyTorch implementations compute the argument
// in float32; the difference is below 1e-4 in the argument at t = 1000).
//
// Class embedding: table [num_classes, dim] is a parameter; ids are host integers (labels
// come from the data loader on the host, and their range is checked there with a clear
// error). out[i, :] = table[ids[i], :]; backward scatter-adds: dL/dtable[r] = sum over i
// with ids[i] == r of g[i] (repeated ids accumulate).
// On CUDA each call copies the ids from host memory (pageable) to the device; such a copy
// cannot be captured in a CUDA graph, so a captured sampling step should look up the class
// embedding once, before capture (the labels are fixed across steps).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ddpm {

enum class TimestepEmbeddingStyle {
  ddpm,     // frequencies over half-1, columns [sin, cos]
  improved  // frequencies over half, columns [cos, sin]
};

// "ddpm" or "improved"; anything else is a ValueError listing the accepted names.
TimestepEmbeddingStyle parse_timestep_embedding_style(const std::string& name);
const char* timestep_embedding_style_name(TimestepEmbeddingStyle style);

// t [N] (f32, or f64 on the CPU) -> [N, dim] of t's dtype. Never recorded on the tape.
// dim >= 2 for improved, dim >= 4 for ddpm (its denominator half - 1 must be positive).
Tensor timestep_embedding(const Tensor& t, int dim, TimestepEmbeddingStyle style, double max_period = 10000);

// table [num_classes, dim], ids in [0, num_classes) -> [ids.size(), dim].
Tensor embedding(const Tensor& table, const std::vector<std::int64_t>& ids);

}  // namespace ddpm
