#include "models/text/text_conditioned.h"

#include <memory>
#include <utility>

#include "engine/autograd.h"
#include "engine/error.h"

namespace ddpm::text {

TextConditionedUNet::TextConditionedUNet(unet::UNet& net, TextEncoder& encoder, const Tokenizer& tokenizer)
    : net_(net), encoder_(encoder), tokenizer_(tokenizer) {
  const unet::UNetConfig& mc = net.config();
  const TextEncoderConfig& ec = encoder.config();
  DDPM_CHECK(mc.cross_attention(), "a text-conditioned model needs a UNet with cross-attention (context_dim > 0)");
  DDPM_CHECK(mc.context_dim == ec.width, "the UNet cross-attends to a context of width "
                                             << mc.context_dim << ", and the text encoder's width is " << ec.width);
  DDPM_CHECK(tokenizer.vocab_size() == ec.vocab_size && tokenizer.context_length() == ec.context_length,
             "the tokenizer (" << tokenizer.vocab_size() << " words, context " << tokenizer.context_length()
                               << ") does not fit the text encoder (" << ec.vocab_size << " words, context "
                               << ec.context_length << ")");
  register_module("", &net);
  register_module("", &encoder);
}

Tensor TextConditionedUNet::forward(const Tensor& x, const std::vector<double>& t,
                                    const std::vector<std::string>& texts, const nn::Context& ctx) const {
  const std::int64_t n = x.dim(0);
  DDPM_CHECK(static_cast<std::int64_t>(texts.size()) == n,
                   "a text-conditioned model needs one text per sample: " << texts.size() << " for " << n);
  const Tensor context = encoder_.forward(tokenizer_.encode_batch(texts), n, ctx);
  return net_.forward(x, t, {}, context, ctx);
}

diffusion::DenoiseFn TextConditionedUNet::denoiser(const std::vector<std::string>& texts,
                                                   const std::string& unconditional,
                                                   std::function<nn::Context()> ctx, bool reuse_context) const {
  // The token rows of the table, encoded once: row k is texts[k], row P the unconditional text.
  auto rows = std::make_shared<std::vector<std::vector<std::int64_t>>>();
  for (const std::string& s : texts) rows->push_back(tokenizer_.encode(s));
  rows->push_back(tokenizer_.encode(unconditional));
  const auto P = static_cast<std::int64_t>(texts.size());
  struct Kept {  // the last no-grad call's labels and context (reuse_context)
    std::vector<std::int64_t> labels;
    Tensor context;
  };
  auto kept = std::make_shared<Kept>();
  return [this, rows, P, ctx = std::move(ctx), reuse_context, kept](const Tensor& x, const std::vector<double>& t,
                                                                    const std::vector<std::int64_t>& labels) {
    const std::int64_t n = x.dim(0);
    DDPM_CHECK(static_cast<std::int64_t>(labels.size()) == n,
               "a text-conditioned model needs one label (text index) per sample: " << labels.size() << " for " << n);
    std::vector<std::int64_t> ids;
    ids.reserve(static_cast<std::size_t>(n * tokenizer_.context_length()));
    for (const std::int64_t k : labels) {
      DDPM_CHECK(k >= 0 && k <= P, "text index " << k << " is outside [0, " << P << "]");
      const std::vector<std::int64_t>& r = (*rows)[static_cast<std::size_t>(k)];
      ids.insert(ids.end(), r.begin(), r.end());
    }
    const nn::Context c = ctx ? ctx() : nn::Context{};
    const bool reuse = reuse_context && !grad_enabled();
    if (reuse && kept->context.defined() && kept->labels == labels && kept->context.device() == x.device())
      return net_.forward(x, t, {}, kept->context, c);
    const Tensor context = encoder_.forward(ids, n, c);
    if (reuse) *kept = Kept{labels, context};
    return net_.forward(x, t, {}, context, c);
  };
}

}  // namespace ddpm::text
