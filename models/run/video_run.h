// models/run/video_run.h: what ddpm-sample does with a video model (unet.h num_frames > 0,
// Ho et al. 2022), and Emu Video's factorised generation (Girdhar et al. 2023): an image
// model makes the first frame, a first-frame-conditioned video model animates it.
//
// A video model samples x_T [N, F, H, W, C] (N clips of F frames; t, labels and prompts are
// per clip) with any of the samplers: they only index the batch axis and broadcast the rest.
// The output folder holds the video set of image_sets.h (grid.gif, filmstrip.png,
// videos/NNNNNN.gif, samples.npz arr_0 uint8 [N, F, H, W, C], arr_1 labels) and
// sample_info.json with "video" {"frames", "trained_frames", "first_frame_condition", "segments", "overlap",
// "frames_per_clip", "first_frame"}.
//
// A first-frame-conditioned model (unet.h first_frame_condition; ddpm-train
// --first-frame-condition) needs its first frames, from one of:
//   --first-frame FILE        a PNG (every clip starts from it) or an .npz whose arr_0 is uint8
//                             [M, H, W, C] (clip i starts from image i; N defaults to M; a
//                             class-conditional model takes each image's class from arr_1
//                             unless --class is given): what ddpm-sample writes for an image
//                             model, so any image model's samples can be animated.
//   --first-frame-from IMAGE  the factorisation in one call: the image model IMAGE (a run,
//                             checkpoint or model file of the same size and channels, not a
//                             video model) is sampled first with the same flags (sampler,
//                             steps, guidance, seed, --num-samples, --class, --prompt) into
//                             OUT/first_frames, exactly as `ddpm-sample --checkpoint IMAGE
//                             --out OUT/first_frames` would, then the video model animates
//                             OUT/first_frames/samples.npz as with --first-frame. Published in
//                             one rename; sample_info.json's "video" records the image stage.
// The condition is first_frame_condition(frame, F) (unet.h): the frame at position 0, zeros
// after it, and a mask channel; the network sees concat(x_t, condition) at every step, and
// in classifier-free guidance's doubled batch both halves see the frame (concat_condition).
//
// Clip length (--frames F2, any video model; default the model's num_frames F): every clip
// is sampled with F2 >= 2 frames, longer or shorter than trained (length extrapolation; the
// UNet takes any F, unet.h forward; quality beyond the trained length is not guaranteed).
// Everything below that speaks of F means F2: x_T, the first-frame condition, each segment
// of --segments (K' < F2, refused naming --overlap and --frames otherwise), frame guidance.
// sample_info.json's "video" records "frames" F2 and "trained_frames" F. Refused for an
// image model, and below 2.
//
// Longer clips (--segments S, first-frame-conditioned models; Ho et al. 2022 sec. 3.1):
// each clip is continued S - 1 times, segment s conditioned on the last K' frames of
// segment s - 1 (--overlap K', default the model's condition_frames K, unet.h; ddpm-train
// --condition-frames) and its own generated frames 0..K'-1 (which re-draw those frames)
// dropped, so a clip holds F + (S - 1)(F - K') frames. The known frames are the sampler's
// floating-point output, not rounded to bytes. Every segment draws fresh noise from the same
// generator, after the previous one's draws. --overlap must be in [1, K] (K <= F - 1), and
// applies only with --segments > 1.
//
// Latent video (a run trained with --autoencoder on clips; latent_run.h): the sampler draws
// latent clips [N, F, h, w, z] and every frame is decoded before the video set is written, so
// the outputs are those of a pixel video run of the autoencoder's size. --segments continues
// the latents (the known frames are the previous segment's latents, never decoded and
// re-encoded); reconstruction guidance runs on latents unchanged (its x_0 estimate is the
// latent one). --first-frame images are encoded to their posterior means; --first-frame-from
// needs a latent image run on the same autoencoder (same_autoencoder: config and weights
// bytes), whose sampled latents are frame 0 as they are (the decoded images are written to
// OUT/first_frames as usual); a pixel image stage for a latent video model, or a latent one
// for a pixel video model, is refused by name.
//
// Frame guidance (Emu Video, Girdhar et al. 2023, sec. 3: the image condition is dropped in
// training and guided at sampling). ddpm-train --frame-condition-dropout P (0 <= P < 1, with
// --first-frame-condition; config.json "train" records it, 0 for older runs, and a resume
// with another P is refused like any training flag) replaces each clip's condition by the
// null condition with probability P. The null condition is all zeros, known frames AND mask
// channel: exactly the condition of "no known frame". The draws come from the batch
// provider's generator (the trainer's, so a resume replays them), in this order per batch:
// the k ~ U{1..K} draw (draw_known_frames; none for K = 1), then N values u_i of rand (f64,
// on the host), clip i dropped when u_i < P. P = 0 draws nothing: the run is what it was.
// ddpm-sample --frame-guidance-scale S_I (default 1: one network call per step, the
// conditioned denoiser as before) extrapolates away from the null condition; with the
// condition c and the label (or prompt) y, in the model's own parameterisation (eps, x_0, v
// or EDM's F, as label guidance: diffusion/guidance.h guided_combination):
//   pred = e(null) + S_I (e(c) - e(null))                     (S_T = 1; label y in both)
// and for a class- or text-conditioned model with --guidance-scale S_T != 1 the two-scale
// form of InstructPix2Pix (Brooks et al. 2023, eq. 3; condition first, label second):
//   pred = e(null, null) + S_I (e(c, null) - e(null, null)) + S_T (e(c, y) - e(c, null))
// evaluated as ONE network call of 2n rows [x; x] (conditions [c; null]) or 3n rows
// [x; x; x] (conditions [c; c; null], labels [y; null; null]) per step. The label guidance
// then happens here, not in the sampler (its scale is set to 1: take_frame_guidance), and
// --guidance-rescale phi rescales towards e(c, y). A learned variance is the fully
// conditioned rows' e(c, y), as label guidance keeps the conditional branch's. It applies
// to every clip drawn: --first-frame, --first-frame-from, and each --segments continuation
// (its condition the previous segment's last K' frames). Refused (ValueError naming the
// flag): S_I < 0 or not finite; S_I != 1 for an image model or a video model without the
// frame condition, for a model whose config.json records P = 0 (or none: its null
// condition was never trained), with --reconstruction-guidance, --guidance-interval,
// --sampler consistency, or a guidance-distilled model. sample_info.json's "video" records
// "frame_guidance_scale".
//
// Refused for a video model, before anything is sampled (ValueError naming the flag):
// --inpaint, --low-res / --low-res-from, --control, --classifier, --show-steps, --autoguide. --first-frame / --first-frame-from for a model without the
// condition, a conditioned model without either, and both at once; --overlap beyond the
// model's condition_frames, or without --segments.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/tensor.h"
#include "models/data/dataset.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/run/image_sets.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"

