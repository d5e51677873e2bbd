// models/run/autoencoder_run.cpp: ddpm-autoencoder's work (see the header for the math, the
// folder and the flags).
#include "models/run/autoencoder_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/png.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "engine/seed_streams.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/eval/classifier.h"
#include "models/eval/eval_run.h"
#include "models/run/data_spec.h"
#include "models/run/image_sets.h"
#include "models/run/int_list.h"
#include "models/run/sample_run.h"
#include "models/run/side_train_checks.h"
#include "models/run/subcommands.h"
#include "models/train/adamw_loop.h"

namespace ddpm::run {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kGridImages = 8;  // reconstructions.png: this many originals over their reconstructions

// D(mean of q(z | x)) for images [first, first + n) of data.
Tensor reconstruct(const autoencoder::Autoencoder& ae, const Dataset& data, std::int64_t first, std::int64_t n) {
  NoGradGuard no_grad;
  return ae.decode(ae.encode(eval::image_batch(data, first, n, ae.device())).mean);
}

}  // namespace

AdamWConfig ldm_autoencoder_adam(double lr) {
  AdamWConfig ac;
  ac.lr = lr;
  ac.beta1 = 0.5;  // LDM's autoencoder optimizer: Adam(betas = (0.5, 0.9))
  ac.beta2 = 0.9;
  return ac;
}

autoencoder::AutoencoderConfig autoencoder_config_for(const AutoencoderTrainArgs& a, const Dataset& data) {
  autoencoder::AutoencoderConfig c;
  c.in_channels = static_cast<int>(data.channels);
  c.base_channels = a.base_channels;
  c.channel_mult = parse_int_list("--channel-mult", a.channel_mult);
  c.num_res_blocks = a.num_res_blocks;
  c.z_channels = a.z_channels;
  c.norm_groups = a.norm_groups;
  c.validate();
  const int f = c.downsampling_factor();
  DDPM_CHECK(data.height % f == 0 && data.width % f == 0,
             "ddpm-autoencoder train: " << data.name << " has " << data.height << "x" << data.width
                                        << " images, which the downsampling factor " << f << " of --channel-mult "
                                        << a.channel_mult << " does not divide"
                                        << (data.height == 28 ? "; add --pad-to-32" : ""));
  return c;
}

AutoencoderTrainReport train_autoencoder(autoencoder::Autoencoder& ae, const Dataset& data,
                                         const AutoencoderTrainArgs& a,
                                         const std::function<void(const std::string&)>& log) {
  DDPM_CHECK(a.steps >= 1 && a.batch_size >= 1, "ddpm-autoencoder train: --steps and --batch-size must be positive, got "
                                                    << a.steps << " and " << a.batch_size);
  const autoencoder::ReconstructionLoss rec = autoencoder::parse_reconstruction_loss(a.loss);
  validate_lr_schedule_flags(a.lr_schedule, a.lr, a.warmup_steps, a.steps);  // --warmup-steps, --lr-schedule, --lr-min
  const train::LrSchedule lr_schedule = train::parse_lr_schedule(a.lr_schedule.schedule);
  train::AdamWLoop loop(ae.named_parameters(), ldm_autoencoder_adam(a.lr), std::make_shared<const Dataset>(data),
                        a.batch_size, a.seed, ae.device());
  Generator gen(splitmix64_stream(a.seed, 0));  // the noise's own stream, apart from the weights' Generator(seed)
  const int f = ae.config().downsampling_factor();

  AutoencoderTrainReport r;
  train::LossWindow window(a.steps, a.log_every);
  for (std::int64_t step = 0; step < a.steps; ++step) {
    const Tensor x = loop.next().images;  // [B, H, W, C] in [-1, 1]
    const Tensor eps = randn({x.dim(0), x.dim(1) / f, x.dim(2) / f, ae.config().z_channels}, gen, x.device());
    const autoencoder::AutoencoderLossTerms l =
        autoencoder::autoencoder_loss(ae, x, eps, rec, a.kl_weight, nn::Context{true, nullptr, a.gradient_checkpointing});
    r.losses.push_back(
        loop.step(l.total, train::scheduled_lr(lr_schedule, a.lr, a.lr_schedule.lr_min, a.warmup_steps, a.steps, step)));
    r.reconstruction.push_back(l.reconstruction.item());
    r.kl.push_back(l.kl.item());
    DDPM_CHECK_AS(std::isfinite(r.losses.back()), Error,
                  "ddpm-autoencoder train: the loss is not finite at step " << step + 1 << "; try a lower --lr");
    if (window.add(step, {r.losses.back(), r.reconstruction.back(), r.kl.back()}) && log) {
      std::ostringstream line;
      line << "step " << step + 1 << "/" << a.steps << "  loss " << window.mean(0) << "  reconstruction "
           << window.mean(1) << "  kl " << window.mean(2) << "  " << window.seconds() << " s";
      log(line.str());
    }
  }
  r.seconds = window.seconds();
  return r;
}

