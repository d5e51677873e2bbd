// Damaged files: every reader of an outside file (safetensors, .npz, .npy, PNG, IDX plain and
// gzip'd, CIFAR-10 records, post-hoc EMA snapshots, trainer_state.json) is fed a valid file of its format cut short at many lengths and
// with bytes overwritten at seeded random places. Each load must either succeed or throw the
// library's own error (ddpm::Error, one message naming the file); nothing else may escape:
// no std::bad_alloc from a size field taken at its word, no std::length_error, no crash.
// Run under the asan preset, the same sweep also catches reads past the buffer.
//
// What "succeed" may mean here: a byte flipped inside pixel data or float payload gives a
// different but well-formed file, which a reader must accept. The test therefore checks
// the kind of failure, not that every mutation fails.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/io/safetensors.h"
#include "engine/tensor.h"
#include "models/data/cifar10.h"
#include "models/data/idx.h"
#include "models/data/loader.h"
#include "models/run/checkpoint.h"
#include "models/run/posthoc_export.h"
#include "models/train/posthoc_ema.h"
#include "models/train/trainer.h"
#include "models/unet/model_io.h"
#include "support/temp_dir.h"
#include "support/tiny_unet.h"

namespace ddpm {
namespace {

using Bytes = std::vector<unsigned char>;

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// The damaged versions of one valid file: every length up to 300 bytes (headers and their
// length fields live there), then 40 lengths spread over the rest; then `mutations` copies
// with 1 to 4 bytes overwritten (half of them inside the first 64 bytes), each new byte 0x00,
// 0xff or random. Seeded, so a failure names a reproducible case.
struct Damaged {
  std::string what;  // "truncated to 17 bytes", "bytes 3, 40 overwritten"
  Bytes bytes;
};
std::vector<Damaged> damaged_versions(const Bytes& valid, int mutations, std::uint64_t seed) {
  std::vector<Damaged> out;
  const std::size_t n = valid.size();
  auto truncated = [&](std::size_t len) {
    out.push_back({"truncated to " + std::to_string(len) + " of " + std::to_string(n) + " bytes",
                   Bytes(valid.begin(), valid.begin() + static_cast<std::ptrdiff_t>(len))});
  };
  for (std::size_t len = 0; len < std::min<std::size_t>(n, 300); ++len) truncated(len);
  for (int k = 0; k < 40 && n > 300; ++k) truncated(300 + (n - 300) * static_cast<std::size_t>(k) / 40);
  std::mt19937_64 rng(seed);
  for (int m = 0; m < mutations; ++m) {
    Damaged d{"bytes", valid};
    const int count = 1 + static_cast<int>(rng() % 4);
    for (int c = 0; c < count; ++c) {
      const std::size_t limit = (m % 2 == 0) ? std::min<std::size_t>(n, 64) : n;
      const std::size_t pos = rng() % limit;
      const unsigned choice = static_cast<unsigned>(rng() % 3);
      d.bytes[pos] = choice == 0 ? 0x00 : choice == 1 ? 0xff : static_cast<unsigned char>(rng());
      d.what += " " + std::to_string(pos);
    }
    d.what += " overwritten (mutation " + std::to_string(m) + ")";
    out.push_back(std::move(d));
  }
  return out;
}

// Writes every damaged version of `valid` to `path` and calls load(path): ddpm::Error or
// success pass; any other exception fails the test with the case that caused it. Returns how
// many versions were refused, so a test can also check that damage is noticed at all.
int sweep(const std::string& path, const Bytes& valid, const std::function<void(const std::string&)>& load,
          int mutations = 300, std::uint64_t seed = 1) {
  int refused = 0;
  for (const Damaged& d : damaged_versions(valid, mutations, seed)) {
    write_bytes(path, d.bytes);
    try {
      load(path);
    } catch (const Error&) {
      ++refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << path << " " << d.what << ": escaped as a non-library exception: " << e.what();
    }
  }
  return refused;
}

TEST(CorruptFiles, SafetensorsLoadsOrRefusesCleanly) {
  testing::TempDir dir;
  const std::string good = dir.path + "/good.safetensors";
  save_safetensors(good,
                   {{"conv.weight", Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3})},
                    {"conv.bias", Tensor::from_vector(std::vector<double>{0.5, -1}, {2})}},
                   {{"step", "7"}});
  const Bytes valid = read_bytes(good);
  const int refused = sweep(dir.path + "/bad.safetensors", valid, [](const std::string& p) { load_safetensors(p); });
  EXPECT_GE(refused, 300) << "every truncation must be refused";
}

