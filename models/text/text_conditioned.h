// models/text/text_conditioned.h: a text-conditioned denoiser: the UNet with cross-attention
// (unet.h, context_dim > 0), its context encoder tau_theta (text_encoder.h) and the tokenizer
// (tokenizer.h) side by side, and how the samplers' integer labels become texts.
//
// Latent diffusion's conditioning (Rombach et al. 2022, sec. 3.3, eq. 3):
//   context = tau_theta(tokens(y))                       [N, L, width]
//   eps_theta(x_t, t, y) = UNet(x_t, t, context)          cross-attention reads the context
// trained jointly: L = E || eps - eps_theta(x_t, t, y) ||^2 with gradients into both the UNet
// and tau_theta (here they share one parameter slab).
//
// The samplers, guidance and the training loop speak class labels (models/diffusion/
// sampler.h): one integer per sample, and label P for "no condition" in classifier-free
// guidance. A text model fits them unchanged by reading a label as an index into a table of
// P texts: label k < P is texts[k] and label P is the unconditional text, the empty caption
// the model was trained with in place of dropped captions (or, at sampling time, a negative
// prompt). ddpm-train's table is the dataset's distinct captions (models/data/captions.h
// CaptionTable), ddpm-sample's is its --prompt texts. Guidance's doubled batch [x; x] with
// labels [y; P] then runs the text encoder on [texts; unconditional] in the same call.
//
// Parameter names: both modules are registered under the empty name (models/nn/module.h), so
// a checkpoint holds the UNet's diffusers names beside the text encoder's text_model.* names.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/diffusion/gaussian_diffusion.h"
#include "models/text/text_encoder.h"
#include "models/text/tokenizer.h"
#include "models/unet/unet.h"

namespace ddpm::text {

class TextConditionedUNet : public nn::Module {
 public:
  // A view: net, encoder and tokenizer must outlive it. ValueError when net has no
  // cross-attention, its context_dim is not the encoder's width, or the tokenizer's
  // vocabulary size or context length is not the encoder's.
  TextConditionedUNet(unet::UNet& net, TextEncoder& encoder, const Tokenizer& tokenizer);

  // x [N, H, W, C], t per sample, texts [N]: UNet(x, t, tau_theta(tokens(texts))).
  // ValueError for a text longer than the context (tokenizer.h) or a count mismatch.
  Tensor forward(const Tensor& x, const std::vector<double>& t, const std::vector<std::string>& texts,
                 const nn::Context& ctx) const;

  // The denoiser over a table of texts (top of the file): label k < texts.size() is
  // texts[k], label texts.size() is `unconditional`. `ctx` is asked for the call's context
  // at every call (a training loop's dropout generator). The returned function refers to
  // this view, which must outlive it. Every text is tokenized once here,
  // so a bad prompt fails before sampling starts (ValueError).
  // reuse_context: a sampler calls the network at every step with the same labels and the
  // same weights, so the text encoder's output can be kept: with it on, a call outside grad
  // mode whose labels equal the previous such call's reuses that call's context (bitwise what
  // running the encoder again gives, since it has no dropout). Only for a denoiser whose
  // weights do not change between calls; a training loop's must leave it off.
  diffusion::DenoiseFn denoiser(const std::vector<std::string>& texts, const std::string& unconditional,
                                std::function<nn::Context()> ctx, bool reuse_context = false) const;

  const unet::UNet& unet() const { return net_; }
  const TextEncoder& encoder() const { return encoder_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  unet::UNet& net_;
  TextEncoder& encoder_;
  const Tokenizer& tokenizer_;
};

}  // namespace ddpm::text
