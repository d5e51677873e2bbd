// apps/ddpm_eval.cpp: ddpm-eval, evaluation of diffusion models (a thin shell over
// models/eval/eval_run.h).
//
//   ddpm-eval train-classifier --data fashion-mnist --out classifier/
//   ddpm-eval fid --classifier classifier/ --samples samples.npz --data fashion-mnist --split test
//   ddpm-eval bpd --checkpoint RUN --data fashion-mnist --split test --limit 100
//   ddpm-eval class-accuracy --classifier classifier/ --samples samples.npz
#include <iostream>

#include "apps/common/cli.h"
#include "models/eval/eval_run.h"

using namespace ddpm;

int main(int argc, char** argv) {
  CLI::App app{"ddpm-eval: bits/dim, and FID / KID / precision-recall / class accuracy on the features of a "
               "classifier the engine trains itself (no Inception weights offline)",
               "ddpm-eval"};
  cli::CommonFlags common;
  cli::add_common_flags(app, common);
  app.fallthrough();  // --device, --seed and --config also work after the subcommand
  app.require_subcommand(1);

  eval::TrainClassifierArgs tc;
  CLI::App* train = app.add_subcommand("train-classifier", "train the feature network and save it with its test accuracy");
  train->add_option("--data", tc.data, "fashion-mnist | cifar10 | toy-shapes | folder of PNGs")->capture_default_str();
  train->add_option("--data-dir", tc.data_dir, "dataset folder (default for fashion-mnist: the Debian package's)");
  train->add_option("--out", tc.out, "output folder (model.safetensors + classifier.json)")->required();
  train->add_option("--image-size", tc.image_size, "input size; 0 = the data's size rounded up to a multiple of 8")
      ->capture_default_str();
  train->add_option("--width", tc.base_channels, "channels of the first convolution (then 2x, 4x)")->capture_default_str();
  train->add_option("--feature-dim", tc.feature_dim, "size of the feature layer")->capture_default_str();
  train->add_option("--epochs", tc.epochs, "passes over the training split")->capture_default_str();
  train->add_option("--batch-size", tc.batch_size, "images per step")->capture_default_str();
  train->add_option("--lr", tc.lr, "AdamW learning rate (cosine-decayed to 0)")->capture_default_str();
  train->add_option("--weight-decay", tc.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  train->add_option("--limit", tc.limit, "train on the first N training images only (0 = all)")->capture_default_str();
  train->add_option("--max-steps", tc.max_steps, "stop after N steps (0 = all epochs)")->capture_default_str();

  eval::FidArgs fa;
  CLI::App* fid = app.add_subcommand("fid", "FID, KID and precision/recall of samples against a real split");
  fid->add_option("--classifier", fa.classifier, "classifier folder from train-classifier")->required();
  fid->add_option("--samples", fa.samples, "samples: .npz (\"images\" uint8 [N,H,W,C]) or a folder of PNGs")->required();
  fid->add_option("--data", fa.data, "reference dataset")->capture_default_str();
  fid->add_option("--data-dir", fa.data_dir, "dataset folder");
  fid->add_option("--split", fa.split, "reference split: train | test")->capture_default_str();
  fid->add_option("--num-samples", fa.num_samples, "use at most N samples (0 = all)")->capture_default_str();
  fid->add_option("--batch-size", fa.batch_size, "images per classifier batch")->capture_default_str();
  fid->add_option("--kid-subsets", fa.kid_subsets, "KID subsets")->capture_default_str();
  fid->add_option("--kid-subset-size", fa.kid_subset_size, "KID subset size")->capture_default_str();
  fid->add_option("--k", fa.k, "neighbour of the precision/recall radii")->capture_default_str();
  fid->add_flag("!--no-real-vs-real", fa.real_vs_real, "skip the train-vs-split floor");
  fid->add_option("--sample-info", fa.sample_info, "how the samples were drawn (sampler, steps, variance, EMA)");

  eval::BpdArgs ba;
  CLI::App* bpd = app.add_subcommand("bpd", "bits/dim (variational bound) of a trained run on a split");
  bpd->add_option("--checkpoint", ba.checkpoint, "run folder (latest checkpoint) or a checkpoint folder")->required();
  bpd->add_option("--data", ba.data, "dataset")->capture_default_str();
  bpd->add_option("--data-dir", ba.data_dir, "dataset folder");
  bpd->add_option("--split", ba.split, "train | test")->capture_default_str();
  bpd->add_option("--limit", ba.limit, "first N images only (0 = all; each costs T network calls)")->capture_default_str();
  bpd->add_option("--batch-size", ba.batch_size, "images per batch")->capture_default_str();
  bpd->add_flag("!--no-ema", ba.ema, "use the raw weights instead of the EMA");
  bpd->add_flag("!--no-clip", ba.clip_x0, "do not clip the x_0 estimate to [-1, 1]");

  eval::ClassAccuracyArgs ca;
  CLI::App* acc = app.add_subcommand("class-accuracy", "classifier accuracy on samples of each requested class");
  acc->add_option("--classifier", ca.classifier, "classifier folder from train-classifier")->required();
  acc->add_option("--samples", ca.samples, ".npz with \"images\" and \"labels\" (the requested classes)")->required();
  acc->add_option("--batch-size", ca.batch_size, "images per classifier batch")->capture_default_str();

  return cli::run(app, argc, argv, [&]() {
    const Device device = cli::resolve_device(common);
    if (train->parsed()) {
      tc.device = device;
      tc.seed = common.seed;
      eval::run_train_classifier(tc, std::cout);
    } else if (fid->parsed()) {
      fa.device = device;
      fa.seed = common.seed;
      eval::run_fid(fa, std::cout);
    } else if (bpd->parsed()) {
      ba.device = device;
      ba.seed = common.seed;
      eval::run_bpd(ba, std::cout);
    } else {
      ca.device = device;
      eval::run_class_accuracy(ca, std::cout);
    }
    return 0;
  });
}
