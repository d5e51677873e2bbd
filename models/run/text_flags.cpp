#include "models/run/text_flags.h"

#include <CLI/CLI.hpp>

#include "engine/error.h"

namespace ddpm::run {

void add_text_cond_flags(CLI::App& app, TextCondFlags& f, const std::string& what, const std::string& group) {
  // CLI11 hides options of the empty group, so "" means: no group.
  auto in_group = [&](CLI::Option* opt) {
    if (!group.empty()) opt->group(group);
  };
  in_group(app.add_flag("--text-cond", f.enabled, what));
  in_group(app.add_option("--context-length", f.context_length,
                          "--text-cond: tokens per caption, <bos> and <eos> included")
               ->capture_default_str());
  in_group(app.add_option("--text-width", f.width, "--text-cond: the text encoder's width (the UNet's context_dim)")
               ->capture_default_str());
  in_group(app.add_option("--text-layers", f.layers, "--text-cond: transformer layers of the text encoder")
               ->capture_default_str());
  in_group(app.add_option("--text-heads", f.heads, "--text-cond: attention heads of the text encoder")
               ->capture_default_str());
  in_group(app.add_option("--transformer-depth", f.transformer_depth,
                          "--text-cond: transformer blocks per spatial transformer")
               ->capture_default_str());
  // One flag and its negation: the callback gets +1 for --text-pooling, -1 for the "!" form.
  in_group(app.add_flag_function(
      "--text-pooling,!--no-text-pooling",
      [&f](std::int64_t count) {
        f.pooling = count > 0;
        f.pooling_given = true;
      },
      "--text-cond: also add a pooled caption embedding to the timestep embedding (GLIDE/Imagen; "
      "default off: --no-text-pooling, cross-attention only)"));
}

void check_text_cond_flags(const TextCondFlags& f, bool class_cond, bool attention_empty) {
  if (!f.enabled) {
    const TextCondFlags d;
    const char* flag = f.context_length != d.context_length       ? "--context-length"
                       : f.width != d.width                         ? "--text-width"
                       : f.layers != d.layers                       ? "--text-layers"
                       : f.heads != d.heads                         ? "--text-heads"
                       : f.transformer_depth != d.transformer_depth ? "--transformer-depth"
                       : f.pooling_given                            ? (f.pooling ? "--text-pooling" : "--no-text-pooling")
                                                                    : nullptr;
    DDPM_CHECK(flag == nullptr, flag << " sets up the text encoder of a text-conditioned model: add --text-cond");
    return;
  }
  DDPM_CHECK(!class_cond,
             "--class-cond and --text-cond are two ways to condition; choose one (a caption can name the class)");
  DDPM_CHECK(!attention_empty,
             "--text-cond reads the captions through the spatial transformers at --attention-resolutions, which is "
             "empty: name at least one resolution");
  DDPM_CHECK(f.context_length >= 3,
             "--context-length must hold <bos>, a word and <eos> (>= 3), got " << f.context_length);
  DDPM_CHECK(f.width > 0 && f.layers > 0 && f.heads > 0 && f.width % f.heads == 0,
             "--text-width " << f.width << ", --text-layers " << f.layers << " and --text-heads " << f.heads
                             << " must be positive, with the heads dividing the width");
  DDPM_CHECK(f.transformer_depth >= 1, "--transformer-depth must be >= 1, got " << f.transformer_depth);
}

}  // namespace ddpm::run