TEST(CorruptFiles, NpzAndNpyLoadOrRefuseCleanly) {
  testing::TempDir dir;
  const std::string good = dir.path + "/good.npz";
  const std::vector<std::uint8_t> images(2 * 4 * 4 * 1, 200);
  const std::vector<std::int64_t> labels{3, 1};
  write_npz(good, {npy_view("arr_0", {2, 4, 4, 1}, images), npy_view("arr_1", {2}, labels)});
  const Bytes valid = read_bytes(good);
  const int refused = sweep(dir.path + "/bad.npz", valid, [](const std::string& p) { load_npz(p); });
  EXPECT_GE(refused, 300);

  // A bare .npy member (what parse_npy sees inside the archive).
  const std::string npy = npy_bytes(npy_view("arr_0", {2, 4, 4, 1}, images));
  const Bytes npy_valid(npy.begin(), npy.end());
  int npy_refused = 0;
  for (const Damaged& d : damaged_versions(npy_valid, 300, 2)) {
    try {
      parse_npy(std::vector<std::uint8_t>(d.bytes.begin(), d.bytes.end()), "arr_0.npy");
    } catch (const Error&) {
      ++npy_refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "npy " << d.what << ": escaped as a non-library exception: " << e.what();
    }
  }
  EXPECT_GE(npy_refused, static_cast<int>(std::min<std::size_t>(npy_valid.size(), 300)));
}

TEST(CorruptFiles, PngLoadsOrRefusesCleanly) {
  testing::TempDir dir;
  const std::string good = dir.path + "/good.png";
  std::vector<std::uint8_t> pixels(6 * 5 * 3);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(i * 37);
  write_png(good, pixels.data(), 6, 5, 3);
  const Bytes valid = read_bytes(good);
  // PNG chunks carry CRCs, so most overwritten bytes are noticed too.
  const int refused = sweep(dir.path + "/bad.png", valid, [](const std::string& p) { read_png(p); });
  EXPECT_GE(refused, static_cast<int>(std::min<std::size_t>(valid.size(), 300)));
}

// An IDX image file [n, rows, cols] of unsigned bytes (the header is big-endian).
Bytes idx_images(int n, int rows, int cols) {
  Bytes b{0, 0, 0x08, 3};
  for (int d : {n, rows, cols})
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>((d >> s) & 0xff));
  for (int i = 0; i < n * rows * cols; ++i) b.push_back(static_cast<unsigned char>(i * 13));
  return b;
}
Bytes idx_labels(const std::vector<int>& labels) {
  Bytes b{0, 0, 0x08, 1};
  const int n = static_cast<int>(labels.size());
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>((n >> s) & 0xff));
  for (int l : labels) b.push_back(static_cast<unsigned char>(l));
  return b;
}
Bytes gzip(const Bytes& raw) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);  // +16: gzip
  Bytes out(deflateBound(&z, static_cast<uLong>(raw.size())) + 32);
  z.next_in = const_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

