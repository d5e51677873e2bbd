// models/run/checkpoint.cpp: the run folder's checkpoints (layout in checkpoint.h).
//
// A checkpoint is published in two atomic steps: the step_N folder (filled under a
// temporary name, fsynced, renamed: engine/io/atomic_file.h), then the one-line text file
// checkpoints/latest naming it. A crash between the two leaves a complete step_N that
// `latest` does not name yet: the previous checkpoint stays the one a resume picks.
#include "models/run/checkpoint.h"

#include <cmath>
#include <cstring>
#include <ctime>
#include <limits>
#include <filesystem>
#include <map>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/parameters.h"
#include "models/data/loader.h"
#include "models/train/trainer.h"
#include "models/unet/model_io.h"

namespace fs = std::filesystem;

namespace ddpm::run {
namespace {

const char* const kFiles[] = {kModelFile, kEmaFile, kOptimizerFile, kTrainerStateFile};

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// trainer_state.json is read back on --resume; what a damaged one may hold is checked here,
// once, so the readers after it (restore_trainer_state, checkpoint_loader_position, the apps'
// importance history) meet only the types they ask for. nlohmann::json's get<std::int64_t>
// casts a float such as 1e300 to an integer (undefined behaviour) and get<std::uint64_t>
// wraps -1 around: integers are therefore checked to be JSON integers in range first.
bool is_integer_in(const nlohmann::json& v, std::int64_t lo) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return v.is_number_integer() && v.get<std::int64_t>() >= lo;
}

void validate_trainer_state(const nlohmann::json& js, const std::string& path) {
  auto fail = [&](const std::string& what) { DDPM_THROW(IoError, path << " is damaged: " << what); };
  if (!js.is_object()) fail("it holds a JSON " + std::string(js.type_name()) + ", not an object");
  auto count = [&](const nlohmann::json& obj, const char* key, const std::string& name) {  // optional, >= 0
    if (obj.contains(key) && !is_integer_in(obj.at(key), 0))
      fail("\"" + name + "\" must be a whole number >= 0, is " + obj.at(key).dump());
  };
  auto object = [&](const char* key) {
    if (js.contains(key) && !js.at(key).is_object()) fail(std::string("\"") + key + "\" must be an object");
  };
  if (!js.contains("step")) fail("it has no \"step\"");
  count(js, "step", "step");
  count(js, "adam_step", "adam_step");
  object("generator");
  if (js.contains("generator"))  // the Philox seed and offset are full 64-bit unsigned values
    for (const char* key : {"seed", "offset"})
      if (js["generator"].contains(key) && !js["generator"][key].is_number_unsigned() &&
          !(js["generator"][key].is_number_integer() && js["generator"][key].get<std::int64_t>() >= 0))
        fail(std::string("\"generator\".\"") + key + "\" must be a whole number >= 0, is " +
             js["generator"][key].dump());
  object("loader");
  if (js.contains("loader"))
    for (const char* key : {"epoch", "index"}) count(js["loader"], key, std::string("loader.") + key);
  object("metrics");
  if (js.contains("posthoc_ema")) {
    const nlohmann::json& p = js["posthoc_ema"];
    bool ok = p.is_array();
    for (std::size_t i = 0; ok && i < p.size(); ++i) {
      const nlohmann::json& e = p[i];
      ok = e.is_object() && e.contains("sigma_rel") && e["sigma_rel"].is_number() && e.contains("gamma") &&
           e["gamma"].is_number() && std::isfinite(e["sigma_rel"].get<double>()) && std::isfinite(e["gamma"].get<double>());
    }
    if (!ok) fail("\"posthoc_ema\" must be a list of {\"sigma_rel\", \"gamma\"} numbers, is " + p.dump());
  }
  if (js.contains("importance_history")) {  // [T][<= history] losses (models/diffusion/likelihood.h)
    const nlohmann::json& h = js["importance_history"];
    bool ok = h.is_array();
    for (std::size_t t = 0; ok && t < h.size(); ++t) {
      ok = h[t].is_array();
      for (std::size_t k = 0; ok && k < h[t].size(); ++k) ok = h[t][k].is_number();
    }
    if (!ok) fail("\"importance_history\" must be a list of lists of numbers");
  }
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

std::string move_run_aside(const std::string& dir) {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &utc);
  // Two replacements within one second would name the same folder: count on from -2, so an
  // earlier aside folder is never overwritten (rename fails on a non-empty target anyway).
  std::string aside = dir + ".replaced-" + stamp;
  for (int k = 2; fs::exists(aside); ++k) aside = dir + ".replaced-" + stamp + "-" + std::to_string(k);
  fs::rename(dir, aside);
  return aside;
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
        if (!ckpt.power_ema.empty()) save_safetensors((t / kPowerEmaFile).string(), ckpt.power_ema, meta);
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
  // The small JSON first: a damaged one is refused before megabytes of weights are read.
  const std::string path = (d / kTrainerStateFile).string();
  try {
    c.trainer_state = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, path << " is damaged: " << e.what());
  }
  validate_trainer_state(c.trainer_state, path);
  c.step = c.trainer_state.at("step").get<std::int64_t>();
  c.model = load_safetensors((d / kModelFile).string()).tensors;
  c.ema = load_safetensors((d / kEmaFile).string()).tensors;
  c.optimizer = load_safetensors((d / kOptimizerFile).string()).tensors;
  if (fs::is_regular_file(d / kPowerEmaFile)) c.power_ema = load_safetensors((d / kPowerEmaFile).string()).tensors;
  return c;
}

