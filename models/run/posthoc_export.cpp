// models/run/posthoc_export.cpp: post-hoc EMA snapshots and reconstruction (contract in
// posthoc_export.h).
#include "models/run/posthoc_export.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/run/checkpoint.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"

namespace fs = std::filesystem;

namespace ddpm::run {
namespace {

constexpr const char* kStepKey = "ddpm.step";
constexpr const char* kUpdatesKey = "ddpm.updates";
constexpr const char* kProfilesKey = "ddpm.posthoc_ema";

// Bounds on what a snapshot's metadata may claim. A billion steps is a thousand times the
// longest published diffusion trainings (EDM2: about a million); the reconstruction's inner
// products cost O(t) per pair of exponents (posthoc_ema.h), so a step field believed blindly
// would hang it. EDM2 tracks 2 profiles; 16 leaves room without letting a header ask for an
// O(n^3) solve over thousands.
constexpr std::int64_t kMaxPosthocStep = 1'000'000'000;
constexpr std::size_t kMaxPosthocProfiles = 16;

// A whole decimal integer in [lo, hi]: std::stoll would accept "12abc" as 12 and throws
// std::invalid_argument / std::out_of_range, foreign to the library's errors.
std::int64_t parse_integer(const std::string& text, std::int64_t lo, std::int64_t hi, const std::string& path,
                           const char* key) {
  std::int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, err] = std::from_chars(text.data(), end, v);
  DDPM_CHECK_AS(err == std::errc() && ptr == end && !text.empty() && v >= lo && v <= hi, IoError,
                "post-hoc EMA snapshot " << path << " has a damaged " << key << " metadata: '" << text
                                         << "' is not a whole number in [" << lo << ", " << hi << "]");
  return v;
}

PosthocSnapshot parse_snapshot(const std::string& path) {
  // The header alone, so listing a run's snapshots does not read their weights; the CRC is
  // checked when a snapshot is loaded for the reconstruction.
  const std::map<std::string, std::string> meta = load_safetensors_metadata(path);
  for (const char* key : {kStepKey, kUpdatesKey, kProfilesKey})
    DDPM_CHECK_AS(meta.count(key) == 1, IoError,
                  "post-hoc EMA snapshot " << path << " lacks the " << key << " metadata (it was not written by "
                                           << "ddpm-train or ddpm-control train --posthoc-ema)");
  PosthocSnapshot s;
  s.path = path;
  s.step = parse_integer(meta.at(kStepKey), 1, kMaxPosthocStep, path, kStepKey);
  // updates <= step: an update is one trainer step (fewer when non-finite steps were skipped).
  s.updates = parse_integer(meta.at(kUpdatesKey), 0, s.step, path, kUpdatesKey);
  try {
    const nlohmann::json profiles = nlohmann::json::parse(meta.at(kProfilesKey));
    DDPM_CHECK_AS(profiles.is_array() && !profiles.empty() && profiles.size() <= kMaxPosthocProfiles, IoError,
                  "post-hoc EMA snapshot " << path << ": " << kProfilesKey << " must list 1 to "
                                           << kMaxPosthocProfiles << " profiles, holds " << profiles.dump());
    for (const nlohmann::json& p : profiles) {
      const double sigma_rel = p.at("sigma_rel").get<double>(), gamma = p.at("gamma").get<double>();
      // The pair must be one profile (EDM2 eq. 123): gamma finite and > -1, sigma_rel its
      // width. A gamma of NaN or <= -1 has no profile; the solve would refuse it without
      // naming the file, or reconstruct from a profile that the weights do not follow.
      const bool valid_gamma = std::isfinite(gamma) && gamma > -1.0;
      const bool consistent = valid_gamma && std::isfinite(sigma_rel) && sigma_rel > 0.0 &&
                              std::abs(train::sigma_rel_from_gamma(gamma) - sigma_rel) <= 1e-6 * std::abs(sigma_rel);
      DDPM_CHECK_AS(consistent, IoError,
                    "post-hoc EMA snapshot " << path << " has a damaged profile in " << kProfilesKey << ": "
                                             << p.dump() << " (gamma must be finite and > -1, sigma_rel its width)");
      s.sigma_rels.push_back(sigma_rel);
      s.gammas.push_back(gamma);
    }
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, "post-hoc EMA snapshot " << path << " has a damaged " << kProfilesKey << " metadata ("
                                                 << e.what() << ")");
  }
  return s;
}

}  // namespace

