// models/run/latent_run.cpp: see latent_run.h.
#include "models/run/latent_run.h"

#include <algorithm>
#include <filesystem>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "models/run/model_source.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

void freeze(const autoencoder::Autoencoder& ae) {
  for (auto& [name, p] : ae.named_parameters()) {
    Tensor frozen = p;
    frozen.set_requires_grad(false);
  }
}

// The parameters that make the latents: the encoder and quant_conv.
bool encodes(const std::string& name) { return name.rfind("encoder.", 0) == 0 || name.rfind("quant_conv.", 0) == 0; }


// Clips [N, F, H, W, C] as frames [N F, H, W, C], and back with the new per-frame shape.
Tensor fold_frames(const Tensor& x) {
  return x.ndim() == 5 ? x.reshape({x.dim(0) * x.dim(1), x.dim(2), x.dim(3), x.dim(4)}) : x;
}
Tensor unfold_frames(const Tensor& y, const Tensor& like) {
  return like.ndim() == 5 ? y.reshape({like.dim(0), like.dim(1), y.dim(1), y.dim(2), y.dim(3)}) : y;
}

}  // namespace

LatentCodec::LatentCodec(const std::string& dir, Device device)
    : folder_(autoencoder::load_autoencoder(dir, device)), source_(dir) {
  freeze(*folder_.model);
}

void LatentCodec::use_clip_decoder(const std::string& dir) {
  DDPM_CHECK(autoencoder::is_autoencoder_folder(dir),
             "--decoder " << dir << " is not an autoencoder folder (config.json naming \""
                          << autoencoder::kAutoencoderArchitecture
                          << "\"); pass a ddpm-autoencoder finetune-temporal output");
  autoencoder::AutoencoderFolder d = autoencoder::load_autoencoder(dir, folder_.model->device());
  // The same autoencoder apart from the temporal layers: config (temporal_frames aside) ...
  nlohmann::json mine = autoencoder::autoencoder_config_to_json(config());
  nlohmann::json theirs = autoencoder::autoencoder_config_to_json(d.model->config());
  mine.erase("temporal_frames");
  theirs.erase("temporal_frames");
  for (auto it = mine.begin(); it != mine.end(); ++it)
    DDPM_CHECK(theirs.value(it.key(), nlohmann::json()) == it.value(),
               "--decoder " << dir << " does not match the run's autoencoder " << source_ << ": its " << it.key()
                            << " is " << theirs.value(it.key(), nlohmann::json()).dump() << ", the run's "
                            << it.value().dump() << "; it must be fine-tuned from the run's autoencoder "
                            << "(ddpm-autoencoder finetune-temporal --from " << source_ << ")");
  // ... and the encoder's weights, bit for bit: the latents the run diffuses are unchanged.
  const std::vector<nn::NamedTensor> ours = folder_.model->named_parameters(), other = d.model->named_parameters();
  for (const auto& [name, p] : ours) {
    if (!encodes(name)) continue;
    const std::string& wanted = name;  // a lambda may not capture a structured binding in C++17
    const auto it = std::find_if(other.begin(), other.end(), [&](const nn::NamedTensor& q) { return q.first == wanted; });
    DDPM_CHECK(it != other.end() && it->second.shape() == p.shape() &&
                   it->second.to_double_vector() == p.to_double_vector(),
               "--decoder " << dir << " does not match the run's autoencoder " << source_ << ": its encoder weight "
                            << name << " differs, so it decodes other latents than the run diffuses; fine-tune "
                            << "it from the run's autoencoder (ddpm-autoencoder finetune-temporal --from " << source_
                            << ")");
  }
  DDPM_CHECK(d.model->config().temporal_frames > 0,
             "--decoder " << dir << " has the run's encoder but an image decoder (no temporal_frames in its "
                          << "config.json): pass a ddpm-autoencoder finetune-temporal output");
  freeze(*d.model);
  clip_decoder_ = std::move(d);
  clip_decoder_source_ = dir;
}

int LatentCodec::clip_frames() const {
  return has_clip_decoder() ? clip_decoder_.model->config().temporal_frames : config().temporal_frames;
}

