// models/run/autoguide_run.cpp: see autoguide_run.h.
#include "models/run/autoguide_run.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/nn/module.h"
#include "models/run/sample_run.h"

namespace ddpm::run {

namespace {

// A super-resolution model's guide takes the same condition tensor (autoguide_run.h says which
// settings must agree and why).
void check_super_res_guide(const unet::UNetConfig& a, const unet::UNetConfig& b, const std::string& who,
                           double low_res_noise_level) {
  auto describe = [](const unet::UNetConfig& m) {
    return m.super_res() ? "a super-resolution model (" + std::to_string(m.low_res_size) + "x" +
                               std::to_string(m.low_res_size) + " -> " + std::to_string(m.image_size) + "x" +
                               std::to_string(m.image_size) + ")"
                         : std::string("not a super-resolution model");
  };
  DDPM_CHECK(a.super_res() == b.super_res() && a.low_res_size == b.low_res_size,
             who << " is " << describe(b) << "; the model is " << describe(a)
                 << ": the guide must upsample the same low-res images");
  if (!a.super_res()) return;
  DDPM_CHECK(a.concat_channels == b.concat_channels,
             who << " concatenates " << b.concat_channels << " condition channel(s) to x_t; the model "
                 << a.concat_channels << ": both must take the same condition tensor");
  DDPM_CHECK(a.cond_augmented() == b.cond_augmented(),
             who << " was trained " << (b.cond_augmented() ? "with" : "without")
                 << " conditioning augmentation (--cond-augment); the model "
                 << (a.cond_augmented() ? "with" : "without")
                 << " it: the augmented condition carries a level plane and a level embedding that only an "
                    "augmented model takes");
  DDPM_CHECK(low_res_noise_level <= b.cond_augment,
             "--low-res-noise-level " << low_res_noise_level << " lies outside [0, " << b.cond_augment
                                      << "], the augmentation range " << who
                                      << " was trained on: the guide never saw a condition noised at that level");
}

}  // namespace

void check_autoguide_flags(const SampleOptions& o) {
  if (o.autoguide.empty()) return;
  std::error_code ec;
  const bool same = o.autoguide == o.checkpoint ||
                    std::filesystem::equivalent(o.autoguide, o.checkpoint, ec);  // false (ec set) when absent
  DDPM_CHECK(!same, "--autoguide " << o.autoguide << " is the sampled model itself (--checkpoint " << o.checkpoint
                                   << "): autoguidance needs a weaker model of the same task, e.g. the same run "
                                      "at an earlier checkpoint or a smaller model");
  DDPM_CHECK(o.control.empty(), "--autoguide does not combine with --control: the guide would be a second "
                                "network without the ControlNet's residuals");
}

void check_autoguide_fits(const ModelSource& main, const ModelSource& guide, const std::string& guide_path,
                          double low_res_noise_level) {
  const unet::UNetConfig& a = main.net->config();
  const unet::UNetConfig& b = guide.net->config();
  const std::string who = "--autoguide " + guide_path;
  DDPM_CHECK(!main.text && !guide.text,
             (guide.text ? who : std::string("the sampled model"))
                 << " is text-conditioned (ddpm-train --text-cond): autoguidance with text models is not supported "
                    "yet; guide a text model with --guidance-scale (classifier-free guidance)");
  std::error_code ec;
  DDPM_CHECK(main.weights_path.empty() || guide.weights_path.empty() ||
                 !std::filesystem::equivalent(main.weights_path, guide.weights_path, ec),
             who << " loads the sampled model's own weights (" << guide.weights_path
                 << "): autoguidance needs a weaker model, e.g. an earlier checkpoint of the run");
  DDPM_CHECK(a.image_size == b.image_size && a.in_channels == b.in_channels,
             who << " makes " << b.image_size << "x" << b.image_size << " images with " << b.in_channels
                 << " channel(s); the model makes " << a.image_size << "x" << a.image_size << " with "
                 << a.in_channels);
  check_super_res_guide(a, b, who, low_res_noise_level);
  DDPM_CHECK(a.num_classes == b.num_classes,
             who << " has " << b.num_classes << " classes (0 = unconditional); the model has " << a.num_classes
                 << ": both get the same labels, so the class conditioning must agree");
  DDPM_CHECK(a.learn_sigma == b.learn_sigma,
             who << (b.learn_sigma ? " learns" : " does not learn") << " the variance (learn_sigma); the model "
                 << (a.learn_sigma ? "does" : "does not"));
  const DiffusionSettings& d = main.diffusion;
  const DiffusionSettings& g = guide.diffusion;
  DDPM_CHECK(d.edm.has_value() == g.edm.has_value(),
             who << " was trained with the " << (g.edm ? "EDM" : "DDPM") << " objective; the model with the "
                 << (d.edm ? "EDM" : "DDPM") << " one: their outputs are not the same quantity");
  if (d.edm) {
    DDPM_CHECK(d.edm->sigma_data == g.edm->sigma_data,
               who << " has sigma_data " << g.edm->sigma_data << "; the model " << d.edm->sigma_data
                   << " (EDM preconditioning: the same sigma_data gives the same output scaling)");
    return;
  }
  DDPM_CHECK(d.predict == g.predict,
             who << " predicts " << diffusion::model_mean_type_name(g.predict) << "; the model predicts "
                 << diffusion::model_mean_type_name(d.predict));
  DDPM_CHECK(d.diffusion_steps == g.diffusion_steps && d.noise_schedule == g.noise_schedule &&
                 d.zero_terminal_snr == g.zero_terminal_snr,
             who << " was trained on a " << g.diffusion_steps << "-step "
                 << diffusion::noise_schedule_name(g.noise_schedule)
                 << (g.zero_terminal_snr ? " zero-terminal-SNR" : "") << " schedule; the model on a "
                 << d.diffusion_steps << "-step " << diffusion::noise_schedule_name(d.noise_schedule)
                 << (d.zero_terminal_snr ? " zero-terminal-SNR" : "") << " one");
}

namespace {

// The regular files under `dir` by their path relative to it, sorted.
std::vector<std::string> folder_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(std::filesystem::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

void check_autoguide_autoencoder(const std::string& main_autoencoder, const std::string& guide_autoencoder,
                                 const std::string& guide_path) {
  const std::string who = "--autoguide " + guide_path;
  DDPM_CHECK(main_autoencoder.empty() == guide_autoencoder.empty(),
             who << (guide_autoencoder.empty() ? " diffuses pixels; the model is a latent diffusion model"
                                               : " is a latent diffusion model; the model diffuses pixels")
                 << ": both must denoise the same space");
  if (main_autoencoder.empty()) return;
  const std::vector<std::string> a = folder_files(main_autoencoder), b = folder_files(guide_autoencoder);
  bool same = a == b;
  for (std::size_t i = 0; same && i < a.size(); ++i)
    same = read_file(main_autoencoder + "/" + a[i]) == read_file(guide_autoencoder + "/" + b[i]);
  DDPM_CHECK(same, who << " was trained on the autoencoder in " << guide_autoencoder << ", the model on "
                       << main_autoencoder
                       << ", and they differ: latents of different autoencoders are not the same task");
}

diffusion::DenoiseFn autoguide_denoiser(const ModelSource& guide) {
  const unet::UNet& net = *guide.net;
  return [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };
}

}  // namespace ddpm::run
