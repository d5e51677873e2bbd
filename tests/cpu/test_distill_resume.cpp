// tests/cpu/test_distill_resume.cpp: ddpm-distill's saved round state and --resume
// (models/run/distill_state.h, distill_run.h "Resume"). The teacher is a tiny class-conditional
// v-prediction run with UNet dropout and random flips, so every kind of draw a step makes
// (data order, flips, t indices, eps, label dropout, the student's dropout) is part of what
// a resume must reproduce:
//   - a run stopped by SIGTERM in round 1, resumed, stopped again in round 2 and resumed to
//     the end publishes round folders equal BIT for bit (weights and config.json) to an
//     uninterrupted run's, with the same per-step losses; the state is gone at the end, and
//     --resume of the complete run says so and changes nothing;
//   - a crash (an exception) after a periodic state, and one between round 1's publication
//     and round 2's first state (the state is then older than the published round_1), both
//     resume to the same bits;
//   - --overwrite: the old OUT stays whole until the resumed run publishes round 1;
//   - a latent teacher (each step draws the autoencoder's posterior samples) resumes to the
//     same bits, and the resumed round folder carries the autoencoder;
//   - guided distillation (--guided, guided_distill.h): a run stopped in stage 1 (round_0),
//     resumed, stopped in round 1 and resumed again ends with an uninterrupted guided run's
//     bits (the per-example w are draws of the saved draw generator); a crash between
//     round_0's publication and round 1's first state republishes round_0 in place; --guided
//     and --guided-steps are compared on resume like the other options;
//   - refusals: a flag given with another value than the saved one, a fresh run over a saved
//     state, a damaged or missing state.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/run/distill_run.h"
#include "models/run/distill_state.h"
#include "models/run/latent_run.h"
#include "support/tiny_autoencoder.h"
#include "support/stop_at_log.h"
#include "support/tiny_run.h"
#include "support/value_error.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

// One teacher for the file (support/tiny_run.h: T = 32, v-prediction, 4 classes).
const std::string& teacher() {
  static const std::string dir = testing::tiny_class_v_teacher("distill_resume_teacher");
  return dir;
}

// Two rounds (8 -> 4 -> 2 DDIM steps) of three steps of batch 4, a log line every step.
run::DistillOptions tiny_distill(const std::string& out) {
  run::DistillOptions d;
  d.teacher = teacher();
  d.teacher_steps = 8;
  d.rounds = 2;
  d.steps_per_round = 3;
  d.batch_size = 4;
  d.lr = 2e-3;
  d.warmup_steps = 2;
  d.ema_rate = 0.9;
  d.gap_samples = 4;
  d.log_every = 1;
  d.checkpoint_every = 0;
  d.out = out;
  return d;
}

// --resume --out OUT and nothing else: every other option must come from the saved state.
run::DistillOptions resume_of(const std::string& out) {
  run::DistillOptions d;
  d.out = out;
  d.resume = true;
  return d;
}

// The uninterrupted run every resumed one must equal.
const run::DistillResult& uninterrupted() {
  static const run::DistillResult r = [] {
    const std::string out = testing::temp_path("distill_resume_whole");
    return run::distill_run(tiny_distill(out));
  }();
  return r;
}
std::string whole() { return uninterrupted().rounds.front().folder.substr(0, uninterrupted().rounds.front().folder.rfind('/')); }

// The round folders `names` of `out` equal those of `reference` bit for bit (weights and
// config.json), and the state is gone (the run is complete).
void expect_same_folders(const std::string& reference, const std::string& out, const std::vector<std::string>& names) {
  for (const std::string& k : names) {
    testing::expect_same_tensors(reference + "/" + k + "/ema.safetensors", out + "/" + k + "/ema.safetensors");
    EXPECT_EQ(read_file(reference + "/" + k + "/config.json"), read_file(out + "/" + k + "/config.json")) << k;
  }
  EXPECT_FALSE(fs::exists(run::distill_state_dir(out))) << "the state outlived the complete run";
}
void expect_same_rounds(const std::string& out) { expect_same_folders(whole(), out, {"round_1", "round_2"}); }

