// engine/ops/reduce.h: sums and means over axes, with autograd.
//
// Backward of a sum repeats the gradient over the reduced axes (expand_to); a mean also
// divides by the number of reduced elements.
#pragma once

#include <vector>

#include "engine/tensor.h"

namespace ddpm {

// Sum over `axes` (negative axes count from the end). keepdim keeps them as size 1.
Tensor sum(const Tensor& x, const std::vector<int>& axes, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int>& axes, bool keepdim = false);
// Over every element: a tensor of shape {}.
Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x);

// Sums g over the axes along which `shape` was broadcast to g's shape, giving `shape`.
// The inverse of expand_to for gradients.
Tensor sum_to(const Tensor& g, const Shape& shape);

// mean((pred - target)^2) over every element: the L_simple loss of DDPM.
Tensor mse_loss(const Tensor& pred, const Tensor& target);

}  // namespace ddpm
