// models/run/edit_run.cpp: ddpm-edit's work (see the header for the subcommands and outputs).
#include "models/run/edit_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <ostream>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/rng.h"
#include "models/diffusion/ddim_inversion.h"
#include "models/diffusion/interpolation.h"
#include "models/diffusion/sdedit.h"
#include "models/nn/module.h"
#include "models/run/edit_inputs.h"
#include "models/run/image_sets.h"
#include "models/run/latent_run.h"
#include "models/run/super_res_run.h"
#include "models/run/sample_run.h"
#include "models/run/subcommands.h"

namespace ddpm::run {

namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kComparisonImages = 8;  // images shown in comparison.png

bool is_nonempty_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && !fs::is_empty(p, ec);
}

// "S1,S2" or "A,B" -> the two parts; ValueError unless exactly two non-empty ones.
std::vector<std::string> two_items(const std::string& list, const char* flag) {
  std::vector<std::string> parts;
  std::stringstream ss(list);
  for (std::string p; std::getline(ss, p, ',');) parts.push_back(p);
  DDPM_CHECK(parts.size() == 2 && !parts[0].empty() && !parts[1].empty(),
             flag << " needs exactly two comma-separated values (the two ends), got '" << list << "'");
  return parts;
}

std::uint64_t parse_seed(const std::string& s) {
  std::size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DDPM_CHECK(used == s.size() && !s.empty() && s[0] != '-', "--seeds: '" << s << "' is not a seed (an integer >= 0)");
  return static_cast<std::uint64_t>(v);
}

// The model as a DenoiseFn.
diffusion::DenoiseFn denoiser(const unet::UNet& net) {
  return [&net](const Tensor& x, const std::vector<double>& t, const std::vector<std::int64_t>& y) {
    return net.forward(x, t, y, nn::Context{});
  };
}

// Rows [begin, begin + n) of a host f64 tensor [N, ...] as a new tensor.
Tensor rows(const Tensor& x, std::int64_t begin, std::int64_t n) {
  return diffusion::batch_rows(x, begin, n);
}

// Stacks tensors [n_k, ...] along axis 0 (on the host, in f64).
Tensor stack_rows(const std::vector<Tensor>& parts) {
  std::vector<double> v;
  Shape shape = parts.front().shape();
  shape[0] = 0;
  for (const Tensor& p : parts) {
    const std::vector<double> pv = p.to_double_vector();
    v.insert(v.end(), pv.begin(), pv.end());
    shape[0] += p.dim(0);
  }
  return Tensor::from_vector(v, shape);
}

// comparison.png: groups[r] lists the images (H x W x C uint8 each) of row r, all rows equally long.
void write_comparison(const std::string& path, const std::vector<std::vector<const std::uint8_t*>>& groups, int H,
                      int W, int C) {
  const std::size_t bytes = static_cast<std::size_t>(H) * W * C;
  std::vector<std::uint8_t> tiles;
  for (const auto& row : groups)
    for (const std::uint8_t* p : row) tiles.insert(tiles.end(), p, p + bytes);
  const int ncol = static_cast<int>(groups.front().size());
  const int n = static_cast<int>(groups.size()) * ncol;
  write_png(path, make_grid(tiles.data(), n, H, W, C, ncol));
}

struct Setup {
  diffusion::SamplerConfig sc;
  std::vector<std::int64_t> kept;  // original timesteps of the process
  std::int64_t K = 0;
};

// The sampler config through ddpm-sample's make_sampler_config (respacing from
// --sampling-steps checked against T, classes, guidance, channels) with ddpm-edit's flags.
Setup make_setup(const EditOptions& o, const ModelSource& model, const diffusion::DiffusionSchedule& base) {
  SampleOptions so;
  so.checkpoint = o.checkpoint;
  so.sampler = o.command == "img2img" ? o.sampler : "ddim";
  so.sampling_steps = o.sampling_steps;
  so.class_label = o.class_label;
  so.guidance_scale = o.guidance_scale;
  Setup s;
  s.sc = make_sampler_config(so, model);
  s.kept = diffusion::sampling_process(base, s.sc.respacing).timestep_map;
  s.K = static_cast<std::int64_t>(s.kept.size());
  return s;
}

}  // namespace

