// models/run/consistency_state.cpp: the defining options of a consistency run and the first
// two steps of its --resume (see consistency_state.h; the loop's part is consistency_run.cpp).
#include "models/run/consistency_state.h"

#include <cmath>
#include <filesystem>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/distill_record.h"
#include "models/run/model_source.h"

namespace fs = std::filesystem;

namespace ddpm::run {

namespace {

// The defining options: state.json's key and the flag that sets it.
const std::vector<std::pair<std::string, std::string>> kOptionFlags = {
    {"teacher", "--teacher"},         {"levels", "--consistency-levels"}, {"steps", "--steps"},
    {"batch_size", "--batch-size"},   {"lr", "--lr"},                     {"warmup_steps", "--warmup-steps"},
    {"grad_clip", "--grad-clip"},     {"ema_rate", "--ema-rate"},         {"target_ema", "--target-ema"},
    {"loss", "--consistency-loss"},   {"data", "--data"},                 {"label_dropout", "--label-dropout"},
    {"gap_samples", "--gap-samples"}, {"log_every", "--log-every"},       {"seed", "--seed"},
    {"overwrite", "--overwrite"}};

template <typename T>
void take(const nlohmann::json& saved, const char* key, T& value, const std::string& file) {
  try {
    value = saved.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, file << " is damaged: \"options\".\"" << key << "\" is missing or of the wrong type (" << e.what()
                             << ")");
  }
}

double number_or_nan(const nlohmann::json& c, const char* key) {
  return c.contains(key) && c.at(key).is_number() ? c.at(key).get<double>() : NAN;
}

}  // namespace

nlohmann::json consistency_options_json(const ConsistencyOptions& o) {
  return {{"method", kConsistencyMethod},
          {"teacher", o.teacher},
          {"levels", o.levels},
          {"steps", o.steps},
          {"batch_size", o.batch_size},
          {"lr", o.lr},
          {"warmup_steps", o.warmup_steps},
          {"grad_clip", o.grad_clip},
          {"ema_rate", o.ema_rate},
          {"target_ema", o.target_ema},
          {"loss", o.loss},
          {"data", o.data},
          {"label_dropout", o.label_dropout},
          {"gap_samples", o.gap_samples},
          {"log_every", o.log_every},  // the final loss is the last logged window's mean
          {"seed", o.seed},
          {"overwrite", o.overwrite}};
}

bool is_consistency_folder(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(dir) / "config.json", ec)) return false;
  try {
    const std::optional<DistillationRecord> r = read_distillation_record(dir);
    return r && r->sampler == kConsistencyMethod;
  } catch (const Error&) {
    return false;  // a damaged config is no finished consistency model
  }
}

std::optional<ConsistencyResult> completed_consistency_run(const ConsistencyOptions& o) {
  std::error_code ec;
  if (fs::exists(distill_state_dir(o.out), ec) || !is_consistency_folder(o.out)) return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(read_file(model_config_path(o.out)), nullptr, false);
  nlohmann::json c = nlohmann::json::object();  // the "consistency" record, as consistency_run writes it
  if (j.is_object() && j.contains(kDistillationSection) && j[kDistillationSection].is_object() &&
      j[kDistillationSection].contains(kConsistencyMethod))
    c = j[kDistillationSection][kConsistencyMethod];
  if (!c.is_object()) c = nlohmann::json::object();
  ConsistencyResult result;
  result.steps_done = c.contains("steps") && c.at("steps").is_number_integer() ? c.at("steps").get<std::int64_t>() : 0;
  result.final_loss = number_or_nan(c, "final_loss");
  result.gap_before = number_or_nan(c, "gap_before");
  result.gap_after = number_or_nan(c, "gap_after");
  result.folder = o.out;
  if (o.log)
    o.log("ddpm-distill: " + o.out + " is complete (a consistency model of " + std::to_string(result.steps_done) +
          " steps) and has no saved state: nothing to resume");
  return result;
}

DistillState resume_consistency_state(ConsistencyOptions& o) {
  DistillState st = load_distill_state(o.out);
  check_saved_method(st, kConsistencyMethod, o.out);
  const std::string file = distill_state_dir(o.out) + "/" + kDistillStateJson;
  check_resume_flags(st.options, consistency_options_json(o), o.flags_given, kOptionFlags, file);
  take(st.options, "teacher", o.teacher, file);
  take(st.options, "levels", o.levels, file);
  take(st.options, "steps", o.steps, file);
  take(st.options, "batch_size", o.batch_size, file);
  take(st.options, "lr", o.lr, file);
  take(st.options, "warmup_steps", o.warmup_steps, file);
  take(st.options, "grad_clip", o.grad_clip, file);
  take(st.options, "ema_rate", o.ema_rate, file);
  take(st.options, "target_ema", o.target_ema, file);
  take(st.options, "loss", o.loss, file);
  take(st.options, "data", o.data, file);
  take(st.options, "label_dropout", o.label_dropout, file);
  take(st.options, "gap_samples", o.gap_samples, file);
  take(st.options, "log_every", o.log_every, file);
  take(st.options, "seed", o.seed, file);
  take(st.options, "overwrite", o.overwrite, file);
  DDPM_CHECK_AS(st.step <= o.steps, IoError,
                file << " is damaged: \"step\" " << st.step << " exceeds the run's --steps " << o.steps);
  return st;
}

}  // namespace ddpm::run