Tensor LatentCodec::encode(const Tensor& x0, Generator& gen) const {
  if (x0.ndim() == 5) return unfold_frames(encode(fold_frames(x0), gen), x0);  // [N, F, h, w, z]
  NoGradGuard no_grad;
  const autoencoder::DiagonalGaussian q = folder_.model->encode(x0.to(DType::f32));
  const Tensor eps = randn(q.mean.shape(), gen, q.mean.device());
  return ddpm::scale(q.sample(eps), this->scale()).detach();  // s * z
}

Tensor LatentCodec::encode_mean(const Tensor& x0) const {
  if (x0.ndim() == 5) return unfold_frames(encode_mean(fold_frames(x0)), x0);
  NoGradGuard no_grad;
  return ddpm::scale(folder_.model->encode(x0.to(DType::f32)).mean, this->scale()).detach();  // s * mean
}

Tensor LatentCodec::decode(const Tensor& z_scaled) const {
  if (z_scaled.ndim() == 5 && clip_frames() > 0) {  // a temporal decoder: whole clips
    NoGradGuard no_grad;
    const autoencoder::Autoencoder& d = has_clip_decoder() ? *clip_decoder_.model : *folder_.model;
    DDPM_CHECK(z_scaled.dim(1) == clip_frames(),
               "the temporal decoder " << (has_clip_decoder() ? clip_decoder_source_ : source_)
                                       << " decodes clips of " << clip_frames() << " frames (temporal_frames); "
                                       << "these clips have " << z_scaled.dim(1));
    return d.decode_clips(ddpm::scale(z_scaled.to(DType::f32), 1.0 / this->scale())).detach();  // [N, F, H, W, C]
  }
  if (z_scaled.ndim() == 5) return unfold_frames(decode(fold_frames(z_scaled)), z_scaled);  // [N, F, H, W, C]
  NoGradGuard no_grad;
  return folder_.model->decode(ddpm::scale(z_scaled.to(DType::f32), 1.0 / this->scale())).detach();
}

nlohmann::json LatentCodec::run_config_json() const {
  return {{"folder", kRunAutoencoderFolder},
          {"posterior", "sample"},
          {"model", autoencoder::autoencoder_config_to_json(config())}};
}

std::string find_run_autoencoder(const std::string& checkpoint) {
  const std::string cfg_path = model_config_path(checkpoint);  // what open_model reads
  if (cfg_path.empty()) return "";
  const fs::path cfg(cfg_path), dir = cfg.parent_path();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(cfg.string()));
  } catch (const nlohmann::json::exception&) {
    return "";  // not ours to judge: open_model names the damaged file
  }
  if (!j.is_object() || !j.contains("model") || !j.contains("autoencoder")) return "";  // a pixel-space model
  const std::string folder = (dir / j.at("autoencoder").value("folder", std::string(kRunAutoencoderFolder))).string();
  DDPM_CHECK_AS(autoencoder::is_autoencoder_folder(folder), IoError,
                cfg.string() << " describes a latent diffusion model, but its autoencoder folder " << folder
                             << " is missing or damaged");
  return folder;
}

void refuse_latent_model(const std::string& checkpoint, const std::string& what) {
  DDPM_CHECK(find_run_autoencoder(checkpoint).empty(),
             what << " does not apply to " << checkpoint
                  << ": it is a latent diffusion model (trained with --autoencoder), which diffuses autoencoder "
                     "latents, not pixels");
}

bool same_autoencoder(const std::string& a, const std::string& b) {
  const fs::path pa(a), pb(b);
  const nlohmann::json ca = nlohmann::json::parse(read_file((pa / autoencoder::kAutoencoderConfig).string()));
  const nlohmann::json cb = nlohmann::json::parse(read_file((pb / autoencoder::kAutoencoderConfig).string()));
  if (ca.value("model", nlohmann::json()) != cb.value("model", nlohmann::json())) return false;
  return read_file((pa / autoencoder::kAutoencoderWeights).string()) ==
         read_file((pb / autoencoder::kAutoencoderWeights).string());
}

}  // namespace ddpm::run
