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

// The options that define a consistency run (consistency_options_json): state.json's key, the
// flag, the member. --log-every is one: the final loss is the last logged window's mean.
const OptionTable<ConsistencyOptions>& consistency_option_table() {
  using O = ConsistencyOptions;
  static const OptionTable<O> table = {
      bind_option("teacher", "--teacher", &O::teacher),
      bind_option("levels", "--consistency-levels", &O::levels),
      bind_option("steps", "--steps", &O::steps),
      bind_option("batch_size", "--batch-size", &O::batch_size),
      bind_option("lr", "--lr", &O::lr),
      bind_option("warmup_steps", "--warmup-steps", &O::warmup_steps),
      bind_option("grad_clip", "--grad-clip", &O::grad_clip),
      bind_option("ema_rate", "--ema-rate", &O::ema_rate),
      bind_option("target_ema", "--target-ema", &O::target_ema),
      bind_option("loss", "--consistency-loss", &O::loss),
      bind_option("data", "--data", &O::data),
      bind_option("label_dropout", "--label-dropout", &O::label_dropout),
      bind_option("gap_samples", "--gap-samples", &O::gap_samples),
      bind_option("log_every", "--log-every", &O::log_every),
      bind_option("seed", "--seed", &O::seed),
      bind_option("overwrite", "--overwrite", &O::overwrite),
      bind_option("guided", "--guided", &O::guided, canonical_guided)};
  return table;
}

double number_or_nan(const nlohmann::json& c, const char* key) {
  return c.contains(key) && c.at(key).is_number() ? c.at(key).get<double>() : NAN;
}

}  // namespace

nlohmann::json consistency_options_json(const ConsistencyOptions& o) {
  // "method" is recorded with the options but set by no flag of this table: --method is
  // checked against the state's own "method" first (check_saved_method).
  nlohmann::json js = options_json(consistency_option_table(), o);
  js["method"] = kConsistencyMethod;
  return js;
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
  // A state saved before --guided existed (consistency_run.h) is an unguided run's.
  if (st.options.is_object() && !st.options.contains("guided")) st.options["guided"] = "";
  resume_options(consistency_option_table(), st.options, o, file);
  DDPM_CHECK_AS(st.step <= o.steps, IoError,
                file << " is damaged: \"step\" " << st.step << " exceeds the run's --steps " << o.steps);
  return st;
}

}  // namespace ddpm::run
