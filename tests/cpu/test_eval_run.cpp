// ddpm-eval's library: samples from .npz (named and positional arrays, stored and ZIP64-style
// members, damaged files; the reader itself is tested in test_npz.cpp),
// bits/dim on an in-memory tiny model (the bound's parts add up; an oracle denoiser scores
// better than a useless one; same numbers as calc_bpd_loop), and the train-classifier ->
// fid -> class-accuracy chain on toy shapes (real-vs-real and samples near, noise far).
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "models/data/toy.h"
#include "models/eval/classifier.h"
#include "models/eval/eval_run.h"
#include "models/eval/features.h"
#include "engine/io/safetensors.h"
#include "models/unet/model_io.h"
#include "support/npz_fixtures.h"
#include "support/temp_dir.h"
#include "support/tiny_unet.h"

namespace ddpm::eval {
namespace {

namespace fs = std::filesystem;
using Bytes = std::string;

using testing::temp_path;

void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream(path, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
}

// Writes ds as samples.npz ("images" and, when labelled, "labels").
void write_samples_npz(const std::string& path, const Dataset& ds, bool zip64_local = true) {
  std::vector<std::pair<std::string, Bytes>> members;
  members.emplace_back("images.npy", testing::npy_blob("|u1", {ds.n, ds.height, ds.width, ds.channels},
                                                       ds.images.data(), ds.images.size()));
  if (ds.has_labels())
    members.emplace_back("labels.npy", testing::npy_blob("<i8", {ds.n}, ds.labels.data(), ds.labels.size() * 8));
  write_bytes(path, testing::zip_archive(members, {zip64_local, false}));
}

TEST(EvalRunNpz, ReadsSamplesAndLabels) {
  const Dataset shapes = make_toy_shapes(6, 4, 8);
  for (bool zip64 : {false, true}) {
    const std::string path = temp_path(zip64 ? "s64.npz" : "s.npz");
    write_samples_npz(path, shapes, zip64);
    const Dataset back = load_samples(path);
    EXPECT_EQ(back.n, 6);
    EXPECT_EQ(back.height, 8);
    EXPECT_EQ(back.channels, 1);
    EXPECT_EQ(back.images, shapes.images);
    EXPECT_EQ(back.labels, shapes.labels);
    fs::remove(path);
  }
}

// ddpm-sample's samples.npz (engine/io/npz's writer, positional arr_0 / arr_1) reads back.
TEST(EvalRunNpz, ReadsWhatDdpmSampleWrites) {
  const Dataset shapes = make_toy_shapes(5, 4, 8);
  const std::string path = temp_path("arr.npz");
  write_npz(path, {npy_view("arr_0", {shapes.n, shapes.height, shapes.width, shapes.channels}, shapes.images),
                   npy_view("arr_1", {shapes.n}, shapes.labels)});
  const Dataset back = load_samples(path);
  EXPECT_EQ(back.n, 5);
  EXPECT_EQ(back.images, shapes.images);
  EXPECT_EQ(back.labels, shapes.labels);
  fs::remove(path);
}

TEST(EvalRunNpz, DamagedOrIncompleteFilesAreIoErrors) {
  const Dataset shapes = make_toy_shapes(4, 4, 8);
  const std::string path = temp_path("bad.npz");
  write_samples_npz(path, shapes);
  {  // flip one pixel byte: the CRC catches it
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x7f');
  }
  EXPECT_THROW(load_samples(path), IoError);
  write_bytes(path, "not a zip at all, just some text that is long enough");
  EXPECT_THROW(load_samples(path), IoError);
  const std::int64_t x = 1;
  write_bytes(path, testing::zip_archive({{"other.npy", testing::npy_blob("<i8", {1}, &x, 8)}}));
  try {
    load_samples(path);
    ADD_FAILURE() << "expected an IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("other"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_samples(temp_path("missing.npz")), IoError);
  fs::remove(path);
}

// --- bits/dim -----------------------------------------------------------------------------

struct BpdRig {
  diffusion::DiffusionSchedule s{diffusion::linear_betas(40)};
  Dataset ds;
  std::vector<double> x_star;  // the one image of the dataset, in [-1, 1]
  BpdRig() {
    ds.name = "one-image";
    ds.n = 3;
    ds.height = ds.width = 4;
    ds.channels = 1;
    for (int i = 0; i < 16; ++i) x_star.push_back(-1 + 2.0 * ((i * 37) % 256) / 255.0);
    for (int k = 0; k < 3; ++k)
      for (double v : x_star) ds.images.push_back(static_cast<std::uint8_t>(std::lround((v + 1) * 127.5)));
  }
  // The exact eps for a dataset of one image: eps = (x_t - sqrt(abar_t) x*) / sqrt(1 - abar_t).
  diffusion::DenoiseFn oracle() const {
    return [this](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>&) {
      std::vector<float> v = x.to_vector();
      for (std::size_t n = 0; n < t.size(); ++n) {
        const double ab = s.alphas_cumprod[static_cast<std::size_t>(t[n])];
        for (std::size_t i = 0; i < 16; ++i)
          v[n * 16 + i] = static_cast<float>((v[n * 16 + i] - std::sqrt(ab) * x_star[i]) / std::sqrt(1 - ab));
      }
      return Tensor::from_vector(v, x.shape());
    };
  }
  static diffusion::DenoiseFn zero() {
    return [](const Tensor& x, const std::vector<double>&, const std::vector<std::int64_t>&) {
      return Tensor::zeros(x.shape());
    };
  }
};

TEST(EvalRunBpd, TermsAddUpAndAnOracleBeatsAUselessModel) {
  BpdRig rig;
  BpdEvalOptions o;
  o.batch_size = 2;
  o.limit = 2;
  o.seed = 9;
  const BpdEvalReport good = evaluate_bpd(rig.s, rig.oracle(), rig.ds, o);
  const BpdEvalReport bad = evaluate_bpd(rig.s, BpdRig::zero(), rig.ds, o);
  EXPECT_EQ(good.n, 2);
  EXPECT_EQ(good.timesteps, 40);
  EXPECT_NEAR(good.bpd, good.prior_bpd + good.terms_bpd + good.decoder_bpd, 1e-9);
  EXPECT_NEAR(bad.bpd, bad.prior_bpd + bad.terms_bpd + bad.decoder_bpd, 1e-9);
  EXPECT_TRUE(std::isfinite(good.bpd) && good.bpd > 0);
  EXPECT_LT(good.bpd, bad.bpd);
  EXPECT_NEAR(good.prior_bpd, bad.prior_bpd, 1e-12);  // the prior term does not see the model

  // One batch equals calc_bpd_loop called directly with the same generator.
  o.batch_size = 8;
  o.limit = 0;
  const BpdEvalReport all = evaluate_bpd(rig.s, rig.oracle(), rig.ds, o);
  Generator gen(9);
  const auto direct = diffusion::calc_bpd_loop(rig.s, model_gaussian(rig.s, rig.oracle(), o, {}),
                                               image_batch(rig.ds, 0, 3, Device::cpu()), gen);
  double mean = 0;
  for (double v : direct.total_bpd) mean += v / 3;
  EXPECT_EQ(all.n, 3);
  EXPECT_NEAR(all.bpd, mean, 1e-9);

  o.num_classes = 4;  // class-conditional but the data has no labels
  EXPECT_THROW(evaluate_bpd(rig.s, rig.oracle(), rig.ds, o), ValueError);
}

TEST(EvalRunBpd, MissingRunIsAnIoError) {
  EXPECT_THROW(load_eval_model(temp_path("no-such-run"), true, Device::cpu()), IoError);
}

TEST(EvalRunBpd, OpensARunFolderAndEvaluatesATinyUNet) {
  // RUN/config.json + RUN/checkpoints/step_1/{model,ema}.safetensors + checkpoints/latest.
  const fs::path run = temp_path("eval_bpd_run");
  fs::remove_all(run);
  fs::create_directories(run / "checkpoints" / "step_1");
  unet::UNetConfig cfg = testing::tiny_unet_config(16, 1);
  Generator gen(3);
  unet::UNet net(cfg, gen, Device::cpu());
  nlohmann::json config;
  config["model"] = unet::config_to_json(cfg);
  config["diffusion"] = {{"diffusion_steps", 30}, {"noise_schedule", "cosine"}};
  std::ofstream(run / "config.json") << config.dump();
  save_safetensors((run / "checkpoints" / "step_1" / "model.safetensors").string(), unet::export_state_dict(net));
  save_safetensors((run / "checkpoints" / "step_1" / "ema.safetensors").string(), unet::export_state_dict(net));
  std::ofstream(run / "checkpoints" / "latest") << "step_1\n";

  BpdArgs a;
  a.checkpoint = run.string();
  a.data = "toy-shapes";
  a.limit = 2;
  a.batch_size = 2;
  std::ostringstream out;
  const BpdEvalReport r = run_bpd(a, out);
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.timesteps, 30);
  EXPECT_TRUE(std::isfinite(r.bpd) && r.bpd > 0) << out.str();
  EXPECT_NEAR(r.bpd, r.prior_bpd + r.terms_bpd + r.decoder_bpd, 1e-9);
  EXPECT_NE(out.str().find("ema.safetensors"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("T=30 cosine"), std::string::npos) << out.str();
  // The checkpoint folder itself opens the same model.
  const EvalModel m = load_eval_model((run / "checkpoints" / "step_1").string(), false, Device::cpu());
  EXPECT_EQ(m.schedule->num_timesteps(), 30);
  EXPECT_NE(m.description.find("model.safetensors"), std::string::npos);
  fs::remove_all(run);
}

// --- train-classifier -> fid -> class-accuracy ------------------------------------------------

TEST(EvalRunChain, ToyShapesSamplesNearRealAndNoiseFar) {
  const std::string dir = temp_path("eval_chain_classifier");
  std::ostringstream log;
  TrainClassifierArgs ta;
  ta.data = "toy-shapes";
  ta.out = dir;
  ta.base_channels = 8;
  ta.feature_dim = 32;
  ta.batch_size = 32;
  ta.lr = 5e-3;
  ta.epochs = 2;
  ta.max_steps = 100;
  const TrainClassifierResult tr = run_train_classifier(ta, log);
  EXPECT_GE(tr.test_accuracy, 0.85) << log.str();
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors") && fs::exists(dir + "/classifier.json"));

  // "Samples": a fresh draw of the same distribution, with labels.
  const std::string samples = temp_path("eval_chain_samples.npz");
  write_samples_npz(samples, make_toy_shapes(400, 77));
  FidArgs fa;
  fa.classifier = dir;
  fa.samples = samples;
  fa.data = "toy-shapes";
  fa.split = "test";
  fa.kid_subset_size = 200;
  std::ostringstream out;
  const FidResult r = run_fid(fa, out);
  const std::string text = out.str();
  EXPECT_NE(text.find("ddpm-eval-cnn"), std::string::npos) << text;        // names the feature network
  EXPECT_NE(text.find("toy-shapes/test"), std::string::npos) << text;      // and the reference split
  EXPECT_NE(text.find("400 images"), std::string::npos) << text;           // and the sample count
  EXPECT_EQ(r.samples.n, 400);
  EXPECT_EQ(r.real_vs_real.n, 400);
  EXPECT_GT(r.noise.fid, 10 * std::max(r.samples.fid, r.real_vs_real.fid)) << text;
  EXPECT_GT(r.noise.kid.mean, 10 * std::max(r.samples.kid.mean, r.real_vs_real.kid.mean)) << text;
  EXPECT_GT(r.samples.pr.precision, 0.7) << text;
  EXPECT_GT(r.samples.pr.recall, 0.7) << text;
  EXPECT_LT(r.noise.pr.recall, 0.1) << text;  // noise covers none of the real set

  EXPECT_NE(text.find("samples drawn with: unknown"), std::string::npos) << text;  // nothing says how

  {  // ddpm-sample's sample_info.json beside samples.npz says how they were drawn
    const std::string folder = temp_path("eval_chain_sampled");
    fs::create_directories(folder);
    fs::copy_file(samples, folder + "/samples.npz", fs::copy_options::overwrite_existing);
    write_file_atomic(folder + "/sample_info.json",
                      R"({"checkpoint": "runs/x", "sampler": "ddim", "sampling_steps": 50, "variance": "fixed_small",)"
                      R"( "ema": true, "guidance_scale": 3.0})");
    FidArgs fb = fa;
    fb.samples = folder + "/samples.npz";
    std::ostringstream with_info;
    (void)run_fid(fb, with_info);
    EXPECT_NE(with_info.str().find(
                  "samples drawn with: runs/x: sampler \"ddim\", 50 steps, variance \"fixed_small\", EMA true, guidance scale 3.0"),
              std::string::npos)
        << with_info.str();
    fs::remove_all(folder);
  }

  ClassAccuracyArgs ca;
  ca.classifier = dir;
  ca.samples = samples;
  std::ostringstream acc_out;
  const ClassAccuracyResult acc = run_class_accuracy(ca, acc_out);
  EXPECT_GE(acc.overall, 0.85) << acc_out.str();
  ASSERT_EQ(acc.count.size(), 4u);
  EXPECT_EQ(acc.count[0] + acc.count[1] + acc.count[2] + acc.count[3], 400);

  write_samples_npz(samples, make_toy_shapes(4, 1, 32));  // larger than the classifier's input
  EXPECT_THROW(run_fid(fa, out), ValueError);
  fs::remove(samples);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ddpm::eval
