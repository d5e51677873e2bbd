// models/run/distill_state.cpp: writing and reading OUT.distill-state (see distill_state.h).
//
// JSON holds no NaN: a skipped step's loss and a window mean not yet logged are written as
// null and read back as NaN. Doubles round-trip exactly (nlohmann::json prints the shortest
// representation that reads back to the same bits), so the resumed loss window, the losses
// and gap_before are the saved ones, bit for bit.
#include "models/run/distill_state.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "models/run/checkpoint.h"
#include "models/run/guided_distill.h"
#include "models/train/trainer.h"

namespace fs = std::filesystem;

namespace ddpm::run {

namespace {

constexpr const char* kFormat = "ddpm-distill-state";
constexpr int kVersion = 1;

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

// Reads state.json's values with their types checked: every mismatch is one IoError naming
// the file and the key (get<std::uint64_t> would wrap a negative number around).
struct Reader {
  const nlohmann::json& js;
  std::string path;
  [[noreturn]] void fail(const std::string& what) const { DDPM_THROW(IoError, path << " is damaged: " << what); }
  const nlohmann::json& at(const nlohmann::json& obj, const std::string& key) const {
    if (!obj.is_object() || !obj.contains(key)) fail("it has no \"" + key + "\"");
    return obj.at(key);
  }
  std::int64_t count(const nlohmann::json& obj, const std::string& key) const {
    const nlohmann::json& v = at(obj, key);
    if (!v.is_number_integer() || (v.is_number_unsigned() ? v.get<std::uint64_t>() > std::numeric_limits<std::int64_t>::max()
                                                          : v.get<std::int64_t>() < 0))
      fail("\"" + key + "\" must be a whole number >= 0, is " + v.dump());
    return v.get<std::int64_t>();
  }
  std::uint64_t word(const nlohmann::json& obj, const std::string& key) const {
    const nlohmann::json& v = at(obj, key);
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0))
      fail("\"" + key + "\" must be a whole number >= 0, is " + v.dump());
    return v.get<std::uint64_t>();
  }
  double real(const nlohmann::json& v, const std::string& key) const {  // null: NaN
    if (v.is_null()) return NAN;
    if (!v.is_number()) fail("\"" + key + "\" must be a number or null, is " + v.dump());
    return v.get<double>();
  }
};

}  // namespace

std::string distill_state_dir(const std::string& out) {
  std::string p = out;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p + ".distill-state";
}

void save_distill_state(const std::string& out, const DistillState& st) {
  nlohmann::json gens = nlohmann::json::object();
  for (const auto& [name, g] : st.generators) gens[name] = {{"seed", g.seed()}, {"offset", g.offset()}};
  nlohmann::json losses = nlohmann::json::array();
  for (double l : st.losses) losses.push_back(number_or_null(l));
  const bool progressive = st.method == kProgressiveMethod;
  nlohmann::json js = {{"format", kFormat},
                       {"version", kVersion},
                       {"method", st.method},
                       {"options", st.options},
                       {"step", st.step},
                       {"adam_step", st.adam_step},
                       {"generators", gens},
                       {"loader", {{"epoch", st.loader.epoch}, {"index", st.loader.index}}},
                       {"gap_before", st.has_gap_before ? number_or_null(st.gap_before) : nlohmann::json(nullptr)},
                       {"final_loss", number_or_null(st.final_loss)},
                       {"window", {{"sum", st.window_sum}, {"count", st.window_n}}},
                       {"losses", losses},
                       {"seconds", st.seconds}};
  if (progressive) {  // a consistency run has one folder: no round, no record of published ones
    js["round"] = st.round;
    js["record"] = st.record;
  }
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const DistillState::Flat& f : st.flats) {
    DDPM_CHECK(f.slab != nullptr, "save_distill_state: the flat tensor \"" << f.name << "\" has no slab");
    append_slab(f.values, f.name + ".", *f.slab, tensors);
  }
  std::map<std::string, std::string> meta = {{"format", "pt"},
                                             {"ddpm.distill_method", st.method},
                                             {"ddpm.step", std::to_string(st.step)}};
  if (progressive) meta["ddpm.distill_round"] = std::to_string(st.round);
  publish_directory(
      distill_state_dir(out),
      [&](const std::string& tmp) {
        save_safetensors(tmp + "/" + kDistillStateTensors, tensors, meta);
        write_file_atomic(tmp + "/" + kDistillStateJson, js.dump(2) + "\n");
      },
      IfExists::replace);
}

