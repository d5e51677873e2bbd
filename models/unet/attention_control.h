// models/unet/attention_control.h: attention with explicit probabilities, and a hook that
// lets a controller edit them before they are applied to the values (the mechanism of
// Prompt-to-Prompt, Hertz et al. 2022, sec. 3: "we inject the attention maps M of the source
// generation into the edited one"; the policy is models/diffusion/prompt_to_prompt.h).
//
// The fused op engine/ops/attention.h never forms P: it is one tape node that recomputes P in
// its backward from a saved log-sum-exp. An editor needs P itself, so here the same math is
// spelled out in ordinary engine ops (matmul, transpose, exp, sum, div; CPU and CUDA), in
// the dtype of q (fp32 when sampling):
//   q_h, k_h, v_h = channels [h d, (h + 1) d) of q, k, v, d = C / heads
//   S_h = (q_h d^(-1/4)) (k_h d^(-1/4))^T          [Sq, Sk], attention.h's split scaling
//   P_h = softmax(S_h) over the Sk keys            exp(S - m) / sum exp(S - m), m = row max
//   out_h = P_h v_h                                 [Sq, d]
// Equal to attention(q, k, v, heads) up to rounding (the CPU op works in f64; tested to ~1e-6).
// Sampling only: no backward is meant (the ops would record one, but P2P never trains).
//
// The hook: every CrossAttention of a model (transformer.h, diffusers' Attention: attn1 the
// self-attention of a BasicTransformerBlock, attn2 its cross-attention to the text) holds an
// optional controller pointer. Null (the default): the module calls the fused op exactly as
// before, bit for bit. Set: it forms P [B, heads, Sq, Sk] here, hands it to
// controller->edit(P, site) and applies what comes back to v. The UNet's plain
// AttentionBlocks (unet.h, no context) are not CrossAttention modules and are never edited.
#pragma once

#include <cstdint>
#include <string>

#include "engine/tensor.h"
#include "models/nn/module.h"

namespace ddpm::unet {

// Where an edited map comes from: the module's dotted name under the root the controller was
// set on ("down_blocks.1.attentions.0.transformer_blocks.0.attn2"), and its kind.
struct AttentionSite {
  const std::string& name;
  bool cross;  // true: attn2, keys are the L context tokens; false: attn1, keys are the Sq image tokens
  int heads;
};

class AttentionController {
 public:
  virtual ~AttentionController() = default;
  // probs [B, heads, Sq, Sk], each row a distribution over the Sk keys -> the maps to apply
  // (same shape, dtype and device; need not sum to 1, e.g. after P2P's re-weighting).
  virtual Tensor edit(const Tensor& probs, const AttentionSite& site) = 0;
};

// P = softmax(q k^T / sqrt(d)) per head (top of the file): q [B, Sq, C], k [B, Sk, C]
// -> [B, heads, Sq, Sk]. ValueError when the shapes do not fit or heads does not divide C.
Tensor attention_probabilities(const Tensor& q, const Tensor& k, int heads);
// out_h = P_h v_h: probs [B, heads, Sq, Sk], v [B, Sk, C] -> [B, Sq, C].
Tensor apply_attention_probabilities(const Tensor& probs, const Tensor& v, int heads);

// Sets `controller` (null detaches) on every CrossAttention below `root` (root included when
// it is one), each with its dotted name; returns how many modules it set. The modules keep
// the raw pointer: the controller must outlive the setting (ScopedAttentionController).
int set_attention_controller(const nn::Module& root, AttentionController* controller);

// Sets a controller for the guard's lifetime and detaches it in the destructor (also when
// sampling throws), so the model runs the fused op again afterwards.
class ScopedAttentionController {
 public:
  ScopedAttentionController(const nn::Module& root, AttentionController& controller);
  ~ScopedAttentionController();
  ScopedAttentionController(const ScopedAttentionController&) = delete;
  ScopedAttentionController& operator=(const ScopedAttentionController&) = delete;
  int sites() const { return sites_; }  // the CrossAttention modules it reached

 private:
  const nn::Module& root_;
  int sites_;
};

}  // namespace ddpm::unet