std::string write_posthoc_snapshot(const std::string& run_dir, std::int64_t step, std::int64_t updates,
                                   const std::vector<train::PowerEma>& emas, const ParameterSlab& slab) {
  DDPM_CHECK(!emas.empty(), "write_posthoc_snapshot: no power-function EMAs are tracked");
  const fs::path dir = fs::path(run_dir) / kPosthocFolder;
  fs::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  nlohmann::json profiles = nlohmann::json::array();
  for (std::size_t i = 0; i < emas.size(); ++i) {
    append_slab(emas[i].values(), train::power_ema_prefix(i), slab, tensors);
    profiles.push_back({{"sigma_rel", emas[i].sigma_rel()}, {"gamma", emas[i].gamma()}});
  }
  const std::string path = (dir / ("step_" + std::to_string(step) + ".safetensors")).string();
  save_safetensors(path, tensors,
                   {{"format", "pt"},
                    {kStepKey, std::to_string(step)},
                    {kUpdatesKey, std::to_string(updates)},
                    {kProfilesKey, profiles.dump()}});
  return path;
}

std::string posthoc_run_folder(const std::string& run_or_checkpoint) {
  const fs::path p = fs::path(run_or_checkpoint).lexically_normal();
  std::error_code ec;
  for (const fs::path& candidate : {p, p.parent_path().parent_path()})
    if (fs::is_directory(candidate / kPosthocFolder, ec)) return candidate.string();
  DDPM_THROW(IoError, run_or_checkpoint << " has no " << kPosthocFolder
                                        << "/ folder of post-hoc EMA snapshots: train with --posthoc-ema 0.05,0.10 "
                                           "(ddpm-train, ddpm-control train) to record them");
}

std::vector<PosthocSnapshot> list_posthoc_snapshots(const std::string& run_or_checkpoint) {
  const fs::path dir = fs::path(posthoc_run_folder(run_or_checkpoint)) / kPosthocFolder;
  std::vector<PosthocSnapshot> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name.rfind("step_", 0) != 0 || entry.path().extension() != ".safetensors") continue;
    out.push_back(parse_snapshot(entry.path().string()));
  }
  DDPM_CHECK_AS(!out.empty(), IoError, dir.string() << " holds no post-hoc EMA snapshot (step_N.safetensors)");
  std::sort(out.begin(), out.end(), [](const PosthocSnapshot& a, const PosthocSnapshot& b) { return a.step < b.step; });
  for (std::size_t i = 1; i < out.size(); ++i)  // step_5 and step_05, or a file renamed by hand
    DDPM_CHECK_AS(out[i].step != out[i - 1].step, IoError,
                  out[i - 1].path << " and " << out[i].path << " both claim to be the snapshot of step " << out[i].step);
  return out;
}

