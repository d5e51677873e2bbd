// models/diffusion/prompt_to_prompt.h: Prompt-to-Prompt editing (Hertz et al. 2022, "Prompt-
// to-Prompt Image Editing with Cross Attention Control"): a source prompt P and an edited
// prompt P* are sampled TOGETHER from the same x_T, and the edited branch borrows the source
// branch's attention maps for the early steps, so the layout (which the early steps decide,
// P2P sec. 3.1) is kept and only what the changed words govern changes.
//
// Batch layout of every network call: [source rows (n); edit rows (n)], and with classifier-
// free guidance (sampler.h: [x; x], labels [y; null]) the 2n unconditional rows after them,
// which are never edited (as in the authors' notebooks, which edit only the conditional half).
//
// The edit of one attention call (P2P sec. 3.2, eq. after "Edit(M_t, M*_t, t)"), with step
// j = 0 .. K - 1 counted from the first denoising step (t = T) and M, M* the source and edit
// rows' maps [heads, Sq, Sk]:
//   cross-attention (keys = text tokens):
//     word swap       M*  <- M            while j < floor(c K)    c = cross_replace
//     re-weighting    M*[:, :, j*] <- w M*[:, :, j*]    at every step, after the swap
//                     (the equalizer: the token j*'s column scaled by w, rows NOT renormalised)
//   self-attention (keys = image tokens, Sq = Sk):
//     injection       M*  <- M            while j < floor(s K)    s = self_replace
// c = 1 replaces at every step; c = 0 never. The notebooks' table is floor(c (K + 1)) rows
// of K + 1, which differs from floor(c K) by at most one step at the end of the window.
// Defaults c = 0.8 and s = 0.4: the word-swap example of google/prompt-to-prompt's
// prompt-to-prompt_stable notebook (AttentionReplace with cross_replace_steps .8 and
// self_replace_steps .4, 50 steps). Differences from the notebooks: the self-attention size
// limit is a token count scaled to our small images (below); and the notebook's equalizer
// acts only inside the swap window (on the source maps), here at every step as sec. 3.2
// writes it.
// Word swap needs the same token count in both prompts (the one-to-one mapper of the
// notebooks is then the identity).
//
// Refinement (P2P sec. 3.2 "Adding a new phrase"; the notebooks' AttentionRefine): when P*
// adds words to P, an alignment A maps each context column j of P* to the column A(j) of P
// holding the same token, or to none (a new word). In the cross window
//     M*[:, :, j] <- M[:, :, A(j)]    for aligned j,    M*[:, :, j] kept    for new j
// (the notebook's  M[:, :, A] alpha + M* (1 - alpha),  alpha_j = 1 when j is aligned), so the
// words P and P* share keep the source's layout and the new words attend where the edit's own
// maps put them. The alignment (refinement_token_map) is the source's words found in order in
// the edit's, each at its leftmost possible place; the notebooks' seq_aligner runs a global
// alignment (gap 0, match 1, mismatch -1), which never pays a mismatch and so is a longest
// common subsequence: with every source word in it, the same pairs up to ties between
// repeated words. Columns past the map (padding) map to themselves, as in the notebook.
//
// Self-attention size limit: the notebooks inject self-attention only where the maps are
// small, Sq <= 16^2 = 256 query tokens (AttentionControlEdit.replace_self_attention), i.e. in
// Stable Diffusion's 16 x 16 and 8 x 8 layers of a 64 x 64 latent, not its 32 x 32 and
// 64 x 64 ones: the coarse layers fix the layout, the fine ones stay free to draw the edit's
// details. Here: self-attention sites with Sq > self_replace_max_tokens keep their own maps;
// 0 injects at every site.
//
// Sampling: DDIM (eta 0: no noise after x_T) and DDPM ancestral. Both halves take the SAME
// noise at every step (the generator's state is copied for the edit half), so with no
// control the edit rows are exactly a plain sample of P* from the same seed: x_T and the
// per-step z are drawn as sample() draws them for n rows.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/diffusion/sampler.h"
#include "models/nn/module.h"
#include "models/unet/attention_control.h"

