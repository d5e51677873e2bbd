// models/run/text_flags.h: the flags of a text-conditioned model (models/text/
// text_conditioned.h), shared by ddpm-train and ddpm-profile so that what profiles also
// trains: --text-cond and the text encoder's size.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace ddpm::run {

struct TextCondFlags {
  bool enabled = false;       // --text-cond
  int context_length = 16;    // tokens per caption, <bos> and <eos> included
  int width = 128;            // the text encoder's width = the UNet's context_dim
  int layers = 2;             // transformer layers of the text encoder
  int heads = 4;              // its attention heads
  int transformer_depth = 1;  // BasicTransformerBlocks per spatial transformer of the UNet
  // --text-pooling / --no-text-pooling (default): the UNet also adds a pooled caption vector
  // to its timestep embedding (unet.h context_pool_heads = heads; GLIDE, Imagen and DeepFloyd
  // IF do), so every residual block reads the caption, not only the spatial transformers.
  // Off by default: at cpu-small's budget it did not help (docs/RESULTS.md session 13: 66%
  // class adherence with it, 72% without), and without it the UNet is SD's layout.
  bool pooling = false;
  bool pooling_given = false;  // either flag was on the command line (refused without --text-cond)
  // The UNet's context_pool_heads for these flags: heads with pooling, else 0.
  int context_pool_heads() const { return enabled && pooling ? heads : 0; }
};

// --text-cond (described by `what`), --context-length, --text-width, --text-layers,
// --text-heads, --transformer-depth and --text-pooling / --no-text-pooling, in `group`
// ("" = none).
void add_text_cond_flags(CLI::App& app, TextCondFlags& f, const std::string& what, const std::string& group);

// ValueError for: --text-cond with --class-cond; with no --attention-resolutions (nothing
// would read the text); sizes out of range (context < 3, non-positive sizes, heads not
// dividing the width, depth < 1); and an encoder flag changed WITHOUT --text-cond (a
// forgotten --text-cond must not silently make an unconditional model).
void check_text_cond_flags(const TextCondFlags& f, bool class_cond, bool attention_empty);

}  // namespace ddpm::run