DistillState load_distill_state(const std::string& out) {
  const std::string dir = distill_state_dir(out);
  const std::string path = dir + "/" + kDistillStateJson, tensors_path = dir + "/" + kDistillStateTensors;
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    // publish_directory's replace has a short window without `dir`: a kill there leaves the
    // previous state as "<dir>.old-XXXXXX" (engine/io/atomic_file.h). Say where it is.
    std::string aside;
    const fs::path parent = fs::path(dir).parent_path().empty() ? fs::path(".") : fs::path(dir).parent_path();
    const std::string prefix = fs::path(dir).filename().string() + ".old-";
    for (const auto& e : fs::directory_iterator(parent, ec))
      if (e.path().filename().string().rfind(prefix, 0) == 0) aside = e.path().string();
    DDPM_THROW(ValueError, "--resume: no saved state to resume from: "
                               << dir << " does not exist (a run of --out " << out
                               << " leaves one when a signal stops it, and every --checkpoint-every steps (a "
                               << "progressive run also at each round's start))"
                               << (aside.empty() ? std::string()
                                                 : "; a kill while it was being replaced left the previous one in " +
                                                       aside + ": rename it to " + dir + " to resume from it"));
  }
  DDPM_CHECK_AS(fs::is_regular_file(path, ec) && fs::is_regular_file(tensors_path, ec), IoError,
                "the saved state " << dir << " is incomplete: " << kDistillStateJson << " or " << kDistillStateTensors
                                   << " is missing");
  nlohmann::json js;
  try {
    js = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, path << " is damaged: " << e.what());
  }
  const Reader r{js, path};
  if (!js.is_object() || js.value("format", std::string()) != kFormat)
    r.fail(std::string("it is not a ddpm-distill state (no \"format\": \"") + kFormat + "\")");
  if (r.count(js, "version") != kVersion)
    r.fail("version " + r.at(js, "version").dump() + ", this build reads " + std::to_string(kVersion));
  DistillState st;
  if (js.contains("method")) {  // absent: a state written before consistency distillation, progressive
    const nlohmann::json& m = js.at("method");
    if (m != kProgressiveMethod && m != kConsistencyMethod)
      r.fail(std::string("\"method\" must be \"") + kProgressiveMethod + "\" or \"" + kConsistencyMethod + "\", is " +
             m.dump());
    st.method = m.get<std::string>();
  }
  const bool progressive = st.method == kProgressiveMethod;
  st.options = r.at(js, "options");
  if (!st.options.is_object()) r.fail("\"options\" must be an object");
  if (progressive) {
    const std::int64_t round = r.count(js, "round");
    if (round > 64) r.fail("\"round\" " + std::to_string(round) + " is not a round number");
    st.round = static_cast<int>(round);
  }
  st.step = r.count(js, "step");
  st.adam_step = r.count(js, "adam_step");
  if (st.adam_step > st.step)
    r.fail("\"adam_step\" " + std::to_string(st.adam_step) + " exceeds \"step\" " + std::to_string(st.step));
  const nlohmann::json& gens = r.at(js, "generators");
  if (!gens.is_object()) r.fail("\"generators\" must be an object");
  for (const auto& [name, g] : gens.items()) st.generators[name] = Generator(r.word(g, "seed"), r.word(g, "offset"));
  st.loader.epoch = r.count(r.at(js, "loader"), "epoch");
  st.loader.index = r.count(r.at(js, "loader"), "index");
  st.gap_before = r.real(r.at(js, "gap_before"), "gap_before");
  st.has_gap_before = !r.at(js, "gap_before").is_null();
  st.final_loss = r.real(r.at(js, "final_loss"), "final_loss");
  st.window_sum = r.real(r.at(r.at(js, "window"), "sum"), "window.sum");
  st.window_n = r.count(r.at(js, "window"), "count");
  const nlohmann::json& losses = r.at(js, "losses");
  if (!losses.is_array() || static_cast<std::int64_t>(losses.size()) != st.step)
    r.fail("\"losses\" must list one loss per step done (" + std::to_string(st.step) + ")");
  for (const nlohmann::json& l : losses) st.losses.push_back(r.real(l, "losses"));
  st.seconds = r.real(r.at(js, "seconds"), "seconds");
  if (progressive) {
    st.record = r.at(js, "record");
    if (!st.record.is_object() || !st.record.contains("rounds") || !st.record["rounds"].is_array())
      r.fail("\"record\" must be distill.json's record with its \"rounds\" list");
    if (st.record.contains("rounds_done")) (void)r.count(st.record, "rounds_done");  // read back by the resumed run
    if (st.record.contains("resumed") && !st.record["resumed"].is_array())
      r.fail("\"record\".\"resumed\" must be a list, is " + st.record["resumed"].dump());
  }
  st.tensors = load_safetensors(tensors_path).tensors;  // IoError naming the file: format, CRC
  return st;
}