namespace ddpm::diffusion {

struct PromptToPromptConfig {
  double cross_replace = 0.8;       // c in [0, 1]: fraction of the steps with the source's cross maps
  double self_replace = 0.4;        // s in [0, 1]: fraction of the steps with the source's self maps
  std::int64_t reweight_token = -1; // j*: context column to re-weight (-1 = none)
  double reweight_scale = 1.0;      // w >= 0
  // Refinement: token_map[j] = the source's context column for the edit's column j, -1 for a
  // new token; columns j >= token_map.size() map to j. Empty: word swap (the identity).
  std::vector<std::int64_t> token_map;
  // Self-attention is injected only where Sq <= this (0 = everywhere). 64 = 8 x 8: the
  // notebook's 256 of 4096 tokens (1/16 of SD's finest map) for our 32 x 32 images' 1024.
  std::int64_t self_replace_max_tokens = 64;
};

// The refinement alignment of two prompts' words (header comment): the map over the context
// columns [<bos>, edit words, <eos>] (size edit.size() + 2) to the source's columns, -1 for
// an added word; empty when the source's words are not all found in order in the edit's.
std::vector<std::int64_t> refinement_token_map(const std::vector<std::string>& source,
                                               const std::vector<std::string>& edit);

// The steps j < floor(fraction K) of K that a replacement covers. ValueError outside [0, 1].
std::int64_t replace_steps(double fraction, std::int64_t num_steps, const char* what);

class PromptToPromptController : public unet::AttentionController {
 public:
  // pairs n: source and edit rows per call; num_steps K. ValueError for fractions outside
  // [0, 1], a negative or non-finite scale, n < 1 or K < 1, a negative token limit or a
  // token_map entry below -1.
  PromptToPromptController(const PromptToPromptConfig& config, std::int64_t pairs, std::int64_t num_steps);

  // The sampler sets j (0 = the first denoising step) before each network call.
  void set_step(std::int64_t step);
  bool replaces_cross() const { return step_ < cross_steps_; }
  bool replaces_self() const { return step_ < self_steps_; }
  // Whether a self-attention site of Sq query tokens is within the size limit.
  bool injects_self_at(std::int64_t query_tokens) const {
    return config_.self_replace_max_tokens == 0 || query_tokens <= config_.self_replace_max_tokens;
  }
  std::int64_t cross_steps() const { return cross_steps_; }
  std::int64_t self_steps() const { return self_steps_; }

  Tensor edit(const Tensor& probs, const unet::AttentionSite& site) override;

  // Inspection (tests, diagnostics): with recording on, the maps each site returned at its
  // latest call [B, heads, Sq, Sk], and the maps it was given.
  void set_recording(bool on) { recording_ = on; }
  const std::map<std::string, Tensor>& edited_maps() const { return edited_; }
  const std::map<std::string, Tensor>& given_maps() const { return given_; }

 private:
  PromptToPromptConfig config_;
  std::int64_t pairs_, num_steps_, cross_steps_, self_steps_, step_ = 0;
  bool recording_ = false;
  std::map<std::string, Tensor> edited_, given_;

  // The edit rows' cross maps in the swap window: the source's, column by column through
  // token_map (refinement) or whole (word swap).
  Tensor replaced_cross(const Tensor& source, const Tensor& own, const std::string& site) const;
};

// Draws n pairs from one x_T [shape] (shape[0] = n): the network's label 0 is the source
// prompt and label 1 the edit prompt (a text denoiser over {P, P*}). `model` is the module
// whose CrossAttentions the controller is set on for the duration (the UNet); a null
// controller samples the pair without control. Returns [2n, ...]: rows [0, n) the source
// samples, rows [n, 2n) the edits. ValueError for the Heun sampler, analytic variance or a
// Langevin corrector (not supported here), or a controller made for another n or K.
Tensor prompt_to_prompt_sample(const DiffusionSchedule& base, const DenoiseFn& net, const nn::Module& model,
                               const Shape& shape, const SamplerConfig& config, PromptToPromptController* controller,
                               Generator& gen, Device device = Device::cpu());

}  // namespace ddpm::diffusion
