// models/run/temporal_decoder_run.cpp: ddpm-autoencoder finetune-temporal (see the header for
// the loss, what trains and the folder).
#include "models/run/temporal_decoder_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/parameters.h"
#include "engine/rng.h"
#include "engine/seed_streams.h"
#include "models/autoencoder/autoencoder_io.h"
#include "models/run/autoencoder_run.h"
#include "models/run/data_spec.h"
#include "models/run/side_train_checks.h"
#include "models/train/adamw_loop.h"

namespace ddpm::run {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<nn::NamedTensor> temporal_finetune_parameters(const autoencoder::Autoencoder& ae,
                                                          const std::string& train_only) {
  DDPM_CHECK(train_only == "decoder" || train_only == "temporal",
             "--train-only must be decoder or temporal, got '" << train_only << "'");
  DDPM_CHECK(ae.config().temporal_frames > 0, "finetune-temporal: the autoencoder has no temporal decoder");
  std::vector<nn::NamedTensor> trainable;
  for (auto& [name, p] : ae.named_parameters()) {
    const bool trains = train_only == "temporal" ? autoencoder::is_temporal_parameter(name)
                                                 : autoencoder::is_decoder_parameter(name);
    Tensor handle = p;
    handle.set_requires_grad(trains);
    if (trains) trainable.emplace_back(name, p);
  }
  return trainable;
}

TemporalFinetuneReport finetune_temporal_decoder(autoencoder::Autoencoder& ae, const Dataset& data,
                                                 const TemporalFinetuneArgs& a,
                                                 const std::function<void(const std::string&)>& log) {
  const autoencoder::AutoencoderConfig& cfg = ae.config();
  DDPM_CHECK(data.frames == cfg.temporal_frames,
             "finetune-temporal: " << data.name << " has clips of " << data.frames
                                   << " frames; the temporal decoder's temporal_frames is " << cfg.temporal_frames);
  DDPM_CHECK(a.steps >= 1 && a.batch_size >= 1,
             "finetune-temporal: --steps and --batch-size must be positive, got " << a.steps << " and " << a.batch_size);
  const autoencoder::ReconstructionLoss rec = autoencoder::parse_reconstruction_loss(a.loss);
  TemporalFinetuneReport r;
  const NamedTensors trainable = temporal_finetune_parameters(ae, a.train_only);  // the frozen rest stays outside
  train::AdamWLoop loop(trainable, ldm_autoencoder_adam(a.lr),  // as ddpm-autoencoder train
                        std::make_shared<const Dataset>(data), a.batch_size, a.seed, ae.device());
  r.trainable = static_cast<std::int64_t>(loop.slab().numel());
  Generator gen(splitmix64_stream(a.seed, 0));  // the posterior noise, apart from the weights' Generator(seed)
  const int f = cfg.downsampling_factor();
  const nn::Context ctx{true, nullptr, a.gradient_checkpointing};
  train::LossWindow window(a.steps, a.log_every);
  for (std::int64_t step = 0; step < a.steps; ++step) {
    const Tensor x = loop.next().images;  // [B, F, H, W, C] in [-1, 1]
    const Tensor eps =
        randn({x.dim(0) * x.dim(1), x.dim(2) / f, x.dim(3) / f, cfg.z_channels}, gen, x.device());  // one per frame
    const autoencoder::TemporalDecoderLossTerms l = autoencoder::temporal_decoder_loss(ae, x, eps, rec, ctx);
    r.losses.push_back(loop.step(l.reconstruction, a.lr));  // a constant learning rate
    DDPM_CHECK_AS(std::isfinite(r.losses.back()), Error,
                  "finetune-temporal: the loss is not finite at step " << step + 1 << "; try a lower --lr");
    if (window.add(step, {r.losses.back()}) && log) {
      std::ostringstream line;
      line << "step " << step + 1 << "/" << a.steps << "  clip reconstruction " << window.mean(0) << "  "
           << window.seconds() << " s";
      log(line.str());
    }
  }
  r.seconds = window.seconds();
  return r;
}

void run_temporal_finetune(const TemporalFinetuneArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.from.empty(), "--from is required: an image autoencoder folder (ddpm-autoencoder train)");
  DDPM_CHECK(!a.out.empty(), "--out is required: the folder to write the temporal autoencoder to");
  check_out_may_be_written(a.out, a.overwrite);
  DDPM_CHECK(a.frames >= 2, "--frames must be at least 2 (the clip length the decoder learns), got " << a.frames);
  check_steps_batch_lr(a.steps, a.batch_size, a.lr);
  DDPM_CHECK(a.train_only == "decoder" || a.train_only == "temporal",
             "--train-only must be decoder or temporal, got '" << a.train_only << "'");
  autoencoder::parse_reconstruction_loss(a.loss);
  const DataSpec spec = parse_data_spec(a.data);
  DDPM_CHECK(spec.is_moving(), "finetune-temporal trains on clips: --data must be moving-toy or "
                                   "moving-fashion-mnist[:DIR], got " << a.data);
  DDPM_CHECK(autoencoder::is_autoencoder_folder(a.from),
             "--from " << a.from << " is not an autoencoder folder (config.json naming \""
                       << autoencoder::kAutoencoderArchitecture << "\", written by ddpm-autoencoder train)");
  const autoencoder::AutoencoderFolder image = autoencoder::load_autoencoder(a.from, a.device);
  DDPM_CHECK(image.model->config().temporal_frames == 0,
             "--from " << a.from << " already has a temporal decoder (temporal_frames "
                       << image.model->config().temporal_frames << "); pass the image autoencoder it came from");
  DataOptions dopt;
  dopt.seed = a.seed;
  dopt.frames = a.frames;
  dopt.canvas = a.canvas;
  dopt.item_size = a.item_size;
  dopt.moving_items = a.moving_items;
  const Dataset data = load_data(spec, dopt);
  const autoencoder::AutoencoderConfig& icfg = image.model->config();
  const int f = icfg.downsampling_factor();
  DDPM_CHECK(data.channels == icfg.in_channels && data.height % f == 0 && data.width % f == 0,
             "--data " << a.data << " has " << data.height << "x" << data.width << "x" << data.channels
                       << " frames; the autoencoder " << a.from << " takes " << icfg.in_channels
                       << " channel(s) and sizes divisible by " << f);
  Generator init(a.seed);  // the temporal layers' weights (proj_out starts at zero)
  const std::unique_ptr<autoencoder::Autoencoder> ae = autoencoder::with_temporal_decoder(*image.model, a.frames, init);
  out << "data: " << data.describe() << "\n"
      << "temporal decoder: " << a.from << " + " << ae->num_parameters() - image.model->num_parameters()
      << " temporal parameters (clips of " << a.frames << " frames); encoder frozen, training " << a.train_only
      << (a.train_only == "decoder" ? " (image layers, post_quant_conv and temporal layers)" : " layers only")
      << ", " << a.loss << " per clip, no KL term\n";
  const TemporalFinetuneReport r =
      finetune_temporal_decoder(*ae, data, a, [&out](const std::string& l) { out << l << "\n"; });

