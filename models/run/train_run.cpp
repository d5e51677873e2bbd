// models/run/train_run.cpp: the training run of ddpm-train (contract in train_run.h).
#include "models/run/train_run.h"

#include "models/run/int_list.h"
#include "models/run/latent_run.h"
#include "models/run/super_res_run.h"
#include "models/diffusion/blur_augment.h"
#include "models/diffusion/super_res.h"

#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>

#include "engine/error.h"
#include "engine/io/png.h"
#include "engine/parameters.h"
#include "engine/seed_streams.h"
#include "models/data/captions.h"
#include "models/data/loader.h"
#include "models/diffusion/sampler.h"
#include "models/diffusion/schedule.h"
#include "models/run/checkpoint.h"
#include "models/run/data_spec.h"
#include "models/run/edm_options.h"
#include "models/run/ict_options.h"
#include "models/run/finetune.h"
#include "models/run/lora_run.h"
#include "models/nn/lora.h"
#include "models/run/vdm_options.h"
#include "models/run/video_run.h"
#include "models/run/metrics.h"
#include "models/run/model_source.h"
#include "models/run/posthoc_flags.h"
#include "models/run/stop_signals.h"
#include "models/text/text_conditioned.h"
#include "models/train/trainer.h"
#include "models/unet/model_io.h"

namespace fs = std::filesystem;

namespace ddpm::run {
namespace {

// Independent generator keys for the weights and the data order, derived from --seed as
// SplitMix64 streams (engine/seed_streams.h); the trainer's draws use --seed itself.
constexpr std::uint64_t kInitStream = 0, kLoaderStream = 1, kLoraStream = 2;
constexpr std::uint64_t kSampleSeed = 1234;  // the fixed seed of every sample grid

double resolved_class_dropout(const TrainOptions& o) {
  return o.class_dropout >= 0 ? o.class_dropout : (o.class_cond || o.text.enabled ? 0.1 : 0.0);
}

void say(const TrainOptions& o, const std::string& text) {
  if (o.log != nullptr) {
    std::fprintf(o.log, "%s\n", text.c_str());
    std::fflush(o.log);
  }
}

// Swaps the EMA weights into the slab for its lifetime (sampling, export).
class EmaSwap {
 public:
  EmaSwap(Ema& ema, ParameterSlab& slab) : ema_(ema), slab_(slab) { ema_.swap(slab_); }
  ~EmaSwap() { ema_.swap(slab_); }
  EmaSwap(const EmaSwap&) = delete;
  EmaSwap& operator=(const EmaSwap&) = delete;

