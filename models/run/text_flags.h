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
};

// --text-cond (described by `what`), --context-length, --text-width, --text-layers,
// --text-heads and --transformer-depth, in `group` ("" = none).
void add_text_cond_flags(CLI::App& app, TextCondFlags& f, const std::string& what, const std::string& group);

// ValueError for: --text-cond with --class-cond; with no --attention-resolutions (nothing
// would read the text); sizes out of range (context < 3, non-positive sizes, heads not
// dividing the width, depth < 1); and an encoder flag changed WITHOUT --text-cond (a
// forgotten --text-cond must not silently make an unconditional model).
void check_text_cond_flags(const TextCondFlags& f, bool class_cond, bool attention_empty);

}  // namespace ddpm::run
