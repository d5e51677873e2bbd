// models/run/lora_run.cpp: opening LoRA runs (contract in lora_run.h).
#include "models/run/lora_run.h"

#include <filesystem>
#include <map>
#include <sstream>

#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "engine/io/sha256.h"
#include "models/nn/lora.h"
#include "models/run/finetune.h"

namespace fs = std::filesystem;

namespace ddpm::run {

nlohmann::json lora_config_json(int rank, double alpha) {
  return {{"rank", rank}, {"alpha", alpha > 0 ? alpha : static_cast<double>(rank)},
          {"target_modules", nn::kLoraTargetModules}};
}

std::pair<int, double> lora_rank_alpha(const nlohmann::json& lora) {
  DDPM_CHECK(lora.is_object() && lora.contains("rank") && lora.at("rank").is_number_integer() &&
                 lora.contains("alpha") && lora.at("alpha").is_number(),
             "config.json's \"lora\" section must hold an integer \"rank\" and a number \"alpha\", got " << lora.dump());
  return {lora.at("rank").get<int>(), lora.at("alpha").get<double>()};
}

ModelSource open_recorded_base(const nlohmann::json& init_from, Device device) {
  DDPM_CHECK(init_from.is_object() && init_from.contains("files") && init_from.at("files").is_array() &&
                 !init_from.at("files").empty(),
             "config.json's \"init_from\" section names no weights files: " << init_from.dump());
  const std::string kind = init_from.value("kind", std::string());
  const std::string weights = init_from.at("files").at(0).at("path").get<std::string>();
  for (const nlohmann::json& f : init_from.at("files")) {
    const std::string path = f.at("path").get<std::string>(), want = f.at("sha256").get<std::string>();
    DDPM_CHECK_AS(fs::exists(path), IoError,
                  "the base of this LoRA run, " << path << ", is gone; the adapters need exactly those weights");
    const std::string got = sha256_file(path);
    DDPM_CHECK_AS(got == want, IoError,
                  "the base of this LoRA run, " << path << ", has changed since the run started (SHA-256 " << got
                                                << ", recorded " << want
                                                << "); the adapters were trained for the recorded weights");
  }
  // Our checkpoints: the recorded file's own folder (SRC's "latest" may have moved on).
  if (kind == "run folder" || kind == "checkpoint folder")
    return open_model(fs::path(weights).parent_path().string(), device, fs::path(weights).filename() == "ema.safetensors");
  if (kind == "model file") return open_model(weights, device);
  return open_model(init_from.at("source").get<std::string>(), device);  // a diffusers or pipeline folder
}

ModelSource open_lora_checkpoint(const nlohmann::json& config, const std::string& adapters, Device device,
                                 const std::string& kind, bool ema) {
  DDPM_CHECK(config.contains("init_from"), "a LoRA run's config.json needs its \"init_from\" section (the base)");
  const auto [rank, alpha] = lora_rank_alpha(config.at("lora"));
  ModelSource m = open_recorded_base(config.at("init_from"), device);
  nn::Module& model = m.text ? static_cast<nn::Module&>(*m.text) : static_cast<nn::Module&>(*m.net);
  Generator unused(0);  // the adapters' initial values are overwritten below
  nn::LoraSet lora(model, rank, alpha, unused);
  const SafetensorsFile file = load_safetensors(adapters);  // IoError naming a missing or damaged file
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : file.tensors) by_name[name] = &t;
  std::ostringstream problems;
  for (const auto& [name, p] : lora.named_parameters()) {
    const auto it = by_name.find(name);
    if (it == by_name.end() || it->second->shape() != p.shape()) {
      problems << "\n  " << name << (it == by_name.end() ? " missing" : " has shape " + shape_str(it->second->shape()));
      continue;
    }
    Tensor dst = p;
    dst.copy_from(it->second->to(p.dtype()));
    by_name.erase(it);
  }
  for (const auto& [name, t] : by_name) problems << "\n  unexpected " << name;
  DDPM_CHECK_AS(problems.str().empty(), IoError,
                adapters << " does not hold the rank-" << rank << " adapters of its base:" << problems.str());
  lora.merge();  // W <- W + (alpha / r) B A; the projections' adapter pointers go with the set
  m.kind = kind;
  m.weights_path = adapters;
  m.ema = ema;
  return m;
}

}  // namespace ddpm::run
