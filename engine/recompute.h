// engine/recompute.h: activation checkpointing, trading compute for memory.
//
// Backpropagation keeps every intermediate the backward needs until the backward reaches
// it, so a network's training memory grows with its depth times its activation size. Chen
// et al. 2016 ("Training deep nets with sublinear memory cost") keep only the inputs of
// chosen segments and recompute each segment's forward when its gradient is needed: a
// UNet's residual and attention blocks each hold 4-6 activations of their size, and with
// recomputation they hold one (their input). The price is one extra forward of those
// blocks per step (about a third more compute). ADM's `use_checkpoint` and diffusers'
// `enable_gradient_checkpointing()` do the same.
//
// recompute(name, fn, inputs, params_need_grad, gen):
//   forward   out = fn(inputs, gen) in no-grad mode, so nothing inside fn is recorded or
//             kept; one node `name` is recorded on the tape with `inputs` as its inputs;
//   backward  with grad mode on, rerun fn on detached copies of the inputs, with a
//             generator restored to the state the forward started from (so dropout draws
//             the same masks), then backpropagate the incoming gradient through that
//             recomputed graph. Parameters used inside fn are leaves of it: their
//             gradients accumulate straight into their .grad (the slab), as without
//             recomputation. The node returns the inputs' gradients.
// The gradients are therefore those without recomputation: within a segment bit for bit
// when fn is deterministic (it is on the CPU, and on CUDA with the deterministic cuDNN
// algorithms this engine picks). Across segments, a tensor with several consumers sums its
// gradient's parts in the order the tape delivers them, which changes with the tape's
// shape, so those sums may differ in the last bits (float addition is not associative).
// The generator ends where fn left it in the forward.
//
// params_need_grad: true when fn uses a parameter that requires a gradient. The node is
// recorded when it is true or any input requires grad (a block whose input is data but
// whose weights train still needs its backward to run).
//
// fn must be a pure function of its inputs, the parameters and the generator: it is called
// twice, and must outlive the backward (capture modules by pointer).
#pragma once

#include <functional>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace ddpm {

using RecomputeFn = std::function<Tensor(const std::vector<Tensor>& inputs, Generator* gen)>;

Tensor recompute(const char* name, RecomputeFn fn, const std::vector<Tensor>& inputs, bool params_need_grad,
                 Generator* gen);

}  // namespace ddpm