TEST(CorruptFiles, IdxPlainAndGzipLoadOrRefuseCleanly) {
  testing::TempDir dir;
  const std::string labels = dir.path + "/labels";
  write_bytes(labels, idx_labels({0, 3, 9, 1}));
  const Bytes images = idx_images(4, 5, 5);
  // Damaged images with good labels, then good images with damaged labels.
  int refused = sweep(dir.path + "/images", images, [&](const std::string& p) { load_idx(p, labels); });
  EXPECT_GE(refused, static_cast<int>(std::min<std::size_t>(images.size(), 300)));
  const std::string good_images = dir.path + "/good-images";
  write_bytes(good_images, images);
  const Bytes label_bytes = idx_labels({0, 3, 9, 1});
  refused = sweep(dir.path + "/bad-labels", label_bytes, [&](const std::string& p) { load_idx(good_images, p); });
  EXPECT_GE(refused, static_cast<int>(label_bytes.size()));

  const Bytes gz = gzip(images);
  ASSERT_NO_THROW(write_bytes(dir.path + "/ok.gz", gz));
  ASSERT_EQ(load_idx(dir.path + "/ok.gz", labels).n, 4);  // the valid gzip loads
  refused = sweep(dir.path + "/images.gz", gz, [&](const std::string& p) { load_idx(p, labels); });
  EXPECT_GE(refused, static_cast<int>(std::min<std::size_t>(gz.size(), 300)));
}

TEST(CorruptFiles, Cifar10RecordsLoadOrRefuseCleanly) {
  Bytes valid;
  for (int r = 0; r < 2; ++r) {
    valid.push_back(static_cast<unsigned char>(r * 4));  // label
    for (int i = 0; i < 3072; ++i) valid.push_back(static_cast<unsigned char>(i + r));
  }
  int refused = 0;
  for (const Damaged& d : damaged_versions(valid, 300, 3)) {
    Dataset ds;
    try {
      append_cifar10_records(d.bytes, "data_batch_1.bin", ds);
    } catch (const Error&) {
      ++refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cifar10 " << d.what << ": escaped as a non-library exception: " << e.what();
    }
  }
  EXPECT_GE(refused, 300);  // no length below 300 is a whole number of 3073-byte records, except 0
}

// ---- Post-hoc EMA snapshots (models/run/posthoc_export.h; fuzz target fuzz_posthoc) ----

// The refusal of `read` must be an IoError whose message names `file`.
template <class F>
void expect_io_error_naming(F&& read, const std::string& file, const std::string& what) {
  try {
    read();
    ADD_FAILURE() << what << ": accepted";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << what << ": " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": not an IoError: " << e.what();
  }
}

// A snapshot as write_posthoc_snapshot lays it out ("phema<i>.w", metadata strings), with
// every metadata value given, so that each damaged field can be written on its own.
void write_snapshot(const std::string& path, const std::string& step, const std::string& updates,
                    const std::string& profiles, int profiles_with_tensors = 2, float v = 1.0f) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (int i = 0; i < profiles_with_tensors; ++i)
    tensors.emplace_back(train::power_ema_prefix(static_cast<std::size_t>(i)) + "w",
                         Tensor::from_vector(std::vector<float>{v, 2 * v}, {2}));
  save_safetensors(path, tensors, {{"format", "pt"}, {"ddpm.step", step}, {"ddpm.updates", updates},
                                   {"ddpm.posthoc_ema", profiles}});
}

std::string profiles_json(double s0, double g0, double s1, double g1) {
  return nlohmann::json{{{"sigma_rel", s0}, {"gamma", g0}}, {{"sigma_rel", s1}, {"gamma", g1}}}.dump();
}

