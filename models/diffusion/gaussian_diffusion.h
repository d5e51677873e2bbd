// models/diffusion/gaussian_diffusion.h: the network interface and the training-loss front end.
//
// Owns what sits between a denoising network and the diffusion math of schedule.h and
// likelihood.h:
//   - DenoiseFn, the network as a callable net(x_t, t, labels). t are ORIGINAL timesteps as
//     doubles (a respaced sampler maps its indices back before calling); labels are class
//     indices, the null label num_classes meaning "unconditional", or empty when the model
//     has no class conditioning.
//   - what the network predicts (ModelMeanType: eps, x_0 or v) and, with learned variance,
//     the split of its 2C output channels into the mean part and the variance interpolant.
//   - training_losses: model output -> per-sample loss for L_simple, the hybrid loss and
//     the variational bound (improved DDPM sec. 3).
//
// Layout: channels are the LAST axis (NHWC images [N, H, W, C], 2-D points [N, 2]). A model
// with learned variance outputs [..., 2C]: channels [0, C) are the mean part, [C, 2C) the
// variance interpolant v in [-1, 1] of schedule.h's learned_range_variance.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"
#include "models/diffusion/schedule.h"

namespace ddpm::diffusion {

// The network. x: [N, ..., C]; t: N original timesteps; labels: N class indices or empty.
// Returns [N, ..., C] or [N, ..., 2C] (learned variance).
using DenoiseFn =
    std::function<Tensor(const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& labels)>;

// What the mean part of the output predicts.
enum class ModelMeanType { eps, x0, v };
// "eps", "x0" or "v"; anything else is a ValueError listing the choices.
ModelMeanType parse_model_mean_type(const std::string& name);
const char* model_mean_type_name(ModelMeanType m);

// simple: mean_flat((pred - target)^2) (DDPM eq. 14, with the target of the mean type).
// hybrid: simple + lambda * T * L_t, L_t seeing the mean part detached (needs learned variance).
// vlb:    T * L_t, the one-sample estimate of the whole bound sum_t L_t; gradient into both
//         parts (improved DDPM's "rescaled KL").
enum class LossType { simple, hybrid, vlb };
LossType parse_loss_type(const std::string& name);  // "simple", "hybrid" or "vlb"
const char* loss_type_name(LossType l);

// Channels [begin, begin + count) of the last axis: [..., C_in] -> [..., count]. Recorded
// on the tape. Written as a dense layer with a 0/1 selection matrix [count, C_in] (engine
// linear), since engine/ops/concat.h's slice lives on another branch; switch to slice when
// it lands. The cost is one extra C_in x count GEMM, negligible beside the network.
Tensor slice_channels(const Tensor& x, std::int64_t begin, std::int64_t count);

// Splits a learned-variance output [..., 2C] into (mean part, variance part), each [..., C].
std::pair<Tensor, Tensor> split_learned_variance(const Tensor& out);

// Rows [begin, begin + count) of a tensor along axis 0, sharing its storage (no copy).
// NOT recorded on the tape: for data, noise and no-grad paths only (microbatches, the two
// halves of a guidance batch).
Tensor batch_rows(const Tensor& x, std::int64_t begin, std::int64_t count);
// Stacks a and b (same shape past axis 0, same dtype and device) along axis 0 into a new
// tensor. Not recorded on the tape.
Tensor concat_rows(const Tensor& a, const Tensor& b);

// The prediction target of the mean type for (x_0, noise, t): noise, x_0 or v.
Tensor mean_type_target(const DiffusionSchedule& s, ModelMeanType type, const Tensor& x0, const Tensor& noise,
                        const Timesteps& t);
// Converts a mean-part prediction to eps and to x_0 (unclipped), given x_t.
Tensor eps_from_prediction(const DiffusionSchedule& s, ModelMeanType type, const Tensor& pred, const Tensor& xt,
                           const Timesteps& t);
Tensor x0_from_prediction(const DiffusionSchedule& s, ModelMeanType type, const Tensor& pred, const Tensor& xt,
                          const Timesteps& t);

// A zero-terminal-SNR schedule (alpha_bar_{T-1} = 0, schedule.h rescale_zero_terminal_snr)
// with an eps-network: ValueError naming `where`. At the last step x_T is pure noise, so the
// eps target is x_T itself (nothing to learn) and x_0 = (x_T - eps) / 0 is undefined; Lin et
// al. 2024 (sec. 3.2) train v instead (x0 works too). Any other combination passes.
void check_mean_type_for_schedule(const DiffusionSchedule& s, ModelMeanType type, const char* where);

struct LossConfig {
  LossType loss = LossType::simple;
  ModelMeanType mean_type = ModelMeanType::eps;
  bool learned_sigma = false;
  // Variance used by the vlb loss when the variance is not learned (fixed_small or fixed_large).
  VarianceType fixed_variance = VarianceType::fixed_small;
  double hybrid_lambda = 0.001;  // improved DDPM sec. 3.1
};

struct LossTerms {
  Tensor loss;  // [N], the per-sample training loss
  Tensor mse;   // [N], the simple term (undefined for the vlb loss)
  Tensor vb;    // [N], L_t in bits/dim (undefined for the simple loss)
};

// The per-sample losses for a model output at (x_0, x_t, t, noise), x_t = q_sample(x_0, t,
// noise). model_output is [..., C] or [..., 2C] with learned variance. Checks that the
// output's channel count matches the config. Differentiable in model_output.
LossTerms training_losses(const DiffusionSchedule& s, const LossConfig& config, const Tensor& model_output,
                          const Tensor& x0, const Tensor& xt, const Timesteps& t, const Tensor& noise);

}  // namespace ddpm::diffusion
