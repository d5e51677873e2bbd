// tests/fuzz/fuzz_distill_state.cpp: OUT.distill-state, read on ddpm-distill --resume
// (models/run/distill_state.h), for both methods.
//   progressive: resume_distill_state loads state.json (format, method, options, round, steps,
//     generators, loader, losses, the distill.json record) and state.safetensors (CRC, tensor
//     names and shapes), compares the flags the command line gave with the saved options and
//     takes the saved ones, and checks that the rounds the record lists are in OUT; then, as
//     models/run/distill_run.cpp does, the options are checked, the generators are looked up
//     by name, the record's "rounds_done" and "resumed" are taken, and the round's teacher,
//     student, EMA and AdamW moments are restored;
//   consistency: resume_consistency_state (consistency_state.h) does the same with the
//     consistency options (no round, no record); then, as consistency_run.cpp does, the
//     options are checked, the generators looked up, and the student, EMA, AdamW moments and
//     target network restored.
// The tensors go into a parameter slab of a convolution and its bias (a small state, many
// inputs a second).
//
// The first byte picks the file that gets the rest of the bytes and the method of the state
// around it; the other file is a valid one of the same state (written once by
// save_distill_state: the progressive one as distill_run saves round 2 of a guided run of 3
// rounds, round_0 and round_1 published; the consistency one after 3 of 8 steps):
//   bit 0 clear: state.json beside a valid state.safetensors; set: the other way round;
//   bit 1 clear: a progressive state; set: a consistency state.
// The seeds (make_seeds.cpp) are these valid states' four files.
#include <filesystem>

#include "engine/optim.h"
#include "engine/parameters.h"
#include "models/run/consistency_state.h"
#include "models/run/distill_state.h"
#include "tests/fuzz/fuzz_runs.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

namespace fs = std::filesystem;

// The folder of one mode: its OUT (with the published rounds the record lists) and the
// valid state beside it. Returns OUT.
std::string make_run(const std::string& name) {
  const std::string out = ddpm::fuzz::scratch_dir() + "/" + name + "/out";
  for (const char* round : {"round_0", "round_1"}) {
    fs::create_directories(out + "/" + round);
    ddpm::fuzz::write_scratch(name + "/out/" + round + "/ema.safetensors", nullptr, 0);  // only its presence is read
  }
  ddpm::fuzz::write_tiny_distill_state(out);
  return out;
}

// The folder of a consistency mode: the state only (OUT is published at the end of a run).
std::string make_consistency_run(const std::string& name) {
  const std::string out = ddpm::fuzz::scratch_dir() + "/" + name + "/out";
  fs::create_directories(ddpm::fuzz::scratch_dir() + "/" + name);
  ddpm::fuzz::write_tiny_consistency_state(out);
  return out;
}

// What the resumed slab takes from every state: student, EMA and AdamW moments.
void restore(const ddpm::run::DistillState& st, const std::string& out) {
  ddpm::ParameterSlab& slab = ddpm::fuzz::posthoc_slab();
  ddpm::AdamW opt(slab, ddpm::AdamWConfig{});
  ddpm::Ema ema(slab, 0.9);
  ddpm::run::restore_round_state(st, out, slab, ema, opt);
  for (const char* name : {"draws", "dropout"})
    if (st.generators.count(name) == 1) (void)st.generators.at(name).offset();
  if (st.step < 0 || st.adam_step < 0 || st.adam_step > st.step || st.loader.epoch < 0 || st.loader.index < 0 ||
      st.window_n < 0 || static_cast<std::int64_t>(st.losses.size()) != st.step)
    std::abort();  // the reader promised these
}

void resume_progressive(const std::string& out) {
  ddpm::run::DistillOptions o;  // --resume --out OUT --rounds 3 --guided 1,3: two flags compared
  o.out = out;
  o.resume = true;
  o.rounds = 3;
  o.guided = "1,3";
  o.flags_given = {"--rounds", "--guided"};
  const ddpm::run::DistillState st = ddpm::run::resume_distill_state(o);
  ddpm::run::check_distill_options(o);
  nlohmann::json record = st.record;  // what the resumed run takes from the saved record
  record["rounds_done"] = st.record.value("rounds_done", 0);
  record["resumed"] = st.record.value("resumed", nlohmann::json::array());
  record["resumed"].push_back({{"round", st.round}, {"step", st.step}});
  (void)ddpm::run::rounds_from_record(record, out);
  (void)ddpm::run::distill_state_flat(st, out, "teacher", ddpm::fuzz::posthoc_slab(), ddpm::Device::cpu());
  restore(st, out);
}

void resume_consistency(const std::string& out) {
  ddpm::run::ConsistencyOptions o;  // --resume --out OUT --steps 8 --target-ema 0.5: two flags compared
  o.out = out;
  o.resume = true;
  o.steps = 8;
  o.target_ema = 0.5;
  o.flags_given = {"--steps", "--target-ema"};
  const ddpm::run::DistillState st = ddpm::run::resume_consistency_state(o);
  ddpm::run::check_consistency_options(o);
  if (st.method != ddpm::run::kConsistencyMethod || st.step > o.steps) std::abort();  // the resume promised these
  (void)ddpm::run::distill_state_flat(st, out, "target", ddpm::fuzz::posthoc_slab(), ddpm::Device::cpu());
  restore(st, out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool tensors = (data[0] & 1) != 0, consistency = (data[0] & 2) != 0;
  static const std::string json_out = make_run("json_run");
  static const std::string tensors_out = make_run("tensors_run");
  static const std::string cm_json_out = make_consistency_run("cm_json_run");
  static const std::string cm_tensors_out = make_consistency_run("cm_tensors_run");
  const std::string& out = consistency ? (tensors ? cm_tensors_out : cm_json_out) : (tensors ? tensors_out : json_out);
  const std::string run = consistency ? (tensors ? "cm_tensors_run" : "cm_json_run") : (tensors ? "tensors_run" : "json_run");
  const std::string rel = run + "/out.distill-state/" +
                          std::string(tensors ? ddpm::run::kDistillStateTensors : ddpm::run::kDistillStateJson);
  ddpm::fuzz::write_scratch(rel, data + 1, size - 1);
  ddpm::fuzz::expect_accept_or_refuse([&] { consistency ? resume_consistency(out) : resume_progressive(out); });
  return 0;
}