// Regressions of fuzz_posthoc's findings: metadata parsed with std::stoll (foreign
// std::invalid_argument / std::out_of_range, "4abc" read as 4), steps of any size (the O(t)
// reconstruction hangs), profiles with NaN or <= -1 gammas or any count, a profile without
// tensors (an empty model exported), two files of one step.
TEST(CorruptFiles, PosthocSnapshotMetadataIsValidatedAndNamed) {
  testing::TempDir dir;
  const std::string run = dir.path, posthoc = run + "/" + run::kPosthocFolder;
  std::filesystem::create_directories(posthoc);
  const double g05 = train::gamma_from_sigma_rel(0.05), g10 = train::gamma_from_sigma_rel(0.10);
  const std::string good = profiles_json(0.05, g05, 0.10, g10);
  write_snapshot(posthoc + "/step_2.safetensors", "2", "2", good);
  const std::string bad = posthoc + "/step_4.safetensors";
  // The valid pair reconstructs: a tracked width at the last step is one basis profile, so
  // its coefficient vector is the unit vector (the reconstruction is that snapshot).
  write_snapshot(bad, "4", "4", good, 2, 3.0f);
  const run::PosthocResult r = run::reconstruct_posthoc_ema(run, 0.10);
  ASSERT_EQ(r.weights.size(), 1u);
  const std::vector<double> w = r.weights[0].second.to_double_vector();
  EXPECT_NEAR(w[0], 3.0, 1e-5);
  EXPECT_NEAR(w[1], 6.0, 1e-5);

  const struct {
    std::string step, updates, profiles;
    int with_tensors;
    const char* what;
  } cases[] = {
      {"4abc", "4", good, 2, "trailing junk after the step"},
      {"", "4", good, 2, "an empty step"},
      {"99999999999999999999", "4", good, 2, "a step past int64"},
      {"0", "0", good, 2, "step 0"},
      {"2000000000", "4", good, 2, "a step past a billion"},
      {"4", "-1", good, 2, "negative updates"},
      {"4", "5", good, 2, "more updates than steps"},
      {"4", "4", "{}", 2, "profiles not a list"},
      {"4", "4", "[]", 2, "no profiles"},
      {"4", "4", "not json", 2, "profiles not JSON"},
      {"4", "4", profiles_json(0.05, std::nan(""), 0.10, g10), 2, "a NaN gamma"},
      {"4", "4", profiles_json(0.05, -2.0, 0.10, g10), 2, "a gamma <= -1"},
      {"4", "4", profiles_json(0.05, g10, 0.10, g10), 2, "a gamma that is not its sigma_rel's"},
      {"4", "4", profiles_json(0.0, 1e300, 0.10, g10), 2, "a zero-width profile"},
      {"4", "4", nlohmann::json(std::vector<nlohmann::json>(17, {{"sigma_rel", 0.05}, {"gamma", g05}})).dump(), 2,
       "17 profiles"},
      {"4", "4", good, 1, "a profile without tensors"},
      {"2", "2", good, 2, "a second snapshot of step 2"},
  };
  for (const auto& c : cases) {
    write_snapshot(bad, c.step, c.updates, c.profiles, c.with_tensors, 3.0f);
    expect_io_error_naming([&] { run::reconstruct_posthoc_ema(run, 0.10); }, "step_", c.what);
  }
  // Missing metadata and a header length past the end of the file.
  save_safetensors(bad, {}, {{"ddpm.step", "4"}});
  expect_io_error_naming([&] { run::reconstruct_posthoc_ema(run, 0.10); }, bad, "no ddpm.updates");
  write_bytes(bad, Bytes{0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, '{', '}'});
  expect_io_error_naming([&] { run::list_posthoc_snapshots(run); }, bad, "a 256 MB header in 10 bytes");

  // And the byte-level sweep of a whole snapshot beside the valid one.
  write_snapshot(bad, "4", "4", good, 2, 3.0f);
  const Bytes valid = read_bytes(bad);
  sweep(bad, valid, [&](const std::string&) { run::reconstruct_posthoc_ema(run, 0.07); }, 200, 4);
}

// ---- trainer_state.json (models/run/checkpoint.h; fuzz target fuzz_trainer_state) ----

