// models/run/finetune.h: ddpm-train --init-from SRC, fine-tuning a trained model on new data.
//
// A fine-tune is an ordinary ddpm-train run whose network starts from SRC's weights instead
// of a random draw:
//   - SRC is anything open_model (model_source.h) opens as a pixel-space DDPM: one of our run
//     or checkpoint folders, a model file with config.json beside it, a diffusers UNet2DModel
//     folder, or a diffusers pipeline folder of a text model (unet/ + text_encoder/ +
//     tokenizer/). From a run or checkpoint folder the EMA weights are taken by default
//     (--init-weights ema|raw chooses; raw when the checkpoint has no EMA); --init-weights
//     is refused for the other kinds, which hold one set of weights.
//   - The new run takes SRC's architecture (the UNet config, verbatim, --dropout aside: it
//     may be given, as regularisation is the fine-tune's choice; on clips see Video below), its diffusion settings
//     (T, schedule, prediction, learned variance, zero terminal SNR), its class or text
//     conditioning (a text model's encoder and tokenizer: captions are tokenized with SRC's
//     vocabulary, unknown words become <unk>) and its image size. Every flag that would
//     choose one of these (kInitFromRefusedFlags) is a ValueError naming it. The data must
//     match: image size (after --pad-to-32), channels, and for a class-conditional model the
//     number of classes; a mismatch names both sides.
//   - The optimiser is fresh (AdamW moments zero, step 0, warmup and schedule from the
//     flags) and the EMA starts at the loaded weights (the trainer's EMA copies the slab when
//     it is built, after the weights are loaded).
//   - A latent SRC (trained with --autoencoder; latent_run.h) fine-tunes in its own latent
//     space: the run diffuses with SRC's autoencoder (ddpm-train sets --autoencoder to SRC's
//     RUN/autoencoder, which the new run copies; a resume uses the run's copy), the data must
//     match that autoencoder's pixel size and channels, and giving --autoencoder is a
//     ValueError (the autoencoder is SRC's, not a choice). With clips this is Video LDM's
//     recipe (Blattmann et al. 2023): a latent image model plus temporal layers trained on
//     the clips' per-frame latents.
//   - Refused SRC kinds (ValueError naming the kind and why): EDM models (the run
//     would need SRC's preconditioning, not --objective's defaults), super-resolution models
//     (their condition settings are not carried over yet), distilled students (a
//     "distillation" section: the DDPM loss would undo the few-step distillation), LoRA runs
//     (fine-tune their merged export instead) and ControlNet runs (open_model already refuses
//     them: not a UNet).
//   - --lora-rank R (lora_run.h) trains adapters on SRC's attention projections instead of
//     its weights; SRC stays frozen and is reloaded from the recorded file on every resume.
//     --lora-rank and --lora-alpha without --init-from are ValueErrors. Refused for a video
//     target (below): a LoRA run is opened as its recorded base plus adapters, and an image
//     base has no temporal blocks, whose fresh weights would also stay frozen at the identity.
//   - Video (Ho et al. 2022 sec. 3; Emu Video and AnimateDiff start the video model from a
//     trained image model): on clips of F frames (--data moving-*), an image SRC becomes a
//     video UNet, SRC's config with num_frames = F and first_frame_condition = the flag
//     (--first-frame-condition is the video model's choice, not SRC's). SRC's parameters are
//     loaded by name; the temporal blocks (temp_attentions.*, absent in SRC) keep their fresh
//     initialisation, to_out zero; with --first-frame-condition conv_in grows from C to 2C + 1
//     input channels, SRC's kernel in the first C and zeros in the condition's C + 1. So at
//     step 0 the video model is SRC applied frame by frame, the condition ignored. A video SRC
//     fine-tunes on clips of its own F (another F is a ValueError naming both); its conv_in
//     grows the same way when SRC has no first-frame condition and the flag is given, and a
//     conditioned SRC needs the flag. Video SRC on images, or the flag on images, is refused.
//     Temporal convolutions (unet.h temporal_conv) are SRC's architecture when it has them;
//     --temporal-conv adds them to an image SRC or a video SRC without them, fresh (proj_out
//     zero, the identity), so the step-0 claim above still holds. On images it is refused.
//     --temporal-position (unet.h temporal_position) chooses the frame positions of an image
//     SRC's new temporal blocks (relative: zero bias tables); a video SRC keeps its own, and
//     the other value is a ValueError naming both. --temporal-max-distance likewise: an
//     image SRC's relative tables get that R, a video SRC keeps its R (another is refused).
//     These flags' checks against the data are make_unet_config's (check_temporal_flags).
//   - --train-only temporal (AnimateDiff, Guo et al. 2023: a motion module trained on a frozen
//     image model) trains the video target's temporal blocks (temp_attentions.* and, with
//     temporal_conv, temp_convs.*) alone, plus conv_in with
//     --first-frame-condition (its condition channels must learn); every other parameter is
//     frozen: outside the trainer's slab, so it gets no gradient, no AdamW update or weight
//     decay, and no EMA (its EMA is itself). Checkpoints still hold the whole model (model
//     and EMA files), and a resume reloads the frozen weights from them. Recorded as
//     config.json "train": {"train_only": "temporal"} (absent otherwise). ValueError without
//     --init-from, on images, with --lora-rank, and with --posthoc-ema (the power EMAs hold
//     the slab alone).
// config.json of the new run gets an "init_from" section:
//   {"source": absolute SRC path, "kind": open_model's kind, "weights": "ema" | "raw",
//    "files": [{"path": absolute file, "sha256": hex digest}, ...],
//    "video": {"num_frames": F, "from_image": SRC was an image model}   (video targets only)}
// (the weights file, and a pipeline's text-encoder file), so the starting point can be
// checked later with sha256sum. --resume of a fine-tune run reads the architecture from
// the run's own config.json (SRC is not opened again and may have moved or changed); a
// --init-from given then must name the recorded source.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "engine/parameters.h"
#include "models/data/dataset.h"
#include "models/nn/module.h"
#include "models/run/model_source.h"
#include "models/run/train_run.h"
#include "models/text/text_encoder.h"
#include "models/text/tokenizer.h"
#include "models/unet/unet.h"