double measure_latent_scale(const autoencoder::Autoencoder& ae, const Dataset& data, std::int64_t count,
                            std::int64_t batch_size, std::uint64_t seed) {
  DDPM_CHECK(count >= 1 && batch_size >= 1, "measure_latent_scale: the image count and batch size must be positive, got "
                                                << count << " and " << batch_size);
  NoGradGuard no_grad;
  Generator gen(seed);
  const std::int64_t n = std::min(count, data.n);
  double sum = 0, sum_sq = 0;  // in double: a few hundred thousand latent values
  std::int64_t m = 0;
  for (std::int64_t b = 0; b < n; b += batch_size) {
    const std::int64_t k = std::min(batch_size, n - b);
    const autoencoder::DiagonalGaussian q = ae.encode(eval::image_batch(data, b, k, ae.device()));
    const Tensor z = q.sample(randn(q.mean.shape(), gen, q.mean.device()));
    for (double v : z.to_double_vector()) {
      sum += v;
      sum_sq += v * v;
      ++m;
    }
  }
  DDPM_CHECK(m >= 2, "measure_latent_scale: needs at least two latent values");
  const double mean = sum / static_cast<double>(m);
  const double var = (sum_sq - static_cast<double>(m) * mean * mean) / static_cast<double>(m - 1);
  DDPM_CHECK_AS(var > 0 && std::isfinite(var), Error,
                "measure_latent_scale: the latents have variance " << var << "; the autoencoder has collapsed");
  return 1.0 / std::sqrt(var);
}

AutoencoderEvalReport evaluate_reconstruction(const autoencoder::Autoencoder& ae, const Dataset& data,
                                              std::int64_t batch_size) {
  DDPM_CHECK(data.n > 0, "ddpm-autoencoder eval: " << data.name << " has no images");
  DDPM_CHECK(batch_size >= 1, "ddpm-autoencoder eval: --batch-size must be positive, got " << batch_size);
  double sq = 0;
  std::int64_t count = 0;
  for (std::int64_t b = 0; b < data.n; b += batch_size) {
    const std::int64_t k = std::min(batch_size, data.n - b);
    const std::vector<std::uint8_t> rec = to_uint8_pixels(reconstruct(ae, data, b, k));
    const std::uint8_t* orig = data.image(b);
    for (std::size_t i = 0; i < rec.size(); ++i) {
      const double d = static_cast<double>(rec[i]) - static_cast<double>(orig[i]);
      sq += d * d;
    }
    count += static_cast<std::int64_t>(rec.size());
  }
  AutoencoderEvalReport r;
  r.images = data.n;
  r.mse = sq / static_cast<double>(count);
  r.psnr = r.mse > 0 ? 10.0 * std::log10(255.0 * 255.0 / r.mse) : std::numeric_limits<double>::infinity();
  return r;
}