std::optional<std::string> saved_distill_method(const std::string& out) {
  const std::string path = distill_state_dir(out) + "/" + kDistillStateJson;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  const nlohmann::json js = nlohmann::json::parse(read_file(path), nullptr, false);
  if (!js.is_object()) return std::nullopt;
  if (!js.contains("method")) return std::string(kProgressiveMethod);
  if (!js.at("method").is_string()) return std::nullopt;
  return js.at("method").get<std::string>();
}

void check_saved_method(const DistillState& st, const std::string& method, const std::string& out) {
  DDPM_CHECK(st.method == method, "--method " << method << " differs from the --method " << st.method
                                              << " of the run being resumed (" << distill_state_dir(out) << "/"
                                              << kDistillStateJson << "): drop --method, ddpm-distill --resume --out "
                                              << out << " continues the run with its own");
}

Tensor distill_state_flat(const DistillState& st, const std::string& out, const std::string& name,
                          const ParameterSlab& slab, Device device) {
  return slab_flat_from(st.tensors, name + ".", slab, distill_state_dir(out) + "/" + kDistillStateTensors).to(device);
}

void restore_round_state(const DistillState& st, const std::string& out, ParameterSlab& slab, Ema& ema, AdamW& opt) {
  const Device device = slab.values().device();
  Tensor values = slab.values();  // a handle on the slab: the student continues from its saved weights
  values.copy_from(distill_state_flat(st, out, "student", slab, device));
  ema.load(distill_state_flat(st, out, "ema", slab, device));
  opt.load_state(st.adam_step, distill_state_flat(st, out, "exp_avg", slab, device),
                 distill_state_flat(st, out, "exp_avg_sq", slab, device));
}

DistillState capture_distill_progress(const DistillProgress& p, std::int64_t done, double gap_before,
                                      double seconds) {
  DistillState st;
  st.step = done;
  st.adam_step = p.opt.step_count();
  st.generators = {{"draws", p.draws}, {"dropout", p.dropout}};
  st.loader = p.loader.position();
  st.gap_before = gap_before;
  st.has_gap_before = true;
  st.final_loss = p.final_loss;
  st.window_sum = p.window_sum;
  st.window_n = p.window_n;
  st.losses = p.losses;
  st.seconds = seconds;
  st.flats = {{"student", p.slab.values(), &p.slab},
              {"ema", p.ema.values(), &p.slab},
              {"exp_avg", p.opt.exp_avg(), &p.slab},
              {"exp_avg_sq", p.opt.exp_avg_sq(), &p.slab}};
  return st;
}

void restore_distill_progress(const DistillState& st, const std::string& out, const DistillProgress& p) {
  for (auto [name, g] : {std::pair<const char*, Generator*>{"draws", &p.draws}, {"dropout", &p.dropout}}) {
    DDPM_CHECK_AS(st.generators.count(name) == 1, IoError,
                  distill_state_dir(out) << "/" << kDistillStateJson << " is damaged: no generator \"" << name << "\"");
    *g = st.generators.at(name);
  }
  p.loader.set_position(st.loader);
  restore_round_state(st, out, p.slab, p.ema, p.opt);
  p.final_loss = st.final_loss;
  p.window_sum = st.window_sum;
  p.window_n = st.window_n;
  p.losses = st.losses;
}

std::string canonical_guided(const std::string& spec) {
  if (spec.empty()) return spec;
  const GuidedRange r = parse_guided_range(spec);
  return nlohmann::json(r.scale_min).dump() + "," + nlohmann::json(r.scale_max).dump();
}

