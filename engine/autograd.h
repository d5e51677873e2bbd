// engine/autograd.h: the tape.
//
// Every differentiable op, when grad mode is on and some input requires a gradient, makes
// one Node: the inputs it read (the edges of the graph) and a backward function written
// in the op's own file, right beside its forward. A node has exactly one output; ops with
// several outputs (split) are several nodes.
//
// backward(root):
//   1. walk the graph from root.grad_fn with an explicit stack (no recursion) and count,
//      for every node, how many consumers will send it a gradient;
//   2. run nodes in topological order (a node runs once all its consumers have run),
//      summing incoming gradients per node;
//   3. at leaves that require grad, accumulate: leaf.grad += g. Parameters in a slab have
//      their .grad pre-bound to a view of the gradient slab, so accumulation lands there.
// Backward functions run with grad mode off (no higher-order gradients).
//
// Saved tensors: a backward function captures what it needs by value; capture detached
// handles (x.detach()) so no node ever owns its own output, which would form a cycle.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace ddpm {

// grads[i] is the gradient for inputs[i]; it may stay undefined when need[i] is false.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output, const std::vector<bool>& need)>;

struct Node {
  const char* name = "";
  // The input tensors' impls (nullptr where the input does not require grad).
  std::vector<std::shared_ptr<TensorImpl>> inputs;
  BackwardFn backward;

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Releases the graph behind this node iteratively: the default destructor would recurse
  // once per node of a long chain and overflow the stack.
  ~Node();
};

bool grad_enabled();

// While alive, ops record nothing (sampling, evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// While alive, ops record again, whatever guard is around it: for a gradient taken inside a
// no-grad region (classifier guidance differentiates a classifier in the middle of sampling).
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

// True when `out` should get a node: grad mode on and some input requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Attaches a node to `out` (marks it requires_grad) if grad mode is on and any input
// requires grad; otherwise does nothing. Ops call it after computing the forward.
void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward);
// Attaches the node whatever the inputs (grad mode must be on): for a node whose backward
// has effects beyond its inputs' gradients (engine/recompute.h accumulates parameter
// gradients inside it), so it must run even when no input requires grad.
void record_always(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward);

// Runs backward from root with the given output gradient (same shape as root).
void run_backward(const Tensor& root, const Tensor& grad_root);

}  // namespace ddpm