 private:
  Ema& ema_;
  ParameterSlab& slab_;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

nlohmann::json run_config_json(const TrainOptions& o, const unet::UNetConfig& model) {
  nlohmann::json j;
  j["model"] = unet::config_to_json(model);
  // The objective and its parameters (edm_options.h, vdm_options.h).
  j["diffusion"] = is_vdm(o) ? vdm_diffusion_section(o) : diffusion_section(o);
  j["data"] = {{"data", o.data}, {"random_flip", o.random_flip}, {"pad_to_32", o.pad_to_32}, {"toy_count", o.toy_count}};
  // Clips (data_spec.h moving-*): how they were made; absent for image data, as in older runs.
  if (parse_data_spec(o.data).is_moving())
    j["data"]["clips"] = {{"frames", o.frames}, {"canvas", o.canvas}, {"item_size", o.item_size},
                          {"moving_items", o.moving_items}};
  j["train"] = {{"batch_size", o.batch_size},   {"lr", o.lr},
                {"weight_decay", o.weight_decay}, {"warmup_steps", o.warmup_steps},
                {"grad_clip", o.grad_clip},     {"ema_rate", o.ema_rate},
                {"class_dropout", resolved_class_dropout(o)}, {"seed", o.seed},
                {"snr_gamma", o.snr_gamma},     {"noise_offset", o.noise_offset},
                {"input_perturbation", o.input_perturbation},
                {"posthoc_ema", train::parse_sigma_rel_list("--posthoc-ema", o.posthoc_ema)}};
  add_lr_schedule_json(j["train"], o.lr_schedule, o.steps);  // and the decay's horizon (lr_schedule_flags.h)
  // Blurring augmentation of the low-res condition (blur_augment.h); the range only when on.
  const diffusion::BlurAugment blur = blur_augment_options(o);
  j["train"]["blur_augment"] = blur.prob;
  j["train"]["joint_images"] = o.joint_images;  // still images per step (trainer.h); 0 = off
  j["train"]["frame_condition_dropout"] = o.frame_condition_dropout;  // video_run.h frame guidance; 0 = off
  if (blur.enabled()) j["train"]["blur_sigma"] = {blur.sigma_min, blur.sigma_max};
  // May differ on resume.
  j["sampling"] = {{"num_samples", o.num_samples}, {"sampler", is_edm(o) ? "heun" : is_vdm(o) ? "ddpm" : is_ict(o) ? "consistency" : "ddim"}, {"sample_steps", o.sample_steps},
                   {"guidance_scale", o.guidance_scale}, {"seed", kSampleSeed}};
  j["run"] = {{"steps", o.steps},           {"save_every", o.save_every}, {"sample_every", o.sample_every},
              {"log_every", o.log_every},   {"microbatch", o.microbatch}, {"max_nonfinite", o.max_nonfinite},
              {"gradient_checkpointing", o.gradient_checkpointing},
              {"posthoc_snapshot_every", posthoc_snapshot_interval(o.posthoc_snapshot_every, o.save_every)},
              {"preset", o.preset},         {"device", o.device.str()},
              {"world_size", o.comm != nullptr ? o.comm->world_size() : 1}};
  return j;
}

namespace {

// The configs minus the sections that may change on resume.
nlohmann::json defining_part(nlohmann::json j) {
  j.erase("run");
  j.erase("sampling");
  // A run from before "objective" was recorded is a DDPM run.
  if (j.contains("diffusion") && !j["diffusion"].contains("objective")) j["diffusion"]["objective"] = "ddpm";
  // ... and one from before the training recipes used none of them.
  if (j.contains("train"))
    for (const char* key : {"snr_gamma", "noise_offset", "input_perturbation"})
      if (!j["train"].contains(key)) j["train"][key] = 0.0;
  // ... and none of post-hoc EMA's power EMAs.
  if (j.contains("train") && !j["train"].contains("posthoc_ema")) j["train"]["posthoc_ema"] = nlohmann::json::array();
  // ... and the constant learning-rate schedule.
  if (j.contains("train")) default_lr_schedule_json(j["train"]);
  // ... and no blurring augmentation.
  if (j.contains("train") && !j["train"].contains("blur_augment")) j["train"]["blur_augment"] = 0.0;
  // ... and no joint image-video training.
  if (j.contains("train") && !j["train"].contains("joint_images")) j["train"]["joint_images"] = 0;
  // ... and no frame-condition dropout.
  if (j.contains("train") && !j["train"].contains("frame_condition_dropout"))
    j["train"]["frame_condition_dropout"] = 0.0;
  return j;
}

// Prepares the run folder; returns the checkpoint folder to resume from ("" for a new run).
std::string prepare_run_folder(const TrainOptions& o, const nlohmann::json& config, const LatentCodec* latent) {
  const fs::path out(o.out);
  std::string resume_dir;
  if (!o.resume.empty()) {
    resume_dir = o.resume == "latest" ? resolve_checkpoint(o.out, "latest") : resolve_checkpoint(o.out, o.resume);
    // The checkpoint's own run folder (RUN/checkpoints/step_N) holds its config.
    const fs::path ckpt_run = fs::path(resume_dir).parent_path().parent_path();
    const fs::path cfg_dir = fs::exists(ckpt_run / "config.json") ? ckpt_run : out;
    const nlohmann::json saved = read_run_config(cfg_dir.string());
    const std::vector<std::string> diffs = config_differences(defining_part(saved), defining_part(config));
    if (!diffs.empty()) {
      std::ostringstream os;
      os << "the checkpoint " << resume_dir << " was trained with a different configuration than these flags ("
         << diffs.size() << " difference" << (diffs.size() == 1 ? "" : "s") << ", checkpoint vs flags):";
      for (const std::string& d : diffs) os << "\n  " << d;
      DDPM_THROW(ValueError, os.str());
    }
  } else if (fs::exists(out) && is_run_folder(o.out)) {
    DDPM_CHECK(o.overwrite, "--out " << o.out
                                     << " already holds a run; pass --resume latest to continue it, or --overwrite "
                                        "to start a new one there (the old run is moved aside, not deleted)");
    const std::string aside = move_run_aside(o.out);
    say(o, "ddpm-train: moved the previous run in " + o.out + " aside to " + aside);
  }
  fs::create_directories(out / "samples");
  fs::create_directories(out / "checkpoints");
  write_run_config(o.out, config);
  // A new latent run keeps its own copy of the autoencoder (a resumed one already has it).
  if (latent != nullptr && resume_dir.empty())
    autoencoder::copy_autoencoder_folder(latent->source(), (out / kRunAutoencoderFolder).string());
  return resume_dir;
}

}  // namespace

TrainResult train_run(const TrainOptions& options) {
  std::unique_ptr<dist::Communicator> single;  // when options.comm is null
  dist::Communicator& comm = options.comm != nullptr ? *options.comm : *(single = dist::Communicator::single_process());
  TrainOptions o = options;
  o.comm = &comm;
  if (!comm.is_root()) o.log = nullptr;  // rank 0 speaks for the run
  // --init-from: SRC's architecture, diffusion and conditioning replace the flags' (finetune.h).
  const std::optional<FineTuneSource> finetune = prepare_finetune(o);
  validate_options(o);
  DataOptions dopt;
  dopt.pad_to_32 = o.pad_to_32;
  dopt.toy_count = o.toy_count;
  dopt.seed = o.seed;
  dopt.frames = o.frames;
  dopt.canvas = o.canvas;
  dopt.item_size = o.item_size;
  dopt.moving_items = o.moving_items;
  auto data = std::make_shared<Dataset>(load_data(parse_data_spec(o.data), dopt));
  DDPM_CHECK(data->height == data->width,
             "the images of " << data->name << " are " << data->height << "x" << data->width << "; the UNet needs square images");
  DDPM_CHECK(!o.class_cond || data->has_labels(),
             "--class-cond needs labels, and " << data->name << " has none (use class sub-folders for folder:DIR)");
  const int num_classes = o.class_cond ? data->num_classes : 0;
  const std::string data_description = data->describe();
  // Text conditioning: each image's caption index is its label for the training loop (label
  // table.size() is the empty caption of classifier-free guidance; text_conditioned.h).
  CaptionTable captions;
  std::optional<text::Tokenizer> tokenizer;
  if (o.text.enabled) {
    if (!data->has_captions()) {
      DDPM_CHECK(data->has_labels() && !data->class_names.empty(),
                 "--text-cond needs captions, and " << data->name
                                                    << " has none: give an image folder a metadata.jsonl "
                                                       "({\"file_name\": ..., \"text\": ...} per line) or use labelled "
                                                       "data with class names, whose captions are generated");
      data->captions = generate_captions(*data);
    }
    captions = make_caption_table(data->captions);
    data->labels = captions.index;
    data->num_classes = static_cast<int>(captions.size());
    // A resumed run keeps its vocabulary (the ids its text encoder learned).
    const std::string saved = o.out + "/" + kRunTokenizerFile;
    tokenizer = !o.resume.empty() && fs::exists(saved) ? text::Tokenizer::load(saved)
                : finetune && finetune->tokenizer       ? *finetune->tokenizer  // the source's vocabulary
                                                        : text::Tokenizer::build(captions.texts, o.text.context_length);
  }
  const int cond_labels = o.text.enabled ? static_cast<int>(captions.size()) : num_classes;
  // Latent diffusion: the UNet works on [h, h, z_channels] latents, h = image size / f.
  std::unique_ptr<LatentCodec> latent;
  if (!o.autoencoder.empty()) {
    // A resumed run uses its own copy (RUN/autoencoder), so it continues bit-identically even
    // if the source folder has moved or changed since.
    const std::string copy = o.out + "/" + kRunAutoencoderFolder;
    const bool use_copy = !o.resume.empty() && autoencoder::is_autoencoder_folder(copy);
    latent = std::make_unique<LatentCodec>(use_copy ? copy : o.autoencoder, o.device);
    DDPM_CHECK(data->channels == latent->config().in_channels && data->height % latent->factor() == 0,
               "--autoencoder " << o.autoencoder << " takes " << latent->config().in_channels
                                << "-channel images with sizes divisible by " << latent->factor() << "; "
                                << data->name << " has " << data->height << "x" << data->width << "x" << data->channels
                                << (data->height == 28 ? " (add --pad-to-32)" : ""));
    // A temporal decoder decodes only whole clips of its F; a run's previews, --frames at
    // sampling and every app that opens the run's copy decode with the image decoder.
    DDPM_CHECK(latent->config().temporal_frames == 0,
               "--autoencoder " << o.autoencoder << " has a temporal decoder (temporal_frames "
                                << latent->config().temporal_frames
                                << ", ddpm-autoencoder finetune-temporal): train on the image autoencoder it was "
                                   "fine-tuned from (the encoder is the same) and give this folder to ddpm-sample "
                                   "--decoder");
  }
  if (latent && default_sigma_data_for_latents(o))
    say(o, "ddpm-train: EDM on unit-variance latents: --sigma-data 1 (give --sigma-data to choose)");
  const int f = latent ? latent->factor() : 1;
  const unet::UNetConfig mc =
      finetune ? finetune_unet_config(*finetune, o, *data)
               : make_unet_config(o, static_cast<int>(data->height) / f,
                                  latent ? latent->config().z_channels : static_cast<int>(data->channels), num_classes,
                                  static_cast<int>(data->frames));
  nlohmann::json config = run_config_json(o, mc);
  if (finetune) config["init_from"] = finetune_record(*finetune, mc);  // with "video" for a video target
  if (o.lora_rank > 0) config["lora"] = lora_config_json(o.lora_rank, o.lora_alpha);
  if (!o.train_only.empty()) config["train"]["train_only"] = o.train_only;  // finetune.h
  text::TextEncoderConfig ec;
  if (tokenizer) {
    ec.vocab_size = tokenizer->vocab_size();
    ec.context_length = tokenizer->context_length();
    ec.width = o.text.width;
    ec.layers = o.text.layers;
    ec.heads = o.text.heads;
    ec.validate();
    config["text_encoder"] = text::text_encoder_config_to_json(ec);
  }
  if (latent) {
    config["autoencoder"] = latent->run_config_json();
    config["run"]["autoencoder_source"] = o.autoencoder;  // may move on resume: the run's copy is used
  }
  // Rank 0 prepares the folder; the broadcast of its answer is the others' barrier.
  const std::string resume_dir =
      comm.broadcast_string(comm.is_root() ? prepare_run_folder(o, config, latent.get()) : "", 0);
  if (tokenizer && comm.is_root()) tokenizer->save(o.out + "/" + kRunTokenizerFile);
  say(o, "ddpm-train: " + data_description);
  if (tokenizer)
    say(o, "ddpm-train: " + std::to_string(captions.size()) + " distinct captions, e.g. \"" + captions.texts.front() +
               "\"; " + std::to_string(tokenizer->vocab_size()) + " tokens, context length " +
               std::to_string(tokenizer->context_length()));
  if (comm.world_size() > 1)
    say(o, "ddpm-train: data parallel over " + std::to_string(comm.world_size()) + " processes (" + comm.describe() +
               "): global batch " + std::to_string(o.batch_size) + " = " + std::to_string(comm.world_size()) + " x " +
               std::to_string(o.batch_size / comm.world_size()));

  TrainResult result;
  result.run_dir = o.out;
  try {
    Generator init_gen(splitmix64_stream(o.seed, kInitStream));
    unet::UNet net(mc, init_gen, o.device);
    // A text model's encoder is drawn after the UNet, so the UNet's weights are drawn as
    // without it; both train in one slab (text_conditioned.h).
    std::unique_ptr<text::TextEncoder> encoder;
    std::unique_ptr<text::TextConditionedUNet> text_net;
    if (tokenizer) {
      encoder = std::make_unique<text::TextEncoder>(ec, init_gen, o.device);
      text_net = std::make_unique<text::TextConditionedUNet>(net, *encoder, *tokenizer);
    }
    nn::Module& denoiser_module = text_net ? static_cast<nn::Module&>(*text_net) : net;
    // VDM: the noise schedule, drawn after the networks (their weights are as without it);
    // a learned one trains in the same slab (vdm_options.h VdmModel).
    std::unique_ptr<diffusion::VdmSchedule> vdm_schedule;
    std::unique_ptr<VdmModel> vdm_model;
    if (is_vdm(o)) {
      vdm_schedule = std::make_unique<diffusion::VdmSchedule>(vdm_config(o), init_gen, o.device);
      vdm_model = std::make_unique<VdmModel>(denoiser_module, *vdm_schedule);
    }
    nn::Module& model = vdm_model ? static_cast<nn::Module&>(*vdm_model) : denoiser_module;
    // LoRA (lora_run.h): SRC frozen, its attention projections adapted; the slab, the optimiser,
    // the EMA and the checkpoints hold the adapters alone.
    std::unique_ptr<nn::LoraSet> lora;
    if (o.lora_rank > 0) {
      for (auto& [name, p] : model.named_parameters()) p.set_requires_grad(false);  // frozen: no weight gradients
      Generator lora_gen(splitmix64_stream(o.seed, kLoraStream));
      lora = std::make_unique<nn::LoraSet>(model, o.lora_rank, o.lora_alpha > 0 ? o.lora_alpha : o.lora_rank, lora_gen);
    }
    nn::Module& trained = lora ? static_cast<nn::Module&>(*lora) : model;
    ParameterSlab slab;
    // --train-only temporal (finetune.h): the slab, the optimiser and the EMA hold the temporal
    // blocks alone; the frozen rest stays outside it, and checkpoints still save all of `model`.
    slab.pack(o.train_only.empty() ? trained.named_parameters() : train_only_parameters(model, mc));
    if (!o.train_only.empty()) {
      std::int64_t total = 0;
      for (const auto& [name, p] : model.named_parameters()) total += p.numel();
      say(o, "ddpm-train: --train-only " + o.train_only + ": training " + std::to_string(slab.numel()) + " of " +
                 std::to_string(total) + " parameters (" + std::to_string(slab.size()) + " tensors), the rest frozen");
    }
    // A fine-tune starts from SRC's weights, before the trainer copies them into its EMA; a
    // LoRA run's frozen base is SRC's on every resume too.
    if (finetune && (resume_dir.empty() || lora)) load_finetune_weights(*finetune, model, mc);
    DiffusionSettings settings;
    settings.noise_schedule = diffusion::parse_noise_schedule(o.noise_schedule);
    settings.diffusion_steps = o.diffusion_steps;
    settings.zero_terminal_snr = o.zero_terminal_snr;
    const diffusion::DiffusionSchedule schedule(diffusion_betas(settings));

    LoaderOptions lopt;
    lopt.batch_size = o.batch_size;
    lopt.seed = splitmix64_stream(o.seed, kLoaderStream);
    lopt.random_flip = o.random_flip;
    lopt.device = o.device;
    BatchLoader loader(data, lopt);

    train::TrainerConfig tc;
    tc.objective = train::parse_objective(o.objective);
    tc.edm = edm_config(o);
    if (is_ict(o)) tc.ict = ict_config(o);  // the curriculum's K is tc.total_steps = --steps (apply_lr_schedule)
    tc.vdm_schedule = vdm_schedule.get();
    tc.loss.loss = diffusion::parse_loss_type(o.loss);
    tc.loss.mean_type = diffusion::parse_model_mean_type(o.predict);
    tc.loss.learned_sigma = o.learn_sigma;
    tc.timesteps = train::parse_timestep_sampling(o.schedule_sampler);
    tc.adamw.lr = o.lr;
    tc.adamw.weight_decay = o.weight_decay;
    tc.warmup_steps = o.warmup_steps;
    apply_lr_schedule(tc, o.lr_schedule, o.steps);
    tc.grad_clip = o.grad_clip;
    tc.ema_rate = o.ema_rate;
    tc.posthoc_sigma_rels = train::parse_sigma_rel_list("--posthoc-ema", o.posthoc_ema);
    tc.microbatch = o.microbatch;
    tc.num_classes = cond_labels;
    tc.label_dropout = resolved_class_dropout(o);
    tc.snr_gamma = o.snr_gamma;
    tc.noise_offset = o.noise_offset;
    tc.input_perturbation = o.input_perturbation;
    tc.joint_images = o.joint_images;
    tc.seed = o.seed;

    const diffusion::BlurAugment blur = blur_augment_options(o);  // off unless --blur-augment
    train::Trainer* trainer_ptr = nullptr;  // dropout draws from the trainer's generator
    diffusion::DenoiseFn train_fn = [&](const Tensor& x, const std::vector<double>& t,
                                        const std::vector<std::int64_t>& labels) {
      nn::Context ctx{true, &trainer_ptr->dropout_generator(), o.gradient_checkpointing};
      return net.forward(x, t, labels, ctx);
    };
    if (text_net)
      train_fn = text_net->denoiser(captions.texts, "", [&]() {
        return nn::Context{true, &trainer_ptr->dropout_generator(), o.gradient_checkpointing};
      });
    train::BatchProvider batches = [&](std::int64_t, Generator& gen) {
      ddpm::Batch b = loader.next();
      const Tensor x0 = latent ? latent->encode(b.images, gen) : b.images;  // s * z ~ s q(z | x_0) when latent
      // The condition is made on the host copy (super_res.h works on the host), so a CUDA run
      // uploads it like the images instead of reading x_0 back every step.
      // With conditioning augmentation it is noised at a random level there too, drawing from
      // the trainer's generator: the provider's only draws (a latent run, whose encode draws,
      // is refused with --super-res; super_res.h draw_augmented_condition). With blurring
      // augmentation the low-res image is blurred before the upsample, its 2N draws first
      // (blur_augment.h: blur, then noise).
      Tensor cond;
      if (mc.super_res()) {
        cond = blur.enabled() ? diffusion::blurred_super_res_condition(b.host_images, mc.low_res_size, blur, gen)
                              : diffusion::super_res_condition(b.host_images, mc.low_res_size);
        if (mc.cond_augmented())
          cond = diffusion::draw_augmented_condition(cond, mc.cond_augment, schedule.alphas_cumprod, gen);
        cond = cond.to(o.device);
      }
      // video_run.h: k ~ U{1..K}, then the dropout draw (none at P = 0)
      if (mc.first_frame_condition) cond = training_frames_condition(x0, mc, gen, o.frame_condition_dropout);
      train::Batch batch{x0, cond_labels > 0 ? b.labels : std::vector<std::int64_t>{}, cond};
      if (o.joint_images > 0) {
        // Joint training's stills: the first frames of M clips drawn uniformly with replacement
        // from the trainer's generator (M values of rand, then M flip decisions of rand <
        // 1/2 when --random-flip), independent of the loader's order (trainer.h).
        const std::vector<double> u = rand({o.joint_images}, gen, Device::cpu(), DType::f64).to_double_vector();
        std::vector<std::int64_t> idx;
        for (double ui : u) idx.push_back(std::min<std::int64_t>(data->n - 1, static_cast<std::int64_t>(ui * data->n)));
        std::vector<std::uint8_t> flip;
        if (o.random_flip)
          for (double ui : rand({o.joint_images}, gen, Device::cpu(), DType::f64).to_double_vector())
            flip.push_back(ui < 0.5 ? 1 : 0);
        ddpm::Batch s = first_frame_batch(*data, idx, flip, o.device);
        // A latent run's stills are encoded like its clips, after them (latent_run.h).
        batch.stills = latent ? latent->encode(s.images, gen) : s.images;
        if (cond_labels > 0) batch.still_labels = s.labels;
      }
      return batch;
    };
    train::Trainer trainer(slab, train_fn, schedule, batches, tc, &comm);
    trainer_ptr = &trainer;

    nlohmann::json last_metrics = nlohmann::json::object();
    if (!resume_dir.empty()) {
      const Checkpoint ck = load_checkpoint(resume_dir);
      train::TrainerState st = restore_trainer_state(ck, resume_dir, trained, slab, o.device);
      const nlohmann::json& js = ck.trainer_state;
      if (tc.timesteps == train::TimestepSampling::loss_second_moment) {
        st.importance.emplace(o.diffusion_steps);
        if (js.contains("importance_history"))
          st.importance->set_history(js.at("importance_history").get<std::vector<std::vector<double>>>());
      }
      trainer.load_state(st);
      loader.set_position(checkpoint_loader_position(ck));
      last_metrics = js.value("metrics", nlohmann::json::object());
      say(o, "ddpm-train: resumed from " + resume_dir + " at step " + std::to_string(ck.step));
    }

    auto save = [&]() {
      Checkpoint ck = trainer_checkpoint(trainer, trained, slab, loader.position());
      ck.trainer_state["metrics"] = last_metrics;
      // JSON numbers round-trip doubles exactly, so the resumed sampler draws the same t.
      if (trainer.importance()) ck.trainer_state["importance_history"] = trainer.importance()->history();
      result.last_checkpoint = save_checkpoint(o.out, ck);
    };

    auto write_samples = [&]() {
      const int n = o.num_samples;
      const std::int64_t H = mc.image_size, C = mc.in_channels;
      diffusion::DenoiseFn eval_fn = [&](const Tensor& x, const std::vector<double>& t,
                                         const std::vector<std::int64_t>& labels) {
        return net.forward(x, t, labels, nn::Context{false, nullptr});
      };
      if (text_net) eval_fn = text_net->denoiser(captions.texts, "", {}, /*reuse_context=*/true);  // fixed EMA weights
      if (mc.super_res()) eval_fn = diffusion::concat_condition(eval_fn, grid_condition(*data, n, mc, o.device));
      // A first-frame-conditioned video model animates the first frames of the first n clips.
      // A latent run's first frames are their posterior means (no draw: the trainer's stream stays).
      if (mc.first_frame_condition) {
        const Tensor first = dataset_first_frames(*data, n).to(o.device);
        eval_fn = diffusion::concat_condition(
            eval_fn, unet::first_frame_condition(latent ? latent->encode_mean(first) : first, mc.num_frames));
      }
      const std::int64_t F = mc.num_frames;
      auto shape = [&]() { return F > 0 ? Shape{n, F, H, H, C} : Shape{n, H, H, C}; };
      diffusion::SamplerConfig sc;
      sc.kind = is_edm(o) ? diffusion::SamplerConfig::Kind::heun : diffusion::SamplerConfig::Kind::ddim;
      if (is_edm(o)) sc.heun_steps = o.sample_steps;  // EDM: Heun over [0.002, 80], sample_steps levels
      else sc.respacing = "ddim" + std::to_string(o.sample_steps);
      sc.mean_type = tc.loss.mean_type;
      sc.learned_sigma = o.learn_sigma;
      sc.num_classes = cond_labels;
      sc.guidance_scale = o.guidance_scale;
      if (latent) sc.clip_x0 = false;  // latents are not confined to [-1, 1]
      std::vector<std::int64_t> labels;
      for (int i = 0; cond_labels > 0 && i < n; ++i) labels.push_back(i % cond_labels);
      Generator g(kSampleSeed);
      Tensor x;
      {
        EmaSwap swap(trainer.ema(), slab);
        if (is_vdm(o)) {  // ancestral sampling on sample_steps grid points (vdm.h's grid bridge)
          auto curve = std::make_shared<const diffusion::GammaCurve>(vdm_schedule->curve());
          sc.kind = diffusion::SamplerConfig::Kind::ddpm;
          sc.respacing.clear();
          x = diffusion::sample(diffusion::vdm_grid_schedule(*curve, o.sample_steps),
                                diffusion::vdm_grid_denoiser(eval_fn, curve, o.sample_steps), shape(), labels,
                                sc, g, o.device);
        } else {
          x = is_edm(o)   ? diffusion::edm_sample(eval_fn, tc.edm, shape(), labels, sc, g, o.device)
              : is_ict(o) ? diffusion::ict_sample(eval_fn, tc.ict, shape(), labels,
                                                  diffusion::ict_sampling_sigmas(tc.ict, o.sample_steps), !latent,
                                                  g, o.device)  // CM Algorithm 1
                          : diffusion::sample(schedule, eval_fn, shape(), labels, sc, g, o.device);
        }
      }
      if (latent) x = latent->decode(x);  // pixels: D(z / s)
      const int Hp = static_cast<int>(x.dim(-2)), Cp = static_cast<int>(x.dim(-1));
      const std::vector<float> v = x.to_vector();
      std::vector<std::uint8_t> bytes(v.size());
      for (std::size_t i = 0; i < v.size(); ++i)  // [-1, 1] -> [0, 255]
        bytes[i] = static_cast<std::uint8_t>(std::lround(std::min(1.0f, std::max(-1.0f, v[i])) * 127.5f + 127.5f));
      const std::string stem = o.out + "/samples/step_" + std::to_string(trainer.step_count());
      if (F > 0) {  // a video model: one row of frames per clip, and the clips animated
        write_png(stem + ".png", make_grid(bytes.data(), static_cast<int>(n * F), Hp, Hp, Cp, static_cast<int>(F)));
        const int nrow = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
        write_video_grid(stem + ".gif", bytes, n, static_cast<int>(F), Hp, Hp, Cp, nrow);
        return stem + ".png";
      }
      const int nrow = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
      write_png(stem + ".png", make_grid(bytes.data(), n, Hp, Hp, Cp, nrow));
      return stem + ".png";
    };

    std::optional<MetricsWriter> metrics;  // rank 0's
    if (comm.is_root()) metrics.emplace(o.out, !resume_dir.empty(), trainer.step_count());
    Progress progress(o.steps, o.log, is_terminal(o.log));
    // Window accumulators for the metrics lines.
    double w_loss = 0, w_grad = 0, w_time = 0;
    double w_video = 0, w_still = 0;  // joint training (--joint-images): the clips' and the stills' mean losses
    std::array<double, 4> w_q{};
    std::array<std::int64_t, 4> w_qn{};
    std::int64_t w_steps = 0, w_good = 0, w_skipped = 0, consecutive_bad = 0;
    double total_time = 0;
    std::int64_t timed_steps = 0;
    std::int64_t last_sampled = -1;
    std::int64_t last_saved = -1;
    StopSignals stop_signals;  // Ctrl-C / SIGTERM: finish the step, checkpoint it, return
    PosthocSnapshotSchedule posthoc_snapshots(o.out, posthoc_snapshot_interval(o.posthoc_snapshot_every, o.save_every),
                                              o.steps);

    // Throughput counts images: a video run's batch of clips holds batch_size * F frames.
    // Frames per step: the clips' frames, and a joint step's stills.
    const double images_per_step =
        static_cast<double>(o.batch_size) * std::max(1, mc.num_frames) + static_cast<double>(o.joint_images);
    take_peak_mib(o.device.type);  // the first metrics window starts here
    while (trainer.step_count() < o.steps) {
      const auto t0 = std::chrono::steady_clock::now();
      const train::StepMetrics m = trainer.step();
      const double dt = seconds_since(t0);
      const std::int64_t done = trainer.step_count();
      result.steps_done = done;
      w_time += dt;
      total_time += dt;
      ++timed_steps;
      ++w_steps;
      if (m.skipped) {
        ++w_skipped;
        ++consecutive_bad;
        std::ostringstream os;
        os << "non-finite " << (std::isfinite(m.loss) ? "gradient norm" : "loss") << " at step " << done << " (loss "
           << m.loss << ", gradient norm " << m.grad_norm << "); the update was skipped";
        if (consecutive_bad >= o.max_nonfinite) {
          progress.finish();
          DDPM_THROW(Error, os.str() << "; stopping after " << consecutive_bad << " consecutive non-finite step"
                                     << (consecutive_bad == 1 ? "" : "s") << " (--max-nonfinite "
                                     << o.max_nonfinite << "). The last good checkpoint is "
                                     << (result.last_checkpoint.empty() ? (resume_dir.empty() ? "none" : resume_dir)
                                                                         : result.last_checkpoint)
                                     << "; try a lower --lr or check the data");
        }
        progress.line("ddpm-train: warning: " + os.str());
      } else {
        consecutive_bad = 0;
        ++w_good;
        w_loss += m.loss;
        w_grad += m.grad_norm;
        if (o.joint_images > 0) {
          w_video += m.video_loss;
          w_still += m.still_loss;
        }
        result.last_loss = m.loss;
        for (int q = 0; q < 4; ++q)
          if (m.quartile_count[q] > 0) {
            w_q[q] += m.loss_quartile[q] * static_cast<double>(m.quartile_count[q]);
            w_qn[q] += m.quartile_count[q];
          }
      }
      const double ips = images_per_step * timed_steps / std::max(total_time, 1e-9);
      progress.update(done, m.loss, ips, (o.steps - done) * total_time / timed_steps);

      if (done % o.log_every == 0 || done == o.steps) {
        MetricsLine line;
        line.step = done;
        const double nan = std::numeric_limits<double>::quiet_NaN();
        line.loss = w_good > 0 ? w_loss / w_good : nan;
        for (int q = 0; q < 4; ++q) line.loss_quartile[q] = w_qn[q] > 0 ? w_q[q] / w_qn[q] : nan;
        line.grad_norm = w_good > 0 ? w_grad / w_good : nan;
        line.lr = m.lr;
        line.images_per_s = images_per_step * w_steps / std::max(w_time, 1e-9);
        line.skipped = w_skipped;
        line.peak_mib = take_peak_mib(o.device.type);
        if (o.joint_images > 0 && w_good > 0) {
          line.video_loss = w_video / w_good;
          line.still_loss = w_still / w_good;
        }
        if (metrics) metrics->append(line);
        last_metrics = line.to_json();
        char buf[240];
        std::snprintf(buf, sizeof buf,
                      "step %lld/%lld  loss %.5g  grad norm %.3g  lr %.3g  %.1f img/s  peak %.0f MiB  ETA %s",
                      static_cast<long long>(done), static_cast<long long>(o.steps), line.loss, line.grad_norm, line.lr,
                      line.images_per_s, line.peak_mib,
                      format_duration((o.steps - done) * total_time / timed_steps).c_str());
        std::string text = buf;
        if (o.joint_images > 0) {
          std::snprintf(buf, sizeof buf, "  (clips %.5g, stills %.5g)", line.video_loss, line.still_loss);
          text += buf;
        }
        progress.line(text);
        w_loss = w_grad = w_time = w_video = w_still = 0;
        w_q = {};
        w_qn = {};
        w_steps = w_good = w_skipped = 0;
      }
      if (o.sample_every > 0 && done % o.sample_every == 0) {
        if (comm.is_root()) progress.line("ddpm-train: samples " + write_samples());
        last_sampled = done;
      }
      // Post-hoc EMA snapshots (posthoc_flags.h), before the checkpoint of the same step, so a
      // resume from that checkpoint never misses the snapshot.
      if (comm.is_root()) posthoc_snapshots.after_step(trainer, slab);
      if ((done % o.save_every == 0 || done == o.steps) && comm.is_root()) {
        metrics->write_loss_png();  // with each checkpoint (an atomic, fsynced write)
        save();
        last_saved = done;
        progress.line("ddpm-train: checkpoint " + result.last_checkpoint);
      }
      // A stop signal (stop_signals.h). Ranks may see it at different steps (mpirun forwards
      // it to each), so with several ranks they agree on it first: every rank stops after the
      // same step, and none waits alone in the next step's all-reduce.
      int sig = stop_signals.pending();
      if (comm.world_size() > 1) {
        double any = sig;
        comm.all_reduce_sum(&any, 1, Device::cpu());
        if (any != 0 && sig == 0) sig = SIGTERM;  // another rank's signal; the name is only for the log
      }
      if (sig != 0) {
        result.stopped_by_signal = sig;
        // A post-hoc EMA snapshot of the stopping step too (unless the regular schedule above
        // just wrote it), before the checkpoint as there: an EMA can then be reconstructed at
        // exactly the step the run stopped at, not only at the last multiple of
        // --posthoc-snapshot-every (posthoc_flags.h).
        if (comm.is_root()) posthoc_snapshots.after_step(trainer, slab, /*stopping=*/true);
        if (comm.is_root() && last_saved != done) {
          metrics->write_loss_png();
          save();
        }
        progress.finish();
        if (comm.is_root())
          say(o, std::string("ddpm-train: stopped by ") + signal_name(sig) + " after step " + std::to_string(done) +
                     "; checkpoint " + result.last_checkpoint + "; continue with --resume latest");
        break;
      }
    }
    progress.finish();
    result.steps_done = trainer.step_count();
    // No final samples after a stop signal: a scheduler's grace period is short.
    if (last_sampled != trainer.step_count() && comm.is_root() && result.stopped_by_signal == 0)
      say(o, "ddpm-train: samples " + write_samples());
    if (result.last_checkpoint.empty()) result.last_checkpoint = resume_dir;
    // Every rank returns once rank 0's last checkpoint and samples are on disk, naming them.
    result.last_checkpoint = comm.broadcast_string(result.last_checkpoint, 0);
  } catch (const OutOfMemoryError& e) {
    std::ostringstream os;
    os << e.what() << ". Try a smaller --batch-size (now " << o.batch_size << ") or a --microbatch (e.g. "
       << std::max<std::int64_t>(1, (o.microbatch > 0 ? o.microbatch : o.batch_size) / 2) << ")";
    throw OutOfMemoryError(os.str());
  }
  return result;
}

}  // namespace ddpm::run