namespace CLI {
class App;
}

namespace ddpm::run {

// The flags that choose what a fine-tune takes from SRC (refused with --init-from).
extern const std::vector<const char*> kInitFromRefusedFlags;

// After the final parse: records in o.init_from_flags_given which of kInitFromRefusedFlags
// and --dropout, --init-weights were given (as note_objective_flags does for --objective).
void note_init_from_flags(const CLI::App& app, TrainOptions& o);

// What a fine-tune takes from its source.
struct FineTuneSource {
  unet::UNetConfig model;
  DiffusionSettings diffusion;
  std::optional<text::TextEncoderConfig> text_encoder;  // a text model
  std::optional<text::Tokenizer> tokenizer;             // a new text fine-tune: SRC's; on resume the run's own is read
  NamedTensors weights;   // SRC's parameters by name (host copies); empty on resume
  nlohmann::json record;  // config.json's "init_from"
  // A latent SRC (config.json "autoencoder"): the folder of its autoencoder (SRC's run copy;
  // on resume the run's own), its downsampling factor f and pixel channels. "" for pixels.
  std::string autoencoder;
  int latent_factor = 1;
  int pixel_channels = 0;
};

// Opens --init-from SRC as described above (ValueError / IoError naming SRC and the
// reason). `init_weights` is "" (the default choice), "ema" or "raw".
FineTuneSource open_finetune_source(const std::string& src, const std::string& init_weights);

// For train_run: nothing when the run is not a fine-tune (no --init-from, and on --resume
// no "init_from" in --out's config.json). Otherwise checks the flags (a refused flag given,
// --init-weights without --init-from, a --init-from on resume that is not the recorded
// one), opens the source (or, on resume, reads the run's config.json) and sets o's model,
// diffusion and conditioning options to SRC's, so validate_options and config.json see
// them. Throws ValueError naming the flag.
std::optional<FineTuneSource> prepare_finetune(TrainOptions& o);

// The UNet config of the fine-tune on `data` (after padding): SRC's, with o.dropout when
// --dropout was given, and for clips num_frames = F and o.first_frame_condition (the video
// rules above). ValueError naming what mismatches (frame size, channels, classes, F, the
// first-frame condition, --lora-rank on clips).
unet::UNetConfig finetune_unet_config(const FineTuneSource& s, const TrainOptions& o, const Dataset& data);

// config.json's "init_from" of a fine-tune training `model`: s.record, plus "video" for a
// video model (kept as recorded when s.record already has it, i.e. on resume).
nlohmann::json finetune_record(const FineTuneSource& s, const unet::UNetConfig& model);

// --train-only temporal: the parameters of `model` (built from `target`, a video model) that
// train, in the model's order: every temp_attentions.* and temp_convs.* and, with the first-frame condition,
// conv_in.*. Sets requires_grad false on all the others (frozen: no gradient is computed).
NamedTensors train_only_parameters(const nn::Module& model, const unet::UNetConfig& target);

// Copies s.weights into `model`'s parameters (by name, any device), before the slab's EMA is
// made; `model` is built from `target` (finetune_unet_config). The only differences allowed
// are the video ones above: temporal blocks absent in an image SRC keep their values, and
// conv_in.weight grown for the first-frame condition gets SRC's kernel in its first input
// channels and zeros in the rest. IoError listing every other missing, unexpected and
// mismatched name. The two-argument form takes target = s.model.
void load_finetune_weights(const FineTuneSource& s, const nn::Module& model, const unet::UNetConfig& target);
void load_finetune_weights(const FineTuneSource& s, const nn::Module& model);

}  // namespace ddpm::run
