// models/run/prompt_to_prompt_run.cpp: see prompt_to_prompt_run.h.
#include "models/run/prompt_to_prompt_run.h"

#include <algorithm>
#include <cmath>
#include <ostream>
#include <sstream>

#include "engine/error.h"
#include "engine/rng.h"
#include "models/text/tokenizer.h"

namespace ddpm::run {

namespace {

std::string word_list(const std::vector<std::string>& words) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < words.size(); ++i) s << (i ? ", " : "") << words[i];
  s << "]";
  return s.str();
}

}  // namespace

std::pair<std::string, double> parse_reweight(const std::string& spec) {
  if (spec.empty()) return {"", 1.0};
  const std::size_t eq = spec.rfind('=');
  DDPM_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(),
             "--reweight must be WORD=SCALE (e.g. red=2), got '" << spec << "'");
  const std::vector<std::string> words = text::split_words(spec.substr(0, eq));
  DDPM_CHECK(words.size() == 1, "--reweight '" << spec << "': WORD must be one word, got " << word_list(words));
  double scale = 0;
  std::size_t used = 0;
  const std::string number = spec.substr(eq + 1);
  try {
    scale = std::stod(number, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DDPM_CHECK(used == number.size() && std::isfinite(scale) && scale >= 0,
             "--reweight '" << spec << "': SCALE must be a number >= 0, got '" << number << "'");
  return {words[0], scale};
}

void check_prompt_to_prompt_options(const EditOptions& o) {
  DDPM_CHECK(o.sampler == "auto" || o.sampler == "ddim" || o.sampler == "ddpm",
             "--sampler must be auto, ddim or ddpm for prompt2prompt, got " << o.sampler);
  DDPM_CHECK(o.prompts.size() == 1, "prompt2prompt takes exactly one --prompt (the source prompt), got "
                                        << o.prompts.size());
  DDPM_CHECK(!o.edit_prompt.empty(), "prompt2prompt needs --edit-prompt, the prompt of the edited images");
  DDPM_CHECK(o.num_samples > 0, "--num-samples must be positive, got " << o.num_samples);
  diffusion::replace_steps(o.cross_replace, 1, "--cross-replace");
  diffusion::replace_steps(o.self_replace, 1, "--self-replace");
  DDPM_CHECK(o.self_replace_max_tokens >= 0, "--self-replace-max-tokens must be >= 0 (0 = every layer), got "
                                                 << o.self_replace_max_tokens);
  parse_reweight(o.reweight);
}

diffusion::PromptToPromptConfig prompt_to_prompt_config(const EditOptions& o) {
  check_prompt_to_prompt_options(o);
  const std::vector<std::string> source = text::split_words(o.prompts[0]), edit = text::split_words(o.edit_prompt);
  // Word swap (P2P sec. 3.2) replaces M* by M token for token: token i of one prompt is token
  // i of the other (same count; <bos>, <eos> and the padding line up then too). With more
  // tokens in the edit, refinement maps each edit token to its source token through the
  // alignment (prompt_to_prompt.h), which needs every source word found in order in the edit.
  std::vector<std::int64_t> token_map;
  if (o.cross_replace > 0 && source.size() != edit.size()) {
    token_map = diffusion::refinement_token_map(source, edit);
    DDPM_CHECK(!token_map.empty(),
               "prompt2prompt: --prompt '"
                   << o.prompts[0] << "' " << word_list(source) << " and --edit-prompt '" << o.edit_prompt << "' "
                   << word_list(edit)
                   << " have different token counts, so the edit is neither a word swap (same count, token i to "
                      "token i) nor a refinement (the source's words found in order among the edit's, new words "
                      "added); --cross-replace 0 keeps only the self-attention injection");
  }
  diffusion::PromptToPromptConfig c;
  c.cross_replace = o.cross_replace;
  c.self_replace = o.self_replace;
  c.self_replace_max_tokens = o.self_replace_max_tokens;
  c.token_map = token_map;
  const auto [word, scale] = parse_reweight(o.reweight);
  if (!word.empty()) {
    const auto it = std::find(edit.begin(), edit.end(), word);
    DDPM_CHECK(it != edit.end(), "--reweight: '" << word << "' is not a word of --edit-prompt '" << o.edit_prompt
                                                 << "' " << word_list(edit));
    c.reweight_token = 1 + (it - edit.begin());  // column 0 is <bos>
    c.reweight_scale = scale;
  }
  return c;
}

void check_prompt_to_prompt_model(const EditOptions& o, const ModelSource& model) {
  DDPM_CHECK(model.text != nullptr, "prompt2prompt edits through the cross-attention to a prompt: "
                                        << o.checkpoint << " is not text-conditioned (ddpm-train --text-cond)");
  DDPM_CHECK(!model.diffusion.edm.has_value(),
             "prompt2prompt samples on the DDPM/DDIM steps; " << o.checkpoint
                                                               << " is an EDM run (sigma space), not supported");
}

PromptToPromptOutput run_prompt_to_prompt(const EditOptions& o, const ModelSource& model, const EditProcess& proc,
                                          const LatentCodec* codec, std::ostream* log) {
  const diffusion::PromptToPromptConfig pc = prompt_to_prompt_config(o);
  const std::int64_t N = o.num_samples, K = proc.steps();
  const diffusion::PromptToPromptController probe(pc, 1, K);  // the step counts, for the log and the record
  if (log)
    *log << "Prompt-to-Prompt: \"" << o.prompts[0] << "\" -> \"" << o.edit_prompt << "\", " << N
         << " pair(s), " << proc.sampler() << " with " << K << " steps: source cross-attention for " << probe.cross_steps()
         << ", self-attention for " << probe.self_steps() << " step(s)"
         << (pc.reweight_token >= 0 ? ", token " + std::to_string(pc.reweight_token) + " re-weighted" : "") << "\n";
  Generator gen(o.seed);
  Shape shape;  // the images' [2n, H, W, C] of the first batch
  std::vector<double> src, edit;
  for (std::int64_t b = 0; b < N; b += o.batch_size) {
    const std::int64_t n = std::min<std::int64_t>(o.batch_size, N - b);
    diffusion::PromptToPromptController controller(pc, n, K);
    const Tensor pair = diffusion::prompt_to_prompt_sample(proc.schedule(), proc.network(), *model.net,
                                                           proc.shape(n), proc.config(), &controller, gen, o.device);
    // A latent run: both halves' scaled latents s * z decoded to pixels [2n, H, W, C].
    const Tensor px = codec != nullptr ? codec->decode(pair) : pair;
    if (b == 0) shape = px.shape();
    const std::vector<double> v = px.to_double_vector();
    const std::size_t half = v.size() / 2;
    src.insert(src.end(), v.begin(), v.begin() + static_cast<std::ptrdiff_t>(half));
    edit.insert(edit.end(), v.begin() + static_cast<std::ptrdiff_t>(half), v.end());
  }
  // How far the edits moved from their sources, on the [-1, 1] scale after the [-1, 1] clamp
  // the PNGs apply.
  double diff = 0;
  for (std::size_t i = 0; i < src.size(); ++i)
    diff += std::abs(std::clamp(edit[i], -1.0, 1.0) - std::clamp(src[i], -1.0, 1.0));
  diff /= static_cast<double>(src.size());
  if (log) *log << "mean |edit - source| = " << diff << " (pixels on the [-1, 1] scale)\n";
  std::vector<double> all = src;
  all.insert(all.end(), edit.begin(), edit.end());
  shape[0] = 2 * N;

  nlohmann::json info = {{"edit_prompt", o.edit_prompt},
                         {"source_tokens", text::split_words(o.prompts[0])},
                         {"edit_tokens", text::split_words(o.edit_prompt)},
                         {"cross_edit", pc.token_map.empty() ? "word swap" : "refinement"},
                         {"token_map", pc.token_map.empty() ? nlohmann::json(nullptr) : nlohmann::json(pc.token_map)},
                         {"cross_replace", o.cross_replace},
                         {"self_replace", o.self_replace},
                         {"cross_replace_steps", probe.cross_steps()},
                         {"self_replace_steps", probe.self_steps()},
                         {"self_replace_max_tokens", o.self_replace_max_tokens},
                         {"guidance_scale", o.guidance_scale},
                         {"clip_x0", diffusion::resolve_clip_x0(proc.config())},
                         {"num_pairs", N},
                         {"layout", "samples.npz and images/: the N source samples, then their N edits"},
                         {"mean_abs_difference", diff}};
  if (pc.reweight_token >= 0)
    info["reweight"] = {{"word", parse_reweight(o.reweight).first},
                        {"token", pc.reweight_token},
                        {"scale", pc.reweight_scale}};
  else
    info["reweight"] = nullptr;
  return PromptToPromptOutput{Tensor::from_vector(all, shape), info};
}

}  // namespace ddpm::run