void run_autoencoder_train(const AutoencoderTrainArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.out.empty(), "--out is required: the folder to write the autoencoder to");
  check_out_may_be_written(a.out, a.overwrite);
  check_steps_batch_lr(a.steps, a.batch_size, a.lr);
  DDPM_CHECK(a.kl_weight >= 0 && std::isfinite(a.kl_weight), "--kl-weight must be >= 0, got " << a.kl_weight);
  validate_lr_schedule_flags(a.lr_schedule, a.lr, a.warmup_steps, a.steps);  // --warmup-steps, --lr-schedule, --lr-min
  DDPM_CHECK(a.scale_images >= 2, "--scale-images must be at least 2, got " << a.scale_images);
  autoencoder::parse_reconstruction_loss(a.loss);
  const DataSpec spec = parse_data_spec(a.data);
  DataOptions dopt;
  dopt.pad_to_32 = a.pad_to_32;
  dopt.seed = a.seed;
  dopt.canvas = a.canvas;
  dopt.item_size = a.item_size;
  dopt.moving_items = a.moving_items;
  check_clip_flags(spec, dopt);  // --canvas etc. name themselves unless --data is moving-*
  // Clips: their first frames as still images (--frames 1 of data_spec.h).
  if (spec.is_moving()) dopt.frames = 1;
  const Dataset data = spec.is_moving() ? load_data(spec, dopt) : load_image_data(spec, dopt, "ddpm-autoencoder");
  const autoencoder::AutoencoderConfig cfg = autoencoder_config_for(a, data);
  Generator init(a.seed);
  autoencoder::Autoencoder ae(cfg, init, a.device);
  out << "data: " << data.describe() << "\n"
      << "autoencoder: " << ae.num_parameters() << " parameters, " << data.height << "x" << data.width << "x"
      << data.channels << " -> " << data.height / cfg.downsampling_factor() << "x"
      << data.width / cfg.downsampling_factor() << "x" << cfg.z_channels << " (f = " << cfg.downsampling_factor()
      << "), " << a.loss << " + " << a.kl_weight << " KL\n";
  const AutoencoderTrainReport r = train_autoencoder(ae, data, a, [&out](const std::string& l) { out << l << "\n"; });
  const double s = measure_latent_scale(ae, data, a.scale_images, a.batch_size, a.seed);
  ae.mutable_config().scale_factor = s;
  out << "latent scale factor s = 1 / std(z) = " << s << " (over " << std::min(a.scale_images, data.n)
      << " training images)\n";

  // reconstructions.png: originals over reconstructions.
  const int g = static_cast<int>(std::min<std::int64_t>(kGridImages, data.n));
  const int H = static_cast<int>(data.height), W = static_cast<int>(data.width), C = static_cast<int>(data.channels);
  std::vector<std::uint8_t> tiles(data.image(0), data.image(0) + static_cast<std::size_t>(g) * data.image_bytes());
  const std::vector<std::uint8_t> rec = to_uint8_pixels(reconstruct(ae, data, 0, g));
  tiles.insert(tiles.end(), rec.begin(), rec.end());
  const Image grid = make_grid(tiles.data(), 2 * g, H, W, C, g);

  json train = {{"data", a.data},           {"pad_to_32", a.pad_to_32},
              {"image_size", {H, W}},     {"steps", a.steps},
              {"batch_size", a.batch_size}, {"lr", a.lr},
              {"kl_weight", a.kl_weight}, {"loss", a.loss},
              {"seed", a.seed},           {"final_loss", r.losses.back()},
              {"final_reconstruction", r.reconstruction.back()},
              {"final_kl", r.kl.back()},  {"scale_images", std::min(a.scale_images, data.n)},
              {"seconds", r.seconds}};
  train["warmup_steps"] = a.warmup_steps;
  if (spec.is_moving())  // the clips the first frames came from
    train["clips"] = {{"frames_used", "first"}, {"canvas", a.canvas}, {"item_size", a.item_size},
                      {"moving_items", a.moving_items}};
  add_lr_schedule_json(train, a.lr_schedule, a.steps);
  train["gradient_checkpointing"] = a.gradient_checkpointing;  // the key ddpm-train and ddpm-control use
  autoencoder::save_autoencoder(ae, train, a.out, a.overwrite,
                                [&](const std::string& tmp) { write_png(tmp + "/reconstructions.png", grid); });
  out << "wrote " << a.out << "/model.safetensors, config.json and reconstructions.png\n";
}

AutoencoderEvalReport run_autoencoder_eval(const AutoencoderEvalArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.autoencoder.empty(), "--autoencoder is required: a folder written by ddpm-autoencoder train");
  DDPM_CHECK(a.limit >= 0, "--limit must be >= 0, got " << a.limit);
  DDPM_CHECK(a.split == "train" || a.split == "test", "--split must be train or test, got " << a.split);
  const autoencoder::AutoencoderFolder f = autoencoder::load_autoencoder(a.autoencoder, a.device);
  const autoencoder::AutoencoderConfig& cfg = f.model->config();
  DDPM_CHECK(cfg.temporal_frames == 0,
             "--autoencoder " << a.autoencoder << " has a temporal decoder (clips of " << cfg.temporal_frames
                              << " frames); eval measures image reconstructions: pass the image autoencoder it was "
                                 "fine-tuned from");
  Dataset data = eval::load_eval_dataset(a.data, a.split);
  if (a.limit > 0 && a.limit < data.n) data = take(data, a.limit);
  const json train = f.info.value("train", json::object());
  if (train.value("pad_to_32", false) && data.height < 32 && data.height == data.width) data = pad_to(data, 32);
  const int factor = cfg.downsampling_factor();
  DDPM_CHECK(data.channels == cfg.in_channels && data.height % factor == 0 && data.width % factor == 0,
             "--data " << a.data << " has " << data.height << "x" << data.width << "x" << data.channels
                       << " images; the autoencoder takes " << cfg.in_channels
                       << " channel(s) and sizes divisible by " << factor);
  const AutoencoderEvalReport r = evaluate_reconstruction(*f.model, data, a.batch_size);
  out << "autoencoder " << a.autoencoder << " on " << data.describe() << " (" << a.split << "): reconstruction MSE "
      << std::setprecision(6) << r.mse << " (0..255 scale), PSNR " << r.psnr << " dB\n";
  const json line = {{"autoencoder", a.autoencoder}, {"data", a.data}, {"split", a.split}, {"images", r.images},
                     {"mse", r.mse}, {"psnr", std::isfinite(r.psnr) ? json(r.psnr) : json(nullptr)}};
  out << line.dump() << "\n";
  return r;
}

