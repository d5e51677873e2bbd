// models/autoencoder/autoencoder_io.cpp: see autoencoder_io.h for the folder layout.
#include "models/autoencoder/autoencoder_io.h"

#include <filesystem>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/descriptor.h"
#include "engine/io/safetensors.h"
#include "models/unet/model_io.h"

namespace ddpm::autoencoder {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_config(const std::string& dir) {
  const std::string path = dir + "/" + kAutoencoderConfig;
  try {
    return json::parse(read_file(path));  // IoError naming the file when missing
  } catch (const json::exception& e) {
    DDPM_THROW(IoError, path << " is not valid JSON: " << e.what());
  }
}

}  // namespace

void save_autoencoder(const Autoencoder& ae, const json& train_info, const std::string& dir, bool overwrite,
                      const std::function<void(const std::string&)>& extra) {
  std::error_code ec;
  DDPM_CHECK(!fs::exists(dir, ec) || fs::is_directory(dir, ec), "--out " << dir << " exists and is not a folder");
  const bool empty_dir = fs::is_directory(dir, ec) && fs::is_empty(dir, ec);
  DDPM_CHECK(overwrite || !fs::exists(dir, ec) || empty_dir,
             "--out " << dir << " exists; pass --overwrite to replace it");
  const auto tensors = unet::export_state_dict(ae);  // OIHW on disk
  const json info = {{"architecture", kAutoencoderArchitecture},
                     {"model", autoencoder_config_to_json(ae.config())},
                     {"train", train_info}};
  if (empty_dir) fs::remove(dir, ec);
  publish_directory(
      dir,
      [&](const std::string& tmp) {
        save_safetensors(tmp + "/" + kAutoencoderWeights, tensors, {{"format", "pt"}});
        write_file_atomic(tmp + "/" + kAutoencoderConfig, info.dump(2) + "\n");
        if (extra) extra(tmp);
      },
      overwrite ? IfExists::replace : IfExists::fail);
}

bool is_autoencoder_folder(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(dir + "/" + kAutoencoderConfig, ec)) return false;
  try {
    const json j = read_config(dir);
    return j.is_object() && j.value("architecture", std::string()) == kAutoencoderArchitecture;
  } catch (const Error&) {
    return false;
  }
}

AutoencoderFolder load_autoencoder(const std::string& dir, Device device) {
  const std::string json_path = dir + "/" + kAutoencoderConfig;
  const json info = read_descriptor(dir, {kAutoencoderConfig, kAutoencoderArchitecture, "an autoencoder",
                                          "ddpm-autoencoder train"});  // engine/io/descriptor.h
  DDPM_CHECK_AS(info.contains("model"), IoError, json_path << " has no \"model\" config");
  const AutoencoderConfig cfg = autoencoder_config_from_json(info.at("model"));
  Generator gen(0);
  AutoencoderFolder f;
  f.model = std::make_unique<Autoencoder>(cfg, gen, device);
  const std::string weights_path = dir + "/" + kAutoencoderWeights;
  unet::load_state_dict(*f.model, load_safetensors(weights_path).tensors,
                        weights_path + " (for " + json_path + "'s model)");
  f.info = info;
  return f;
}

void copy_autoencoder_folder(const std::string& src, const std::string& dst) {
  DDPM_CHECK_AS(is_autoencoder_folder(src), IoError,
                src << " is not an autoencoder folder (config.json naming \"" << kAutoencoderArchitecture << "\")");
  const std::string weights = read_file(src + "/" + kAutoencoderWeights);
  const std::string config = read_file(src + "/" + kAutoencoderConfig);
  publish_directory(
      dst,
      [&](const std::string& tmp) {
        write_file_atomic(tmp + "/" + kAutoencoderWeights, weights.data(), weights.size());
        write_file_atomic(tmp + "/" + kAutoencoderConfig, config);
      },
      IfExists::replace);
}

}  // namespace ddpm::autoencoder
