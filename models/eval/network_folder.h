// models/eval/network_folder.h: the folder format the evaluation networks share (the image
// classifier of classifier.h, the video classifier of video_classifier.h):
//   DIR/model.safetensors   every parameter by name (host copies; the convolutions in the
//                           engine's KRSC layout), "architecture" in the metadata
//   DIR/NAME.json           the architecture and the network's config, one integer per field,
//                           beside the caller's info (dataset, accuracies, ...)
// Each network lists its config's fields once (ConfigField): the same table writes them and
// reads them back, so the two directions cannot drift apart.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "models/nn/module.h"

namespace ddpm::eval {

// One integer field of a network config: its key in NAME.json and its member.
template <class Config>
struct ConfigField {
  const char* key;
  int Config::*member;
};
template <class Config>
using ConfigFields = std::vector<ConfigField<Config>>;

// j[key] = c.member for every field.
template <class Config>
void write_config_fields(nlohmann::json& j, const Config& c, const ConfigFields<Config>& fields) {
  for (const ConfigField<Config>& f : fields) j[f.key] = c.*f.member;
}

// The config the fields of j describe; IoError naming json_path (and nlohmann's reason) when
// one is missing or not a number.
template <class Config>
Config read_config_fields(const nlohmann::json& j, const ConfigFields<Config>& fields, const std::string& json_path) {
  Config c;
  try {
    for (const ConfigField<Config>& f : fields) c.*f.member = j.at(f.key);
  } catch (const nlohmann::json::exception& e) {
    throw IoError(json_path + ": " + e.what());
  }
  return c;
}

// Writes every parameter of net to path, with {"architecture": architecture} as metadata.
void save_network_weights(const nn::Module& net, const std::string& path, const std::string& architecture);

// Copies path's tensors into net's parameters by name. IoError naming the file when it holds
// another number of tensors than `what` (e.g. "the classifier") has parameters, lacks one, or
// one's shape or dtype differs.
void load_network_weights(const nn::Module& net, const std::string& path, const std::string& what);

}  // namespace ddpm::eval
