// models/autoencoder/autoencoder_io.cpp: see autoencoder_io.h for the folder layout.
#include "models/autoencoder/autoencoder_io.h"

#include <filesystem>
#include <map>
#include <sstream>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
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
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, t] : ae.named_parameters())
    tensors.emplace_back(name, t.ndim() == 4 ? unet::krsc_to_oihw(t.cpu()) : t.cpu().clone());  // OIHW on disk
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
  const json info = read_config(dir);
  DDPM_CHECK_AS(info.is_object() && info.value("architecture", std::string()) == kAutoencoderArchitecture, IoError,
                json_path << " does not describe an autoencoder (\"architecture\": \"" << kAutoencoderArchitecture
                          << "\"); train one with ddpm-autoencoder train");
  DDPM_CHECK_AS(info.contains("model"), IoError, json_path << " has no \"model\" config");
  const AutoencoderConfig cfg = autoencoder_config_from_json(info.at("model"));
  Generator gen(0);
  AutoencoderFolder f;
  f.model = std::make_unique<Autoencoder>(cfg, gen, device);
  const std::string weights_path = dir + "/" + kAutoencoderWeights;
  const SafetensorsFile weights = load_safetensors(weights_path);
  std::map<std::string, Tensor> given(weights.tensors.begin(), weights.tensors.end());
  std::vector<std::string> problems;
  std::vector<std::pair<Tensor, Tensor>> copies;
  for (const auto& [name, p] : f.model->named_parameters()) {
    auto it = given.find(name);
    if (it == given.end()) {
      problems.push_back("missing " + name);
      continue;
    }
    Tensor v = it->second;
    given.erase(it);
    if (v.dtype() != DType::f32 && v.dtype() != DType::f64) {
      problems.push_back("dtype of " + name + " is " + dtype_name(v.dtype()));
      continue;
    }
    if (v.ndim() == 4) v = unet::oihw_to_krsc(v);
    if (v.shape() != p.shape()) {
      problems.push_back(name + " is " + shape_str(v.shape()) + " in the file, " + shape_str(p.shape()) +
                         " in the model");
      continue;
    }
    copies.emplace_back(p, v);
  }
  for (const auto& kv : given) problems.push_back("unexpected " + kv.first);
  if (!problems.empty()) {
    std::ostringstream os;
    os << weights_path << " does not match " << json_path << "'s model (" << problems.size() << " problems):";
    for (std::size_t i = 0; i < problems.size() && i < 10; ++i) os << (i ? "; " : " ") << problems[i];
    DDPM_THROW(ValueError, os.str());
  }
  for (auto& [p, v] : copies) {
    Tensor p_mut = p;
    p_mut.copy_from(v.to(p.dtype()).to(p.device()));
  }
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
