// engine/ops/concat.h: joining and cutting tensors along one axis (negative axes count
// from the end). Tensors are always contiguous, so all three copy.
//
//   concat(xs, axis): sizes along `axis` add up; every other dimension must match.
//                     The UNet joins skip connections along channels: concat({h, skip}, -1).
//                     backward: input k gets slice(g, axis, offset_k, size_k).
//   slice(x, axis, start, length): elements [start, start + length) of `axis`.
//                     backward: zeros of x's shape with g copied into that range.
//   split(x, sizes, axis): consecutive slices whose sizes add up to x's size along axis;
//                     each output is its own slice node on the tape.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace ddpm {

Tensor concat(const std::vector<Tensor>& xs, int axis);
Tensor slice(const Tensor& x, int axis, std::int64_t start, std::int64_t length);
std::vector<Tensor> split(const Tensor& x, const std::vector<std::int64_t>& sizes, int axis);

}  // namespace ddpm