namespace {

// The options that define a progressive run (distill_options_json): state.json's key, the
// flag, the member. --log-every is one: the final loss is the last logged window's mean.
// Guided distillation (guided_distill.h) adds its range and stage 1's steps.
const OptionTable<DistillOptions>& distill_option_table() {
  using O = DistillOptions;
  static const OptionTable<O> table = {
      bind_option("teacher", "--teacher", &O::teacher),
      bind_option("teacher_steps", "--teacher-steps", &O::teacher_steps),
      bind_option("rounds", "--rounds", &O::rounds),
      bind_option("steps_per_round", "--steps-per-round", &O::steps_per_round),
      bind_option("batch_size", "--batch-size", &O::batch_size),
      bind_option("lr", "--lr", &O::lr),
      bind_option("warmup_steps", "--warmup-steps", &O::warmup_steps),
      bind_option("grad_clip", "--grad-clip", &O::grad_clip),
      bind_option("ema_rate", "--ema-rate", &O::ema_rate),
      bind_option("data", "--data", &O::data),
      bind_option("label_dropout", "--label-dropout", &O::label_dropout),
      bind_option("gap_samples", "--gap-samples", &O::gap_samples),
      bind_option("log_every", "--log-every", &O::log_every),
      bind_option("seed", "--seed", &O::seed),
      bind_option("overwrite", "--overwrite", &O::overwrite),
      bind_option("guided", "--guided", &O::guided, canonical_guided),
      bind_option("guided_steps", "--guided-steps", &O::guided_steps)};
  return table;
}

}  // namespace

nlohmann::json distill_options_json(const DistillOptions& o) { return options_json(distill_option_table(), o); }

std::vector<DistillRound> rounds_from_record(const nlohmann::json& record, const std::string& out) {
  std::vector<DistillRound> rounds;
  try {
    for (const nlohmann::json& e : record.at("rounds")) {
      DistillRound r;
      r.round = e.at("round").get<int>();
      r.teacher_steps = e.at("teacher_steps").get<std::int64_t>();
      r.student_steps = e.at("student_steps").get<std::int64_t>();
      for (auto [key, v] : {std::pair<const char*, double*>{"final_loss", &r.final_loss}, {"gap_before", &r.gap_before},
                            {"gap_after", &r.gap_after}, {"seconds", &r.seconds}})
        *v = e.at(key).is_null() ? NAN : e.at(key).get<double>();
      r.folder = out + "/" + e.at("folder").get<std::string>();
      rounds.push_back(r);
    }
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, "the record of " << out << " (distill.json) lists a round without its keys: " << e.what());
  }
  return rounds;
}

namespace {

// Whether the saved state in `state_dir` is what a crash between the publication of a
// complete run's last round and the state's removal leaves behind, rather than the state of a
// newer run (started with --overwrite over the complete OUT, which stays whole until that run
// publishes its first round). The leftover was saved while the last round ran: its round is
// the record's last, its record lists every round published before it, and its options are
// the record's. A state that cannot be read is not taken for a leftover (resuming it then
// says what is wrong with it).
bool leftover_state_of(const nlohmann::json& record, const std::string& state_dir) {
  std::error_code ec;
  const std::string path = state_dir + "/" + kDistillStateJson;
  if (!fs::is_regular_file(path, ec)) return false;
  const nlohmann::json js = nlohmann::json::parse(read_file(path), nullptr, false);
  if (!js.is_object() || !js.contains("round") || !js.contains("record") || !js["record"].is_object()) return false;
  const nlohmann::json& rounds = record.contains("rounds") ? record["rounds"] : nlohmann::json();
  if (!rounds.is_array() || rounds.empty() || !rounds.back().is_object() || !rounds.back().contains("round") ||
      rounds.back()["round"] != js["round"])
    return false;
  nlohmann::json before = rounds;
  before.erase(before.size() - 1);
  const nlohmann::json& saved = js["record"];
  if (!saved.contains("rounds") || saved["rounds"] != before) return false;
  // The options the two records share (what changes as rounds are published, stopped and
  // resumed left out).
  for (const auto& [key, value] : saved.items())
    if (key != "rounds" && key != "rounds_done" && key != "complete" && key != "resumed" && key != "stopped" &&
        (!record.contains(key) || record[key] != value))
      return false;
  return true;
}

}  // namespace

