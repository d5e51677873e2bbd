// models/run/distill_record.cpp: the "distillation" section of a round folder's config.json
// (see distill_record.h).
#include "models/run/distill_record.h"

#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/model_source.h"

namespace ddpm::run {

nlohmann::json distillation_record_json(const DistillationRecord& r) {
  nlohmann::json j = {{"round", r.round},
                      {"sampling_steps", r.sampling_steps},
                      {"sampler", r.sampler},
                      {"clip_x0", r.clip_x0},
                      {"teacher", r.teacher}};
  if (r.guided) j["guided"] = {{"scale_min", r.guided->scale_min}, {"scale_max", r.guided->scale_max}};
  return j;
}

std::optional<DistillationRecord> read_distillation_record(const std::string& checkpoint) {
  if (checkpoint.empty()) return std::nullopt;
  const std::string cfg = model_config_path(checkpoint);  // the one open_model reads
  if (cfg.empty()) return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(read_file(cfg), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains(kDistillationSection)) return std::nullopt;  // open_model judges damage
  const nlohmann::json& s = j.at(kDistillationSection);
  const auto need = [&](const char* key, bool ok) {
    DDPM_CHECK(s.is_object() && s.contains(key) && ok,
               cfg << ": the \"" << kDistillationSection << "\" section (a ddpm-distill round folder) needs "
                            << "the key \"" << key << "\" with a value of the right type");
  };
  need("round", s.is_object() && s.contains("round") && s.at("round").is_number_integer());
  need("sampling_steps", s.contains("sampling_steps") && s.at("sampling_steps").is_number_integer() &&
                             s.at("sampling_steps").get<std::int64_t>() >= 1);
  need("sampler", s.contains("sampler") && s.at("sampler").is_string());
  need("clip_x0", s.contains("clip_x0") && s.at("clip_x0").is_boolean());
  DistillationRecord r;
  r.round = s.at("round").get<int>();
  r.sampling_steps = s.at("sampling_steps").get<std::int64_t>();
  r.sampler = s.at("sampler").get<std::string>();
  r.clip_x0 = s.at("clip_x0").get<bool>();
  r.teacher = s.value("teacher", std::string());
  if (s.contains("guided")) {
    const nlohmann::json& g = s.at("guided");
    need("guided", g.is_object() && g.contains("scale_min") && g.at("scale_min").is_number() &&
                       g.contains("scale_max") && g.at("scale_max").is_number());
    r.guided = GuidedRange{g.at("scale_min").get<double>(), g.at("scale_max").get<double>()};
  }
  return r;
}

std::string distillation_sampling_warning(const DistillationRecord& r, const std::string& checkpoint,
                                          const std::string& sampler, std::int64_t sampling_steps, std::int64_t T) {
  const std::int64_t steps = sampling_steps > 0 ? sampling_steps : T;  // 0: every training step
  if (sampler == r.sampler && steps == r.sampling_steps) return "";
  std::ostringstream s;
  s << "warning: " << checkpoint << " is a progressive-distillation student (round " << r.round
    << ") trained for --sampler " << r.sampler << " --sampling-steps " << r.sampling_steps
    << " only; sampling it with --sampler " << sampler << " --sampling-steps " << steps
    << " leaves that grid, so expect worse samples (it was never trained off it)";
  return s.str();
}

}  // namespace ddpm::run
