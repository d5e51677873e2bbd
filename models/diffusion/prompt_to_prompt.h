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
// self_replace_steps .4, 50 steps). Differences from the notebooks: the notebook injects self-
// attention only at maps of at most 16 x 16 tokens; here every transformer block's self-
// attention is injected (the models here are small); and the notebook's equalizer acts only
// inside the swap window (on the source maps), here at every step as sec. 3.2 writes it.
// Word swap needs the same token count in both prompts (the one-to-one mapper of the
// notebooks is then the identity); refinement's alignment of added words is not implemented.
//
// Sampling: DDIM (eta 0: no noise after x_T) and DDPM ancestral. Both halves take the SAME
// noise at every step (the generator's state is copied for the edit half), so with no
// control the edit rows are exactly a plain sample of P* from the same seed: x_T and the
// per-step z are drawn as sample() draws them for n rows.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "models/diffusion/sampler.h"
#include "models/nn/module.h"
#include "models/unet/attention_control.h"

namespace ddpm::diffusion {

struct PromptToPromptConfig {
  double cross_replace = 0.8;       // c in [0, 1]: fraction of the steps with the source's cross maps
  double self_replace = 0.4;        // s in [0, 1]: fraction of the steps with the source's self maps
  std::int64_t reweight_token = -1; // j*: context column to re-weight (-1 = none)
  double reweight_scale = 1.0;      // w >= 0
};

// The steps j < floor(fraction K) of K that a replacement covers. ValueError outside [0, 1].
std::int64_t replace_steps(double fraction, std::int64_t num_steps, const char* what);

class PromptToPromptController : public unet::AttentionController {
 public:
  // pairs n: source and edit rows per call; num_steps K. ValueError for fractions outside
  // [0, 1], a negative or non-finite scale, n < 1 or K < 1.
  PromptToPromptController(const PromptToPromptConfig& config, std::int64_t pairs, std::int64_t num_steps);

  // The sampler sets j (0 = the first denoising step) before each network call.
  void set_step(std::int64_t step);
  bool replaces_cross() const { return step_ < cross_steps_; }
  bool replaces_self() const { return step_ < self_steps_; }
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
