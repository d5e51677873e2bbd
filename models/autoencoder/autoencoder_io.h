// models/autoencoder/autoencoder_io.h: the autoencoder on disk.
//
// An autoencoder folder (published atomically, engine/io/atomic_file.h):
//   DIR/model.safetensors   the parameters by name (autoencoder.h), convolutions in PyTorch's
//                           OIHW layout (as every checkpoint of the project)
//   DIR/config.json         {"architecture": "autoencoder-kl", "model": AutoencoderConfig
//                            (scale_factor included), "train": {...what trained it}}
// Loading is strict: the config's keys (unet::check_config_keys), the architecture tag, and
// every tensor name and shape (all problems listed in one ValueError).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "models/autoencoder/autoencoder.h"

namespace ddpm::autoencoder {

inline constexpr const char* kAutoencoderArchitecture = "autoencoder-kl";
inline constexpr const char* kAutoencoderWeights = "model.safetensors";
inline constexpr const char* kAutoencoderConfig = "config.json";

struct AutoencoderFolder {
  std::unique_ptr<Autoencoder> model;
  nlohmann::json info;  // config.json as read
};

// Publishes `dir` from the model and `train_info`; an existing non-empty folder is a
// ValueError unless overwrite (then it is replaced atomically). `extra` may write more files
// into the temporary folder before it is published (ddpm-autoencoder's reconstructions.png).
void save_autoencoder(const Autoencoder& ae, const nlohmann::json& train_info, const std::string& dir, bool overwrite,
                      const std::function<void(const std::string& temp_dir)>& extra = {});

// IoError naming the file when the folder is missing, damaged or not an autoencoder; a
// ValueError listing missing / unexpected / mismatched tensors.
AutoencoderFolder load_autoencoder(const std::string& dir, Device device);

// True when dir/config.json exists and names the autoencoder architecture.
bool is_autoencoder_folder(const std::string& dir);

// Copies the autoencoder folder src to dst (both files; dst published atomically, replacing
// an existing one).
void copy_autoencoder_folder(const std::string& src, const std::string& dst);

}  // namespace ddpm::autoencoder
