// models/run/control_sample.cpp: the ControlNet's side of ddpm-sample (--control, see
// control_run.h): opening a control run for sampling, checking that it fits the model and its
// autoencoder, computing the hints, the controlled denoiser and the outputs it adds.
// ddpm-control's training program is control_run.cpp.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <sstream>

#include <zlib.h>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/io/safetensors.h"
#include "engine/ops/concat.h"
#include "models/run/checkpoint.h"
#include "models/run/control_run.h"
#include "models/run/data_spec.h"
#include "engine/io/descriptor.h"
#include "models/run/latent_run.h"
#include "models/run/model_source.h"
#include "models/run/sample_run.h"
#include "models/unet/model_io.h"

namespace fs = std::filesystem;

namespace ddpm::run {

ControlRun open_control_run(const std::string& dir, Device device) {
  ControlRun c;
  c.dir = dir;
  c.config = read_descriptor(dir, {"config.json", kControlNetArchitecture, "a ddpm-control run", "ddpm-control train"});
  c.hint = data::parse_hint(c.config.at("hint").get<std::string>());
  const unet::ControlNetConfig cc = unet::controlnet_config_from_json(c.config.at("controlnet"));
  DDPM_CHECK_AS(cc.conditioning_channels == data::hint_channels(c.hint, cc.base.in_channels), IoError,
                "--control " << dir << ": conditioning_channels " << cc.conditioning_channels << " does not fit the hint "
                             << data::hint_string(c.hint));
  Generator unused(0);
  c.net = std::make_unique<unet::ControlNet>(cc, unused, device);
  std::error_code ec;
  if (c.config.contains("posthoc_ema") && !fs::exists(fs::path(dir) / "checkpoints", ec)) {
    // A post-hoc EMA export (ddpm-export --posthoc-ema): its weights lie beside config.json.
    c.checkpoint = dir;
    const std::string weights = (fs::path(dir) / kEmaFile).string();
    unet::load_state_dict(*c.net, load_safetensors(weights).tensors, weights);
  } else {
    c.checkpoint = resolve_checkpoint(dir, "latest");
    const Checkpoint ck = load_checkpoint(c.checkpoint);
    unet::load_state_dict(*c.net, ck.ema, c.checkpoint + "/" + kEmaFile);
  }
  for (auto& [name, p] : c.net->named_parameters()) p.set_requires_grad(false);
  return c;
}

bool is_control_run_folder(const std::string& dir) {
  const fs::path config = fs::path(dir) / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(config, ec)) return false;
  try {
    const nlohmann::json j = nlohmann::json::parse(read_file(config.string()));
    return j.is_object() && j.contains("architecture") && j["architecture"] == kControlNetArchitecture;
  } catch (const nlohmann::json::exception&) {
    return false;  // not JSON: not a control run (its own reader names the damage)
  }
}

void check_control_fits(const ControlRun& control, const ModelSource& model) {
  const nlohmann::json& b = control.config.at("base");
  std::vector<std::string> diffs = config_differences(b.at("model"), unet::config_to_json(model.net->config()), "model.");
  for (const std::string& d : config_differences(b.at("diffusion"), diffusion_to_json(model.diffusion), "diffusion."))
    diffs.push_back(d);
  if (diffs.empty()) return;
  std::ostringstream os;
  os << "--control " << control.dir << " was trained on a base (" << b.value("run", std::string("?"))
     << ") whose config differs from --checkpoint's (" << diffs.size() << " difference"
     << (diffs.size() == 1 ? "" : "s") << ", control run's base vs checkpoint):";
  for (std::size_t i = 0; i < diffs.size(); ++i) os << (i ? "; " : " ") << diffs[i];  // one line
  DDPM_THROW(ValueError, os.str());
}

nlohmann::json autoencoder_fingerprint(const LatentCodec& ae) {
  // The whole file, header included: tensor names, shapes and the weights' bytes.
  const std::string bytes = read_file((fs::path(ae.source()) / autoencoder::kAutoencoderWeights).string());
  uLong crc = crc32(0L, Z_NULL, 0);
  for (std::size_t pos = 0; pos < bytes.size();) {  // zlib takes uInt lengths
    const std::size_t n = std::min<std::size_t>(bytes.size() - pos, std::size_t{1} << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + pos), static_cast<uInt>(n));
    pos += n;
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc & 0xffffffffUL));
  return {{"folder", fs::absolute(ae.source()).lexically_normal().string()},
          {"model", ae.run_config_json().at("model")},
          {"weights_crc32", hex}};
}

