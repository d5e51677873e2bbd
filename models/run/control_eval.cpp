// models/run/control_eval.cpp: see control_eval.h.
#include "models/run/control_eval.h"

#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <ostream>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "models/diffusion/super_res.h"
#include "models/eval/eval_run.h"
#include "models/run/control_run.h"
#include "models/run/sample_run.h"

namespace fs = std::filesystem;

namespace ddpm::run {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A private scratch folder for the two sample sets and the hint source; removed on every
// exit path, so an evaluation leaves nothing behind but --out.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "ddpm-control-eval-XXXXXX").string();
    DDPM_CHECK_AS(mkdtemp(pattern.data()) != nullptr, IoError,
                  "ddpm-control eval: cannot create a scratch folder " << pattern << " in the temporary directory");
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

// uint8 [M, H, W, C] -> [-1, 1] f32 (as the training data and load_control_for scale it).
Tensor unit_images(const std::vector<std::uint8_t>& px, std::int64_t M, std::int64_t H, std::int64_t W,
                   std::int64_t C) {
  std::vector<float> v(px.size());
  for (std::size_t i = 0; i < px.size(); ++i) v[i] = static_cast<float>(px[i] / 127.5 - 1.0);
  return Tensor::from_vector(v, {M, H, W, C});
}

nlohmann::json maybe(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

nlohmann::json HintAgreement::to_json() const {
  if (std::isnan(mse)) return {{"edge_mad", maybe(mad)}, {"edge_f1", maybe(f1)}, {"edge_iou", maybe(iou)}};
  return {{"lowres_mse", maybe(mse)}};
}

HintAgreement edge_map_agreement(const std::vector<double>& a, const std::vector<double>& b, double threshold) {
  DDPM_CHECK(a.size() == b.size() && !a.empty(),
             "edge_map_agreement: the edge maps have " << a.size() << " and " << b.size() << " pixels");
  double abs_sum = 0;
  std::int64_t tp = 0, fp = 0, fn = 0;
  for (std::size_t p = 0; p < a.size(); ++p) {
    abs_sum += std::abs(a[p] - b[p]);
    const bool pred = (a[p] + 1.0) / 2.0 >= threshold, ref = (b[p] + 1.0) / 2.0 >= threshold;
    tp += pred && ref;
    fp += pred && !ref;
    fn += !pred && ref;
  }
  HintAgreement r;
  r.mad = abs_sum / static_cast<double>(a.size());
  const std::int64_t wrong = fp + fn;
  r.f1 = tp + wrong == 0 ? 1.0 : 2.0 * tp / (2.0 * tp + wrong);  // neither map has an edge: agreement
  r.iou = tp + wrong == 0 ? 1.0 : static_cast<double>(tp) / (tp + wrong);
  r.mse = kNaN;
  return r;
}

HintAgreement score_hint_agreement(const data::HintSpec& h, const Tensor& a, const Tensor& b, double edge_threshold) {
  DDPM_CHECK(a.defined() && b.defined() && a.ndim() == 4 && a.shape() == b.shape() && a.dim(0) >= 1,
             "score_hint_agreement: the samples " << (a.defined() ? a.describe() : "(none)") << " and the data "
                                                  << (b.defined() ? b.describe() : "(none)")
                                                  << " must be two [M, H, W, C] batches of one shape");
  const std::int64_t M = a.dim(0);
  HintAgreement mean;
  if (h.name == "lowres") {
    // The K x K images themselves, not their bilinear upsampling (which smooths the error).
    const std::vector<double> la = diffusion::area_downsample(a.to(DType::f64), h.arg).to_double_vector();
    const std::vector<double> lb = diffusion::area_downsample(b.to(DType::f64), h.arg).to_double_vector();
    double se = 0;
    for (std::size_t i = 0; i < la.size(); ++i) se += (la[i] - lb[i]) * (la[i] - lb[i]);
    mean.mse = se / static_cast<double>(la.size());  // equal counts per image: the mean of per-image MSEs
    mean.mad = mean.f1 = mean.iou = kNaN;
    return mean;
  }
  DDPM_CHECK(h.name == "edges", "score_hint_agreement: no distance for the hint '" << data::hint_string(h) << "'");
  const std::vector<double> ea = data::compute_hint(h, a).to_double_vector();  // [M, H, W, 1]
  const std::vector<double> eb = data::compute_hint(h, b).to_double_vector();
  const std::size_t P = ea.size() / static_cast<std::size_t>(M);
  for (std::int64_t i = 0; i < M; ++i) {
    const auto from = static_cast<std::ptrdiff_t>(i * P), to = static_cast<std::ptrdiff_t>((i + 1) * P);
    const HintAgreement r = edge_map_agreement({ea.begin() + from, ea.begin() + to}, {eb.begin() + from, eb.begin() + to},
                                               edge_threshold);
    mean.mad += r.mad / M;
    mean.f1 += r.f1 / M;
    mean.iou += r.iou / M;
  }
  mean.mse = kNaN;
  return mean;
}

void check_control_eval_args(const ControlEvalArgs& a) {
  DDPM_CHECK(!a.control.empty(), "--control is required: the ddpm-control run to evaluate");
  DDPM_CHECK(a.split == "train" || a.split == "test", "--split must be train or test, got " << a.split);
  DDPM_CHECK(a.limit >= 2, "--limit must be >= 2 (the unrelated-pairs line pairs image i with image i + 1), got "
                               << a.limit);
  DDPM_CHECK(a.batch_size >= 1, "--batch-size must be >= 1, got " << a.batch_size);
  DDPM_CHECK(std::isfinite(a.scale), "--control-scale must be a finite number, got " << a.scale);
  DDPM_CHECK(std::isfinite(a.edge_threshold) && a.edge_threshold > 0 && a.edge_threshold <= 1,
             "--edge-threshold must lie in (0, 1] (a fraction of a full black-to-white step), got " << a.edge_threshold);
  std::error_code ec;
  DDPM_CHECK(a.out.empty() || a.overwrite || !fs::exists(a.out, ec) || (fs::is_directory(a.out, ec) && fs::is_empty(a.out, ec)),
             "--out " << a.out << " exists and is not empty; pass --overwrite to replace it");
}

ControlEvalReport run_control_eval(const ControlEvalArgs& a, std::ostream& out) {
  check_control_eval_args(a);
  const ControlRun control = open_control_run(a.control, Device::cpu());  // IoError when not a control run
  const nlohmann::json& cfg = control.config;
  const std::string checkpoint =
      a.checkpoint.empty() ? cfg.at("base").at("run").get<std::string>() : a.checkpoint;
  const std::string data_spec = a.data.empty() ? cfg.at("data").at("data").get<std::string>() : a.data;
  Dataset ds = eval::load_eval_dataset(data_spec, a.split);
  if (a.limit < ds.n) ds = take(ds, a.limit);
  if (cfg.at("data").value("pad_to_32", false) && ds.height < 32 && ds.height == ds.width) ds = pad_to(ds, 32);
  DDPM_CHECK(ds.n >= 2, "--data " << data_spec << " (" << a.split << ") has " << ds.n
                                  << " image(s); the evaluation needs at least 2");
  const std::int64_t M = ds.n, H = ds.height, W = ds.width, C = ds.channels;
  const unet::ControlNetConfig& cc = control.net->config();
  const std::int64_t expected = static_cast<std::int64_t>(cc.base.image_size) * cc.hint_downsampling_factor;
  DDPM_CHECK(H == expected && W == expected,
             "--data " << data_spec << " has " << H << "x" << W << " images; the control run " << a.control
                       << " was trained on " << expected << "x" << expected << " images");

  ControlEvalReport r;
  std::string sampler;
  std::int64_t steps = 0;
  r.hint = control.hint;
  r.images = M;
  r.height = H;
  r.width = W;
  r.channels = C;
  r.data_pixels = ds.images;
  {
    ScratchDir scratch;
    const std::string images = scratch / "images.npz";
    std::vector<NpyView> arrays{NpyView{"arr_0", NpyDType::u8, {M, H, W, C}, ds.images.data(), ds.images.size()}};
    // The images' labels: a class-conditional base samples image i's class for hint i.
    if (ds.has_labels()) arrays.push_back(npy_view("arr_1", {M}, ds.labels));
    write_npz(images, arrays);
    SampleOptions so;
    so.checkpoint = checkpoint;
    so.use_ema = a.use_ema;
    so.num_samples = static_cast<int>(M);
    so.num_samples_given = true;
    so.batch_size = static_cast<int>(a.batch_size);
    so.sampler = a.sampler.empty() ? "ddim" : a.sampler;
    so.sampler_defaulted = a.sampler.empty();  // an EDM base then gets heun (edm_options.h)
    so.sampling_steps = a.sampling_steps;
    so.seed = a.seed;
    so.device = a.device;
    so.control = a.control;
    so.control_from = images;
    so.control_scale = a.scale;
    so.out = scratch / "controlled";
    const SampleResult controlled = run_sample(so);  // the library's sampling path (sample_run.h)
    r.controlled_pixels = controlled.pixels;
    r.labels = controlled.labels;  // what the network was given (the baseline gets the same)
    // The sampler and step count as run_sample resolved them (heun for an EDM base, its
    // default level count for 0 steps), for the report.
    const nlohmann::json info = nlohmann::json::parse(read_file(scratch / "controlled/sample_info.json"));
    sampler = info.at("sampler").get<std::string>();
    steps = info.at("sampling_steps").get<std::int64_t>();
    r.labels_from_images = info.at("control").value("labels_from_images", false);
    so.control_scale = 0.0;                        // the base alone, same seed: same x_T and noise
    so.out = scratch / "baseline";
    r.baseline_pixels = run_sample(so).pixels;
  }
  const Tensor x = unit_images(r.data_pixels, M, H, W, C);
  r.controlled = score_hint_agreement(r.hint, unit_images(r.controlled_pixels, M, H, W, C), x, a.edge_threshold);
  r.baseline = score_hint_agreement(r.hint, unit_images(r.baseline_pixels, M, H, W, C), x, a.edge_threshold);
  // Unrelated pairs: image (i + 1) mod M against image i's hint.
  std::vector<std::uint8_t> rolled(r.data_pixels.begin() + H * W * C, r.data_pixels.end());
  rolled.insert(rolled.end(), r.data_pixels.begin(), r.data_pixels.begin() + H * W * C);
  r.unrelated = score_hint_agreement(r.hint, unit_images(rolled, M, H, W, C), x, a.edge_threshold);

  const bool edges = r.hint.name == "edges";
  r.json = {{"control", a.control},
            {"checkpoint", checkpoint},
            {"hint", data::hint_string(r.hint)},
            {"data", data_spec},
            {"split", a.split},
            {"images", M},
            {"sampler", sampler},
            {"sampling_steps", steps},
            {"seed", a.seed},
            {"ema", a.use_ema},
            {"control_scale", a.scale},
            {"labels", r.labels.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.labels)},
            {"labels_from", r.labels.empty() ? nlohmann::json(nullptr)
                                             : nlohmann::json(r.labels_from_images ? "images" : "balanced")},
            {"edge_threshold", edges ? nlohmann::json(a.edge_threshold) : nlohmann::json(nullptr)},
            {"controlled", r.controlled.to_json()},
            {"baseline", r.baseline.to_json()},
            {"unrelated", r.unrelated.to_json()}};
  if (a.json) {
    out << r.json.dump() << "\n";
  } else {
    out << "ddpm-control eval: " << M << " images of " << data_spec << " (" << a.split << "), hint "
        << data::hint_string(r.hint) << ", sampler " << sampler << ", " << steps << " steps, seed " << a.seed
        << (a.use_ema ? ", EMA" : "")
        << (r.labels.empty()           ? ""
            : r.labels_from_images     ? ", each sample given its image's label"
                                       : ", balanced labels (the data has none)")
        << "\n";
    std::ostringstream head;
    head << std::left << std::setw(28) << "";
    if (edges)
      head << std::right << std::setw(10) << "edge MAD" << std::setw(10) << "edge F1" << std::setw(10) << "edge IoU";
    else
      head << std::right << std::setw(12) << "lowres MSE";
    out << head.str() << "\n";
    auto row = [&](const std::string& name, const HintAgreement& s) {
      std::ostringstream os;
      os << std::left << std::setw(28) << name << std::right << std::fixed << std::setprecision(4);
      if (edges)
        os << std::setw(10) << s.mad << std::setw(10) << s.f1 << std::setw(10) << s.iou;
      else
        os << std::setw(12) << s.mse;
      out << os.str() << "\n";
    };
    std::ostringstream scale_name;
    scale_name << "controlled (scale " << a.scale << ")";
    row(scale_name.str(), r.controlled);
    row("baseline (scale 0)", r.baseline);
    row("unrelated data pairs", r.unrelated);
    if (edges)
      out << "edge MAD: lower is better; F1 / IoU (an edge where min(|Sobel| / 4, 1) >= " << a.edge_threshold
          << "): higher is better\n";
    else
      out << "lowres MSE of the K x K images in [-1, 1] units: lower is better\n";
  }

  if (!a.out.empty()) {
    // eval.png: one row per image, hint | controlled | baseline, in the image's channels.
    const std::vector<std::uint8_t> hint_px = to_uint8_pixels(data::compute_hint(r.hint, x));
    const std::int64_t Ch = data::hint_channels(r.hint, static_cast<int>(C));
    const std::size_t image_bytes = static_cast<std::size_t>(H * W * C);
    std::vector<std::uint8_t> tiles;
    tiles.reserve(3 * M * image_bytes);
    for (std::int64_t i = 0; i < M; ++i) {
      for (std::int64_t p = 0; p < H * W; ++p)
        for (std::int64_t c = 0; c < C; ++c) tiles.push_back(hint_px[(i * H * W + p) * Ch + (Ch == C ? c : 0)]);
      for (const auto* set : {&r.controlled_pixels, &r.baseline_pixels})
        tiles.insert(tiles.end(), set->begin() + i * image_bytes, set->begin() + (i + 1) * image_bytes);
    }
    const Image grid = make_grid(tiles.data(), static_cast<int>(3 * M), static_cast<int>(H), static_cast<int>(W),
                                 static_cast<int>(C), 3);
    const std::string text = r.json.dump(2) + "\n";
    publish_directory(
        a.out,
        [&](const std::string& tmp) {
          write_png((fs::path(tmp) / "eval.png").string(), grid);
          write_file_atomic((fs::path(tmp) / "eval.json").string(), text);
        },
        a.overwrite ? IfExists::replace : IfExists::fail);
    if (!a.json) out << "wrote " << a.out << "/eval.png and eval.json\n";
  }
  return r;
}

CLI::App* add_control_eval_subcommand(CLI::App& app, ControlEvalArgs& a) {
  CLI::App* ev = app.add_subcommand(
      "eval", "how well samples follow their hint: hint(sample) vs hint(image) for base + ControlNet, the base alone "
              "(scale 0) and unrelated image pairs");
  ev->add_option("--control", a.control, "the ddpm-control run to evaluate")->required();
  ev->add_option("--checkpoint", a.checkpoint, "the base model (default: the run the control run was trained on)");
  ev->add_option("--data", a.data, "fashion-mnist[:DIR] | cifar10:DIR | toy | idx:IMAGES[,LABELS] | folder:DIR "
                                   "(default: the control run's data)");
  ev->add_option("--split", a.split, "train | test")->check(CLI::IsMember({"train", "test"}))->capture_default_str();
  ev->add_option("--limit", a.limit, "M: the first M images of the split, one sample each (>= 2)")
      ->capture_default_str();
  ev->add_option("--batch-size", a.batch_size, "samples per batch")->capture_default_str();
  ev->add_option("--sampler", a.sampler, "as ddpm-sample's (default: ddim, heun for an EDM base)");
  ev->add_option("--sampling-steps", a.sampling_steps, "as ddpm-sample's (0 = all training steps)")
      ->capture_default_str();
  ev->add_option("--control-scale", a.scale, "the ControlNet's residual scale of the controlled samples")
      ->capture_default_str();
  ev->add_option("--edge-threshold", a.edge_threshold,
                 "edges: a pixel is an edge for F1 / IoU when min(|Sobel| / 4, 1) >= this")
      ->capture_default_str();
  ev->add_flag_callback("--no-ema", [&a] { a.use_ema = false; }, "the base's raw weights instead of its EMA");
  ev->add_flag("--json", a.json, "print one JSON object instead of the table");
  ev->add_option("--out", a.out, "also write OUT/eval.png (hint | controlled | baseline per image) and eval.json");
  ev->add_flag("--overwrite", a.overwrite, "replace an existing non-empty --out");
  return ev;
}

}  // namespace ddpm::run