void check_edit_options(const EditOptions& o) {
  DDPM_CHECK(o.command == "invert" || o.command == "img2img" || o.command == "interpolate",
             "ddpm-edit: unknown command '" << o.command << "'; the commands are invert, img2img, interpolate");
  DDPM_CHECK(!o.checkpoint.empty(), "--checkpoint is required");
  DDPM_CHECK(o.sampling_steps >= 0, "--sampling-steps must be positive (or 0 for all steps), got " << o.sampling_steps);
  DDPM_CHECK(o.batch_size > 0, "--batch-size must be positive, got " << o.batch_size);
  DDPM_CHECK(o.class_label >= -1, "--class must be a class index >= 0, got " << o.class_label);
  const EditOptions d;
  if (o.command == "img2img") {
    DDPM_CHECK(std::isfinite(o.strength) && o.strength > 0 && o.strength <= 1,
               "--strength must lie in (0, 1] (t0 = strength * T; 1 = start from almost pure noise), got "
                   << o.strength);
    DDPM_CHECK(o.sampler == "ddpm" || o.sampler == "ddim",
               "--sampler must be ddpm or ddim for img2img (SDEdit runs their discrete steps), got " << o.sampler);
    DDPM_CHECK(o.num_samples > 0, "--num-samples must be positive, got " << o.num_samples);
    DDPM_CHECK(std::isfinite(o.guidance_scale) && o.guidance_scale >= 0,
               "--guidance-scale must be >= 0, got " << o.guidance_scale);
  } else {
    DDPM_CHECK(o.guidance_scale == d.guidance_scale, "--guidance-scale applies to img2img only");
  }
  if (o.command == "interpolate") {
    DDPM_CHECK(o.frames >= 2, "--frames must be at least 2 (the two ends), got " << o.frames);
    DDPM_CHECK(o.images.empty() != o.seeds.empty(),
               "interpolate needs exactly one of --images A.png,B.png and --seeds S1,S2 (the two ends)");
    if (!o.seeds.empty())
      for (const std::string& s : two_items(o.seeds, "--seeds")) parse_seed(s);
    else
      two_items(o.images, "--images");
  } else {
    DDPM_CHECK(!o.images.empty(), "--images is required: a PNG, a folder of PNGs or a samples.npz");
  }
  DDPM_CHECK(!o.out.empty(), "--out is required: the folder to write the results to");
  std::error_code ec;
  DDPM_CHECK(!fs::exists(o.out, ec) || fs::is_directory(o.out, ec), "--out " << o.out << " exists and is not a folder");
  DDPM_CHECK(o.overwrite || !is_nonempty_dir(o.out),
             "--out " << o.out << " exists and is not empty; pass --overwrite to replace it");
}

EditResult run_edit(const EditOptions& o, std::ostream* log) {
  check_edit_options(o);
  refuse_latent_model(o.checkpoint, "ddpm-edit " + o.command);  // before loading: a clearer error
  const ModelSource model = open_model(o.checkpoint, o.device, o.use_ema);
  if (log)
    *log << "loaded " << model.kind << " " << o.checkpoint << " (weights " << model.weights_path
         << (model.ema ? ", EMA" : "") << ")\n";
  return run_edit(o, model, log);
}