std::optional<DistillResult> completed_distill_run(const DistillOptions& o) {
  const std::string path = o.out + "/distill.json";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  const nlohmann::json record = nlohmann::json::parse(read_file(path), nullptr, false);
  if (!record.is_object() || !record.contains("complete") || record["complete"] != true) return std::nullopt;
  // A newer run's state beside a complete OUT is resumed, not removed.
  if (fs::exists(distill_state_dir(o.out), ec) && !leftover_state_of(record, distill_state_dir(o.out)))
    return std::nullopt;
  DistillResult result;
  result.rounds = rounds_from_record(record, o.out);
  const nlohmann::json planned = record.contains("rounds_planned") ? record["rounds_planned"] : nlohmann::json();
  result.rounds_planned = planned.is_number_integer() ? planned.get<int>() : static_cast<int>(result.rounds.size());
  const std::string state = distill_state_dir(o.out);
  const bool leftover = fs::exists(state, ec);
  if (leftover) fs::remove_all(state, ec);  // a crash after the last round's publication
  if (o.log)
    o.log("ddpm-distill: " + o.out + " is complete (" + std::to_string(result.rounds.size()) + " of " +
          std::to_string(result.rounds_planned) + " rounds published): nothing to resume" +
          (leftover ? "; removed the leftover " + state : std::string()));
  return result;
}

DistillState resume_distill_state(DistillOptions& o) {
  DistillState st = load_distill_state(o.out);
  check_saved_method(st, kProgressiveMethod, o.out);
  const std::string file = distill_state_dir(o.out) + "/" + kDistillStateJson;
  resume_options(distill_option_table(), st.options, o, file);
  std::error_code ec;
  for (const DistillRound& r : rounds_from_record(st.record, o.out))
    DDPM_CHECK_AS(fs::is_regular_file(r.folder + "/ema.safetensors", ec), IoError,
                  file << " continues round " << st.round << " after round " << r.round << ", but " << r.folder
                       << " is no longer there: the rounds before the saved one must stay in --out " << o.out);
  return st;
}

void throw_damaged_option(const std::string& state_file, const std::string& key, const std::string& what) {
  DDPM_THROW(IoError, state_file << " is damaged: \"options\".\"" << key << "\" is missing or of the wrong type (" << what
                                 << ")");
}

void check_resume_flags(const nlohmann::json& saved, const nlohmann::json& given,
                        const std::vector<std::string>& flags_given,
                        const std::vector<std::pair<std::string, std::string>>& flag_of_key,
                        const std::string& state_file) {
  for (const auto& [key, flag] : flag_of_key) {
    if (std::find(flags_given.begin(), flags_given.end(), flag) == flags_given.end()) continue;
    const nlohmann::json was = saved.contains(key) ? saved.at(key) : nlohmann::json("(absent)");
    const nlohmann::json now = given.contains(key) ? given.at(key) : nlohmann::json("(absent)");
    DDPM_CHECK(was == now, flag << " " << now.dump() << " differs from the " << was.dump() << " of the run being resumed ("
                                << state_file << "): a resumed run keeps its options; drop " << flag
                                << " or give the saved value");
  }
}

bool apply_distill_step(const DistillProgress& p, double loss, double grad_clip, double lr, std::int64_t warmup_steps,
                        std::int64_t step) {
  const double norm = !std::isfinite(loss) ? loss : grad_clip > 0 ? clip_grad_norm(p.slab, grad_clip) : grad_norm(p.slab);
  const bool applied = std::isfinite(norm);
  p.losses.push_back(applied ? loss : NAN);
  if (!applied) return false;
  p.opt.set_lr(train::warmup_lr(lr, warmup_steps, step));
  p.opt.step();
  p.ema.update(p.slab, p.opt.step_count() - 1);
  p.window_sum += loss;
  ++p.window_n;
  return true;
}

std::string close_loss_window(const DistillProgress& p, std::int64_t done, std::int64_t total,
                              std::int64_t log_every) {
  if (done % log_every != 0 && done != total) return "";
  if (p.window_n > 0) p.final_loss = p.window_sum / static_cast<double>(p.window_n);
  const std::string line = "  step " + std::to_string(done) + "/" + std::to_string(total) + " loss " +
                           (p.window_n > 0 ? fmt_log(p.final_loss) : std::string("(all steps skipped: non-finite)"));
  p.window_sum = 0;
  p.window_n = 0;
  return line;
}

std::string fmt_log(double v) {
  std::ostringstream s;
  s.precision(4);
  s << v;
  return s.str();
}

}  // namespace ddpm::run
