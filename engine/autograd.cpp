#include "engine/autograd.h"

#include <unordered_map>

#include "engine/error.h"
#include "engine/ops/elementwise.h"

namespace ddpm {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }

Node::~Node() {
  // Take ownership of every input whose last reference is ours and unlink its node's
  // inputs before it dies, so each destructor only ever frees one level.
  std::vector<std::shared_ptr<TensorImpl>> stack = std::move(inputs);
  while (!stack.empty()) {
    std::shared_ptr<TensorImpl> impl = std::move(stack.back());
    stack.pop_back();
    if (!impl || impl.use_count() != 1 || !impl->grad_fn || impl->grad_fn.use_count() != 1) continue;
    for (auto& in : impl->grad_fn->inputs) stack.push_back(std::move(in));
    impl->grad_fn->inputs.clear();
  }
}
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { g_grad_enabled = previous_; }

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward) {
  if (!any_requires_grad(inputs)) return;
  record_always(out, name, inputs, std::move(backward));
}

void record_always(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward) {
  DDPM_CHECK(g_grad_enabled, "record_always(" << name << "): grad mode is off");
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs.reserve(inputs.size());
  for (const Tensor& t : inputs)
    node->inputs.push_back(t.defined() && t.requires_grad() ? t.impl() : nullptr);
  node->backward = std::move(backward);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

namespace {

// Adds g into the leaf's accumulated gradient (allocating it on first use).
void accumulate_leaf(TensorImpl& leaf, const Tensor& g) {
  DDPM_CHECK(g.shape() == leaf.shape,
             "backward: gradient of shape " << shape_str(g.shape()) << " reached a leaf of shape "
                                            << shape_str(leaf.shape));
  if (!leaf.grad) {
    leaf.grad = g.clone().impl();
  } else {
    Tensor acc(leaf.grad);
    add_(acc, g);
  }
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_root) {
  DDPM_CHECK(root.requires_grad(), "backward: the tensor does not require grad (nothing on the tape leads to it)");
  DDPM_CHECK(grad_root.shape() == root.shape(), "backward: gradient shape " << shape_str(grad_root.shape())
                                                                            << " differs from the tensor's "
                                                                            << shape_str(root.shape()));
  NoGradGuard no_grad;
  if (!root.impl()->grad_fn) {  // backward on a leaf
    accumulate_leaf(*root.impl(), grad_root);
    return;
  }

  // 1. Count consumers of every node reachable from the root (iterative DFS).
  std::unordered_map<Node*, int> pending;
  std::vector<Node*> stack{root.impl()->grad_fn.get()};
  pending[stack.back()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& in : n->inputs) {
      if (!in || !in->grad_fn) continue;
      Node* child = in->grad_fn.get();
      auto it = pending.find(child);
      if (it == pending.end()) {
        pending[child] = 1;
        stack.push_back(child);
      } else {
        ++it->second;
      }
    }
  }

  // 2. Kahn's order: a node runs once every consumer has delivered its gradient.
  std::unordered_map<Node*, Tensor> grads;
  grads[root.impl()->grad_fn.get()] = grad_root;
  std::vector<Node*> ready{root.impl()->grad_fn.get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor g = std::move(grads[n]);
    grads.erase(n);
    std::vector<bool> need(n->inputs.size());
    for (std::size_t i = 0; i < n->inputs.size(); ++i) need[i] = n->inputs[i] != nullptr;
    std::vector<Tensor> in_grads = n->backward(g, need);
    DDPM_CHECK(in_grads.size() == n->inputs.size(), "backward of " << n->name << " returned " << in_grads.size()
                                                                  << " gradients for " << n->inputs.size()
                                                                  << " inputs");
    for (std::size_t i = 0; i < n->inputs.size(); ++i) {
      const auto& in = n->inputs[i];
      if (!in) continue;
      const Tensor& gi = in_grads[i];
      DDPM_CHECK(gi.defined(), "backward of " << n->name << " gave no gradient for input " << i);
      DDPM_CHECK(gi.shape() == in->shape, "backward of " << n->name << ": gradient " << i << " has shape "
                                                         << shape_str(gi.shape()) << ", input has "
                                                         << shape_str(in->shape));
      if (!in->grad_fn) {
        accumulate_leaf(*in, gi);
        continue;
      }
      Node* child = in->grad_fn.get();
      auto it = grads.find(child);
      if (it == grads.end() || !it->second.defined()) {
        grads[child] = gi;
      } else {
        // Sum into a fresh tensor: gi may alias a saved tensor or another gradient.
        it->second = add(it->second, gi);
      }
      if (--pending[child] == 0) ready.push_back(child);
    }
  }
}

}  // namespace ddpm
