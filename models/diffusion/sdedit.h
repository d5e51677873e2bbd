// models/diffusion/sdedit.h: SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and
// Editing with Stochastic Differential Equations", algorithm 1) with any trained DDPM.
//
// SDEdit: a guide image x^g (a stroke painting, a corrupted or out-of-distribution image) is
// noised to an intermediate time t0 and the reverse process is run from there:
//   x_{t0} = sqrt(abar(t0)) x^g + sqrt(1 - abar(t0)) z,   z ~ N(0, I)        (DDPM eq. 4, q_sample)
//   x_0    = reverse process (DDPM ancestral or DDIM) from x_{t0} down to 0.
// The strength s = t0 / T in (0, 1] trades faithfulness (small s: x_0 stays near x^g) for
// realism (large s: the noise hides the guide's off-manifold detail; s = 1 forgets almost all
// of it). The paper's figures use t0 in [0.3, 0.6].
//
// From the strength to the respaced grid. The paper's time is continuous; here the process
// has K kept ORIGINAL timesteps t_0 < ... < t_{K-1} (respace.h; index t is the paper's t + 1,
// so the paper's discrete time of index t is t + 1). The reverse process starts at
//   i0 = max { i : t_i + 1 <= s T }
// i.e. the noisiest kept step whose paper time does not exceed t0 = s T; the image is
// noised to abar(t_{i0}) exactly (not to abar(s T): the reverse chain must start from the
// marginal of the step it begins at), and i0 + 1 network calls follow. s = 1 gives
// i0 = K - 1 (every form of respacing keeps T - 1): the whole chain. A strength with no kept
// step at or below it, s T < t_0 + 1, is a ValueError naming the smallest usable strength.
//
// s = 1 versus plain sampling. sample() (sampler.h) starts from x_T = z; SDEdit at s = 1
// starts from sqrt(abar_{T-1}) x^g + sqrt(1 - abar_{T-1}) z with the same first draw z and
// then draws in the same order (DDPM: one tensor per step but the last; DDIM: per step with
// sigma > 0). The two agree exactly only when abar_{T-1} = 0 (a schedule ending with
// beta = 1, "zero terminal SNR"); with the linear schedule at T = 1000 abar_{T-1} is about
// 4e-5, so the guide leaks into the result by a factor sqrt(4e-5) = 0.006 at the start.
//
// Random numbers: z first (one tensor of the batch's shape), then the reverse steps' draws.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/respace.h"
#include "models/diffusion/sampler.h"

namespace ddpm::diffusion {

// The reverse process it runs is sampler.h's reverse_process_from.

// i0 for strength s on the kept timesteps (ascending), see above. ValueError for s outside
// (0, 1] or below the smallest usable strength (t_0 + 1) / T.
std::int64_t sdedit_start_index(const Timesteps& kept, std::int64_t T, double strength);

// SDEdit of guide images [N, ...] in [-1, 1] (converted to config.dtype on `device`): noise
// to the start step of `strength` with one draw z from gen, then reverse_process_from.
// Returns [N, ...] on `device` in config.dtype.
Tensor sdedit(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& guide, double strength,
              const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen,
              Device device = Device::cpu(), const StepCallback& callback = {});

}  // namespace ddpm::diffusion
