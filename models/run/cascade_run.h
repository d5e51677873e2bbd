// models/run/cascade_run.h: the cascade in one call (cascaded diffusion, Ho et al. 2021):
//   ddpm-sample --checkpoint SR_RUN --low-res-from BASE --out OUT
// samples the base model BASE (anything open_model reads: a run, a checkpoint folder, an
// export or a model file; a latent diffusion run too, decoded to pixels), then upsamples its
// samples with the super-resolution model SR_RUN (super_res_run.h), in one process.
//
// It is the two-command cascade, by construction:
//   ddpm-sample --checkpoint BASE --sampler B --sampling-steps K --guidance-scale G --seed S0
//               --num-samples N --batch-size b [--class C] --out OUT/base
//   ddpm-sample --checkpoint SR_RUN --low-res OUT/base/samples.npz --seed S [SR flags] --out OUT
// Both stages go through run_sample (sample_run.h), the base's output folder is the one a
// plain ddpm-sample of BASE writes (grid.png, images/, samples.npz with arr_1 labels for a
// class-conditional base, sample_info.json), and the SR stage reads the conditions back from
// that samples.npz as --low-res does: the result equals the two commands pixel for pixel.
//
// Flags of the base stage (the rest of the flags apply to the super-resolution stage only):
//   --base-sampler NAME       default: --sampler (and, when that was not given either, the
//                             base model's own default: heun for an EDM run)
//   --base-sampling-steps N   default: --sampling-steps
//   --base-guidance-scale S   classifier-free guidance of a class-conditional base; default 1
//                             (none): --guidance-scale is the SR stage's, which may be
//                             autoguidance's w (--autoguide) and does not transfer
//   --base-seed S0            default: --seed. With one seed both stages' Philox streams start
//                             alike, so the SR stage's x_T begins with the base's x_T values (as
//                             in the two-command cascade with one --seed); give another seed to
//                             make the two stages' noise independent
// shared by both stages: --num-samples (N, default 16), --batch-size, --seed, --no-ema,
// --device, --show-steps, and --class (for each stage that is class-conditional). Labels flow
// as with --low-res: a class-conditional SR model takes each sample's class from the base's
// arr_1 unless --class is given.
//
// Output: OUT/ is the super-resolution stage's folder (sample_run.h) with OUT/base/ inside,
// published in one rename (nothing is left behind on an error). OUT/sample_info.json's
// "low_res" path is OUT/base/samples.npz, and "cascade" records the base stage:
// {"base": BASE, "folder": "base", "base_stage": <OUT/base/sample_info.json's object>}.
//
// Refused before anything is sampled (ValueError naming both models): --low-res with
// --low-res-from; a --base-* flag without --low-res-from; SR_RUN not a super-resolution model;
// BASE itself a super-resolution model; BASE's (pixel) image size != SR_RUN's low_res_size or
// its channels != SR_RUN's; a class-conditional SR_RUN whose base has another number of
// classes (0 = unconditional: the labels would not mean the same classes); --class with an
// unconditional BASE; and every check either stage's sampling would make on its own options
// (make_sampler_config, the low-res flags, --autoguide's fit).
#pragma once

#include <iosfwd>
#include <string>

#include <CLI/CLI.hpp>

#include "models/run/model_source.h"
#include "models/run/sample_run.h"

namespace ddpm::run {

class LatentCodec;

// --low-res-from and the --base-* flags, bound to `o` (called by add_sample_flags).
void add_cascade_flags(CLI::App& app, SampleOptions& o);

// Their model-free checks (called by check_sample_options).
void check_cascade_flags(const SampleOptions& o);

// The options of each stage (see above); the base's and the SR's `out` and the SR's `low_res`
// are left for the caller to set.
SampleOptions base_stage_options(const SampleOptions& o, const ModelSource& base);
SampleOptions super_res_stage_options(const SampleOptions& o, const ModelSource& super_res);

// The checks between the two models (see above). `base_latent`: BASE's autoencoder when it is
// a latent diffusion model (its images are decoded pixels), else nullptr.
void check_cascade_fits(const SampleOptions& o, const ModelSource& super_res, const ModelSource& base,
                        const LatentCodec* base_latent);

// The whole cascade: opens o.checkpoint (SR), o.low_res_from (BASE, with its autoencoder when
// it has one) and o.autoguide, then as below. run_sample(o, log) comes here when
// o.low_res_from is set.
SampleResult run_cascade(const SampleOptions& o, std::ostream* log = nullptr);
// Same with the models already opened (o.checkpoint, o.low_res_from and o.autoguide are then
// only recorded); `guide`: the SR stage's --autoguide model, or nullptr.
SampleResult run_cascade(const SampleOptions& o, const ModelSource& super_res, const ModelSource& base,
                         std::ostream* log = nullptr, const LatentCodec* base_latent = nullptr,
                         const ModelSource* guide = nullptr);

}  // namespace ddpm::run
