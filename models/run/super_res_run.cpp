// models/run/super_res_run.cpp: the low-res inputs of super-resolution runs (super_res_run.h).
#include "models/run/super_res_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <vector>

#include "engine/error.h"
#include "engine/io/png.h"
#include "models/diffusion/blur_augment.h"
#include "models/diffusion/super_res.h"
#include "models/run/image_sets.h"
#include "models/run/sample_run.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

// A sigma for the log line, as the user would type it (0.6, not 0.600000).
std::string format_sigma(double sigma) {
  std::ostringstream s;
  s << sigma;
  return s.str();
}

}  // namespace

Tensor grid_condition(const Dataset& data, int n, const unet::UNetConfig& model, Device device) {
  DDPM_CHECK(model.super_res() && data.n >= 1 && data.height == model.image_size &&
                 data.channels == model.in_channels,
             "grid_condition: " << data.describe() << " does not fit the super-resolution model");
  std::vector<std::uint8_t> px;
  for (int i = 0; i < n; ++i) {
    const std::uint8_t* p = data.image(i % data.n);
    px.insert(px.end(), p, p + data.image_bytes());
  }
  const Tensor x0 = pixels_to_unit(px, n, data.height, data.channels);
  Tensor cond = diffusion::super_res_condition(x0, model.low_res_size);
  if (model.cond_augmented()) cond = diffusion::with_level_plane(cond, 0);  // clean, level 0: no draws
  return cond.to(device);
}

bool check_low_res_flags(const SampleOptions& o, const unet::UNetConfig& model, const std::string& low_res_flag) {
  if (!model.super_res()) {
    DDPM_CHECK(o.low_res.empty(), "--low-res applies to super-resolution models only, and "
                                      << o.checkpoint << " is not one (train one with ddpm-train --super-res LOW)");
    DDPM_CHECK(o.low_res_noise_level == 0, "--low-res-noise-level applies to super-resolution models only, and "
                                               << o.checkpoint << " is not one");
    DDPM_CHECK(o.low_res_blur == 0, "--low-res-blur applies to super-resolution models only, and "
                                        << o.checkpoint << " is not one");
    return false;
  }
  DDPM_CHECK(model.cond_augmented() || o.low_res_noise_level == 0,
             "--low-res-noise-level " << o.low_res_noise_level << " does not apply to " << o.checkpoint
                                      << ": it was trained without conditioning augmentation (ddpm-train "
                                         "--cond-augment MAX), so it was never told a noise level");
  DDPM_CHECK(o.low_res_noise_level >= 0 && o.low_res_noise_level <= model.cond_augment,
             "--low-res-noise-level " << o.low_res_noise_level << " must be in [0, " << model.cond_augment
                                      << "]: " << o.checkpoint
                                      << " was trained with conditioning augmentation up to that fraction of the "
                                         "diffusion steps");
  const int L = model.low_res_size, H = model.image_size;
  DDPM_CHECK(!low_res_flag.empty(), o.checkpoint << " is a super-resolution model (" << L << "x" << L << " -> " << H
                                                 << "x" << H << "): give the low-res images with --low-res "
                                                    "SAMPLES.npz|IMAGE.png, or their base model with --low-res-from "
                                                    "BASE");
  DDPM_CHECK(o.inpaint_image.empty(), "--inpaint does not apply to the super-resolution model " << o.checkpoint);
  DDPM_CHECK(o.classifier.empty(),
             "--classifier does not apply to the super-resolution model "
                 << o.checkpoint << ": the noisy classifier does not see the low-res condition");
  DDPM_CHECK(std::isfinite(o.low_res_blur) && o.low_res_blur >= 0,
             "--low-res-blur must be a blur sigma >= 0 in low-res pixels (0 = off), got " << o.low_res_blur);
  return true;
}

