// models/run/prompt_to_prompt_run.h: ddpm-edit prompt2prompt, Prompt-to-Prompt editing of a
// text-conditioned run (the math and the attention policy: models/diffusion/
// prompt_to_prompt.h; options, output folder and the text denoiser: edit_run.h and
// edit_process.h, whose ModelSource::text denoiser runs here over {--prompt, --edit-prompt}).
//
//   ddpm-edit prompt2prompt --checkpoint RUN --prompt SOURCE --edit-prompt EDIT
//             [--cross-replace c] [--self-replace s] [--self-replace-max-tokens N] [--reweight WORD=SCALE]
//             --num-samples N --sampler ddim|ddpm --sampling-steps K [--guidance-scale G] --out DIR
// draws N pairs, each from one x_T (--seed): the source sample of SOURCE and its edit under
// EDIT with the source's cross-attention maps for the first floor(c K) steps, its self-
// attention maps for the first floor(s K) in the layers of at most N query tokens (0 = all;
// prompt_to_prompt.h), and WORD's cross-attention column scaled by SCALE.
// OUT gets (edit_run.h publishes it atomically):
//   grid.png         two rows: the N source samples over their N edits
//   images/, samples.npz   the 2N images, sources first (labels 0 = source, 1 = edit); a latent
//                    run (--autoencoder) samples s * z and decodes both rows to pixels
//   comparison.png   the first 8 sources over their edits
//   edit_info.json   the common fields, the prompts' tokens, "cross_edit" ("word swap" for
//                    prompts of one token count, "refinement" when EDIT adds words) and
//                    "token_map" (refinement: the source column of each edit column
//                    [<bos>, words, <eos>], -1 for an added word; null for a swap), c, s and
//                    their step counts, the re-weighting, and "mean_abs_difference": mean |edit - source| over the
//                    pixels on the [-1, 1] scale (how much the edit changed; 0 = nothing)
//
// Refusals (ValueError, exit 2): a model without text conditioning, an EDM run (sigma-space
// sampling is not supported here), a super-resolution run; --sampler other than auto, ddim or ddpm; not exactly one --prompt; no --edit-prompt;
// c or s outside [0, 1]; with c > 0 prompts of different token counts where SOURCE's words
// are not all found in order among EDIT's (neither a word swap nor a refinement: both token
// lists are named); --reweight not WORD=SCALE, a SCALE < 0, or a WORD that is not one of
// EDIT's words.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"
#include "models/diffusion/prompt_to_prompt.h"
#include "models/run/edit_process.h"
#include "models/run/edit_run.h"
#include "models/run/latent_run.h"

namespace ddpm::run {

// --reweight WORD=SCALE -> (the normalised word, SCALE); "" -> ("", 1). ValueError otherwise.
std::pair<std::string, double> parse_reweight(const std::string& spec);

// The options' checks that need no model (called by check_edit_options for prompt2prompt).
void check_prompt_to_prompt_options(const EditOptions& o);

// The controller's settings for a model whose prompts are o.prompts[0] and o.edit_prompt:
// word swap or refinement and its token map (when c > 0), and the re-weighted word's context column
// (1 + its position among EDIT's words: column 0 is <bos>). ValueError as in the header.
diffusion::PromptToPromptConfig prompt_to_prompt_config(const EditOptions& o);

// Refuses models prompt2prompt cannot edit (header comment).
void check_prompt_to_prompt_model(const EditOptions& o, const ModelSource& model);

struct PromptToPromptOutput {
  Tensor images;        // [2N, H, W, C] on the host: the N sources, then the N edits
  nlohmann::json info;  // edit_info.json's prompt2prompt fields
};
// Draws the N pairs in batches of --batch-size pairs (one controller per batch); a latent
// run's `codec` decodes both rows to pixels (null for a pixel run), before the difference.
PromptToPromptOutput run_prompt_to_prompt(const EditOptions& o, const ModelSource& model, const EditProcess& proc,
                                          const LatentCodec* codec, std::ostream* log);

}  // namespace ddpm::run
