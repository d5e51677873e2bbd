// engine/io/descriptor.h: reading the JSON file that says what a folder holds.
//
// Several folders the ddpm-* programs write carry one: a toy model's config.json, a toy or a
// noisy classifier's classifier.json, a ControlNet run's config.json. Each has an
// "architecture" tag naming its kind, so that a folder of one kind given where another is
// expected (a base run passed as --control, a toy model passed as --classifier) is refused at
// once, with both kinds named, instead of failing later on a missing key or on weights of the
// wrong shape. The loaders read the rest of the descriptor themselves; this file owns only
// the three ways reading it can fail and their messages. It needs only engine/ and
// nlohmann::json, so it sits in engine/io, below every model folder's loader: the feature
// classifier (models/eval/classifier.h) and the autoencoder (models/autoencoder/
// autoencoder_io.h) check their tags with it too.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace ddpm {

// What the descriptor of one kind of folder is.
struct DescriptorKind {
  std::string file;          // its name inside the folder: "config.json", "classifier.json"
  std::string architecture;  // the tag its "architecture" must hold: "toy-mlp"
  std::string what;          // the kind in words, with its article: "a toy model"
  std::string made_by;       // the command that writes such folders: "ddpm-toy train"
};

// <dir>/<kind.file> parsed: a JSON object whose "architecture" is kind.architecture.
// Otherwise an IoError naming the file, one of:
//   "there is no <dir>/<file>: <dir> is not <what> (those are written by <made_by>)"
//   "<dir>/<file> is not valid JSON: <the parser's message>"
//   "<dir>/<file> does not describe <what> ("architecture": "<expected>"): <what it holds
//    instead>; train one with <made_by>"
// A file that exists but cannot be read is read_file's IoError, which names it too.
nlohmann::json read_descriptor(const std::string& dir, const DescriptorKind& kind);

}  // namespace ddpm
