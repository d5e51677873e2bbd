// models/diffusion/respace.h: sampling with fewer steps than the model was trained with.
//
// A respaced process keeps a subset S = {t_0 < t_1 < ... < t_{K-1}} of the original T
// timesteps and is itself a Gaussian diffusion with K steps whose alpha_bar values are the
// original ones at the kept steps (improved DDPM sec. 4):
//   beta'_i = 1 - alpha_bar(t_i) / alpha_bar(t_{i-1}),   alpha_bar(t_{-1}) = 1,
// so prod_{j<=i} (1 - beta'_j) = alpha_bar(t_i). The network was trained on the original
// timesteps, so it is always called with timestep_map[i] = t_i, never with i.
//
// Which timesteps to keep, as a string:
//   "250"        one section: 250 steps spread evenly over [0, T)
//   "10,15,20"   T split into 3 equal sections (the first T % 3 one step longer) with 10,
//                15 and 20 steps; a section of size L with c > 1 steps keeps
//                start + round(i (L-1)/(c-1)), i = 0..c-1, so its first and last steps;
//                with c = 1 it keeps its LAST step.
//   "ddimN"      N steps at the exact integer stride T/N ("trailing" spacing):
//                T-1, T-1-stride, ..., stride-1; an error unless N divides T.
// Every form keeps T-1, so sampling always starts from the fully noised step (the
// "leading" spacing 0, stride, ..., T-stride never visits T-1 and starts from an x_T that
// is not pure noise). Two departures from improved-diffusion, both for that reason: its
// ddimN keeps 0, stride, ... (never T-1) and accepts any stride with ceil(T/stride) = N,
// and its one-step sections keep their first step.
#pragma once

#include <string>
#include <vector>

#include "models/diffusion/schedule.h"

namespace ddpm::diffusion {

// The kept original timesteps, sorted ascending. ValueError (naming the string) for
// empty or non-numeric counts, zero, a count larger than its section, or an inexact ddim
// stride.
Timesteps space_timesteps(std::int64_t T, const std::string& section_counts);

struct RespacedSchedule {
  DiffusionSchedule schedule;  // K steps, built from the respaced betas
  Timesteps timestep_map;      // new index i -> original timestep t_i (ascending)
  // Original timesteps for a batch of new indices: what the network must be given.
  Timesteps map_timesteps(const Timesteps& t) const;
};

// Respaces a base beta schedule (length T) to the kept timesteps (sorted, unique, in [0, T)).
std::vector<double> respaced_betas(const std::vector<double>& base_betas, const Timesteps& use_timesteps);
RespacedSchedule respace(const std::vector<double>& base_betas, const Timesteps& use_timesteps);
RespacedSchedule respace(const std::vector<double>& base_betas, const std::string& section_counts);

}  // namespace ddpm::diffusion
