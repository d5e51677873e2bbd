// models/diffusion/training_recipes.h: three published tweaks of the DDPM training step,
// each off by default (the plain step of Ho et al. 2020 is unchanged, bit for bit).
//
// 1. Min-SNR-gamma loss weighting (Hang et al. 2023, "Efficient diffusion training via
//    Min-SNR weighting strategy", eq. 7-9). Timesteps fight each other: low-noise steps
//    (large SNR_t = abar_t / (1 - abar_t)) have easy, large-gradient targets that dominate
//    the update. Written as a loss on the x_0 estimate, each prediction target weights
//    ||x_0 - x_0^||^2 by a power of the SNR:
//      eps:  ||eps - eps^||^2 = SNR_t ||x_0 - x_0^||^2
//      v:    ||v - v^||^2     = (SNR_t + 1) ||x_0 - x_0^||^2
//      x_0:  ||x_0 - x_0^||^2
//    Min-SNR wants the x_0-space weight min(SNR_t, gamma) (clamped, so no step dominates),
//    hence per-sample loss weights
//      eps: min(SNR_t, gamma) / SNR_t,   v: min(SNR_t, gamma) / (SNR_t + 1),   x_0: min(SNR_t, gamma).
//    gamma = 5 is the paper's choice. Only the simple (MSE) loss is reweighted.
//
// 2. Offset noise (Guttenberg 2023, "Diffusion with offset noise"): the training noise gets
//    a per-sample, per-channel constant added, noise = n + offset * c with c ~ N(0, 1) of shape
//    [N, 1, ..., 1, C]. A network trained on i.i.d. noise can barely change an image's mean
//    (the lowest frequency is the last to be destroyed by noising), so its samples keep
//    mid-grey averages; the offset teaches it to move them. The target is the offset noise.
//    Typical: 0.1.
//
// 3. Input perturbation (Ning et al. 2023, "Input perturbation reduces exposure bias in
//    diffusion models", eq. 9): the network's input is built from a slightly different noise
//    than its target, x_t = sqrt(abar) x_0 + sqrt(1 - abar) (n + gamma xi) with xi ~ N(0, I),
//    while the target stays n. At sampling time the network's inputs are its own imperfect
//    outputs, never the exact q_sample of the training data (exposure bias); training on
//    perturbed inputs simulates that error. Typical: 0.1.
#pragma once

#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/schedule.h"

namespace ddpm::diffusion {

// The Min-SNR-gamma weight of each timestep in t for the mean type (see the top);
// ValueError for gamma <= 0.
std::vector<double> min_snr_weights(const DiffusionSchedule& s, ModelMeanType type, const Timesteps& t, double gamma);

// n + offset * c, c ~ N(0, 1) [N, 1, ..., 1, C] drawn from gen (N * C values); the noise
// itself when offset is 0 (no draw).
Tensor offset_noise(const Tensor& noise, double offset, Generator& gen);

}  // namespace ddpm::diffusion
