// models/run/latent_run.cpp: see latent_run.h.
#include "models/run/latent_run.h"

#include <filesystem>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/ops/elementwise.h"
#include "models/run/model_source.h"

namespace ddpm::run {

namespace fs = std::filesystem;

LatentCodec::LatentCodec(const std::string& dir, Device device)
    : folder_(autoencoder::load_autoencoder(dir, device)), source_(dir) {
  for (auto& [name, p] : folder_.model->named_parameters()) {
    Tensor frozen = p;
    frozen.set_requires_grad(false);
  }
}

namespace {

// Clips [N, F, H, W, C] as frames [N F, H, W, C], and back with the new per-frame shape.
Tensor fold_frames(const Tensor& x) {
  return x.ndim() == 5 ? x.reshape({x.dim(0) * x.dim(1), x.dim(2), x.dim(3), x.dim(4)}) : x;
}
Tensor unfold_frames(const Tensor& y, const Tensor& like) {
  return like.ndim() == 5 ? y.reshape({like.dim(0), like.dim(1), y.dim(1), y.dim(2), y.dim(3)}) : y;
}

}  // namespace

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