PosthocResult reconstruct_posthoc_ema(const std::string& run_or_checkpoint, double sigma_rel, std::int64_t step) {
  PosthocResult r;
  r.run_dir = posthoc_run_folder(run_or_checkpoint);
  const std::vector<PosthocSnapshot> all = list_posthoc_snapshots(r.run_dir);
  try {
    r.gamma = train::gamma_from_sigma_rel(sigma_rel);
  } catch (const ValueError& e) {
    DDPM_THROW(ValueError, "--posthoc-ema: " << strip_source_locations(e.what()));
  }
  r.sigma_rel = sigma_rel;
  const PosthocSnapshot& last = all.back();
  r.step = step > 0 ? step : last.step;
  DDPM_CHECK(step >= 0, "--posthoc-step must be >= 1 (or 0 for the last snapshot), got " << step);
  DDPM_CHECK(r.step <= last.step, "--posthoc-step " << r.step << " is past the last post-hoc EMA snapshot (step "
                                                    << last.step << ") in " << r.run_dir << "/" << kPosthocFolder
                                                    << "; an EMA cannot be reconstructed beyond it: the nearest "
                                                       "snapshot step is "
                                                    << last.step << " (--posthoc-step " << last.step << ")");
  std::vector<const PosthocSnapshot*> used;
  for (const PosthocSnapshot& s : all)
    if (s.step <= r.step && s.updates >= 1) used.push_back(&s);
  DDPM_CHECK(used.size() >= kMinPosthocSnapshots,
             "post-hoc EMA at step " << r.step << " needs at least " << kMinPosthocSnapshots
                                     << " snapshots at or before it, and " << r.run_dir << "/" << kPosthocFolder
                                     << " has " << used.size()
                                     << "; train longer or with a smaller --posthoc-snapshot-every");
  r.updates = used.back()->updates + (r.step - used.back()->step);
  for (const PosthocSnapshot& s : all)
    if (s.step > r.step) {
      r.next_snapshot_step = s.step;
      break;
    }
  for (const PosthocSnapshot* s : used) {
    r.snapshot_steps.push_back(s->step);
    for (double g : s->gammas) r.basis.push_back({g, s->updates});
  }
  r.solution = solve_posthoc_snapshots((fs::path(r.run_dir) / kPosthocFolder).string(), r.snapshot_steps, r.basis,
                                       {r.gamma, r.updates});

  // theta_hat_r = sum_i x_i snapshot_i in double, one snapshot file at a time.
  std::vector<std::string> names;  // the first snapshot's order
  std::map<std::string, std::pair<Shape, std::vector<double>>> acc;
  std::size_t k = 0;  // basis index
  for (std::size_t s = 0; s < used.size(); ++s) {
    const SafetensorsFile file = load_safetensors(used[s]->path);  // verifies the CRC
    for (std::size_t i = 0; i < used[s]->gammas.size(); ++i, ++k) {
      const std::string prefix = train::power_ema_prefix(i);
      const double x = r.solution.coefficients[k];
      std::size_t count = 0;
      for (const auto& [full, t] : file.tensors) {
        if (full.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string name = full.substr(prefix.size());
        ++count;
        auto it = acc.find(name);
        if (it == acc.end()) {
          DDPM_CHECK_AS(s == 0 && i == 0, IoError,
                        used[s]->path << " holds " << full << ", which the first snapshot's profile 0 lacks");
          names.push_back(name);
          it = acc.emplace(name, std::make_pair(t.shape(), std::vector<double>(static_cast<std::size_t>(t.numel()), 0.0)))
                   .first;
        }
        DDPM_CHECK_AS(t.shape() == it->second.first, IoError,
                      used[s]->path << ": " << full << " has shape " << shape_str(t.shape()) << ", other snapshots "
                                    << shape_str(it->second.first));
        if (x == 0.0) continue;
        const std::vector<double> v = t.to_double_vector();
        std::vector<double>& a = it->second.second;
        for (std::size_t e = 0; e < v.size(); ++e) a[e] += x * v[e];
      }
      DDPM_CHECK_AS(count > 0 && count == acc.size(), IoError,
                    used[s]->path << " holds " << count << " tensors for profile " << i << " (" << prefix
                                  << "...), the first snapshot " << acc.size());
    }
  }
  for (const std::string& name : names) {
    const auto& [shape, values] = acc.at(name);
    r.weights.emplace_back(name, Tensor::from_vector(values, shape, DType::f32));
  }
  return r;
}

train::PosthocSolution solve_posthoc_snapshots(const std::string& where, const std::vector<std::int64_t>& steps,
                                               const std::vector<train::PowerProfile>& basis,
                                               const train::PowerProfile& target) {
  // The solver's messages speak of profiles; the user needs the files. Wrapped here rather
  // than inside posthoc_ema.cpp, which knows nothing of folders (and is called on profiles
  // that come from no file, as in the tests of the math).
  auto context = [&](const Error& e) {
    std::ostringstream os;
    os << "post-hoc EMA reconstruction from the snapshots in " << where << " (steps";
    for (std::size_t i = 0; i < steps.size(); ++i) os << (i == 0 ? " " : ", ") << steps[i];
    os << ") at target t = " << target.t << " updates failed: " << strip_source_locations(e.what());
    return os.str();
  };
  try {
    return train::solve_posthoc_coefficients(basis, target);
  } catch (const ValueError& e) {  // what the solve's checks throw
    DDPM_THROW(ValueError, context(e));
  } catch (const Error& e) {
    DDPM_THROW(Error, context(e));
  }
}

std::string posthoc_gap_note(const PosthocResult& r) {
  if (r.snapshot_steps.empty() || r.snapshot_steps.back() == r.step) return "";
  const std::int64_t before = r.snapshot_steps.back(), gap = r.step - before;
  std::ostringstream os;
  os << "step " << r.step;
  if (r.next_snapshot_step > r.step)
    os << " lies between the post-hoc EMA snapshots of steps " << before << " and " << r.next_snapshot_step;
  else
    os << " lies after the last usable post-hoc EMA snapshot (step " << before << ")";
  // Nearest snapshot step; a tie goes to the earlier one (the run's state the user asked
  // about has not happened after it yet).
  const std::int64_t nearest =
      r.next_snapshot_step > r.step && r.next_snapshot_step - r.step < gap ? r.next_snapshot_step : before;
  os << ": the " << gap << " step" << (gap == 1 ? "" : "s") << " after step " << before
     << (gap == 1 ? " is" : " are") << " in no snapshot, so the reconstruction extrapolates over "
     << (gap == 1 ? "it" : "them") << " (relative residual " << r.solution.relative_residual
     << "); the nearest snapshot step is " << nearest << " (--posthoc-step " << nearest << ")";
  return os.str();
}

void write_ema_model_folder(nlohmann::json config, const std::string& source_run_dir,
                            const std::vector<std::pair<std::string, Tensor>>& weights,
                            const std::map<std::string, std::string>& metadata, const std::string& dir, bool overwrite) {
  DDPM_CHECK(!dir.empty(), "--out: the output folder is empty");
  std::error_code ec;
  const fs::path out(dir);
  DDPM_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), "--out " << dir << " exists and is not a folder");
  if (fs::is_directory(out, ec))
    DDPM_CHECK(overwrite || fs::is_empty(out, ec), "--out " << dir << " exists and is not empty; pass --overwrite to replace it");
  std::string autoencoder_src;
  if (config.contains("autoencoder")) {  // a latent run: take its copy of the autoencoder along
    autoencoder_src =
        (fs::path(source_run_dir) / config["autoencoder"].value("folder", std::string(kRunAutoencoderFolder))).string();
    config["autoencoder"]["folder"] = kRunAutoencoderFolder;
  }
  // A text-conditioned run: its tokenizer goes along (model_source.h reads it beside config.json).
  std::string tokenizer_src;
  if (config.contains("text_encoder")) {
    tokenizer_src = (fs::path(source_run_dir) / kRunTokenizerFile).string();
    DDPM_CHECK_AS(fs::is_regular_file(tokenizer_src, ec), IoError,
                  "the run " << source_run_dir << " is text-conditioned, and its tokenizer " << tokenizer_src
                             << " is missing");
  }
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");
  publish_directory(
      dir,
      [&](const std::string& tmp) {
        write_file_atomic(tmp + "/config.json", config.dump(2) + "\n");
        save_safetensors(tmp + "/" + kEmaFile, weights, meta);
        if (!autoencoder_src.empty())
          autoencoder::copy_autoencoder_folder(autoencoder_src, tmp + "/" + kRunAutoencoderFolder);
        if (!tokenizer_src.empty()) fs::copy_file(tokenizer_src, tmp + "/" + kRunTokenizerFile);
      },
      fs::exists(out, ec) ? IfExists::replace : IfExists::fail);
}

void write_posthoc_model(const PosthocResult& r, const std::string& dir, bool overwrite) {
  nlohmann::json config = read_run_config(r.run_dir);
  config["posthoc_ema"] = {{"sigma_rel", r.sigma_rel},
                           {"gamma", r.gamma},
                           {"step", r.step},
                           {"updates", r.updates},
                           {"relative_residual", r.solution.relative_residual},
                           {"rank", r.solution.rank},
                           {"snapshots", r.snapshot_steps},
                           {"coefficients", r.solution.coefficients},
                           {"source", r.run_dir}};
  write_ema_model_folder(config, r.run_dir, r.weights,
                         {{"ddpm.step", std::to_string(r.step)},
                          {"ddpm.posthoc_sigma_rel", nlohmann::json(r.sigma_rel).dump()}},
                         dir, overwrite);
}

}  // namespace ddpm::run