bool load_low_res_for(const SampleOptions& o, const unet::UNetConfig& model, LowResInputs& low,
                      std::int64_t num_timesteps, std::ostream* log) {
  low = LowResInputs{};
  if (!check_low_res_flags(o, model, o.low_res)) return false;
  low.augmented = model.cond_augmented();
  low.noise_level = o.low_res_noise_level;
  low.aug_level = model.cond_augmented()
                      ? diffusion::cond_augment_level(o.low_res_noise_level, num_timesteps, "--low-res-noise-level")
                      : 0;
  const int L = model.low_res_size, C = model.in_channels, H = model.image_size;
  low.path = o.low_res;
  ImageStack st = read_image_stack(o.low_res, "--low-res", L, C, "upsamples");
  low.count = st.count;
  low.size = L;
  low.channels = C;
  low.pixels = std::move(st.pixels);
  low.labels = std::move(st.labels);
  low.blur_sigma = o.low_res_blur;
  // [M, L, L, C] in [-1, 1]; blurred at L x L (where a base model's softness lives, blur_augment.h)
  // and only then upsampled to [M, H, H, C]. Sigma 0 skips the blur: no copy, the same bits.
  Tensor small = pixels_to_unit(low.pixels, low.count, L, C);
  if (low.blur_sigma > 0)
    small = diffusion::gaussian_blur(small, std::vector<double>(static_cast<std::size_t>(low.count), low.blur_sigma));
  low.cond = diffusion::bilinear_upsample(small, H);
  if (log)
    *log << "super-resolution: " << low.count << " low-res image(s) " << L << "x" << L << " from " << o.low_res
         << (low.blur_sigma > 0 ? ", blurred with sigma " + format_sigma(low.blur_sigma) : std::string())
         << ", bilinearly upsampled to " << H << "x" << H
         << (model.cond_augmented() ? ", noised at augmentation level " + std::to_string(low.aug_level) : std::string())
         << "\n";
  return true;
}

LowResDenoisers low_res_denoisers(const LowResInputs& low, const diffusion::DenoiseFn& net,
                                  const diffusion::DenoiseFn& guide, std::int64_t begin, std::int64_t n, Device device,
                                  const std::vector<double>& alphas_cumprod, Generator& gen) {
  const Tensor rows = diffusion::batch_rows(low.cond, begin, n).to(device);  // [n, H, H, C]
  std::vector<diffusion::DenoiseFn> nets{net};
  if (guide) nets.push_back(guide);
  if (low.augmented)  // one draw of the augmentation noise, shared by both networks
    nets = diffusion::concat_augmented_conditions(std::move(nets), rows, low.aug_level, alphas_cumprod, gen);
  else
    for (diffusion::DenoiseFn& f : nets) f = diffusion::concat_condition(std::move(f), rows);
  return {nets.front(), guide ? nets.back() : diffusion::DenoiseFn()};
}

std::int64_t low_res_num_samples(const SampleOptions& o, const LowResInputs& low) {
  if (!o.num_samples_given) return low.count;
  DDPM_CHECK(o.num_samples <= low.count, "--num-samples " << o.num_samples << " exceeds the " << low.count
                                                          << " low-res image(s) of --low-res " << low.path);
  return o.num_samples;
}

bool take_low_res_labels(const SampleOptions& o, const unet::UNetConfig& model, const LowResInputs& low,
                         std::int64_t n, std::vector<std::int64_t>& labels) {
  if (model.num_classes == 0 || o.class_label >= 0 || low.labels.empty()) return false;
  labels.assign(low.labels.begin(), low.labels.begin() + n);
  for (std::int64_t y : labels)
    DDPM_CHECK(y >= 0 && y < model.num_classes, "--low-res " << low.path << ": label " << y << " (arr_1) is outside [0, "
                                                              << model.num_classes << ") of the model's classes");
  return true;
}

std::string write_low_res_png(const std::string& dir, const LowResInputs& low, std::int64_t n, int size) {
  const int L = low.size, C = low.channels, k = size / L;
  std::vector<std::uint8_t> big(static_cast<std::size_t>(n) * size * size * C);
  for (std::int64_t i = 0; i < n; ++i)
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        for (int c = 0; c < C; ++c)
          big[static_cast<std::size_t>(((i * size + y) * size + x) * C + c)] =
              low.pixels[static_cast<std::size_t>(((i * L + y / k) * L + x / k) * C + c)];
  const int nrow = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  write_png((fs::path(dir) / "low_res.png").string(), make_grid(big.data(), static_cast<int>(n), size, size, C, nrow));
  return "low_res.png";
}

nlohmann::json low_res_info(const LowResInputs& low, std::int64_t n, bool labels_from_low_res) {
  nlohmann::json j{{"path", low.path}, {"low_res_size", low.size}, {"images", n}, {"labels_from_low_res", labels_from_low_res}};
  j["blur_sigma"] = low.blur_sigma;
  if (low.augmented) {
    j["noise_level"] = low.noise_level;
    j["aug_level"] = low.aug_level;
  }
  return j;
}

void refuse_super_res_model(const unet::UNetConfig& model, const std::string& checkpoint, const std::string& what) {
  DDPM_CHECK(!model.super_res(), what << " does not apply to " << checkpoint << ": it is a super-resolution model ("
                                      << model.low_res_size << "x" << model.low_res_size << " -> " << model.image_size
                                      << "x" << model.image_size
                                      << "): every network call needs the low-resolution image it upsamples, and "
                                         "only ddpm-sample --low-res supplies one (evaluate its samples with "
                                         "ddpm-eval fid)");
}

}  // namespace ddpm::run
