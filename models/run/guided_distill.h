// models/run/guided_distill.h: guided distillation (Meng, Rombach, Gao, Kingma, Ermon, Ho,
// Salimans, "On Distillation of Guided Diffusion Models", CVPR 2023) in ddpm-distill
// (--guided S_MIN,S_MAX; the loop is distill_run.h) and the one-call sampling of its students
// in ddpm-sample. The math (the guided target (4), the w-conditioned teacher steps) is
// models/diffusion/progressive_distill.h; the network's weight input is unet.h's
// guidance_embedding.
//
// Units. ddpm-sample's --guidance-scale s combines eps_u + s (eps_c - eps_u); the paper's
// guidance weight is w = s - 1 ((1 + w) eps_c - w eps_u). Flags and records speak s (the
// trained range [S_MIN, S_MAX]); the network takes w.
//
// Stage 1: the student x^_eta(z_t, t, y, w) is a copy of the class-conditional teacher plus a
// fresh guidance embedding whose last linear layer is zero, so at step 0 it IS the teacher's
// conditional branch. It is trained on the teacher's N-step DDIM grid (t ~ U over G_N, the
// grid ddpm-sample --sampling-steps N visits), w = s - 1 with s ~ U[S_MIN, S_MAX] per
// example, against x^w of eq. (4) with the rounds' max(SNR, 1) x-space loss. Stage 2: the
// rounds, teacher (stage 1's EMA, then each round's) and student both given the example's w.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "models/diffusion/progressive_distill.h"
#include "models/run/distill_record.h"
#include "models/unet/unet.h"

namespace ddpm::run {

// "S_MIN,S_MAX" of --guided. ValueError naming --guided unless both are finite numbers with
// 1 <= S_MIN <= S_MAX. (s < 1 is w < 0: guidance AWAY from the class, towards the
// unconditional model and past it; Meng et al. train w in [0, 4], and ddpm-sample's s = 1 is
// plain conditional sampling, the natural lower end.)
GuidedRange parse_guided_range(const std::string& spec);

// The weights w = s - 1 of n examples, s ~ U[scale_min, scale_max]: n uniforms (f64) of gen.
std::vector<double> draw_guidance_weights(std::int64_t n, const GuidedRange& range, Generator& gen);

// A copy of `net` (its config with guidance_embedding set, every weight copied by name) with
// a fresh guidance embedding: linear_1 drawn from Generator(seed), linear_2 zero. ValueError
// for an unconditional net or one that already has the embedding.
std::unique_ptr<unet::UNet> with_guidance_embedding(const unet::UNet& net, std::uint64_t seed);

// Stage 1's grid: the teacher's N-step DDIM grid G_N as student and teacher grid alike (the
// examples' timesteps; no halving). ValueError (naming --teacher-steps) unless N divides T.
diffusion::DistillGrid guided_stage_grid(std::int64_t T, std::int64_t teacher_steps);

// `net` as a DenoiseFn: with the weights w (a guidance-embedded net; one per sample of the
// batch it is called with) or without (w empty: any other net).
diffusion::DenoiseFn weighted_denoiser(const unet::UNet& net, std::vector<double> w, nn::Context ctx = {});

// A guidance-embedded teacher read as the conditional model it was copied from: called with
// w = 0 for every row, which a fresh (zero) embedding turns into exactly nothing. Stage 1's
// teacher calls (both branches in one batch of any size).
diffusion::DenoiseFn unguided_denoiser(const unet::UNet& net);

// ddpm-sample: the weight w = s - 1 a guidance-distilled model (cfg.guidance_embedding) is
// sampled with for --guidance-scale s, in ONE network call per step (no classifier-free
// doubling). ValueError naming --guidance-scale and the folder when the record's trained
// range does not hold s (outside it the embedding was never trained: refused rather than
// warned, as a sample set quietly made off the range would be mistaken for a guided one).
// Without a record (a bare model file) any s >= 1 is taken. ddpm-sample's default s = 1
// (w = 0: the guided student's plain conditional output) passes only when S_MIN = 1.
double guided_sampling_weight(const std::optional<DistillationRecord>& record, const std::string& checkpoint,
                              double guidance_scale);

}  // namespace ddpm::run