EditResult run_edit(const EditOptions& o, const ModelSource& model, std::ostream* log) {
  check_edit_options(o);
  refuse_latent_model(o.checkpoint, "ddpm-edit " + o.command);
  refuse_super_res_model(model.net->config(), o.checkpoint, "ddpm-edit " + o.command);
  DDPM_CHECK(!model.diffusion.edm,
             "ddpm-edit " << o.command << " does not apply to " << o.checkpoint
                          << ": it was trained with the EDM objective, which has no discrete DDPM/DDIM process "
                             "to invert or to start SDEdit from (its sampler integrates in sigma)");
  const unet::UNetConfig& cfg = model.net->config();
  DDPM_CHECK(cfg.num_classes == 0 || o.class_label >= 0,
             o.checkpoint << " is class-conditional (" << cfg.num_classes
                          << " classes): pass --class C, the class of the edited images");
  const diffusion::DiffusionSchedule base(diffusion_betas(model.diffusion));
  const Setup setup = make_setup(o, model, base);
  const diffusion::SamplerConfig& sc = setup.sc;
  const diffusion::DenoiseFn fn = denoiser(*model.net);
  const int H = cfg.image_size, W = cfg.image_size, C = cfg.in_channels;
  const std::size_t image_bytes = static_cast<std::size_t>(H) * W * C;
  auto labels_for = [&](std::int64_t n) {
    return cfg.num_classes > 0 ? std::vector<std::int64_t>(static_cast<std::size_t>(n), o.class_label)
                               : std::vector<std::int64_t>{};
  };

  nlohmann::json info = {{"command", o.command},
                         {"checkpoint", o.checkpoint},
                         {"source", model.kind},
                         {"weights", model.weights_path},
                         {"ema", model.ema},
                         {"sampler", o.command == "img2img" ? o.sampler : "ddim"},
                         {"sampling_steps", setup.K},
                         {"respacing", sc.respacing},
                         {"timesteps", setup.kept},
                         {"class", o.class_label},
                         {"seed", o.seed},
                         {"diffusion", diffusion_to_json(model.diffusion)},
                         {"image_shape", {H, W, C}}};
  std::vector<std::uint8_t> pixels;  // the results, uint8 [rows, H, W, C]
  std::int64_t rows_out = 0;
  int nrow = 1;
  std::string grid_name = "grid.png";
  std::vector<std::vector<const std::uint8_t*>> comparison;
  std::vector<std::uint8_t> input_pixels;  // kept alive for comparison.png
  std::vector<float> latents;              // invert: latents.npz
  std::vector<std::int64_t> labels_out;

  if (o.command == "invert") {
    const EditImages in = load_edit_images(o.images, H, W, C);
    const std::int64_t N = in.images.dim(0);
    if (log) *log << "inverting " << N << " image(s) with " << setup.K << " DDIM steps\n";
    std::vector<Tensor> recs;
    for (std::int64_t b = 0; b < N; b += o.batch_size) {
      const std::int64_t n = std::min<std::int64_t>(o.batch_size, N - b);
      const Tensor lat = diffusion::ddim_invert(base, fn, rows(in.images, b, n), labels_for(n), sc, o.device);
      const std::vector<double> lv = lat.to_double_vector();
      latents.insert(latents.end(), lv.begin(), lv.end());
      recs.push_back(diffusion::ddim_decode(base, fn, lat, labels_for(n), sc, o.device));
    }
    const Tensor rec = stack_rows(recs);
    const diffusion::ReconstructionError err = diffusion::reconstruction_error(in.images, rec);
    if (log)
      *log << "reconstruction: MSE " << err.mse << " ([-1, 1] scale), PSNR " << err.psnr << " dB over " << N
           << " image(s), " << setup.K << " steps each way\n";
    info["images"] = in.names;
    info["reconstruction"] = {{"mse", err.mse}, {"psnr", std::isfinite(err.psnr) ? nlohmann::json(err.psnr) : nlohmann::json(nullptr)},
                              {"scale", "[-1, 1]; psnr = 10 log10(4 / mse)"}};
    info["clip_x0"] = false;
    info["network_calls_per_image"] = 2 * setup.K;
    pixels = to_uint8_pixels(rec);
    input_pixels = to_uint8_pixels(in.images);
    rows_out = N;
    nrow = static_cast<int>(std::ceil(std::sqrt(double(N))));
    const std::int64_t m = std::min(N, kComparisonImages);
    comparison.resize(2);
    for (std::int64_t i = 0; i < m; ++i) {
      comparison[0].push_back(input_pixels.data() + i * image_bytes);
      comparison[1].push_back(pixels.data() + i * image_bytes);
    }
  } else if (o.command == "img2img") {
    const EditImages in = load_edit_images(o.images, H, W, C);
    const std::int64_t N = in.images.dim(0), M = o.num_samples;
    const std::int64_t i0 = diffusion::sdedit_start_index(setup.kept, base.num_timesteps(), o.strength);
    if (log)
      *log << "SDEdit of " << N << " image(s), " << M << " result(s) each: strength " << o.strength << " starts at "
           << "step " << i0 + 1 << " of " << setup.K << " (timestep " << setup.kept[static_cast<std::size_t>(i0)]
           << "), " << o.sampler << "\n";
    // Guides image-major: image i repeated M times.
    std::vector<double> gv;
    const std::vector<double> iv = in.images.to_double_vector();
    for (std::int64_t i = 0; i < N; ++i)
      for (std::int64_t j = 0; j < M; ++j)
        gv.insert(gv.end(), iv.begin() + i * image_bytes, iv.begin() + (i + 1) * image_bytes);
    const Tensor guides = Tensor::from_vector(gv, {N * M, H, W, C});
    Generator gen(o.seed);
    for (std::int64_t b = 0; b < N * M; b += o.batch_size) {
      const std::int64_t n = std::min<std::int64_t>(o.batch_size, N * M - b);
      const Tensor x = diffusion::sdedit(base, fn, rows(guides, b, n), o.strength, labels_for(n), sc, gen, o.device);
      const std::vector<std::uint8_t> px = to_uint8_pixels(x);
      pixels.insert(pixels.end(), px.begin(), px.end());
    }
    info["images"] = in.names;
    info["strength"] = o.strength;
    info["t0"] = o.strength * static_cast<double>(base.num_timesteps());
    info["start_index"] = i0;
    info["start_timestep"] = setup.kept[static_cast<std::size_t>(i0)];
    info["network_calls_per_result"] = i0 + 1;
    info["num_samples_per_image"] = M;
    info["eta"] = sc.eta;
    info["guidance_scale"] = o.guidance_scale;
    info["clip_x0"] = diffusion::resolve_clip_x0(sc);
    info["variance"] = sc.kind == diffusion::SamplerConfig::Kind::ddpm
                           ? diffusion::variance_type_name(diffusion::resolve_variance(sc, !sc.respacing.empty()))
                           : "none (DDIM eta 0)";
    rows_out = N * M;
    nrow = static_cast<int>(M);
    labels_out = labels_for(N * M);
    input_pixels = to_uint8_pixels(in.images);
    for (std::int64_t i = 0; i < std::min(N, kComparisonImages); ++i) {
      comparison.push_back({input_pixels.data() + i * image_bytes});
      for (std::int64_t j = 0; j < M; ++j) comparison.back().push_back(pixels.data() + (i * M + j) * image_bytes);
    }
  } else {  // interpolate
    Tensor a, b;
    if (!o.seeds.empty()) {
      const std::vector<std::string> s = two_items(o.seeds, "--seeds");
      Generator ga(parse_seed(s[0])), gb(parse_seed(s[1]));
      a = randn({1, H, W, C}, ga, o.device, sc.dtype);  // x_T ~ N(0, I)
      b = randn({1, H, W, C}, gb, o.device, sc.dtype);
      info["seeds"] = {parse_seed(s[0]), parse_seed(s[1])};
    } else {
      std::vector<Tensor> ends;
      std::vector<std::string> names;
      for (const std::string& path : two_items(o.images, "--images")) {
        EditImages e = load_edit_images(path, H, W, C);
        DDPM_CHECK(e.images.dim(0) == 1,
                   "--images " << path << " holds " << e.images.dim(0) << " images; each end must be one image");
        ends.push_back(e.images);
        names.push_back(path);
      }
      if (log) *log << "inverting the two end images with " << setup.K << " DDIM steps\n";
      const Tensor lat = diffusion::ddim_invert(base, fn, stack_rows(ends), labels_for(2), sc, o.device);
      a = rows(lat, 0, 1);
      b = rows(lat, 1, 1);
      info["images"] = names;
    }
    const std::vector<double> fractions = diffusion::interpolation_fractions(o.frames);
    std::vector<Tensor> frames;
    for (double f : fractions) frames.push_back(diffusion::slerp(a, b, f));
    const Tensor all = stack_rows(frames);
    const std::int64_t F = o.frames;
    if (log)
      *log << "decoding " << F << " slerp frames (angle " << diffusion::slerp_angle(a, b) << " rad between the ends)\n";
    for (std::int64_t s = 0; s < F; s += o.batch_size) {
      const std::int64_t n = std::min<std::int64_t>(o.batch_size, F - s);
      const std::vector<std::uint8_t> px =
          to_uint8_pixels(diffusion::ddim_decode(base, fn, rows(all, s, n), labels_for(n), sc, o.device));
      pixels.insert(pixels.end(), px.begin(), px.end());
    }
    info["frames"] = F;
    info["fractions"] = fractions;
    info["angle"] = diffusion::slerp_angle(a, b);
    info["interpolation"] = "slerp";
    info["clip_x0"] = false;
    rows_out = F;
    nrow = static_cast<int>(F);
    grid_name = "strip.png";
  }

  // Everything goes into a temporary folder, published in one rename.
  std::vector<std::string> files;
  auto fill = [&](const std::string& tmp) {
    const fs::path dir(tmp);
    write_image_set(tmp, pixels, rows_out, H, W, C, nrow, labels_out, files, grid_name);
    if (!comparison.empty()) {
      write_comparison((dir / "comparison.png").string(), comparison, H, W, C);
      files.push_back("comparison.png");
    }
    if (o.command == "invert") {
      std::vector<std::int64_t> timesteps = setup.kept;
      write_npz((dir / "latents.npz").string(),
                {npy_view("latents", {rows_out, H, W, C}, latents), npy_view("timesteps", {setup.K}, timesteps)});
      files.push_back("latents.npz");
    }
    write_file_atomic((dir / "edit_info.json").string(), info.dump(2) + "\n");
    files.push_back("edit_info.json");
  };
  std::error_code ec;
  if (fs::is_directory(o.out, ec) && fs::is_empty(o.out, ec)) fs::remove(o.out, ec);
  publish_directory(o.out, fill, o.overwrite ? IfExists::replace : IfExists::fail);
  if (log) *log << "wrote " << files.size() << " files to " << o.out << "\n";
  return EditResult{o.out, files, info};
}