  json train = image.info.value("train", json::object());  // --from's record (pad_to_32 for eval)
  train["temporal_decoder"] = {{"from", a.from},
                               {"data", a.data},
                               {"frames", a.frames},
                               {"clips", {{"canvas", a.canvas}, {"item_size", a.item_size}, {"moving_items", a.moving_items}}},
                               {"steps", a.steps},
                               {"batch_size", a.batch_size},
                               {"lr", a.lr},
                               {"loss", a.loss},
                               {"train_only", a.train_only},
                               {"trainable_parameters", r.trainable},
                               {"kl_term", "none: the encoder is frozen"},
                               {"discriminator", "none"},
                               {"first_loss", r.losses.front()},
                               {"final_loss", r.losses.back()},
                               {"seed", a.seed},
                               {"gradient_checkpointing", a.gradient_checkpointing},
                               {"seconds", r.seconds}};
  autoencoder::save_autoencoder(*ae, train, a.out, a.overwrite);
  out << "wrote " << a.out << "/model.safetensors and config.json (temporal_frames " << a.frames << ")\n";
}

CLI::App* add_temporal_finetune_subcommand(CLI::App& app, TemporalFinetuneArgs& t) {
  CLI::App* ft = app.add_subcommand(
      "finetune-temporal",
      "add temporal layers to an autoencoder's decoder and fine-tune it on clips, encoder frozen (Video LDM)");
  ft->add_option("--from", t.from, "the image autoencoder folder (ddpm-autoencoder train)")->required();
  ft->add_option("--data", t.data, "moving-toy | moving-fashion-mnist[:DIR]")->capture_default_str();
  ft->add_option("--frames", t.frames, "clip length F: the decoder's temporal_frames")->capture_default_str();
  ft->add_option("--canvas", t.canvas, "the clips' size (canvas x canvas)")->capture_default_str();
  ft->add_option("--item-size", t.item_size, "the moving items' size")->capture_default_str();
  ft->add_option("--moving-items", t.moving_items, "items per clip")->capture_default_str();
  ft->add_option("--out", t.out, "output folder: model.safetensors, config.json")->required();
  ft->add_flag("--overwrite", t.overwrite, "replace an existing --out folder");
  ft->add_option("--steps", t.steps, "training steps")->capture_default_str();
  ft->add_option("--batch-size", t.batch_size, "clips per step")->capture_default_str();
  ft->add_option("--lr", t.lr, "Adam learning rate (betas 0.5, 0.9 as LDM)")->capture_default_str();
  ft->add_option("--loss", t.loss, "reconstruction loss: l1 | l2")
      ->check(CLI::IsMember({"l1", "l2"}))
      ->capture_default_str();
  ft->add_option("--train-only", t.train_only,
                 "decoder: the decoder's image and temporal layers (Video LDM) | temporal: the temporal layers only")
      ->check(CLI::IsMember({"decoder", "temporal"}))
      ->capture_default_str();
  ft->add_option("--log-every", t.log_every, "print the mean loss every N steps")->capture_default_str();
  ft->add_flag("--gradient-checkpointing", t.gradient_checkpointing,
               "recompute the decoder blocks' activations in the backward (less memory)");
  return ft;
}

}  // namespace ddpm::run