// Regressions of fuzz_trainer_state's findings: nlohmann::json's out_of_range / type_error
// escaping restore_trainer_state and checkpoint_loader_position, a float step cast to an
// integer (undefined behaviour for 1e300), -1 wrapped to a 64-bit generator seed.
TEST(CorruptFiles, TrainerStateIsValidatedAndNamed) {
  testing::TempDir dir;
  Generator gen(0);
  unet::UNet net(testing::tiny_unet_config(8, 1), gen, Device::cpu());
  ParameterSlab slab(net.named_parameters());
  run::Checkpoint ck;
  ck.step = 3;
  ck.model = unet::export_state_dict(net);
  ck.ema = ck.model;
  run::append_slab(slab.values(), "exp_avg.", slab, ck.optimizer);
  run::append_slab(slab.values(), "exp_avg_sq.", slab, ck.optimizer);
  const nlohmann::json good = {{"step", 3},
                               {"adam_step", 2},
                               {"generator", {{"seed", 7}, {"offset", 96}}},
                               {"loader", {{"epoch", 1}, {"index", 12}}},
                               {"importance_history", nlohmann::json::parse("[[0.5], []]")}};
  ck.trainer_state = good;
  const std::string folder = run::save_checkpoint(dir.path, ck);
  const std::string state = folder + "/" + run::kTrainerStateFile;
  auto resume = [&] {  // what ddpm-train --resume reads
    const run::Checkpoint c = run::load_checkpoint(folder);
    const train::TrainerState st = run::restore_trainer_state(c, folder, net, slab, Device::cpu());
    const LoaderPosition pos = run::checkpoint_loader_position(c);
    if (c.trainer_state.contains("importance_history"))
      (void)c.trainer_state.at("importance_history").get<std::vector<std::vector<double>>>();
    return std::make_pair(st, pos);
  };
  const auto [st, pos] = resume();
  EXPECT_EQ(st.step, 3);
  EXPECT_EQ(st.adam_step, 2);
  EXPECT_EQ(st.seed, 7u);
  EXPECT_EQ(st.offset, 96u);
  EXPECT_EQ(pos.epoch, 1);
  EXPECT_EQ(pos.index, 12);

  auto with = [&](const char* pointer, const nlohmann::json& v) {
    nlohmann::json j = good;
    j[nlohmann::json::json_pointer(pointer)] = v;
    return j.dump();
  };
  auto without = [&](const char* key) {
    nlohmann::json j = good;
    j.erase(key);
    return j.dump();
  };
  const std::pair<std::string, const char*> cases[] = {
      {"[1, 2]", "an array"},
      {"\"step\"", "a string"},
      {with("/step", 1e300), "a float step past int64"},
      {with("/step", 2.5), "a fractional step"},
      {with("/step", -1), "a negative step"},
      {with("/step", "3"), "a string step"},
      {without("step"), "no step"},
      {with("/adam_step", 9), "adam_step past step"},
      {with("/adam_step", nullptr), "a null adam_step"},
      {without("adam_step"), "no adam_step"},
      {with("/generator/seed", -1), "a negative seed"},
      {with("/generator/offset", 1.5), "a fractional offset"},
      {with("/generator", 7), "generator not an object"},
      {without("generator"), "no generator"},
      {with("/loader/index", -4), "a negative loader index"},
      {with("/loader", nlohmann::json::array()), "loader not an object"},
      {without("loader"), "no loader"},
      {with("/posthoc_ema", nlohmann::json::object()), "posthoc_ema an object"},
      {with("/posthoc_ema", {{{"sigma_rel", "x"}}}), "posthoc_ema without numbers"},
      {with("/importance_history", {{"a"}}), "importance history of strings"},
      {with("/importance_history", 3), "importance history a number"},
      {with("/metrics", 3), "metrics a number"},
  };
  for (const auto& [text, what] : cases) {
    write_file_atomic(state, text);
    expect_io_error_naming(resume, run::kTrainerStateFile, what);
  }
  // And the byte-level sweep.
  write_file_atomic(state, good.dump(2));
  const Bytes valid = read_bytes(state);
  sweep(state, valid, [&](const std::string&) { resume(); }, 100, 5);
}

}  // namespace
}  // namespace ddpm
