// models/diffusion/karras.h: the Heun sampler of Karras et al. 2022 ("EDM", "Elucidating
// the Design Space of Diffusion-Based Generative Models"), deterministic (Algorithm 1) or with
// stochastic churn (Algorithm 2), for our DDPM-trained (variance-preserving, discrete-time)
// networks; the loop itself (karras_solve) runs on any denoiser D(x; sigma), such as the
// EDM-preconditioned network of edm.h.
//
// From VP to EDM. A DDPM network sees x_vp = sqrt(abar) x_0 + sqrt(1 - abar) eps at a
// training step t. Divide by sqrt(abar): x = x_vp / sqrt(abar) = x_0 + sigma eps with
//   sigma(t) = sqrt((1 - abar_t) / abar_t)                              (EDM table 1, VP)
// so x is "data plus noise of std sigma" (the variance-exploding variable, EDM's x) and
// abar = 1 / (1 + sigma^2), x_vp = x / sqrt(1 + sigma^2). The ideal denoiser is
//   D(x; sigma) = x - sigma eps(x / sqrt(1 + sigma^2), t(sigma))        (EDM eq. 7, table 1)
// (the network's eps estimate scaled back to x's units). With an x_0-predicting network
// D = x_0^ directly; with v (Salimans & Ho 2022, v = sqrt(abar) eps - sqrt(1 - abar) x_0)
//   D = sqrt(abar) x_vp - sqrt(1 - abar) v = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) v,
// which equals x - sigma eps for eps = sqrt(1 - abar) x_vp + sqrt(abar) v: every mean type
// gives the same D, so the sampler works for all three.
//
// The fractional timestep t(sigma). The network was trained only at the T discrete levels
// sigma_0 < sigma_1 < ... < sigma_{T-1} (increasing, since every beta > 0). Between them we
// interpolate log sigma linearly in t: for sigma_k <= sigma <= sigma_{k+1},
//   t(sigma) = k + (log sigma - log sigma_k) / (log sigma_{k+1} - log sigma_k),
// the inverse of sigma(t) = exp((1 - f) log sigma_k + f log sigma_{k+1}), t = k + f. Our
// networks take real timesteps (DenoiseFn's t is a double; the UNet's sinusoidal embedding
// and the toy MLP's features are smooth in t), so the network is called at this t, not at
// the nearest training step. Between training steps the embedding is an interpolation the
// network never saw in training; with T = 1000 neighbouring steps differ little, and EDM
// (appendix C.3.4) evaluates DDPM-trained models the same way.
//
// The noise levels (EDM eq. 5): for i = 0..N-1,
//   sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
// rho = 7, then sigma_N = 0. N = 1 gives {sigma_max, 0}. rho > 1 crowds the levels near
// sigma_min, where the trajectories curve most (EDM fig. 3: rho = 7 balances the truncation
// error across levels). sigma_min and sigma_max default to the schedule's smallest and
// largest discrete sigma, so the network never sees a level outside its training range
// (other values are accepted only inside that range). Linear schedule, T = 1000: 0.0100 to
// 157; cosine: 0.0064 to about 2e4 (beta clipped at 0.999 makes the last level huge; EDM
// used sigma_max = 80 for such models; with rho = 7 the levels above 80 cost only a few).
//
// The probability-flow ODE in these variables (EDM eq. 4 with s(t) = 1, sigma(t) = t) is
//   dx/dsigma = (x - D(x; sigma)) / sigma,     x(sigma_max) ~ N(0, sigma_max^2 I)
// (the data's own spread is negligible beside sigma_max). Heun's method (EDM algorithm 1,
// no churn: S_churn = 0, deterministic; algorithm 2 below adds the churn):
//   d   = (x_i - D(x_i; sigma_i)) / sigma_i
//   x'  = x_i + (sigma_{i+1} - sigma_i) d                          (Euler predictor)
//   if sigma_{i+1} > 0:
//     d'  = (x' - D(x'; sigma_{i+1})) / sigma_{i+1}
//     x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (d + d') / 2         (trapezoidal corrector)
//   else x_{i+1} = x' = D(x_i; sigma_i)                            (the last step is Euler)
// N steps cost 2N - 1 network evaluations; the result x_N is the sample (sigma = 0: x and
// x_vp agree). Euler alone (KarrasSolver::euler, N evaluations) is first order; DDIM with
// eta = 0 is exactly this Euler step taken on the discrete levels (divide DDIM's update by
// sqrt(abar_prev): x' = D + sigma' (x - D) / sigma; EDM sec. 3). Euler is offered for
// comparisons (ddpm-sample --sampler euler).
//
// Clipping. EDM does not clip D: the ODE's vector field must be smooth for Heun's error
// estimate to hold, and a clamp makes it kink. resolve_clip_x0 is therefore false for Heun
// unless config.clip_x0 asks for it (then D goes through x0_threshold.h like DDPM's x_0^).
//
// Guidance, labels, learned sigma and dtype follow sampler.h: each D evaluation is one
// network_output() call (the doubled [x; x] batch with guidance; the variance part of a
// learned-sigma network is ignored: the ODE has no variance). f64 runs on the CPU.
//
// Stochastic churn (EDM algorithm 2, sec. 4). The ODE carries every error of earlier steps
// along; adding fresh noise and then removing it with the denoiser corrects them (a Langevin
// step split into "noise up" and "ODE down"). At level i, before the step:
//   gamma_i   = min(S_churn / N, sqrt(2) - 1)  if S_tmin <= sigma_i <= S_tmax, else 0
//   sigma^_i  = sigma_i (1 + gamma_i)                  (clamped, see below)
//   x^_i      = x_i + sqrt(sigma^_i^2 - sigma_i^2) S_noise eps,   eps ~ N(0, I)
// then the step above runs from (x^_i, sigma^_i) instead of (x_i, sigma_i):
//   d = (x^_i - D(x^_i; sigma^_i)) / sigma^_i,  x' = x^_i + (sigma_{i+1} - sigma^_i) d,
//   and Heun's correction x_{i+1} = x^_i + (sigma_{i+1} - sigma^_i) (d + d') / 2 when
//   sigma_{i+1} > 0 (else x_{i+1} = x' = D(x^_i; sigma^_i)).
// If x_i has the marginal N(., sigma_i^2) noise, x^_i has sigma^_i^2 = sigma_i^2 +
// (sigma^_i^2 - sigma_i^2): the added variance is exactly the gap. The cap sqrt(2) - 1 keeps
// sigma^_i <= sqrt(2) sigma_i, i.e. at most doubles the variance (EDM: more only adds
// noise the step cannot remove). S_noise slightly above 1 offsets the denoiser's tendency to
// remove a little too much noise (EDM sec. 4). S_churn = 0 (the default; S_tmin = 0,
// S_tmax = inf, S_noise = 1) is algorithm 1 exactly: every gamma is 0, sigma^_i = sigma_i,
// x^_i is x_i itself, and no noise is drawn, so the samples are bit-identical to the
// deterministic sampler's and the generator ends at the same offset. EDM's ImageNet-64
// setting for the ADM (VP-family) network is S_churn = 80, S_tmin = 0.05, S_tmax = 50,
// S_noise = 1.003 (EDM table 5); its CIFAR-10 VP setting 30, 0.01, 1, 1.007.
//
// The clamp. A DDPM network knows no level above its largest training sigma_{T-1}, and
// t(sigma) would silently clamp to T-1 there (the network would be told a smaller sigma than
// x^ carries). So sigma^_i = min(sigma_i (1 + gamma_i), sigma_{T-1}), never below sigma_i:
// a level whose raised noise would leave the training range is churned only up to its top
// (not at all when sigma_i = sigma_{T-1}, the default first level), and t(sigma^_i) <= T-1
// always. Only the top can be left: sigma^_i >= sigma_i >= sigma_min >= sigma_0.
//
// Random numbers: x_0 = sigma_max z, z ~ N(0, I) of the sample's shape, is drawn first;
// then each CHURNED level (sigma^_i > sigma_i after the clamp) draws one eps of the sample's
// shape, in level order; unchurned levels draw nothing (Euler ancestral, below, and
// DPM-Solver++(2M) SDE draw one z per step instead, except onto sigma = 0). The rest is deterministic, so the
// same (seed, offset) gives the same samples on CPU and CUDA up to rounding. StepCallback:
// once per step, index N-1-i counting down to 0, timestep = round(t(sigma^_i)) (the
// network's first call of the step; t(sigma_i) without churn), sigma = sigma_i, pred_x0 =
// D(x^_i; sigma^_i) and x = x_{i+1} scaled to the network's input scale
// x / sqrt(1 + sigma_{i+1}^2), comparable with DDPM's x_t.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/device.h"
#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/diffusion/sampler.h"
#include "models/diffusion/schedule.h"