void check_control_autoencoder(const ControlRun& control, const LatentCodec* latent, const std::string& checkpoint) {
  const nlohmann::json& b = control.config.at("base");
  if (!b.contains("autoencoder")) {
    // A pixel-space base, or a latent one from before the record (its hint factor is > 1:
    // load_control_for checks that against the model's).
    DDPM_CHECK(latent == nullptr || control.net->config().hint_downsampling_factor > 1,
               "--control " << control.dir << " was trained on a pixel-space base; --checkpoint " << checkpoint
                            << " is a latent diffusion model (autoencoder " << latent->source() << ")");
    return;
  }
  const nlohmann::json& recorded = b.at("autoencoder");
  const std::string was = recorded.value("folder", std::string("?"));
  DDPM_CHECK(latent != nullptr, "--control " << control.dir << " was trained on a latent diffusion base (autoencoder "
                                             << was << "); --checkpoint " << checkpoint
                                             << " is a pixel-space model");
  const nlohmann::json now = autoencoder_fingerprint(*latent);
  const std::vector<std::string> diffs = config_differences(recorded.at("model"), now.at("model"), "model.");
  const bool same_weights = recorded.at("weights_crc32") == now.at("weights_crc32");
  if (diffs.empty() && same_weights) return;  // the same autoencoder, wherever it lies now
  std::ostringstream os;
  os << "--control " << control.dir << " was trained with the autoencoder " << was << " (weights CRC-32 "
     << recorded.at("weights_crc32").get<std::string>() << "); --checkpoint " << checkpoint
     << " decodes with a different one, " << now.at("folder").get<std::string>() << " (weights CRC-32 "
     << now.at("weights_crc32").get<std::string>() << ")";
  for (std::size_t i = 0; i < diffs.size(); ++i) os << (i ? "; " : ": config ") << diffs[i];  // one line
  os << "; the ControlNet's residuals were learned on the recorded autoencoder's latents";
  DDPM_THROW(ValueError, os.str());
}

void check_control_flags(const SampleOptions& o) {
  const bool inputs = !o.control_image.empty() || !o.control_from.empty();
  DDPM_CHECK(!inputs || !o.control.empty(), "--control-image and --control-from need --control CTRL (a ddpm-control run)");
  DDPM_CHECK(o.control.empty() || (o.control_image.empty() != o.control_from.empty()),
             "--control " << o.control << " needs exactly one of --control-image PNG and --control-from IMAGES");
  DDPM_CHECK(std::isfinite(o.control_scale), "--control-scale must be a finite number, got " << o.control_scale);
  DDPM_CHECK(!o.control.empty() || o.control_scale == SampleOptions{}.control_scale,
             "--control-scale " << o.control_scale << " needs --control CTRL");
}

bool load_control_for(const SampleOptions& o, const ModelSource& model, ControlInputs& c, std::ostream* log,
                      const LatentCodec* latent) {
  check_control_flags(o);
  if (o.control.empty()) return false;
  c.run = open_control_run(o.control, o.device);
  check_control_fits(c.run, model);
  check_control_autoencoder(c.run, latent, o.checkpoint);
  const unet::UNetConfig& mc = model.net->config();
  // The hint is made from pixels: a latent model's images are f times its latents' size.
  const int f = latent ? latent->factor() : 1;
  const int trained_f = c.run.net->config().hint_downsampling_factor;
  DDPM_CHECK(trained_f == f, "--control " << o.control << " was trained for a base whose hint is " << trained_f
                                          << " times the UNet's size; --checkpoint " << o.checkpoint << " is "
                                          << (latent ? "a latent model with factor " + std::to_string(f)
                                                     : std::string("a pixel-space model (factor 1)")));
  const int H = mc.image_size * f, C = latent ? latent->config().in_channels : mc.in_channels;
  std::vector<std::uint8_t> pixels;
  std::int64_t M = 0;
  if (!o.control_image.empty()) {
    c.source = o.control_image;
    const Image img = read_png(o.control_image);  // IoError when missing or damaged
    DDPM_CHECK(img.height == H && img.width == H && img.channels == C,
               "--control-image " << o.control_image << " is " << img.height << "x" << img.width << " with "
                                  << img.channels << " channel(s); the model makes " << H << "x" << H << " images with "
                                  << C << " channel(s)");
    pixels = img.pixels;
    M = 1;
  } else if (fs::path(o.control_from).extension() == ".npz") {
    c.source = o.control_from;
    const NpzFile npz = load_npz(o.control_from);
    const NpyArray& arr = npz.get("arr_0");
    DDPM_CHECK(arr.dtype == NpyDType::u8 && arr.shape.size() == 4 && arr.shape[0] >= 1 && arr.shape[1] == H &&
                   arr.shape[2] == H && arr.shape[3] == C,
               "--control-from " << o.control_from << ": arr_0 is " << arr.describe() << "; the model makes uint8 [N, "
                                 << H << ", " << H << ", " << C << "] images");
    pixels = arr.bytes;
    M = arr.shape[0];
    if (npz.contains("arr_1")) {  // the images' labels, as ddpm-sample writes them
      const NpyArray& y = npz.get("arr_1");
      DDPM_CHECK(y.shape == std::vector<std::int64_t>{M}, "--control-from " << o.control_from << ": arr_1 is "
                                                                            << y.describe() << "; it must hold one "
                                                                            << "label per image of arr_0, [" << M << "]");
      c.labels = y.as_int64();  // IoError for a float array
    }
  } else {
    c.source = o.control_from;
    const nlohmann::json& d = c.run.config.at("data");
    DataOptions dopt;
    dopt.pad_to_32 = d.value("pad_to_32", false);
    dopt.toy_count = d.value("toy_count", std::int64_t{1024});
    dopt.seed = c.run.config.at("train").value("seed", std::uint64_t{0});
    Dataset ds = load_image_data(parse_data_spec(o.control_from), dopt, "--control-from");
    DDPM_CHECK(ds.height == H && ds.width == H && ds.channels == C,
               "--control-from " << o.control_from << " has " << ds.height << "x" << ds.width << "x" << ds.channels
                                 << " images; the model makes " << H << "x" << H << "x" << C);
    ds = take(ds, std::min<std::int64_t>(ds.n, o.num_samples));
    pixels = ds.images;
    M = ds.n;
    if (ds.has_labels()) c.labels = ds.labels;
  }
  std::vector<float> unit(pixels.size());
  for (std::size_t i = 0; i < pixels.size(); ++i) unit[i] = static_cast<float>(pixels[i] / 127.5 - 1.0);  // as training
  c.hints = data::compute_hint(c.run.hint, Tensor::from_vector(unit, {M, H, H, C}));
  c.scale = o.control_scale;
  if (log)
    *log << "ControlNet " << o.control << " (" << c.run.checkpoint << ", EMA): hint " << data::hint_string(c.run.hint)
         << " of " << M << " image(s) from " << c.source << ", scale " << c.scale << "\n";
  return true;
}