Tensor slab_flat_from(const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& prefix,
                      const ParameterSlab& slab, const std::string& source) {
  std::map<std::string, Tensor> by_name;  // the tensors of this prefix
  for (const auto& [name, t] : tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) by_name.emplace(name, t);
  Tensor flat = Tensor::zeros({slab.slab_numel()}, DType::f32, Device::cpu());
  std::vector<std::string> missing, mismatched;
  for (std::size_t i = 0; i < slab.size(); ++i) {
    const SlabEntry& e = slab.entry(i);
    auto it = by_name.find(prefix + e.name);
    if (it == by_name.end()) {
      missing.push_back(prefix + e.name);
      continue;
    }
    Tensor v = it->second.shape().size() == 4 ? unet::oihw_to_krsc(it->second) : it->second;
    if (v.shape() != e.value.shape() || v.dtype() != DType::f32) {
      mismatched.push_back(prefix + e.name);
      continue;
    }
    Tensor view = slab.slice(flat, i);
    std::memcpy(view.raw_data(), v.raw_data(), v.nbytes());
    by_name.erase(it);
  }
  std::vector<std::string> unexpected;
  for (const auto& kv : by_name) unexpected.push_back(kv.first);
  std::ostringstream os;
  auto list = [&os](const char* what, const std::vector<std::string>& names) {  // at most 10 names each
    if (names.empty()) return;
    os << "\n  " << what << " (" << names.size() << "):";
    for (std::size_t i = 0; i < names.size() && i < 10; ++i) os << " " << names[i];
    if (names.size() > 10) os << " ...";
  };
  list("missing", missing);
  list("unexpected", unexpected);
  list("mismatched", mismatched);
  DDPM_CHECK_AS(missing.empty() && mismatched.empty() && by_name.empty(), IoError,
                source << " does not match the model:" << os.str());
  return flat;
}

void append_slab(const Tensor& flat, const std::string& prefix, const ParameterSlab& slab,
                 std::vector<std::pair<std::string, Tensor>>& out) {
  for (std::size_t i = 0; i < slab.size(); ++i) {
    Tensor v = slab.slice(flat, i).to(Device::cpu()).clone();
    out.emplace_back(prefix + slab.entry(i).name, v.shape().size() == 4 ? unet::krsc_to_oihw(v) : v);
  }
}