namespace ddpm::diffusion {

// sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T-1 (increasing): the FINITE training
// levels. A zero-terminal-SNR schedule (schedule.h rescale_zero_terminal_snr) has
// abar_{T-1} = 0, sigma_{T-1} = infinity: that level is left out (T - 1 entries), so every
// Karras-level sampler, the ODE likelihood and the churn cap use sigma_{T-2} as the largest
// training sigma. Decision (docs/DESIGN.md "Zero terminal SNR"): cap rather than refuse.
// No ODE starts at sigma = infinity (x = x_0 + sigma eps has no finite start), and x ~
// N(0, sigma_{T-2}^2 I) at the capped top is what the network saw in training at t = T-2,
// so nothing is extrapolated; the t = T-1 level is simply not visited (DDPM and DDIM visit it).
std::vector<double> vp_sigmas(const DiffusionSchedule& s);

// t(sigma): the fractional training timestep of a noise level, by linear interpolation of
// log sigma between the discrete levels (train_sigmas as from vp_sigmas: increasing, > 0).
// Levels outside [sigma_0, sigma_{T-1}] clamp to t = 0 or T-1.
double timestep_for_sigma(const std::vector<double>& train_sigmas, double sigma);
// Its inverse sigma(t) for t in [0, T-1] (clamped): exp of the linear interpolation of log sigma.
double sigma_for_timestep(const std::vector<double>& train_sigmas, double t);

// The N + 1 noise levels sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min > sigma_N = 0
// (EDM eq. 5). ValueError unless n >= 1, 0 < sigma_min < sigma_max (finite) and rho > 0.
std::vector<double> karras_sigmas(std::int64_t n, double sigma_min, double sigma_max, double rho = 7.0);

// The (sigma_min, sigma_max) a config resolves to for this schedule: 0 means the smallest /
// largest training sigma; other values must lie in the training range (ValueError naming
// the range), and sigma_min < sigma_max.
std::pair<double, double> resolve_sigma_range(const DiffusionSchedule& s, const SamplerConfig& config);

// ValueError naming the field unless s_churn >= 0, s_noise > 0 (both finite), 0 <= s_tmin
// <= s_tmax (s_tmax may be infinite: no upper bound).
void check_churn_settings(const SamplerConfig& config);

// sigma^_i of algorithm 2 for the N nonzero levels (levels as from karras_sigmas, N + 1 long
// with the final 0; the result has N entries): sigma_i (1 + gamma_i) with
// gamma_i = min(s_churn / N, sqrt(2) - 1) inside [s_tmin, s_tmax], else 0, clamped to
// [sigma_i, train_sigmas.back()]. Exactly sigma_i for every unchurned level.
std::vector<double> churned_sigmas(const std::vector<double>& levels, const std::vector<double>& train_sigmas,
                                   const SamplerConfig& config);

// The step rule on the Karras levels: Heun (2nd order, 2N - 1 evaluations), Euler (1st
// order, N), DPM-Solver++(2M) (dpm_solver.h: 2nd order multistep, N; deterministic, so it
// refuses churn), Euler ancestral (N; stochastic, see below; it refuses churn too), UniPC
// (unipc.h: order-2 predictor plus the free corrector, N; deterministic, refuses churn) or
// DPM-Solver++(2M) SDE (dpm_solver.h: N; stochastic, refuses churn). The names are
// ddpm-sample's --sampler values.
//
// Euler ancestral: DDPM's ancestral step on arbitrary levels. In x = x_0 + sigma eps the
// forward process from sigma' < sigma adds independent noise of variance sigma^2 - sigma'^2,
// so the posterior of x at sigma' given x at sigma and x_0 is Gaussian with
//   mean = x_0 + (sigma'^2 / sigma^2) (x - x_0),   variance = sigma'^2 (sigma^2 - sigma'^2) / sigma^2.
// The step plugs in x_0 = D(x; sigma): with sigma_up^2 = that variance and
// sigma_down = sqrt(sigma'^2 - sigma_up^2) = sigma'^2 / sigma, the Euler step to sigma_down,
// x + (sigma_down - sigma) (x - D) / sigma = D + (sigma_down / sigma) (x - D), is the mean,
// and sigma_up z (one draw per step, none onto sigma' = 0) the noise. On the discrete
// levels this is exactly the DDPM step with fixed-small variance (divide by sqrt(1 + sigma'^2)).
enum class KarrasSolver { heun, euler, dpmpp_2m, euler_ancestral, unipc, dpmpp_2m_sde };
// "heun", "euler", "dpm++2m", "euler-ancestral", "unipc", "dpm++2m-sde"
const char* karras_solver_name(KarrasSolver solver);
bool parse_karras_solver(const std::string& name, KarrasSolver& out);  // false for other names
// Network evaluations per sample for N levels (guidance doubles the batch, not the count).
std::int64_t karras_network_evaluations(KarrasSolver solver, std::int64_t n);

// The same with an explicit cap on sigma^ (train_sigmas.back() above; infinity for a
// network trained on continuous sigma, edm.h, which any level is inside).
std::vector<double> churned_sigmas(const std::vector<double>& levels, double sigma_cap, const SamplerConfig& config);

// --- The solver on any denoiser -----------------------------------------------------------
// Everything above the solver loop is about the VP network; the loop itself only needs
// D(x; sigma) at one level for the whole batch. A SigmaDenoiser returns it with the
// timestep input its network saw (reported, rounded, as StepInfo::timestep; the VP adapter
// gives t(sigma), the EDM one of edm.h -1).
struct SigmaDenoised {
  Tensor x0;  // [shape]: D(x; sigma)
  double t;
};
using SigmaDenoiser = std::function<SigmaDenoised(const Tensor& x, double sigma)>;

// The loop of this file's header (algorithm 1 or 2, Heun or Euler; or DPM-Solver++(2M),
// Euler ancestral, UniPC (order 2) or DPM-Solver++(2M) SDE, which refuse churned levels with
// a ValueError) on `denoiser`: levels
// as from karras_sigmas (N + 1, ending in 0), churned as from churned_sigmas (N; equal to
// levels[i] where not churned), churn noise scaled by config.s_noise, samples in
// config.dtype. Random numbers and StepCallback as described above. Runs under NoGradGuard.
Tensor karras_solve(const SigmaDenoiser& denoiser, const Shape& shape, const std::vector<double>& levels,
                    const std::vector<double>& churned, const SamplerConfig& config, Generator& gen, Device device,
                    const StepCallback& callback, KarrasSolver solver);
// The same loop from a GIVEN start x_start [shape] at levels.front() (in config.dtype on
// `device`) instead of the draw sigma_max z: karras_solve is this after its one draw. Used by
// ddpm-edit (sigma_edit.h) to decode inverted latents and to run SDEdit from sigma_0 < sigma_max
// (levels then starts at sigma_0). Draws only the churn's and Euler ancestral's noise.
Tensor karras_solve_from(const SigmaDenoiser& denoiser, const Tensor& x_start, const std::vector<double>& levels,
                         const std::vector<double>& churned, const SamplerConfig& config, Generator& gen,
                         Device device, const StepCallback& callback, KarrasSolver solver);

// Draws shape[0] samples with config.heun_steps levels (sample() calls this for
// Kind::heun; config.kind itself is not read), churned as config.s_churn, s_tmin, s_tmax and
// s_noise say (Euler too: the churn, then the Euler step from sigma^_i). Labels, guidance
// and dtype as in sample(). Returns [shape] on `device` in config.dtype.
Tensor karras_sample(const DiffusionSchedule& base, const DenoiseFn& net, const Shape& shape,
                     const std::vector<std::int64_t>& labels, const SamplerConfig& config, Generator& gen,
                     Device device = Device::cpu(), const StepCallback& callback = {},
                     KarrasSolver solver = KarrasSolver::heun);

}  // namespace ddpm::diffusion
