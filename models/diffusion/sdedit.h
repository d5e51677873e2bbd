// models/diffusion/sdedit.h: SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and
// Editing with Stochastic Differential Equations", algorithm 1) with any trained DDPM, and the
// partial reverse process it (and DDIM decoding, ddim_inversion.h) is built from.
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

// The DDIM step (sampler.h, DDIM eq. 12) from x = x_i given the network's output d at index
// i: eps^ recomputed from d.pred_x0, then
//   x_{i-1} = sqrt(abar_prev) x_0^ + sqrt(1 - abar_prev - sigma_i^2) eps^ + sigma_i z,
// z drawn from gen only when sigma_i = eta sqrt((1-abar_prev)/(1-abar)) sqrt(1-abar/abar_prev) > 0.
Tensor ddim_step(const DiffusionSchedule& s, double eta, const Tensor& x, const Denoised& d, std::int64_t i,
                 Generator& gen);

// The reverse process of `config` (kind ddpm or ddim; respacing, variance, eta, clipping,
// guidance as in sample()) run from x = x_{i_start} of the process sampling_process(base,
// config.respacing) down to index 0: i_start + 1 network calls. x keeps its dtype and device.
// i_start = K - 1 with x = x_T ~ N(0, I) is sample() without its first draw.
Tensor reverse_process_from(const DiffusionSchedule& base, const DenoiseFn& net, const Tensor& x,
                            std::int64_t i_start, const std::vector<std::int64_t>& labels,
                            const SamplerConfig& config, Generator& gen, const StepCallback& callback = {});

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