Checkpoint trainer_checkpoint(train::Trainer& trainer, nn::Module& net, ParameterSlab& slab,
                              const LoaderPosition& loader) {
  Checkpoint ck;
  ck.step = trainer.step_count();
  ck.model = unet::export_state_dict(net);
  // The EMA weights are exported through the network: swapped into the slab, and back even
  // when the export throws, so training goes on with the live weights.
  trainer.ema().swap(slab);
  try {
    ck.ema = unet::export_state_dict(net);
  } catch (...) {
    trainer.ema().swap(slab);
    throw;
  }
  trainer.ema().swap(slab);
  append_slab(trainer.optimizer().exp_avg(), "exp_avg.", slab, ck.optimizer);
  append_slab(trainer.optimizer().exp_avg_sq(), "exp_avg_sq.", slab, ck.optimizer);
  const Generator& g = trainer.generator();
  ck.trainer_state = {{"step", ck.step},
                      {"adam_step", trainer.optimizer().step_count()},
                      {"generator", {{"seed", g.seed()}, {"offset", g.offset()}}},
                      {"loader", {{"epoch", loader.epoch}, {"index", loader.index}}}};
  // The power EMAs go through the slab's layout directly (every UNet parameter is in the slab,
  // so the names and OIHW layout are those of export_state_dict); f32 values round-trip exactly.
  if (!trainer.power_emas().empty()) {
    nlohmann::json profiles = nlohmann::json::array();
    for (std::size_t i = 0; i < trainer.power_emas().size(); ++i) {
      const train::PowerEma& p = trainer.power_emas()[i];
      append_slab(p.values(), train::power_ema_prefix(i), slab, ck.power_ema);
      profiles.push_back({{"sigma_rel", p.sigma_rel()}, {"gamma", p.gamma()}});
    }
    ck.trainer_state["posthoc_ema"] = profiles;
  }
  return ck;
}

train::TrainerState restore_trainer_state(const Checkpoint& ck, const std::string& dir, nn::Module& net,
                                          const ParameterSlab& slab, Device device) {
  // The EMA weights pass through the network to reach the slab's layout; the model weights
  // go in last, as they are what training continues from.
  unet::load_state_dict(net, ck.ema, dir + "/" + kEmaFile);
  const Tensor ema_flat = slab.values().clone();
  unet::load_state_dict(net, ck.model, dir + "/" + kModelFile);
  const nlohmann::json& js = ck.trainer_state;
  const std::string state_file = dir + "/" + kTrainerStateFile;
  train::TrainerState st;
  st.step = ck.step;
  try {  // the types were checked by load_checkpoint; a key may still be missing
    st.seed = js.at("generator").at("seed").get<std::uint64_t>();
    st.offset = js.at("generator").at("offset").get<std::uint64_t>();
    st.adam_step = js.at("adam_step").get<std::int64_t>();
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, state_file << " lacks the generator state or \"adam_step\" of a resumable run: " << e.what());
  }
  DDPM_CHECK_AS(st.adam_step <= st.step, IoError,
                state_file << " is damaged: \"adam_step\" " << st.adam_step << " exceeds \"step\" " << st.step
                           << " (an AdamW update is one trainer step)");
  st.params = slab.values().clone();
  const std::string opt_file = dir + "/" + kOptimizerFile;
  st.exp_avg = slab_flat_from(ck.optimizer, "exp_avg.", slab, opt_file).to(device);
  st.exp_avg_sq = slab_flat_from(ck.optimizer, "exp_avg_sq.", slab, opt_file).to(device);
  st.ema = ema_flat;
  const std::size_t profiles = js.contains("posthoc_ema") ? js.at("posthoc_ema").size() : 0;
  DDPM_CHECK_AS(profiles == 0 || !ck.power_ema.empty(), IoError,
                "checkpoint " << dir << " tracks " << profiles << " power-function EMAs (trainer_state.json "
                              << "\"posthoc_ema\") but has no " << kPowerEmaFile);
  for (std::size_t i = 0; i < profiles; ++i)
    st.power_ema.push_back(
        slab_flat_from(ck.power_ema, train::power_ema_prefix(i), slab, dir + "/" + kPowerEmaFile).to(device));
  return st;
}

LoaderPosition checkpoint_loader_position(const Checkpoint& ck) {
  try {  // the types were checked by load_checkpoint; a key may still be missing
    const nlohmann::json& at = ck.trainer_state.at("loader");
    return {at.at("epoch").get<std::int64_t>(), at.at("index").get<std::int64_t>()};
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, "trainer_state.json of the checkpoint at step " << ck.step
                                                                       << " lacks the loader position: " << e.what());
  }
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