// A fresh run d stopped by SIGTERM at its first log line starting with `line`: nothing is
// published, and the state saved beside OUT is returned.
run::DistillState stopped_fresh(run::DistillOptions d, const std::string& line) {
  bool raised = false;
  d.log = testing::sigterm_at("", line, &raised);
  const run::DistillResult r = run::distill_run(d);
  EXPECT_TRUE(raised) << "no log line starts with '" << line << "'";
  EXPECT_EQ(r.stopped_by_signal, SIGTERM);
  EXPECT_FALSE(fs::exists(d.out));
  return run::load_distill_state(d.out);
}

TEST(DistillResume, StoppedInBothRoundsResumesBitIdentical) {
  ASSERT_EQ(uninterrupted().rounds.size(), 2u);
  const std::string out = testing::temp_path("distill_resume_stopped");
  // SIGTERM after step 1 of round 1: nothing published, the state beside OUT.
  const run::DistillState s1 = stopped_fresh(tiny_distill(out), "  step 1/3");
  EXPECT_EQ(s1.round, 1);
  EXPECT_EQ(s1.step, 1);
  EXPECT_EQ(s1.losses.size(), 1u);

  // Resumed with nothing but --out, then SIGTERM after step 2 of round 2.
  run::DistillOptions again = resume_of(out);
  bool raised = false;
  again.log = testing::sigterm_at("round 2/2:", "  step 2/3", &raised);
  run::DistillResult r = run::distill_run(again);
  ASSERT_TRUE(raised);
  EXPECT_EQ(r.stopped_by_signal, SIGTERM);
  ASSERT_EQ(r.rounds.size(), 1u);
  EXPECT_EQ(r.rounds[0].losses, uninterrupted().rounds[0].losses);  // 1 restored + 2 run
  testing::expect_same_tensors(whole() + "/round_1/ema.safetensors", out + "/round_1/ema.safetensors");
  EXPECT_FALSE(fs::exists(out + "/round_2"));
  nlohmann::json rec = nlohmann::json::parse(read_file(out + "/distill.json"));
  EXPECT_EQ(rec["stopped"]["round"], 2);
  EXPECT_EQ(rec["stopped"]["steps_done"], 2);
  EXPECT_EQ(run::load_distill_state(out).round, 2);

  // Resumed to the end: the rounds of the uninterrupted run, bit for bit.
  r = run::distill_run(resume_of(out));
  EXPECT_EQ(r.stopped_by_signal, 0);
  ASSERT_EQ(r.rounds.size(), 2u);
  EXPECT_EQ(r.rounds[1].losses, uninterrupted().rounds[1].losses);
  EXPECT_EQ(r.rounds[1].gap_before, uninterrupted().rounds[1].gap_before);
  expect_same_rounds(out);
  rec = nlohmann::json::parse(read_file(out + "/distill.json"));
  EXPECT_EQ(rec["complete"], true);
  EXPECT_EQ(rec["rounds_done"], 2);
  EXPECT_FALSE(rec.contains("stopped"));
  ASSERT_EQ(rec["resumed"].size(), 2u);
  EXPECT_EQ(rec["resumed"][1]["round"], 2);
  EXPECT_EQ(rec["resumed"][1]["step"], 2);

  // --resume of a complete run: said, nothing changed.
  const std::string before = read_file(out + "/distill.json");
  std::string said;
  run::DistillOptions done = resume_of(out);
  done.log = [&said](const std::string& l) { said += l; };
  r = run::distill_run(done);
  EXPECT_EQ(r.rounds.size(), 2u);
  EXPECT_NE(said.find("is complete (2 of 2 rounds published): nothing to resume"), std::string::npos) << said;
  EXPECT_EQ(read_file(out + "/distill.json"), before);
}

