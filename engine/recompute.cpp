#include "engine/recompute.h"

#include <utility>

#include "engine/autograd.h"
#include "engine/error.h"

namespace ddpm {

Tensor recompute(const char* name, RecomputeFn fn, const std::vector<Tensor>& inputs, bool params_need_grad,
                 Generator* gen) {
  if (!grad_enabled() || (!params_need_grad && !any_requires_grad(inputs))) return fn(inputs, gen);

  // The generator's state before fn draws anything: the backward replays from here.
  const std::uint64_t seed = gen ? gen->seed() : 0, offset = gen ? gen->offset() : 0;
  Tensor out;
  {
    NoGradGuard no_grad;  // nothing inside fn is recorded, so its intermediates die here
    out = fn(inputs, gen);
  }
  // The node keeps the inputs (detached: no node owns a tensor that leads back to it).
  std::vector<Tensor> saved;
  saved.reserve(inputs.size());
  for (const Tensor& x : inputs) saved.push_back(x.defined() ? x.detach() : Tensor());
  const bool has_gen = gen != nullptr;

  record_always(out, name, inputs,
                [fn = std::move(fn), saved, has_gen, seed, offset, name](const Tensor& g, const std::vector<bool>& need) {
                  // Fresh leaves over the same bytes: the recomputed graph's inputs.
                  std::vector<Tensor> leaves;
                  leaves.reserve(saved.size());
                  for (std::size_t i = 0; i < saved.size(); ++i) {
                    leaves.push_back(saved[i].defined() ? saved[i].detach() : Tensor());
                    if (need[i]) leaves.back().set_requires_grad(true);
                  }
                  Generator replay(seed, offset);
                  EnableGradGuard grad_on;
                  const Tensor again = fn(leaves, has_gen ? &replay : nullptr);
                  DDPM_CHECK(again.shape() == g.shape(), "recompute(" << name << "): the recomputed output has shape "
                                                                      << shape_str(again.shape())
                                                                      << ", the forward's had "
                                                                      << shape_str(g.shape()));
                  // A recomputation that records nothing (every parameter frozen, no input
                  // needing grad) has no gradient to pass on.
                  if (again.requires_grad()) run_backward(again, g);
                  std::vector<Tensor> grads(saved.size());
                  for (std::size_t i = 0; i < saved.size(); ++i) {
                    if (!need[i]) continue;
                    grads[i] = leaves[i].grad();
                    // An input fn did not use gets a zero gradient.
                    if (!grads[i].defined()) grads[i] = Tensor::zeros(saved[i].shape(), saved[i].dtype(), saved[i].device());
                  }
                  return grads;
                });
  return out;
}

}  // namespace ddpm
