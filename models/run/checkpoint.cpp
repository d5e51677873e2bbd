// models/run/checkpoint.cpp: the run folder's checkpoints (layout in checkpoint.h).
//
// A checkpoint is published in two atomic steps: the step_N folder (filled under a
// temporary name, fsynced, renamed: engine/io/atomic_file.h), then the one-line text file
// checkpoints/latest naming it. A crash between the two leaves a complete step_N that
// `latest` does not name yet: the previous checkpoint stays the one a resume picks.
#include "models/run/checkpoint.h"

#include <filesystem>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"

namespace fs = std::filesystem;

namespace ddpm::run {
namespace {

const char* const kFiles[] = {kModelFile, kEmaFile, kOptimizerFile, kTrainerStateFile};

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::string checkpoint_dir(const std::string& run_dir, std::int64_t step) {
  return (fs::path(run_dir) / "checkpoints" / ("step_" + std::to_string(step))).string();
}

std::string resolve_checkpoint(const std::string& run_dir, const std::string& which) {
  fs::path dir;
  if (which == "latest") {
    const fs::path latest = fs::path(run_dir) / "checkpoints" / "latest";
    if (!fs::is_regular_file(latest))
      DDPM_THROW(IoError, "--resume latest: " << run_dir << " has no checkpoint yet (no " << latest.string() << ")");
    const std::string name = trim(read_file(latest.string()));
    DDPM_CHECK_AS(!name.empty() && name.find('/') == std::string::npos, IoError,
                  latest.string() << " is damaged: it should name a step folder, holds '" << name << "'");
    dir = fs::path(run_dir) / "checkpoints" / name;
  } else {
    dir = which;
    // A run folder: take its latest checkpoint.
    if (fs::is_regular_file(dir / "checkpoints" / "latest")) return resolve_checkpoint(dir.string(), "latest");
  }
  if (!fs::is_directory(dir)) DDPM_THROW(IoError, "checkpoint " << dir.string() << " does not exist");
  for (const char* f : kFiles)
    if (!fs::is_regular_file(dir / f))
      DDPM_THROW(IoError, "checkpoint " << dir.string() << " is incomplete: " << f << " is missing");
  return dir.string();
}

bool is_run_folder(const std::string& dir) {
  return fs::exists(fs::path(dir) / "config.json") || fs::exists(fs::path(dir) / "checkpoints");
}

nlohmann::json read_run_config(const std::string& run_dir) {
  const std::string path = (fs::path(run_dir) / "config.json").string();
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, path << " is not valid JSON: " << e.what());
  }
}

void write_run_config(const std::string& run_dir, const nlohmann::json& config) {
  write_file_atomic((fs::path(run_dir) / "config.json").string(), config.dump(2) + "\n");
}

std::string save_checkpoint(const std::string& run_dir, const Checkpoint& ckpt) {
  const fs::path ckpt_root = fs::path(run_dir) / "checkpoints";
  fs::create_directories(ckpt_root);
  const std::string dir = checkpoint_dir(run_dir, ckpt.step);
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"ddpm.step", std::to_string(ckpt.step)}};
  publish_directory(
      dir,
      [&](const std::string& tmp) {
        const fs::path t(tmp);
        save_safetensors((t / kModelFile).string(), ckpt.model, meta);
        save_safetensors((t / kEmaFile).string(), ckpt.ema, meta);
        save_safetensors((t / kOptimizerFile).string(), ckpt.optimizer, meta);
        nlohmann::json st = ckpt.trainer_state;
        st["step"] = ckpt.step;
        write_file_atomic((t / kTrainerStateFile).string(), st.dump(2) + "\n");
      },
      IfExists::replace);
  write_file_atomic((ckpt_root / "latest").string(), "step_" + std::to_string(ckpt.step) + "\n");
  return dir;
}

Checkpoint load_checkpoint(const std::string& dir) {
  const fs::path d(dir);
  for (const char* f : kFiles)
    if (!fs::is_regular_file(d / f)) DDPM_THROW(IoError, "checkpoint " << dir << " is incomplete: " << f << " is missing");
  Checkpoint c;
  c.model = load_safetensors((d / kModelFile).string()).tensors;
  c.ema = load_safetensors((d / kEmaFile).string()).tensors;
  c.optimizer = load_safetensors((d / kOptimizerFile).string()).tensors;
  const std::string path = (d / kTrainerStateFile).string();
  try {
    c.trainer_state = nlohmann::json::parse(read_file(path));
    c.step = c.trainer_state.at("step").get<std::int64_t>();
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, path << " is damaged: " << e.what());
  }
  return c;
}

std::vector<std::string> config_differences(const nlohmann::json& a, const nlohmann::json& b,
                                            const std::string& prefix) {
  std::vector<std::string> out;
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      const std::string name = prefix.empty() ? it.key() : prefix + "." + it.key();
      if (!b.contains(it.key())) {
        out.push_back(name + ": " + it.value().dump() + " vs (absent)");
        continue;
      }
      auto sub = config_differences(it.value(), b.at(it.key()), name);
      out.insert(out.end(), sub.begin(), sub.end());
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key()))
        out.push_back((prefix.empty() ? it.key() : prefix + "." + it.key()) + ": (absent) vs " + it.value().dump());
    return out;
  }
  if (a != b) out.push_back(prefix + ": " + a.dump() + " vs " + b.dump());
  return out;
}

}  // namespace ddpm::run