// A crash (an exception from the log) leaves the last state written: `crash_at` is the log
// line that throws; with --checkpoint-every 2 the state is round 1's after its step 2.
void crash_and_resume(const std::string& name, const std::string& crash_at, bool round_1_published) {
  ASSERT_EQ(uninterrupted().rounds.size(), 2u);
  const std::string out = testing::temp_path(name);
  run::DistillOptions d = tiny_distill(out);
  d.checkpoint_every = 2;
  d.log = [&crash_at](const std::string& l) {
    if (l.rfind(crash_at, 0) == 0) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(run::distill_run(d), std::runtime_error);
  const run::DistillState s = run::load_distill_state(out);
  EXPECT_EQ(s.round, 1);
  EXPECT_EQ(s.step, 2);
  EXPECT_EQ(fs::exists(out + "/round_1"), round_1_published);
  const run::DistillResult r = run::distill_run(resume_of(out));
  EXPECT_EQ(r.stopped_by_signal, 0);
  expect_same_rounds(out);
}

// In round 1, after the periodic state of step 2.
TEST(DistillResume, CrashAfterAPeriodicStateResumes) { crash_and_resume("distill_resume_crash1", "  step 3/3", false); }

// After round_1 is published but before round 2 saves its first state: the state is older
// than round_1, so the resumed run does round 1's last step again and republishes round_1
// in place, with the same bits.
TEST(DistillResume, CrashBetweenPublicationAndNextStateResumes) {
  crash_and_resume("distill_resume_crash2", "round 2/2:", true);
}

// --overwrite is saved with the state: a run stopped in round 1 leaves the old OUT whole, and
// the resumed run replaces it when it publishes round 1, as an uninterrupted run would.
TEST(DistillResume, OverwriteReplacesTheOldOutOnlyWhenRoundOneIsPublished) {
  ASSERT_EQ(uninterrupted().rounds.size(), 2u);
  const std::string out = testing::temp_path("distill_resume_overwrite");
  fs::create_directories(out);
  std::ofstream(out + "/keep.txt") << "the old run";
  run::DistillOptions d = tiny_distill(out);
  d.overwrite = true;
  bool raised = false;
  d.log = testing::sigterm_at("", "  step 2/3", &raised);
  ASSERT_EQ(run::distill_run(d).stopped_by_signal, SIGTERM);
  EXPECT_TRUE(fs::exists(out + "/keep.txt"));
  EXPECT_FALSE(fs::exists(out + "/round_1"));
  const run::DistillResult r = run::distill_run(resume_of(out));
  EXPECT_EQ(r.rounds.size(), 2u);
  EXPECT_FALSE(fs::exists(out + "/keep.txt"));
  expect_same_rounds(out);
}

// A new run started with --overwrite over a COMPLETE OUT and stopped in round 1 is resumed,
// not mistaken for the complete run (whose distill.json stays until round 1 is published).
TEST(DistillResume, NewRunOverACompleteOutResumesInsteadOfReportingTheOldOne) {
  ASSERT_EQ(uninterrupted().rounds.size(), 2u);
  const std::string out = testing::temp_path("distill_resume_over_complete");
  run::DistillOptions old = tiny_distill(out);
  old.seed = 7;  // a different run
  ASSERT_EQ(run::distill_run(old).rounds.size(), 2u);
  run::DistillOptions d = tiny_distill(out);
  d.overwrite = true;
  bool raised = false;
  d.log = testing::sigterm_at("", "  step 2/3", &raised);
  ASSERT_EQ(run::distill_run(d).stopped_by_signal, SIGTERM);
  ASSERT_TRUE(fs::exists(run::distill_state_dir(out)));
  const run::DistillResult r = run::distill_run(resume_of(out));
  EXPECT_EQ(r.rounds.size(), 2u);
  EXPECT_FALSE(fs::exists(run::distill_state_dir(out)));
  expect_same_rounds(out);  // the new run's rounds, as uninterrupted, not seed 7's
}

TEST(DistillResume, LatentTeacherResumesBitIdentical) {
  run::TrainOptions t = testing::tiny_run(testing::temp_run("distill_resume_latent_teacher"));
  t.autoencoder = testing::tiny_autoencoder("distill_resume_latent_ae");
  t.attention_resolutions = "";  // a 4x4 latent UNet
  t.predict = "v";
  t.steps = 2;
  t.save_every = 2;
  run::train_run(t);
  const auto options = [&t](const std::string& out) {
    run::DistillOptions d = tiny_distill(out);
    d.teacher = t.out;
    d.teacher_steps = 10;  // T = 50: 10 -> 5
    d.rounds = 1;
    return d;
  };
  const std::string whole_out = testing::temp_path("distill_resume_latent_whole");
  ASSERT_EQ(run::distill_run(options(whole_out)).rounds.size(), 1u);
  const std::string out = testing::temp_path("distill_resume_latent");
  run::DistillOptions d = options(out);
  bool raised = false;
  d.log = testing::sigterm_at("", "  step 1/3", &raised);
  ASSERT_EQ(run::distill_run(d).stopped_by_signal, SIGTERM);
  EXPECT_EQ(run::distill_run(resume_of(out)).rounds.size(), 1u);
  testing::expect_same_tensors(whole_out + "/round_1/ema.safetensors", out + "/round_1/ema.safetensors");
  EXPECT_EQ(read_file(whole_out + "/round_1/config.json"), read_file(out + "/round_1/config.json"));
  EXPECT_TRUE(fs::is_directory(out + "/round_1/" + run::kRunAutoencoderFolder));
}

// Guided distillation: stage 1 of two steps (round_0, on the teacher's 8-step grid), then
// one round of three (8 -> 4), for guidance scales s in [1, 3].
run::DistillOptions tiny_guided(const std::string& out) {
  run::DistillOptions d = tiny_distill(out);
  d.rounds = 1;
  d.guided = "1,3";
  d.guided_steps = 2;
  return d;
}
const run::DistillResult& uninterrupted_guided() {
  static const run::DistillResult r = run::distill_run(tiny_guided(testing::temp_path("distill_resume_guided_whole")));
  return r;
}
std::string whole_guided() { return fs::path(uninterrupted_guided().rounds.front().folder).parent_path().string(); }

TEST(DistillResume, GuidedStoppedInStageOneAndRoundOneResumesBitIdentical) {
  ASSERT_EQ(uninterrupted_guided().rounds.size(), 2u);
  const std::string out = testing::temp_path("distill_resume_guided");
  // SIGTERM after step 1 of stage 1: nothing published, round 0's state beside OUT.
  const run::DistillState s0 = stopped_fresh(tiny_guided(out), "  step 1/2");
  EXPECT_EQ(s0.round, 0);
  EXPECT_EQ(s0.step, 1);
  EXPECT_EQ(s0.options["guided"], "1.0,3.0");  // the range as numbers (canonical form)
  EXPECT_EQ(s0.options["guided_steps"], 2);

  // Resumed with nothing but --out (stage 1 has its own step count), then SIGTERM after step
  // 2 of round 1.
  run::DistillOptions again = resume_of(out);
  std::string said;
  bool raised = false;
  const auto stop = testing::sigterm_at("round 1/1:", "  step 2/3", &raised);
  again.log = [&](const std::string& l) {
    said += l + "\n";
    stop(l);
  };
  run::DistillResult r = run::distill_run(again);
  ASSERT_TRUE(raised);
  EXPECT_NE(said.find("round 0: resumed after step 1/2"), std::string::npos) << said;
  EXPECT_EQ(r.stopped_by_signal, SIGTERM);
  ASSERT_EQ(r.rounds.size(), 1u);
  EXPECT_EQ(r.rounds[0].round, 0);
  EXPECT_EQ(r.rounds[0].losses, uninterrupted_guided().rounds[0].losses);  // 1 restored + 1 run
  testing::expect_same_tensors(whole_guided() + "/round_0/ema.safetensors", out + "/round_0/ema.safetensors");
  const run::DistillState s1 = run::load_distill_state(out);
  EXPECT_EQ(s1.round, 1);
  EXPECT_EQ(s1.step, 2);

  // Resumed to the end: round_0 and round_1 of the uninterrupted guided run, bit for bit.
  r = run::distill_run(resume_of(out));
  EXPECT_EQ(r.stopped_by_signal, 0);
  ASSERT_EQ(r.rounds.size(), 2u);
  EXPECT_EQ(r.rounds[1].losses, uninterrupted_guided().rounds[1].losses);
  EXPECT_EQ(r.rounds[1].gap_before, uninterrupted_guided().rounds[1].gap_before);
  expect_same_folders(whole_guided(), out, {"round_0", "round_1"});
  const nlohmann::json rec = nlohmann::json::parse(read_file(out + "/distill.json"));
  EXPECT_EQ(rec["complete"], true);
  EXPECT_EQ(rec["guided"]["scale_max"], 3.0);
  ASSERT_EQ(rec["resumed"].size(), 2u);
  EXPECT_EQ(rec["resumed"][0]["round"], 0);
  EXPECT_EQ(rec["resumed"][1]["round"], 1);
}

// A crash after round_0 (the first published folder of a guided run) is published, before
// round 1 saves its first state: the state is stage 1's after its step 1 (--checkpoint-every
// 1 counts stage 1's own two steps), so the resumed run does stage 1's last step again and
// republishes round_0 in place. Before that, --guided and --guided-steps given with other
// values are refused like any saved option.
TEST(DistillResume, GuidedCrashAfterRoundZeroResumesAndGuidedFlagsAreCompared) {
  ASSERT_EQ(uninterrupted_guided().rounds.size(), 2u);
  const std::string out = testing::temp_path("distill_resume_guided_crash");
  run::DistillOptions d = tiny_guided(out);
  d.checkpoint_every = 1;
  d.log = [](const std::string& l) {
    if (l.rfind("round 1/1:", 0) == 0) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(run::distill_run(d), std::runtime_error);
  const run::DistillState s = run::load_distill_state(out);
  EXPECT_EQ(s.round, 0);
  EXPECT_EQ(s.step, 1);
  EXPECT_TRUE(fs::exists(out + "/round_0"));

  run::DistillOptions changed = resume_of(out);
  changed.guided = "1,4";
  changed.flags_given = {"--guided"};
  testing::expect_value_error([&] { (void)run::distill_run(changed); },
                              "--guided \"1.0,4.0\" differs from the \"1.0,3.0\"");
  changed.guided = " 1.0, 3";  // the same range written differently is no difference
  changed.guided_steps = 5;
  changed.flags_given = {"--guided", "--guided-steps"};
  testing::expect_value_error([&] { (void)run::distill_run(changed); }, "--guided-steps 5 differs from the 2");

  const run::DistillResult r = run::distill_run(resume_of(out));
  EXPECT_EQ(r.stopped_by_signal, 0);
  ASSERT_EQ(r.rounds.size(), 2u);
  EXPECT_EQ(r.rounds[0].losses, uninterrupted_guided().rounds[0].losses);
  expect_same_folders(whole_guided(), out, {"round_0", "round_1"});
}

TEST(DistillResume, Refusals) {
  const std::string out = testing::temp_path("distill_resume_refused");
  run::DistillOptions d = tiny_distill(out);
  bool raised = false;
  d.log = testing::sigterm_at("", "  step 1/3", &raised);
  ASSERT_EQ(run::distill_run(d).stopped_by_signal, SIGTERM);
  const std::string state = run::distill_state_dir(out);
  ASSERT_TRUE(fs::is_directory(state));

  // A flag given with another value than the saved one: refused, naming both values.
  run::DistillOptions changed = resume_of(out);
  changed.lr = 0.5;
  changed.flags_given = {"--lr"};
  testing::expect_value_error([&] { (void)run::distill_run(changed); }, "--lr 0.5 differs from the 0.002");
  changed.lr = 2e-3;  // the saved value, spelt out, with another flag that differs
  changed.rounds = 3;
  changed.flags_given = {"--lr", "--rounds"};
  testing::expect_value_error([&] { (void)run::distill_run(changed); }, "--rounds 3 differs from the 2");
  changed.rounds = 2;  // a plain run's state resumed as a guided one
  changed.guided = "1,3";
  changed.flags_given = {"--guided"};
  testing::expect_value_error([&] { (void)run::distill_run(changed); }, "--guided \"1.0,3.0\" differs from the \"\"");
  // A new run over the saved state, without --overwrite.
  testing::expect_value_error([&] { (void)run::distill_run(tiny_distill(out)); }, "holds the saved state of a stopped run");
  EXPECT_TRUE(fs::is_directory(state));

  const auto expect_io_error = [&](const std::string& fragment) {
    std::string message = "no error";
    try {
      (void)run::distill_run(resume_of(out));
    } catch (const IoError& e) {
      message = e.what();
    }
    EXPECT_NE(message.find(fragment), std::string::npos) << "expected an IoError with '" << fragment << "': " << message;
  };
  // A damaged tensor file (one flipped byte near its end: the CRC catches it).
  const std::string tensors = state + "/" + run::kDistillStateTensors, json = state + "/" + run::kDistillStateJson;
  const std::string good_tensors = read_file(tensors), good_json = read_file(json);
  std::string bad = good_tensors;
  bad[bad.size() - 3] = static_cast<char>(bad[bad.size() - 3] ^ 0x10);
  write_file_atomic(tensors, bad);
  expect_io_error(run::kDistillStateTensors);
  write_file_atomic(tensors, good_tensors);
  // A damaged state.json: cut short, and a negative step.
  write_file_atomic(json, good_json.substr(0, good_json.size() / 2));
  expect_io_error("state.json is damaged");
  nlohmann::json js = nlohmann::json::parse(good_json);
  js["step"] = -1;
  write_file_atomic(json, js.dump());
  expect_io_error("\"step\" must be a whole number >= 0");
  // An incomplete state, and none at all (a usage error: nothing to resume).
  fs::remove(json);
  expect_io_error("is incomplete: state.json or state.safetensors is missing");
  fs::remove_all(state);
  testing::expect_value_error([&] { (void)run::distill_run(resume_of(out)); }, "no saved state to resume from");
  // ... but the previous state, where a kill during its replacement left it, is named.
  fs::create_directories(state + ".old-Ab12Cd");
  testing::expect_value_error([&] { (void)run::distill_run(resume_of(out)); },
                              "left the previous one in " + state + ".old-Ab12Cd: rename it to " + state);
  EXPECT_FALSE(fs::exists(out));
  // A distill.json whose "complete" or "rounds_planned" has the wrong type: not complete, and
  // a complete run's count taken from its list (no JSON type error escapes).
  fs::create_directories(out);
  write_file_atomic(out + "/distill.json", R"({"complete": "yes"})");
  testing::expect_value_error([&] { (void)run::distill_run(resume_of(out)); }, "no saved state to resume from");
  write_file_atomic(out + "/distill.json", R"({"complete": true, "rounds_planned": "two", "rounds": []})");
  const run::DistillResult done = run::distill_run(resume_of(out));
  EXPECT_EQ(done.rounds_planned, 0);
  EXPECT_TRUE(done.rounds.empty());
}

}  // namespace
}  // namespace ddpm