namespace ddpm::run {

// --first-frame, --first-frame-from, --segments and --overlap, bound to `o` (called by
// add_sample_flags).
void add_video_flags(CLI::App& app, SampleOptions& o);
// Their model-free checks (called by check_sample_options).
void check_video_flags(const SampleOptions& o);

// The checks of a video model's options against the model (see above); also refuses the
// video flags for an image model. `latent`: the model is a latent diffusion run (nothing is
// refused for it any more: a latent video model takes every video flag, see above).
void check_video_sample(const SampleOptions& o, const unet::UNetConfig& model, bool latent);

// The first frames of a first-frame-conditioned model (nothing for another model): the
// images and their conditions [M, F, H, W, C + 1] on the CPU.
struct FirstFrames {
  ImageStack images;
  Tensor cond;
};
// A latent video model (latent != nullptr) reads pixel frames of the autoencoder's size and
// channels and conditions on their posterior means (LatentCodec::encode_mean), or on
// o.first_frame_latents when the pipeline passes the image stage's latents.
bool load_first_frames_for(const SampleOptions& o, const unet::UNetConfig& model, FirstFrames& frames,
                           std::ostream* log, const LatentCodec* latent = nullptr);
// N when the samples follow the first frames: their count unless --num-samples (at most it).
std::int64_t first_frame_num_samples(const SampleOptions& o, const FirstFrames& frames);
// A class-conditional model's labels from arr_1 (unless --class): true when taken.
bool take_first_frame_labels(const SampleOptions& o, const unet::UNetConfig& model, const FirstFrames& frames,
                             std::int64_t n, std::vector<std::int64_t>& labels);
// sample_info.json's "video" object.
nlohmann::json video_info(const SampleOptions& o, const unet::UNetConfig& model, const FirstFrames& frames,
                          std::int64_t n);

// Training (train_run.cpp): the condition of a batch of clips x_0 [N, F, H, W, C], made from
// its own first frames (on x_0's device), and the first frames of the dataset's first n clips
// (cyclically) as f32 [n, H, W, C] in [-1, 1] on the CPU, for the sample grids.
Tensor first_frame_condition_of(const Tensor& x0, int num_frames);
Tensor dataset_first_frames(const Dataset& data, int n);
// Conditioning on K known frames (unet.h condition_frames; Ho et al. 2022 sec. 3.1): clip i
// of x_0 is conditioned on its own first known[i] frames, frames_condition(x_0[i, 0:k_i], F)
// stacked over the clips (the frames stay in the target too, as for k = 1). On x_0's device.
Tensor known_frames_condition(const Tensor& x0, const std::vector<int>& known);
// k ~ Uniform{1..max_known} for each of n clips: n uniforms from gen (rng.h rand), k = 1 +
// floor(u max_known). max_known = 1 draws nothing (returns n ones), so first-frame runs keep
// their streams.
std::vector<int> draw_known_frames(std::int64_t n, int max_known, Generator& gen);
// Frame-condition dropout (see "Frame guidance" above): N values of rand (f64) from gen,
// clip i dropped when u_i < p; p = 0 draws nothing (all false). ValueError for p outside [0, 1).
std::vector<bool> draw_condition_dropout(std::int64_t n, double p, Generator& gen);
// cond [N, ...] with the rows of the dropped clips replaced by zeros (the null condition).
Tensor drop_conditions(const Tensor& cond, const std::vector<bool>& dropped);
// The batch provider's condition for a frame-conditioned model: the two above with
// max_known = model.condition_frames, then the dropout draw with probability `dropout`
// (ddpm-train --frame-condition-dropout; 0 draws nothing).
Tensor training_frames_condition(const Tensor& x0, const unet::UNetConfig& model, Generator& gen,
                                 double dropout = 0.0);

// Sampling with frame guidance (see "Frame guidance" above).
struct FrameGuidance {
  double scale = 1.0;        // S_I (--frame-guidance-scale)
  double label_scale = 1.0;  // S_T (--guidance-scale) when the labels are guided here
  double rescale = 0.0;      // phi (--guidance-rescale), towards e(c, y)
  int null_label = 0;        // the unconditional label (SamplerConfig::num_classes)
  bool learned_sigma = false;
  bool active() const { return scale != 1.0; }
};
// For a video model with --frame-guidance-scale S_I != 1: the guidance, with the sampler's
// label guidance (scale, rescale) moved into it and sc's set to none, so the sampler calls
// the denoiser once per step on n rows. Otherwise an inactive FrameGuidance, sc untouched.
FrameGuidance take_frame_guidance(const SampleOptions& o, diffusion::SamplerConfig& sc);
// The denoiser of a frame-conditioned model with condition `cond` [M, F, H, W, C + 1] (M
// divides the batch, as in concat_condition): concat_condition(net, cond) when g is
// inactive, else the guided prediction above from one call of 2n or 3n rows.
diffusion::DenoiseFn frame_guided_denoiser(const diffusion::DenoiseFn& net, const Tensor& cond,
                                           const FrameGuidance& g);
// The P a run was trained with: config.json's "train" "frame_condition_dropout" for
// `checkpoint` (model_source.h model_config_path), 0 when absent or without a config.
double recorded_frame_condition_dropout(const std::string& checkpoint);

// --reconstruction-guidance W was given (W >= 0; 0 is the replacement method alone).
bool reconstruction_guided(const SampleOptions& o);
// --overlap K': o.overlap when given, else the model's condition_frames (at least 1).
int video_overlap(const SampleOptions& o, const unet::UNetConfig& model);
// The frames F of every sampled clip (each segment): --frames when given, else the model's
// num_frames; 0 for an image model.
std::int64_t video_clip_frames(const SampleOptions& o, const unet::UNetConfig& model);
// The frames per written clip: F, or F + (S - 1)(F - K') with --segments S; 0 for an image model.
std::int64_t video_output_frames(const SampleOptions& o, const unet::UNetConfig& model);
// --segments: x [n, F, H, W, C] continued (segments - 1) times as described above, each
// segment conditioned on the previous one's last `overlap` frames (1 <= overlap < F); `net`
// is the model's bare denoiser (without a condition), `draw` samples n clips with a denoiser.
Tensor extend_clips(const Tensor& x, int segments, int overlap, const diffusion::DenoiseFn& net,
                    const std::function<Tensor(const diffusion::DenoiseFn&)>& draw);
// The same with any way of continuing: continue_from(known [n, K', H, W, C]) is the denoiser a
// segment is drawn with (above: the frame condition; --reconstruction-guidance: the
// unconditional denoiser guided by diffusion/reconstruction_guidance.h).
using SegmentDenoiser = std::function<diffusion::DenoiseFn(const Tensor& known)>;
Tensor extend_clips(const Tensor& x, int segments, int overlap, const SegmentDenoiser& continue_from,
                    const std::function<Tensor(const diffusion::DenoiseFn&)>& draw);

// --first-frame-from: the image stage, then the video stage (see above). run_sample(o, log)
// comes here when o.first_frame_from is set.
SampleResult run_first_frame_pipeline(const SampleOptions& o, std::ostream* log);

}  // namespace ddpm::run
