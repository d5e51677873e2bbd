// models/eval/eval_flags: ddpm-eval's command lines parsed into the option structs of
// eval_run.h (defaults, values, the data spec and its deprecated --data-dir), and the usage
// errors (CLI::ParseError from parse, exit status 2 through apps/common/cli.h run).
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "apps/common/cli.h"
#include "engine/error.h"
#include "models/eval/eval_flags.h"
#include "support/temp_dir.h"

namespace ddpm::eval {
namespace {

// ddpm-eval as apps/ddpm_eval.cpp builds it: the common flags, then the subcommands.
struct EvalCli {
  CLI::App app{"test", "ddpm-eval"};
  cli::CommonFlags common;
  EvalCommand c;
  EvalCli() {
    cli::add_common_flags(app, common);
    add_eval_subcommands(app, c);
  }
  void parse(std::vector<std::string> args) {
    args.insert(args.begin(), "ddpm-eval");
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    app.parse(static_cast<int>(argv.size()), argv.data());
  }
};

std::unique_ptr<EvalCli> parsed(const std::vector<std::string>& args) {
  auto e = std::make_unique<EvalCli>();
  e->parse(args);
  return e;
}

bool parse_fails(const std::vector<std::string>& args) {
  EvalCli e;
  try {
    e.parse(args);
  } catch (const CLI::ParseError&) {
    return true;
  }
  return false;
}

TEST(EvalFlags, TrainClassifierDefaultsAndValues) {
  auto d = parsed({"train-classifier", "--out", "clf"});
  EXPECT_EQ(d->c.mode(), EvalMode::train_classifier);
  const TrainClassifierArgs& a = d->c.train_classifier;
  const TrainClassifierArgs defaults;
  EXPECT_EQ(a.out, "clf");
  EXPECT_EQ(a.data, "fashion-mnist");
  EXPECT_EQ(a.data_dir, "");
  EXPECT_EQ(a.image_size, defaults.image_size);
  EXPECT_EQ(a.base_channels, 16);
  EXPECT_EQ(a.feature_dim, 128);
  EXPECT_EQ(a.epochs, 2);
  EXPECT_EQ(a.batch_size, 64);
  EXPECT_DOUBLE_EQ(a.lr, 2e-3);
  EXPECT_DOUBLE_EQ(a.weight_decay, 1e-4);
  EXPECT_EQ(a.limit, 0);
  EXPECT_EQ(a.max_steps, 0);

  auto v = parsed({"train-classifier", "--data", "toy", "--out", "c2", "--image-size", "24", "--width", "8",
                   "--feature-dim", "32", "--epochs", "3", "--batch-size", "32", "--lr", "5e-3", "--weight-decay",
                   "0", "--limit", "100", "--max-steps", "7", "--seed", "5", "--device", "cpu"});
  const TrainClassifierArgs& b = v->c.train_classifier;
  EXPECT_EQ(b.data, "toy");
  EXPECT_EQ(b.image_size, 24);
  EXPECT_EQ(b.base_channels, 8);
  EXPECT_EQ(b.feature_dim, 32);
  EXPECT_EQ(b.epochs, 3);
  EXPECT_EQ(b.batch_size, 32);
  EXPECT_DOUBLE_EQ(b.lr, 5e-3);
  EXPECT_DOUBLE_EQ(b.weight_decay, 0);
  EXPECT_EQ(b.limit, 100);
  EXPECT_EQ(b.max_steps, 7);
  EXPECT_EQ(v->common.seed, 5u);  // common flags after the subcommand (fallthrough)
  EXPECT_EQ(v->common.device, "cpu");
}

TEST(EvalFlags, FidDefaultsAndValues) {
  auto d = parsed({"fid", "--classifier", "clf", "--samples", "s.npz"});
  EXPECT_EQ(d->c.mode(), EvalMode::fid);
  const FidArgs& a = d->c.fid;
  EXPECT_EQ(a.classifier, "clf");
  EXPECT_EQ(a.samples, "s.npz");
  EXPECT_EQ(a.data, "fashion-mnist");
  EXPECT_EQ(a.split, "test");
  EXPECT_EQ(a.num_samples, 0);
  EXPECT_EQ(a.batch_size, 256);
  EXPECT_EQ(a.kid_subsets, 10);
  EXPECT_EQ(a.kid_subset_size, 1000);
  EXPECT_EQ(a.k, 3);
  EXPECT_TRUE(a.real_vs_real);
  EXPECT_EQ(a.sample_info, "");

  auto v = parsed({"--seed", "9", "fid", "--classifier", "clf", "--samples", "dir/", "--data", "cifar10:/data/c10",
                   "--split", "train", "--num-samples", "500", "--batch-size", "64", "--kid-subsets", "4",
                   "--kid-subset-size", "100", "--k", "5", "--no-real-vs-real", "--sample-info", "ddim 50, EMA"});
  const FidArgs& b = v->c.fid;
  EXPECT_EQ(b.data, "cifar10:/data/c10");
  EXPECT_EQ(b.split, "train");
  EXPECT_EQ(b.num_samples, 500);
  EXPECT_EQ(b.batch_size, 64);
  EXPECT_EQ(b.kid_subsets, 4);
  EXPECT_EQ(b.kid_subset_size, 100);
  EXPECT_EQ(b.k, 5);
  EXPECT_FALSE(b.real_vs_real);
  EXPECT_EQ(b.sample_info, "ddim 50, EMA");
  EXPECT_EQ(v->common.seed, 9u);
}

TEST(EvalFlags, TrainVideoClassifierAndFvd) {
  auto t = parsed({"train-video-classifier", "--data", "moving-toy", "--out", "vc", "--frames", "4", "--canvas", "16",
                   "--item-size", "8", "--limit", "64", "--test-limit", "16", "--overwrite"});
  EXPECT_EQ(t->c.mode(), EvalMode::train_video_classifier);
  const TrainVideoClassifierArgs& a = t->c.train_video_classifier;
  EXPECT_EQ(a.data, "moving-toy");
  EXPECT_EQ(a.out, "vc");
  EXPECT_EQ(a.clips.frames, 4);
  EXPECT_EQ(a.clips.canvas, 16);
  EXPECT_EQ(a.clips.item_size, 8);
  EXPECT_EQ(a.limit, 64);
  EXPECT_EQ(a.test_limit, 16);
  EXPECT_TRUE(a.overwrite);
  auto f = parsed({"fvd", "--classifier", "vc", "--samples", "s.npz", "--split", "train", "--limit", "32"});
  EXPECT_EQ(f->c.mode(), EvalMode::fvd);
  EXPECT_EQ(f->c.fvd.classifier, "vc");
  EXPECT_EQ(f->c.fvd.samples, "s.npz");
  EXPECT_EQ(f->c.fvd.data, "");  // the classifier's dataset
  EXPECT_EQ(f->c.fvd.split, "train");
  EXPECT_EQ(f->c.fvd.limit, 32);
  EXPECT_TRUE(parse_fails({"fvd", "--classifier", "vc"}));  // --samples is required
  EXPECT_TRUE(parse_fails({"fvd", "--classifier", "vc", "--samples", "s.npz", "--split", "val"}));
  EXPECT_TRUE(parse_fails({"train-video-classifier", "--out", "vc", "--frames", "0"}));
  EXPECT_TRUE(parse_fails({"train-video-classifier"}));  // --out is required
}

TEST(EvalFlags, AnalyticGammaAndTheBoundsVariance) {
  auto d = parsed({"analytic-gamma", "--checkpoint", "runs/fm", "--out", "g.json"});
  EXPECT_EQ(d->c.mode(), EvalMode::analytic_gamma);
  EXPECT_EQ(d->c.analytic_gamma.out, "g.json");
  EXPECT_EQ(d->c.analytic_gamma.split, "train");  // the paper estimates on training data
  EXPECT_EQ(d->c.analytic_gamma.num_images, 256);
  EXPECT_EQ(d->c.analytic_gamma.timesteps, "");
  EXPECT_TRUE(d->c.analytic_gamma.ema);
  auto v = parsed({"analytic-gamma", "--checkpoint", "r", "--out", "g.json", "--num-images", "32", "--timesteps",
                   "ddim50", "--batch-size", "8", "--split", "test", "--no-ema", "--overwrite"});
  EXPECT_EQ(v->c.analytic_gamma.num_images, 32);
  EXPECT_EQ(v->c.analytic_gamma.timesteps, "ddim50");
  EXPECT_EQ(v->c.analytic_gamma.batch_size, 8);
  EXPECT_EQ(v->c.analytic_gamma.split, "test");
  EXPECT_FALSE(v->c.analytic_gamma.ema);
  EXPECT_TRUE(v->c.analytic_gamma.overwrite);
  EXPECT_TRUE(parse_fails({"analytic-gamma", "--checkpoint", "r"}));  // --out is required
  EXPECT_TRUE(parse_fails({"analytic-gamma", "--checkpoint", "r", "--out", "g", "--num-images", "0"}));
  auto b = parsed({"bpd", "--checkpoint", "r", "--variance", "analytic", "--analytic-gamma", "g.json"});
  EXPECT_EQ(b->c.bpd.variance, "analytic");
  EXPECT_EQ(b->c.bpd.analytic_gamma, "g.json");
  EXPECT_EQ(parsed({"bpd", "--checkpoint", "r"})->c.bpd.variance, "fixed_small");
  EXPECT_TRUE(parse_fails({"bpd", "--checkpoint", "r", "--variance", "learned_range"}));
}

TEST(EvalFlags, BpdAndClassAccuracy) {
  auto d = parsed({"bpd", "--checkpoint", "runs/fm"});
  EXPECT_EQ(d->c.mode(), EvalMode::bpd);
  EXPECT_EQ(d->c.bpd.checkpoint, "runs/fm");
  EXPECT_EQ(d->c.bpd.data, "fashion-mnist");
  EXPECT_EQ(d->c.bpd.split, "test");
  EXPECT_EQ(d->c.bpd.limit, 0);
  EXPECT_EQ(d->c.bpd.batch_size, 16);
  EXPECT_TRUE(d->c.bpd.ema);
  EXPECT_TRUE(d->c.bpd.clip_x0);
  auto v = parsed({"bpd", "--checkpoint", "r", "--data", "fashion-mnist:/fm", "--split", "train", "--limit", "100",
                   "--batch-size", "4", "--no-ema", "--no-clip"});
  EXPECT_EQ(v->c.bpd.data, "fashion-mnist:/fm");
  EXPECT_EQ(v->c.bpd.split, "train");
  EXPECT_EQ(v->c.bpd.limit, 100);
  EXPECT_EQ(v->c.bpd.batch_size, 4);
  EXPECT_FALSE(v->c.bpd.ema);
  EXPECT_FALSE(v->c.bpd.clip_x0);

  auto a = parsed({"class-accuracy", "--classifier", "clf", "--samples", "s.npz"});
  EXPECT_EQ(a->c.mode(), EvalMode::class_accuracy);
  EXPECT_EQ(a->c.class_accuracy.classifier, "clf");
  EXPECT_EQ(a->c.class_accuracy.samples, "s.npz");
  EXPECT_EQ(a->c.class_accuracy.batch_size, 256);
  EXPECT_EQ(parsed({"class-accuracy", "--classifier", "c", "--samples", "s", "--batch-size", "8"})
                ->c.class_accuracy.batch_size,
            8);
}

TEST(EvalFlags, DataSpecFormsAndTheDeprecatedDataDir) {
  using Kind = run::DataSpec::Kind;
  EXPECT_EQ(parse_eval_data("fashion-mnist").kind, Kind::fashion_mnist);
  EXPECT_EQ(parse_eval_data("fashion-mnist").path, "");
  EXPECT_EQ(parse_eval_data("fashion-mnist:/fm").path, "/fm");
  EXPECT_EQ(parse_eval_data("cifar10:/c").kind, Kind::cifar10);
  EXPECT_EQ(parse_eval_data("toy").kind, Kind::toy);
  EXPECT_EQ(parse_eval_data("toy-shapes").kind, Kind::toy);  // the older name
  const run::DataSpec idx = parse_eval_data("idx:a.idx,b.idx");
  EXPECT_EQ(idx.kind, Kind::idx);
  EXPECT_EQ(idx.path, "a.idx");
  EXPECT_EQ(idx.labels_path, "b.idx");
  EXPECT_EQ(parse_eval_data("folder:pngs").kind, Kind::folder);
  // --data-dir (deprecated) completes a bare fashion-mnist or cifar10.
  const run::DataSpec fm = parse_eval_data("fashion-mnist", "/fm");
  EXPECT_EQ(fm.kind, Kind::fashion_mnist);
  EXPECT_EQ(fm.path, "/fm");
  const run::DataSpec c10 = parse_eval_data("cifar10", "/c");
  EXPECT_EQ(c10.kind, Kind::cifar10);
  EXPECT_EQ(c10.path, "/c");
  // A bare existing folder is a folder of PNGs (the older form).
  const std::string dir = testing::fresh_temp_dir("eval_flags_pngs");
  EXPECT_EQ(parse_eval_data(dir).kind, Kind::folder);
  EXPECT_EQ(parse_eval_data(dir).path, dir);

  EXPECT_THROW(parse_eval_data("cifar10"), ValueError);                // no folder
  EXPECT_THROW(parse_eval_data("cifar10:/a", "/b"), ValueError);       // the folder twice
  EXPECT_THROW(parse_eval_data("fashion-mnist:/a", "/b"), ValueError);
  EXPECT_THROW(parse_eval_data("toy", "/b"), ValueError);              // --data-dir means nothing here
  EXPECT_THROW(parse_eval_data("mnist"), ValueError);
  EXPECT_THROW(parse_eval_data(dir + "/missing"), ValueError);
  EXPECT_THROW(parse_eval_data(""), ValueError);

  // The toy splits keep their sizes and names under the new spelling.
  const Dataset test = load_eval_dataset("toy", "test");
  EXPECT_EQ(test.n, 500);
  EXPECT_EQ(test.name, "toy-shapes/test");
  EXPECT_EQ(load_eval_dataset("toy-shapes", "train").n, 2000);
  EXPECT_THROW(load_eval_dataset("toy", "val"), ValueError);
}

TEST(EvalFlags, DeprecatedDataDirStillParses) {
  // The command lines of docs/EVALUATION.md before the data spec.
  auto f = parsed({"fid", "--classifier", "c", "--samples", "s.npz", "--data", "fashion-mnist", "--data-dir", "/fm"});
  EXPECT_EQ(f->c.fid.data_dir, "/fm");
  EXPECT_EQ(parse_eval_data(f->c.fid.data, f->c.fid.data_dir).path, "/fm");
  auto t = parsed({"train-classifier", "--data", "cifar10", "--data-dir", "/c", "--out", "o"});
  EXPECT_EQ(parse_eval_data(t->c.train_classifier.data, t->c.train_classifier.data_dir).path, "/c");
  auto b = parsed({"bpd", "--checkpoint", "r", "--data", "toy-shapes"});
  EXPECT_EQ(b->c.bpd.data, "toy-shapes");
}

TEST(EvalFlags, BadValuesAreParseErrors) {
  const std::vector<std::string> fid = {"fid", "--classifier", "c", "--samples", "s"};
  auto with = [](std::vector<std::string> base, std::vector<std::string> extra) {
    base.insert(base.end(), extra.begin(), extra.end());
    return base;
  };
  EXPECT_FALSE(parse_fails(fid));
  EXPECT_TRUE(parse_fails(with(fid, {"--split", "val"})));
  EXPECT_TRUE(parse_fails(with(fid, {"--batch-size", "0"})));
  EXPECT_TRUE(parse_fails(with(fid, {"--k", "three"})));
  EXPECT_TRUE(parse_fails(with(fid, {"--num-samples", "-1"})));
  EXPECT_TRUE(parse_fails(with(fid, {"--kid-subsets", "0"})));
  EXPECT_TRUE(parse_fails(with(fid, {"--data", "mnist"})));
  EXPECT_TRUE(parse_fails(with(fid, {"--data", "cifar10"})));                            // needs a folder
  EXPECT_TRUE(parse_fails(with(fid, {"--data", "cifar10:/c", "--data-dir", "/d"})));     // twice
  EXPECT_TRUE(parse_fails(with(fid, {"--data", "toy", "--data-dir", "/d"})));
  const std::vector<std::string> train = {"train-classifier", "--out", "o"};
  EXPECT_TRUE(parse_fails(with(train, {"--epochs", "0"})));
  EXPECT_TRUE(parse_fails(with(train, {"--lr", "-1"})));
  EXPECT_TRUE(parse_fails(with(train, {"--width", "x"})));
  EXPECT_TRUE(parse_fails(with(train, {"--split", "test"})));  // train-classifier uses both splits
  EXPECT_TRUE(parse_fails({"bpd", "--checkpoint", "r", "--limit", "-5"}));
  EXPECT_TRUE(parse_fails({"class-accuracy", "--classifier", "c", "--samples", "s", "--batch-size", "-2"}));
  EXPECT_TRUE(parse_fails({"class-accuracy", "--classifier", "c", "--samples", "s", "--data", "toy"}));
}

TEST(EvalFlags, UnknownSubcommandAndMissingRequiredFlagsFail) {
  EXPECT_TRUE(parse_fails({}));                      // a subcommand is required
  EXPECT_TRUE(parse_fails({"evaluate"}));            // not one of the four
  EXPECT_TRUE(parse_fails({"fid", "bpd"}));          // only one
  EXPECT_TRUE(parse_fails({"train-classifier"}));    // --out
  EXPECT_TRUE(parse_fails({"fid", "--classifier", "c"}));  // --samples
  EXPECT_TRUE(parse_fails({"fid", "--samples", "s"}));     // --classifier
  EXPECT_TRUE(parse_fails({"bpd", "--data", "toy"}));      // --checkpoint
  EXPECT_TRUE(parse_fails({"class-accuracy", "--samples", "s"}));
  EXPECT_TRUE(parse_fails({"bpd", "--checkpoint", "r", "--bogus"}));
  EvalCommand unparsed;
  EXPECT_THROW(unparsed.mode(), ValueError);
}

// The ParseError message of a command line that must fail ("parsed" when it does not).
std::string parse_error(const std::vector<std::string>& args) {
  EvalCli e;
  try {
    e.parse(args);
  } catch (const CLI::ParseError& err) {
    return err.what();
  }
  return "parsed";
}

TEST(EvalFlags, AnUnknownSubcommandIsNamedWithTheValidOnes) {
  // Not CLI11's "A subcommand is required", which does not say what it got.
  const std::string typo = parse_error({"fdi", "--classifier", "c", "--samples", "s"});
  EXPECT_EQ(typo, "unknown subcommand 'fdi' (did you mean fid?); the subcommands are train-classifier, fid, bpd, nll, "
                  "class-accuracy, analytic-gamma, condition-gap, video, train-video-classifier, fvd");
  // Far from every name: no suggestion; after the common flags: the same message.
  EXPECT_EQ(parse_error({"--seed", "3", "evaluate"}),
            "unknown subcommand 'evaluate'; the subcommands are train-classifier, fid, bpd, nll, class-accuracy, "
            "analytic-gamma, condition-gap, video, train-video-classifier, fvd");
  EXPECT_NE(parse_error({"bdp", "--checkpoint", "r"}).find("did you mean bpd?"), std::string::npos);
  // A stray word after a valid subcommand, or a second subcommand, names the word too.
  EXPECT_EQ(parse_error({"fid", "--classifier", "c", "--samples", "s", "extra"}),
            "unexpected argument 'extra' for ddpm-eval fid, which takes flags only (one subcommand per run)");
  EXPECT_NE(parse_error({"fid", "bpd"}).find("unexpected argument 'bpd' for ddpm-eval fid"), std::string::npos);
  // Nothing at all is still CLI11's requirement; the valid forms still parse.
  EXPECT_NE(parse_error({}).find("subcommand is required"), std::string::npos);
  EXPECT_EQ(parse_error({"bpd", "--checkpoint", "r"}), "parsed");
  // The hidden catch-all is not shown in --help, not even as an empty "[]" in the usage line.
  EvalCli e;
  const std::string help = e.app.help();
  EXPECT_EQ(help.find("unknown-word"), std::string::npos) << help;
  EXPECT_NE(help.find("Usage: ddpm-eval [OPTIONS] SUBCOMMAND\n"), std::string::npos) << help;

  // Through cli::run as apps/ddpm_eval.cpp: exit status 2 and the one line on stderr.
  EvalCli run;
  std::vector<std::string> args{"ddpm-eval", "fdi", "--classifier", "c"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ::testing::internal::CaptureStderr();
  const int rc = cli::run(run.app, static_cast<int>(argv.size()), argv.data(), [] { return 0; });
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 2);
  EXPECT_EQ(err.rfind("ddpm-eval: error: unknown subcommand 'fdi' (did you mean fid?); the subcommands are ", 0), 0u)
      << err;
}

TEST(EvalFlags, ExitStatusTwoForUsageErrorsAndHelpNamesTheForms) {
  auto status = [](std::vector<std::string> args) {
    EvalCli e;
    args.insert(args.begin(), "ddpm-eval");
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    bool ran = false;
    const int rc = cli::run(e.app, static_cast<int>(argv.size()), argv.data(), [&] {
      ran = true;
      return 0;
    });
    return ran ? rc : -rc;
  };
  EXPECT_EQ(status({"bpd", "--checkpoint", "r", "--data", "toy"}), 0);
  EXPECT_EQ(status({"evaluate"}), -2);
  EXPECT_EQ(status({"bpd", "--checkpoint", "r", "--data", "cifar10"}), -2);

  EvalCli e;
  const std::string help = e.c.fid_app->help();
  EXPECT_NE(help.find("fashion-mnist[:DIR]"), std::string::npos) << help;
  EXPECT_NE(help.find("Deprecated"), std::string::npos) << help;
  EXPECT_NE(help.find("--data-dir"), std::string::npos) << help;
  EXPECT_EQ(e.c.class_accuracy_app->help().find("--data"), std::string::npos);
}

}  // namespace
}  // namespace ddpm::eval