void add_autoencoder_subcommands(CLI::App& app, AutoencoderCommand& c) {
  app.fallthrough();  // --device, --seed, --config also work after the subcommand
  app.require_subcommand(1);
  add_unknown_word_check(app);  // "unknown subcommand 'tran' (did you mean train?)"
  AutoencoderTrainArgs& t = c.train;
  CLI::App* tr = app.add_subcommand("train", "train a KL-regularised autoencoder (the first stage of latent diffusion)");
  c.train_app = tr;
  tr->add_option("--data", t.data,
                 "fashion-mnist[:DIR] | idx:IMAGES[,LABELS] | cifar10:DIR | folder:DIR | toy | moving-fashion-mnist[:DIR] "
                 "| moving-toy (the clips' first frames, for a latent video run)")
      ->capture_default_str();
  tr->add_option("--canvas", t.canvas, "with --data moving-*: the clips' size (canvas x canvas)")->capture_default_str();
  tr->add_option("--item-size", t.item_size, "with --data moving-*: the moving items' size")->capture_default_str();
  tr->add_option("--moving-items", t.moving_items, "with --data moving-*: items per clip")->capture_default_str();
  tr->add_flag("--pad-to-32", t.pad_to_32, "centre 28x28 images on 32x32");
  tr->add_option("--out", t.out, "output folder: model.safetensors, config.json, reconstructions.png")->required();
  tr->add_flag("--overwrite", t.overwrite, "replace an existing --out folder");
  tr->add_option("--steps", t.steps, "training steps")->capture_default_str();
  tr->add_option("--batch-size", t.batch_size, "images per step")->capture_default_str();
  tr->add_option("--lr", t.lr, "Adam learning rate (betas 0.5, 0.9 as LDM)")->capture_default_str();
  add_warmup_and_lr_schedule_flags(*tr, t.warmup_steps, t.lr_schedule);
  tr->add_option("--kl-weight", t.kl_weight, "weight of KL(q(z|x) || N(0, I)) (LDM: 1e-6)")->capture_default_str();
  tr->add_option("--loss", t.loss, "reconstruction loss: l1 | l2")
      ->check(CLI::IsMember({"l1", "l2"}))
      ->capture_default_str();
  tr->add_option("--base-channels", t.base_channels, "channels of the first level")->capture_default_str()->group("Model");
  tr->add_option("--channel-mult", t.channel_mult, "channel multiplier per level; f = 2^(levels - 1)")
      ->capture_default_str()->group("Model");
  tr->add_option("--num-res-blocks", t.num_res_blocks, "residual blocks per level")->capture_default_str()->group("Model");
  tr->add_option("--z-channels", t.z_channels, "latent channels")->capture_default_str()->group("Model");
  tr->add_option("--norm-groups", t.norm_groups, "GroupNorm groups")->capture_default_str()->group("Model");
  tr->add_option("--scale-images", t.scale_images, "training images used to measure the latent scale factor")
      ->capture_default_str();
  tr->add_option("--log-every", t.log_every, "print the mean losses every N steps")->capture_default_str();
  tr->add_flag("--gradient-checkpointing", t.gradient_checkpointing,
               "recompute the blocks' activations in the backward (less memory, ~1/3 more compute)");

  AutoencoderEvalArgs& e = c.eval;
  CLI::App* ev = app.add_subcommand("eval", "reconstruction MSE and PSNR (0..255 scale) of an autoencoder on a split");
  c.eval_app = ev;
  ev->add_option("--autoencoder", e.autoencoder, "folder written by ddpm-autoencoder train")->required();
  add_split_flags(*ev, e.data, e.split, e.limit, e.batch_size);
  c.finetune_app = add_temporal_finetune_subcommand(app, c.finetune);  // temporal_decoder_run.h
}

void run_autoencoder_command(AutoencoderCommand& c, Device device, std::uint64_t seed, std::ostream& out) {
  if (c.train_app != nullptr && c.train_app->parsed()) {
    c.train.device = device;
    c.train.seed = seed;
    run_autoencoder_train(c.train, out);
    return;
  }
  if (c.eval_app != nullptr && c.eval_app->parsed()) {
    c.eval.device = device;
    run_autoencoder_eval(c.eval, out);
    return;
  }
  if (c.finetune_app != nullptr && c.finetune_app->parsed()) {
    c.finetune.device = device;
    c.finetune.seed = seed;
    run_temporal_finetune(c.finetune, out);
    return;
  }
  DDPM_THROW(ValueError, "ddpm-autoencoder: no subcommand was parsed; expected train, eval or finetune-temporal");
}

}  // namespace ddpm::run