std::int64_t control_num_samples(const SampleOptions& o, const ControlInputs& c) {
  return o.control_from.empty() || o.num_samples_given ? o.num_samples : c.hints.dim(0);
}

bool take_control_labels(const SampleOptions& o, const unet::UNetConfig& model, ControlInputs& c, std::int64_t n,
                         std::vector<std::int64_t>& labels) {
  if (model.num_classes == 0 || o.class_label >= 0 || c.labels.empty()) return false;
  const std::size_t M = c.labels.size();
  labels.resize(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < labels.size(); ++i) {
    labels[i] = c.labels[i % M];  // the label of the image whose hint sample i gets
    DDPM_CHECK(labels[i] >= 0 && labels[i] < model.num_classes,
               "--control-from " << c.source << ": image " << i % M << " has label " << labels[i]
                                 << ", outside [0, " << model.num_classes << ") of the model's classes");
  }
  c.labels_used = true;
  return true;
}

diffusion::DenoiseFn control_denoiser(const unet::UNet& base, const ControlInputs& c, std::int64_t begin,
                                      std::int64_t n) {
  const std::int64_t M = c.hints.dim(0);
  std::vector<Tensor> rows;
  for (std::int64_t i = begin; i < begin + n; ++i) rows.push_back(slice(c.hints, 0, i % M, 1));
  const Tensor hint = concat(rows, 0).to(base.device());  // [n, H, W, Ch]
  const unet::ControlNet* control = c.run.net.get();
  const double scale = c.scale;
  return [&base, control, hint, scale](const Tensor& x, const std::vector<double>& t,
                                       const std::vector<std::int64_t>& y) {
    Tensor h = hint;
    if (x.dim(0) > h.dim(0)) {  // classifier-free guidance's doubled batch [x; x]
      DDPM_CHECK(x.dim(0) % h.dim(0) == 0, "ControlNet: a batch of " << x.dim(0) << " for " << h.dim(0) << " hints");
      h = concat(std::vector<Tensor>(static_cast<std::size_t>(x.dim(0) / h.dim(0)), h), 0);
    }
    return unet::controlled_forward(base, *control, x, t, y, h.dtype() == x.dtype() ? h : h.to(x.dtype()),
                                    nn::Context{}, scale);
  };
}

nlohmann::json write_control_outputs(const std::string& dir, const ControlInputs& c, std::int64_t n,
                                     std::vector<std::string>& files) {
  const std::int64_t M = c.hints.dim(0), shown = std::min(n, M);
  const int H = static_cast<int>(c.hints.dim(1)), Ch = static_cast<int>(c.hints.dim(3));
  const std::vector<std::uint8_t> px = to_uint8_pixels(slice(c.hints, 0, 0, shown));
  if (Ch == 1 || Ch == 3) {
    const int nrow = static_cast<int>(std::ceil(std::sqrt(double(shown))));
    write_png((fs::path(dir) / "control.png").string(), make_grid(px.data(), static_cast<int>(shown), H, H, Ch, nrow));
    files.push_back("control.png");
  }
  return {{"run", c.run.dir},       {"checkpoint", c.run.checkpoint}, {"hint", data::hint_string(c.run.hint)},
          {"scale", c.scale},       {"source", c.source},             {"images", M},
          {"labels_from_images", c.labels_used}};
}

}  // namespace ddpm::run