void add_edit_subcommands(CLI::App& app, EditCommand& c) {
  app.fallthrough();  // --device, --seed, --config also work after the subcommand
  app.require_subcommand(1);
  add_unknown_word_check(app);
  EditOptions& o = c.options;
  auto common = [&o](CLI::App* s) {
    s->add_option("--checkpoint", o.checkpoint,
                  "run folder (latest checkpoint), checkpoint folder, model .safetensors with config.json, or a "
                  "diffusers UNet2DModel folder")
        ->required();
    s->add_flag_callback("--no-ema", [&o] { o.use_ema = false; }, "use the raw weights instead of the EMA weights");
    s->add_option("--sampling-steps", o.sampling_steps,
                  "K respaced steps (DDIM: must divide T; ddpm: any count up to T); 0 = all T")
        ->capture_default_str();
    s->add_option("--batch-size", o.batch_size, "images per network batch")->capture_default_str();
    s->add_option("--class", o.class_label, "class of the edited images (required for class-conditional models)");
    s->add_option("--out", o.out, "output folder")->required();
    s->add_flag("--overwrite", o.overwrite, "replace an existing non-empty --out folder");
  };
  CLI::App* inv = app.add_subcommand(
      "invert", "DDIM inversion: encode images to latents x_T and decode them back (reconstruction error)");
  common(inv);
  inv->add_option("--images", o.images, "a PNG, a folder of PNGs, or a samples.npz (arr_0 uint8 [N,H,W,C])")
      ->required();
  CLI::App* i2i =
      app.add_subcommand("img2img", "SDEdit: noise images to t0 = strength * T and run the reverse process");
  common(i2i);
  i2i->add_option("--images", o.images, "guide images: a PNG, a folder of PNGs, or a samples.npz")->required();
  i2i->add_option("--strength", o.strength, "t0 / T in (0, 1]: small stays near the guide, 1 starts from noise")
      ->capture_default_str();
  i2i->add_option("--sampler", o.sampler, "ddpm (ancestral) or ddim (eta 0)")
      ->check(CLI::IsMember({"ddpm", "ddim"}))
      ->capture_default_str();
  i2i->add_option("--num-samples", o.num_samples, "results per image, each with its own noise")->capture_default_str();
  i2i->add_option("--guidance-scale", o.guidance_scale, "classifier-free guidance s (class-conditional models)")
      ->capture_default_str();
  CLI::App* itp = app.add_subcommand(
      "interpolate", "DDIM latent interpolation: slerp between two latents, each frame decoded with DDIM");
  common(itp);
  itp->add_option("--images", o.images, "A.png,B.png: the two ends, DDIM-inverted");
  itp->add_option("--seeds", o.seeds, "S1,S2: the two ends as N(0, I) noise from these seeds");
  itp->add_option("--frames", o.frames, "frames F >= 2, both ends included")->capture_default_str();
  c.subcommands = {inv, i2i, itp};
}

void edit_command_parsed(EditCommand& c) {
  for (const CLI::App* s : c.subcommands)
    if (s->parsed()) c.options.command = s->get_name();
}

}  // namespace ddpm::run
