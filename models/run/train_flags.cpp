#include "models/run/train_flags.h"

#include "models/run/ict_options.h"
#include "models/run/lr_schedule_flags.h"
#include "models/run/posthoc_flags.h"
#include "models/run/presets.h"
#include "models/run/vdm_options.h"

namespace ddpm::run {

void add_train_flags(CLI::App& app, TrainOptions& o) {
  // Data.
  app.add_option("--data", o.data,
                 "fashion-mnist[:DIR] | idx:IMAGES[,LABELS] | cifar10:DIR | folder:DIR | toy | "
                 "moving-fashion-mnist[:DIR] | moving-toy (video clips)")
      ->capture_default_str()->group("Data");
  app.add_flag("--random-flip", o.random_flip, "flip training images left-right with probability 1/2")->group("Data");
  app.add_flag("--pad-to-32", o.pad_to_32, "centre 28x28 images on 32x32 (for 4-level UNets)")->group("Data");
  app.add_option("--toy-count", o.toy_count, "images in --data toy")->capture_default_str()->group("Data");
  // Video clips (moving-* data only; models/data/moving.h).
  app.add_option("--frames", o.frames, "with --data moving-*: frames per clip (>= 2)")
      ->capture_default_str()->group("Data");
  app.add_option("--canvas", o.canvas, "with --data moving-*: the clips' size (canvas x canvas)")
      ->capture_default_str()->group("Data");
  app.add_option("--item-size", o.item_size, "with --data moving-*: items are area-resized to this size")
      ->capture_default_str()->group("Data");
  app.add_option("--moving-items", o.moving_items, "with --data moving-*: items bouncing in each clip")
      ->capture_default_str()->group("Data");
  app.add_option("--autoencoder", o.autoencoder,
                 "latent diffusion: a ddpm-autoencoder train folder; the UNet diffuses its scaled latents")
      ->group("Data");
  app.add_option("--super-res", o.super_res,
                 "super-resolution (cascaded diffusion): condition on the images area-downsampled to this size "
                 "and bilinearly upsampled back (must divide the image size); sample with ddpm-sample --low-res")
      ->group("Data");
  app.add_option("--cond-augment", o.cond_augment,
                 "with --super-res: Gaussian conditioning augmentation (cascaded diffusion models): noise the "
                 "condition at a random level up to this fraction of the diffusion steps, in [0, 1]; 0 = off")
      ->capture_default_str()->group("Data");
  app.add_option("--blur-augment", o.blur_augment,
                 "with --super-res: blurring augmentation (cascaded diffusion models): blur the low-res condition "
                 "with this probability before upsampling, in [0, 1]; 0.5 in CDM / DALL-E 2, 0 = off")
      ->capture_default_str()->group("Data");
  app.add_option("--blur-sigma", o.blur_sigma,
                 "with --blur-augment: the blur's sigma ~ U[A, B] in low-res pixels, given as A,B")
      ->capture_default_str()->group("Data");
  // Fine-tuning (finetune.h).
  app.add_option("--init-from", o.init_from,
                 "fine-tune: start from this model (a run or checkpoint folder, a diffusers folder, ...), taking its "
                 "architecture, diffusion settings and conditioning; the model and diffusion flags are then refused")
      ->group("Fine-tuning");
  app.add_option("--init-weights", o.init_weights,
                 "with --init-from a run or checkpoint folder: ema | raw (default: ema when it has them)")
      ->group("Fine-tuning");
  app.add_option("--lora-rank", o.lora_rank,
                 "with --init-from: train rank-R LoRA adapters on the attention projections (to_q, to_k, to_v, "
                 "to_out.0) and keep the source frozen; 0 = fine-tune every weight")
      ->capture_default_str()->group("Fine-tuning");
  app.add_option("--lora-alpha", o.lora_alpha, "with --lora-rank: the adapters' scale is alpha / rank (default: rank)")
      ->group("Fine-tuning");
  app.add_option("--train-only", o.train_only,
                 "temporal: with --init-from on clips, train only the video model's temporal blocks (and conv_in "
                 "with --first-frame-condition), every other weight frozen (AnimateDiff's motion modules)")
      ->group("Fine-tuning");
  // Model.
  const char* M = "Model";
  app.add_option("--image-size", o.image_size, "image size; 0 = the data's (after padding), else must equal it")
      ->capture_default_str()->group(M);
  app.add_option("--num-channels", o.num_channels, "channels of the first level")->capture_default_str()->group(M);
  app.add_option("--channel-mult", o.channel_mult, "channel multiplier per level, e.g. 1,2,2,2")
      ->capture_default_str()->group(M);
  app.add_option("--num-res-blocks", o.num_res_blocks, "residual blocks per level")->capture_default_str()->group(M);
  app.add_option("--attention-resolutions", o.attention_resolutions,
                 "feature-map sizes with self-attention, e.g. 16 or 16,8 (empty: none)")
      ->capture_default_str()->group(M);
  app.add_option("--num-heads", o.num_heads, "attention heads")->capture_default_str()->group(M);
  app.add_option("--num-head-channels", o.num_head_channels, "channels per head (overrides --num-heads when > 0)")
      ->capture_default_str()->group(M);
  app.add_option("--norm-groups", o.norm_groups, "GroupNorm groups")->capture_default_str()->group(M);
  app.add_option("--dropout", o.dropout, "dropout in the residual blocks")->capture_default_str()->group(M);
  app.add_flag("--learn-sigma", o.learn_sigma, "learn the variance (2C outputs; improved DDPM)")->group(M);
  app.add_flag("--use-scale-shift-norm", o.use_scale_shift_norm, "AdaGN: timestep scale and shift after GroupNorm")
      ->group(M);
  app.add_flag("--resblock-updown", o.resblock_updown, "BigGAN-style residual up/down-sampling")->group(M);
  app.add_flag("--class-cond", o.class_cond, "class-conditional model (labels from the data)")->group(M);
  app.add_flag("--first-frame-condition", o.first_frame_condition,
               "video data (--data moving-*): condition the video model on each clip's first frame, so "
               "ddpm-sample --first-frame / --first-frame-from animate given images (Emu Video's factorisation)")
      ->group(M);
  app.add_option("--condition-frames", o.condition_frames,
                 "with --first-frame-condition: condition each clip on k ~ Uniform{1..K} of its own first frames, "
                 "so ddpm-sample --segments can continue clips from K frames (--overlap)")
      ->capture_default_str()->group(M);
  app.add_option("--frame-condition-dropout", o.frame_condition_dropout,
                 "with --first-frame-condition: replace each clip's condition by the null one (no known frame) with "
                 "this probability, so ddpm-sample --frame-guidance-scale can guide on the frames (Emu Video)")
      ->capture_default_str()->group(M);
  app.add_flag("--temporal-conv", o.temporal_conv,
               "video data (--data moving-*): add a temporal convolution (kernel 3 over the frames, identity at "
               "the start) after every resnet of the video UNet, before its temporal attention (Make-A-Video)")
      ->group(M);
  app.add_option("--temporal-position", o.temporal_position,
                 "video data (--data moving-*): sinusoid (default) adds a fixed frame embedding in the temporal "
                 "attention; relative learns a logit bias per head and frame distance (Ho et al. 2022)")
      ->group(M);
  app.add_option("--temporal-max-distance", o.temporal_max_distance,
                 "with --temporal-position relative: frame distances beyond R share one bias (Shaw et al. 2018), "
                 "so the attention range is R whatever the clip length (default F - 1)")
      ->group(M);
  app.add_option("--joint-images", o.joint_images,
                 "video data (--data moving-*): each step also trains on M still images (first frames of random "
                 "clips, as one-frame clips) beside the batch of clips (Ho et al. 2022 joint training); 0 = off")
      ->capture_default_str()->group(M);
  add_text_cond_flags(app, o.text,
                      "text-conditional model (latent diffusion's cross-attention): captions from the data's "
                      "metadata.jsonl, or generated from class names and brightness for labelled data",
                      M);
  app.add_option("--timestep-embedding", o.timestep_embedding, "ddpm | improved")->capture_default_str()->group(M);
  // Diffusion.
  const char* D = "Diffusion";
  app.add_option("--objective", o.objective,
                 "ddpm (discrete t, the flags below) | edm (Karras et al. 2022 preconditioning, continuous sigma) | "
                 "vdm (Kingma et al. 2021 variational diffusion, continuous t) | ict (Song & Dhariwal 2023 improved "
                 "consistency training from scratch)")
      ->capture_default_str()->group(D);
  app.add_option("--sigma-data", o.sigma_data, "edm, ict: the data's std in the preconditioning")
      ->capture_default_str()->group(D);
  app.add_option("--p-mean", o.p_mean, "edm: mean of ln sigma in training (ict: of its level distribution, default -1.1)")
      ->capture_default_str()->group(D);
  app.add_option("--p-std", o.p_std, "edm: std of ln sigma in training (ict: default 2.0)")->capture_default_str()->group(D);
  add_ict_flags(app, o, D);  // --ict-discretization, --consistency-loss (ict_options.h)
  add_vdm_flags(app, o);  // --vdm-schedule, --gamma-min, --gamma-max, --vdm-steps (vdm_options.h)
  app.add_option("--diffusion-steps", o.diffusion_steps, "T")->capture_default_str()->group(D);
  app.add_option("--noise-schedule", o.noise_schedule, "linear | cosine")->capture_default_str()->group(D);
  app.add_option("--predict", o.predict, "eps | x0 | v: what the network predicts")->capture_default_str()->group(D);
  app.add_flag("--zero-terminal-snr", o.zero_terminal_snr,
               "rescale the schedule to alpha_bar = 0 at the last step (Lin et al. 2024); needs --predict v or x0")
      ->group(D);
  app.add_option("--loss", o.loss, "simple | hybrid | vlb (hybrid requires --learn-sigma)")
      ->capture_default_str()->group(D);
  app.add_option("--schedule-sampler", o.schedule_sampler, "uniform | loss-second-moment: how t is drawn")
      ->capture_default_str()->group(D);
  app.add_option("--snr-gamma", o.snr_gamma,
                 "Min-SNR-gamma loss weighting (Hang et al. 2023; --loss simple): weights min(SNR_t, gamma) in x_0 "
                 "space; 5 in the paper, 0 = off")
      ->capture_default_str()->group(D);
  app.add_option("--noise-offset", o.noise_offset,
                 "offset noise (Guttenberg 2023): add this times a per-sample, per-channel N(0, 1) constant to the "
                 "training noise, so the model learns to change mean brightness; 0.1 is typical, 0 = off")
      ->capture_default_str()->group(D);
  app.add_option("--input-perturbation", o.input_perturbation,
                 "input perturbation (Ning et al. 2023): the network's input is noised with noise + gamma xi while "
                 "its target stays the noise, against exposure bias; 0.1 is typical, 0 = off")
      ->capture_default_str()->group(D);
  // Training.
  const char* T = "Training";
  app.add_option("--batch-size", o.batch_size, "images per step")->capture_default_str()->group(T);
  app.add_option("--microbatch", o.microbatch, "gradient accumulation chunk (0: the whole batch)")
      ->capture_default_str()->group(T);
  app.add_flag("--gradient-checkpointing", o.gradient_checkpointing,
               "activation checkpointing: residual and attention blocks keep only their inputs and rerun "
               "their forward in the backward (same gradients, about half the activation memory, ~1/3 more "
               "compute; may change between resumes)")
      ->group(T);
  app.add_option("--lr", o.lr, "AdamW learning rate")->capture_default_str()->group(T);
  app.add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")->capture_default_str()->group(T);
  add_warmup_and_lr_schedule_flags(app, o.warmup_steps, o.lr_schedule, T);
  app.add_option("--grad-clip", o.grad_clip, "max global gradient norm (0: off)")->capture_default_str()->group(T);
  app.add_option("--ema-rate", o.ema_rate, "EMA decay of the sampling weights")->capture_default_str()->group(T);
  add_posthoc_ema_flags(app, o.posthoc_ema, o.posthoc_snapshot_every, "RUN", T);
  app.add_option("--class-dropout", o.class_dropout,
                 "probability of the null label (classifier-free guidance; the empty caption with --text-cond); default 0.1 "
                 "with --class-cond or --text-cond")
      ->group(T);
  app.add_option("--steps", o.steps, "total training steps (a resumed run continues up to it)")
      ->capture_default_str()->group(T);
  app.add_option("--max-nonfinite", o.max_nonfinite, "stop after this many consecutive non-finite steps")
      ->capture_default_str()->group(T);
  // Outputs.
  const char* O = "Outputs";
  app.add_option("--out", o.out, "the run folder (config.json, metrics, samples/, checkpoints/)")->group(O);
  app.add_option("--resume", o.resume, "latest | a checkpoint folder: continue a run")->group(O);
  app.add_flag("--overwrite", o.overwrite, "start a new run in --out even if it holds one (the old run is moved aside)")
      ->group(O);
  app.add_option("--save-every", o.save_every, "checkpoint every N steps (and at the end)")
      ->capture_default_str()->group(O);
  app.add_option("--sample-every", o.sample_every, "EMA sample grid every N steps (0: only at the end)")
      ->capture_default_str()->group(O);
  app.add_option("--log-every", o.log_every, "metrics line every N steps")->capture_default_str()->group(O);
  app.add_option("--num-samples", o.num_samples, "images in each sample grid")->capture_default_str()->group(O);
  app.add_option("--sample-steps", o.sample_steps,
                 "DDIM steps of the sample grids (must divide --diffusion-steps); Heun levels with --objective edm; "
                 "consistency steps with --objective ict")
      ->capture_default_str()->group(O);
  app.add_option("--guidance-scale", o.guidance_scale, "classifier-free guidance of the sample grids (class-cond)")
      ->capture_default_str()->group(O);
  app.add_option("--preset", o.preset, "auto | cpu-small | gpu-medium | gpu-cifar | none; explicit flags override it")
      ->capture_default_str();
  app.footer(
      "Defaults shown are those of --preset none. --preset auto (the default) applies cpu-small on the CPU\n"
      "and gpu-medium on a GPU; flags given explicitly (or in --config) override the preset.\n"
      "An --out folder that already holds a run is refused unless --resume latest|PATH (which must repeat\n"
      "the run's flags: differences are listed) or --overwrite (the old run is moved aside to\n"
      "DIR.replaced-<time>, never deleted). A non-finite loss skips the update; after --max-nonfinite\n"
      "consecutive such steps the run stops with status 1, naming the step; the last checkpoint stays.\n"
      "Data parallel: mpirun -np K ddpm-train ... (or srun --mpi=pmix) trains one run on K processes;\n"
      "--batch-size is the global batch (divisible by K); with --device cuda each rank takes GPU local_rank.");
}

void apply_preset_under_flags(CLI::App& app, int argc, const char* const* argv, TrainOptions& o, Device device) {
  const std::string name = resolve_preset(o.preset, device);
  TrainOptions fresh;
  fresh.log = o.log;
  fresh.seed = o.seed;
  fresh.device = o.device;
  fresh.comm = o.comm;
  fresh.text.enabled = o.text.enabled;  // the preset's lr cap for text runs (presets.h); the parse below sets it again
  apply_preset(name, fresh);
  o = fresh;
  app.clear();
  app.parse(argc, argv);
  o.preset = name;
}

}  // namespace ddpm::run
