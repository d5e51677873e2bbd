// models/run/edit_run.cpp: ddpm-edit's work (see the header for the subcommands and outputs).
#include "models/run/edit_run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <ostream>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/npz.h"
#include "engine/io/png.h"
#include "engine/rng.h"
#include "models/diffusion/ddim_inversion.h"
#include "models/diffusion/interpolation.h"
#include "models/run/edit_inputs.h"
#include "models/run/edit_process.h"
#include "models/run/image_sets.h"
#include "models/run/latent_run.h"
#include "models/run/prompt_to_prompt_run.h"
#include "models/run/super_res_run.h"
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

}  // namespace

void check_edit_options(const EditOptions& o) {
  DDPM_CHECK(o.command == "invert" || o.command == "img2img" || o.command == "interpolate" ||
                 o.command == "prompt2prompt",
             "ddpm-edit: unknown command '" << o.command
                                             << "'; the commands are invert, img2img, interpolate, prompt2prompt");
  DDPM_CHECK(!o.checkpoint.empty(), "--checkpoint is required");
  DDPM_CHECK(o.sampling_steps >= 0, "--sampling-steps must be positive (or 0 for all steps), got " << o.sampling_steps);
  DDPM_CHECK(o.batch_size > 0, "--batch-size must be positive, got " << o.batch_size);
  DDPM_CHECK(o.class_label >= -1, "--class must be a class index >= 0, got " << o.class_label);
  const EditOptions d;
  const bool guided = o.command == "img2img" || o.command == "prompt2prompt";  // --guidance-scale applies
  if (guided) {
    DDPM_CHECK(std::isfinite(o.guidance_scale) && o.guidance_scale >= 0,
               "--guidance-scale must be >= 0, got " << o.guidance_scale);
    DDPM_CHECK(o.negative_prompt.empty() || o.guidance_scale != 1.0,
               "--negative-prompt takes effect through classifier-free guidance: give --guidance-scale != 1");
  }
  if (o.command == "prompt2prompt") {
    check_prompt_to_prompt_options(o);
  } else if (o.command == "img2img") {
    DDPM_CHECK(std::isfinite(o.strength) && o.strength > 0 && o.strength <= 1,
               "--strength must lie in (0, 1] (t0 = strength * T; 1 = start from almost pure noise), got "
                   << o.strength);
    DDPM_CHECK(o.sampler == "auto" || o.sampler == "ddpm" || o.sampler == "ddim" || o.sampler == "heun" ||
                   o.sampler == "euler",
               "--sampler must be auto, ddpm or ddim (DDPM runs) or heun or euler (EDM runs) for img2img, got "
                   << o.sampler);
    DDPM_CHECK(o.num_samples > 0, "--num-samples must be positive, got " << o.num_samples);
  } else {
    DDPM_CHECK(o.guidance_scale == d.guidance_scale, "--guidance-scale applies to img2img only");
    DDPM_CHECK(o.negative_prompt.empty(), "--negative-prompt applies to img2img only (with --guidance-scale)");
    DDPM_CHECK(o.prompts.size() <= 1,
               o.command << " takes one --prompt, the caption of the images under which they are "
                         << (o.command == "invert" ? "inverted and decoded" : "inverted and the frames decoded")
                         << "; got " << o.prompts.size());
  }
  if (o.command == "interpolate") {
    DDPM_CHECK(o.frames >= 2, "--frames must be at least 2 (the two ends), got " << o.frames);
    DDPM_CHECK(o.images.empty() != o.seeds.empty(),
               "interpolate needs exactly one of --images A.png,B.png and --seeds S1,S2 (the two ends)");
    if (!o.seeds.empty())
      for (const std::string& s : two_items(o.seeds, "--seeds")) parse_seed(s);
    else
      two_items(o.images, "--images");
  } else if (o.command != "prompt2prompt") {
    DDPM_CHECK(!o.images.empty(), "--images is required: a PNG, a folder of PNGs or a samples.npz");
  }
  DDPM_CHECK(!o.out.empty(), "--out is required: the folder to write the results to");
  std::error_code ec;
  DDPM_CHECK(!fs::exists(o.out, ec) || fs::is_directory(o.out, ec), "--out " << o.out << " exists and is not a folder");
  DDPM_CHECK(o.overwrite || !is_nonempty_dir(o.out),
             "--out " << o.out << " exists and is not empty; pass --overwrite to replace it");
}

void check_edit_prompts(const EditOptions& o, const ModelSource& model) {
  DDPM_CHECK(o.command != "prompt2prompt" || model.text,
             "prompt2prompt edits through the cross-attention to a prompt: "
                 << o.checkpoint << " is not text-conditioned (ddpm-train --text-cond)");
  if (!model.text) {
    DDPM_CHECK(o.prompts.empty() && o.negative_prompt.empty(),
               "--prompt and --negative-prompt need a text-conditioned model (ddpm-train --text-cond); "
                   << o.checkpoint << " is not one");
    return;
  }
  DDPM_CHECK(!o.prompts.empty(),
             o.checkpoint << " is text-conditioned: give --prompt TEXT, "
                          << (o.command == "img2img" ? "what the edited images should show (repeat it for several)"
                                                     : "the caption of the images"));
  DDPM_CHECK(o.class_label < 0, "--class does not apply to " << o.checkpoint
                                                             << ", a text-conditioned model: name the class in --prompt");
  DDPM_CHECK(o.command != "img2img" || static_cast<int>(o.prompts.size()) <= o.num_samples,
             "--prompt is given " << o.prompts.size() << " times and --num-samples is " << o.num_samples
                                  << ": result j of every image gets prompt j mod " << o.prompts.size()
                                  << ", so give --num-samples " << o.prompts.size() << " or more");
}

EditResult run_edit(const EditOptions& o, std::ostream* log) {
  check_edit_options(o);
  const ModelSource model = open_model(o.checkpoint, o.device, o.use_ema);
  refuse_vdm_or_ict_model(model, o.checkpoint, "ddpm-edit");
  refuse_video_model(model, o.checkpoint, "ddpm-edit");
  if (log)
    *log << "loaded " << model.kind << " " << o.checkpoint << " (weights " << model.weights_path
         << (model.ema ? ", EMA" : "") << ")\n";
  return run_edit(o, model, log);
}

EditResult run_edit(const EditOptions& o, const ModelSource& model, std::ostream* log) {
  check_edit_options(o);
  refuse_super_res_model(model.net->config(), o.checkpoint, "ddpm-edit " + o.command);
  check_edit_prompts(o, model);
  if (model.text && log) {
    *log << "text-conditioned: " << o.prompts.size() << " prompt(s)"
         << (o.command == "img2img" && o.prompts.size() > 1 ? ", result j of each image gets prompt j mod P" : "");
    if (o.command == "img2img" && o.guidance_scale != 1.0)
      *log << "; guidance away from " << (o.negative_prompt.empty() ? "the empty caption" : "\"" + o.negative_prompt + "\"");
    *log << "\n";
  }
  const unet::UNetConfig& cfg = model.net->config();
  DDPM_CHECK(cfg.num_classes == 0 || o.class_label >= 0,
             o.checkpoint << " is class-conditional (" << cfg.num_classes
                          << " classes): pass --class C, the class of the edited images");
  // A latent run (latent_run.h): the edits run on s * z, images are encoded with the
  // posterior mean and every output is decoded to pixels.
  std::unique_ptr<LatentCodec> codec;
  if (const std::string ae_dir = find_run_autoencoder(o.checkpoint); !ae_dir.empty()) {
    codec = std::make_unique<LatentCodec>(ae_dir, o.device);
    DDPM_CHECK(codec->config().z_channels == cfg.in_channels,
               "the autoencoder " << ae_dir << " has " << codec->config().z_channels << " latent channels; the model "
                                  << o.checkpoint << " takes " << cfg.in_channels);
    if (log) *log << "latent diffusion: editing autoencoder latents of " << ae_dir << " (f = " << codec->factor() << ")\n";
  }
  if (o.command == "prompt2prompt") check_prompt_to_prompt_model(o, model);
  const EditProcess proc(o, model, codec != nullptr);
  // The network's tensors [n, h, w, c] and the images' [n, H, W, C] (the same for pixel runs).
  const int h = cfg.image_size, w = cfg.image_size, c = cfg.in_channels;
  const int f = codec ? codec->factor() : 1;
  const int H = h * f, W = w * f, C = codec ? codec->config().in_channels : c;
  const std::size_t image_bytes = static_cast<std::size_t>(H) * W * C;
  auto encode = [&](const Tensor& px) { return codec ? codec->encode_mean(px) : px; };
  auto to_pixels = [&](const Tensor& x) { return codec ? codec->decode(x) : x; };

  nlohmann::json info = {{"command", o.command},
                         {"checkpoint", o.checkpoint},
                         {"source", model.kind},
                         {"weights", model.weights_path},
                         {"ema", model.ema},
                         {"class", o.class_label},
                         {"prompts", model.text ? nlohmann::json(o.prompts) : nlohmann::json(nullptr)},
                         {"negative_prompt", model.text ? nlohmann::json(o.negative_prompt) : nlohmann::json(nullptr)},
                         {"seed", o.seed},
                         {"diffusion", diffusion_to_json(model.diffusion)},
                         {"image_shape", {H, W, C}},
                         {"latent_shape", {h, w, c}},
                         {"autoencoder", codec ? nlohmann::json(codec->source()) : nlohmann::json(nullptr)}};
  info.update(proc.info());
  const std::string method = proc.sigma_space() ? "probability-flow ODE (Heun) levels" : "DDIM steps";
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
    if (log) *log << "inverting " << N << " image(s) with " << proc.steps() << " " << method << "\n";
    std::vector<Tensor> recs, codes, code_recs, ae_recs;
    for (std::int64_t b = 0; b < N; b += o.batch_size) {
      const std::int64_t n = std::min<std::int64_t>(o.batch_size, N - b);
      const Tensor x = encode(rows(in.images, b, n));  // [n, h, w, c]
      const Tensor lat = proc.invert(x);
      const std::vector<double> lv = lat.to_double_vector();
      latents.insert(latents.end(), lv.begin(), lv.end());
      const Tensor rec = proc.decode(lat);
      recs.push_back(to_pixels(rec));
      if (codec) {
        codes.push_back(x);
        code_recs.push_back(rec);
        ae_recs.push_back(codec->decode(x));  // the autoencoder's own reconstruction D(E(x))
      }
    }
    const Tensor rec = stack_rows(recs);
    const diffusion::ReconstructionError err = diffusion::reconstruction_error(in.images, rec);
    if (log)
      *log << "reconstruction: MSE " << err.mse << " ([-1, 1] scale), PSNR " << err.psnr << " dB over " << N
           << " image(s), " << proc.steps() << " steps each way\n";
    auto psnr_json = [](double p) { return std::isfinite(p) ? nlohmann::json(p) : nlohmann::json(nullptr); };
    info["images"] = in.names;
    info["reconstruction"] = {{"mse", err.mse}, {"psnr", psnr_json(err.psnr)},
                              {"scale", "pixels, [-1, 1]; psnr = 10 log10(4 / mse)"}};
    if (codec) {
      // Two more numbers separate the diffusion's error from the autoencoder's: the latents'
      // own round trip (ODE only) and D(E(x)) against x (autoencoder only).
      const diffusion::ReconstructionError lat_err =
          diffusion::reconstruction_error(stack_rows(codes), stack_rows(code_recs));
      const diffusion::ReconstructionError ae_err = diffusion::reconstruction_error(in.images, stack_rows(ae_recs));
      info["latent_reconstruction"] = {{"mse", lat_err.mse}, {"scale", "scaled latents s * z"}};
      info["autoencoder_reconstruction"] = {{"mse", ae_err.mse}, {"psnr", psnr_json(ae_err.psnr)},
                                            {"scale", "pixels, [-1, 1]"}};
      if (log)
        *log << "latent round trip MSE " << lat_err.mse << "; the autoencoder alone: MSE " << ae_err.mse
             << ", PSNR " << ae_err.psnr << " dB\n";
    }
    info["clip_x0"] = false;
    info["network_calls_per_image"] = 2 * proc.invert_calls();
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
    info.update(proc.img2img_info());  // refuses a strength below the first step before any work
    if (log)
      *log << "SDEdit of " << N << " image(s), " << M << " result(s) each: strength " << o.strength << " "
           << proc.img2img_start() << ", " << proc.sampler() << "\n";
    // The guides' network tensors, image-major: image i repeated M times.
    std::vector<double> gv;
    for (std::int64_t b = 0; b < N; b += o.batch_size) {
      const std::int64_t n = std::min<std::int64_t>(o.batch_size, N - b);
      const std::vector<double> v = encode(rows(in.images, b, n)).to_double_vector();
      gv.insert(gv.end(), v.begin(), v.end());
    }
    const std::size_t code_size = static_cast<std::size_t>(h) * w * c;
    std::vector<double> rep;
    for (std::int64_t i = 0; i < N; ++i)
      for (std::int64_t j = 0; j < M; ++j)
        rep.insert(rep.end(), gv.begin() + i * code_size, gv.begin() + (i + 1) * code_size);
    const Tensor guides = Tensor::from_vector(rep, proc.shape(N * M));
    // Per result (image-major): --class, or prompt j mod P for result j of an image.
    if (model.text) {
      const auto P = static_cast<std::int64_t>(o.prompts.size());
      for (std::int64_t i = 0; i < N * M; ++i) labels_out.push_back((i % M) % P);
    } else if (cfg.num_classes > 0) {
      labels_out.assign(static_cast<std::size_t>(N * M), o.class_label);
    }
    Generator gen(o.seed);
    for (std::int64_t b = 0; b < N * M; b += o.batch_size) {
      const std::int64_t n = std::min<std::int64_t>(o.batch_size, N * M - b);
      const std::vector<std::int64_t> y =
          labels_out.empty() ? labels_out : std::vector<std::int64_t>(labels_out.begin() + b, labels_out.begin() + b + n);
      const std::vector<std::uint8_t> px = to_uint8_pixels(to_pixels(proc.img2img(rows(guides, b, n), y, gen)));
      pixels.insert(pixels.end(), px.begin(), px.end());
    }
    info["images"] = in.names;
    info["num_samples_per_image"] = M;
    rows_out = N * M;
    nrow = static_cast<int>(M);
    input_pixels = to_uint8_pixels(in.images);
    for (std::int64_t i = 0; i < std::min(N, kComparisonImages); ++i) {
      comparison.push_back({input_pixels.data() + i * image_bytes});
      for (std::int64_t j = 0; j < M; ++j) comparison.back().push_back(pixels.data() + (i * M + j) * image_bytes);
    }
  } else if (o.command == "prompt2prompt") {
    const PromptToPromptOutput p2p = run_prompt_to_prompt(o, model, proc, codec.get(), log);
    info.update(p2p.info);
    const std::int64_t N = o.num_samples;
    pixels = to_uint8_pixels(p2p.images);
    rows_out = 2 * N;
    nrow = static_cast<int>(N);  // grid.png: the sources over their edits
    labels_out.assign(static_cast<std::size_t>(N), 0);
    labels_out.resize(static_cast<std::size_t>(2 * N), 1);
    comparison.resize(2);
    for (std::int64_t i = 0; i < std::min(N, kComparisonImages); ++i) {
      comparison[0].push_back(pixels.data() + i * image_bytes);
      comparison[1].push_back(pixels.data() + (N + i) * image_bytes);
    }
  } else {  // interpolate
    Tensor a, b;
    if (!o.seeds.empty()) {
      const std::vector<std::string> s = two_items(o.seeds, "--seeds");
      Generator ga(parse_seed(s[0])), gb(parse_seed(s[1]));
      a = proc.prior(ga);  // x_T ~ N(0, I), or sigma_max z for an EDM run
      b = proc.prior(gb);
      info["seeds"] = {parse_seed(s[0]), parse_seed(s[1])};
    } else {
      std::vector<Tensor> ends;
      std::vector<std::string> names;
      for (const std::string& path : two_items(o.images, "--images")) {
        EditImages e = load_edit_images(path, H, W, C);
        DDPM_CHECK(e.images.dim(0) == 1,
                   "--images " << path << " holds " << e.images.dim(0) << " images; each end must be one image");
        ends.push_back(encode(e.images));
        names.push_back(path);
      }
      if (log) *log << "inverting the two end images with " << proc.steps() << " " << method << "\n";
      const Tensor lat = proc.invert(stack_rows(ends));
      a = rows(lat, 0, 1);
      b = rows(lat, 1, 1);
      info["images"] = names;
    }
    const std::vector<double> fractions = diffusion::interpolation_fractions(o.frames);
    std::vector<Tensor> frames;
    for (double fr : fractions) frames.push_back(diffusion::slerp(a, b, fr));
    const Tensor all = stack_rows(frames);
    const std::int64_t F = o.frames;
    if (log)
      *log << "decoding " << F << " slerp frames (angle " << diffusion::slerp_angle(a, b) << " rad between the ends)\n";
    for (std::int64_t s = 0; s < F; s += o.batch_size) {
      const std::int64_t n = std::min<std::int64_t>(o.batch_size, F - s);
      const std::vector<std::uint8_t> px = to_uint8_pixels(to_pixels(proc.decode(rows(all, s, n))));
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
      write_npz((dir / "latents.npz").string(),
                {npy_view("latents", {rows_out, h, w, c}, latents), proc.schedule_array()});
      files.push_back("latents.npz");
    }
    write_file_atomic((dir / "edit_info.json").string(), info.dump(2) + "\n");
    files.push_back("edit_info.json");
  };
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
                  "K respaced steps (DDIM: must divide T; ddpm: any count up to T; 0 = all T) or, for an EDM "
                  "run, N Karras levels (0 = 18)")
        ->capture_default_str();
    s->add_option("--batch-size", o.batch_size, "images per network batch")->capture_default_str();
    s->add_option("--class", o.class_label, "class of the edited images (required for class-conditional models)");
    s->add_option("--prompt", o.prompts,
                  "text-conditioned models (required): the images' caption (invert, interpolate: one) or, for "
                  "img2img, what the results should show (repeat for several: result j gets prompt j mod P)");
    s->add_option("--out", o.out, "output folder")->required();
    s->add_flag("--overwrite", o.overwrite, "replace an existing non-empty --out folder");
  };
  CLI::App* inv = app.add_subcommand(
      "invert", "DDIM inversion (EDM runs: the probability-flow ODE in sigma): encode images to latents x_T "
      "and decode them back (reconstruction error)");
  common(inv);
  inv->add_option("--images", o.images, "a PNG, a folder of PNGs, or a samples.npz (arr_0 uint8 [N,H,W,C])")
      ->required();
  CLI::App* i2i =
      app.add_subcommand("img2img", "SDEdit: noise images to t0 = strength * T and run the reverse process");
  common(i2i);
  i2i->add_option("--images", o.images, "guide images: a PNG, a folder of PNGs, or a samples.npz")->required();
  i2i->add_option("--strength", o.strength, "in (0, 1]: t0 / T (DDPM) or the fraction of the N levels run (EDM); small stays near "
                  "the guide, 1 starts from noise")
      ->capture_default_str();
  i2i->add_option("--sampler", o.sampler,
                  "auto (ddim for DDPM runs, heun for EDM runs), ddpm (ancestral) or ddim (eta 0) for DDPM runs, "
                  "heun or euler for EDM runs")
      ->check(CLI::IsMember({"auto", "ddpm", "ddim", "heun", "euler"}))
      ->capture_default_str();
  i2i->add_option("--num-samples", o.num_samples, "results per image, each with its own noise")->capture_default_str();
  i2i->add_option("--guidance-scale", o.guidance_scale,
                  "classifier-free guidance s (class-conditional and text-conditioned models)")
      ->capture_default_str();
  i2i->add_option("--negative-prompt", o.negative_prompt,
                  "text-conditioned models with --guidance-scale != 1: the prompt guidance steers away from "
                  "(default: the empty caption)");
  CLI::App* itp = app.add_subcommand(
      "interpolate", "DDIM latent interpolation: slerp between two latents, each frame decoded with DDIM");
  common(itp);
  itp->add_option("--images", o.images, "A.png,B.png: the two ends, DDIM-inverted");
  itp->add_option("--seeds", o.seeds, "S1,S2: the two ends as N(0, I) noise from these seeds");
  itp->add_option("--frames", o.frames, "frames F >= 2, both ends included")->capture_default_str();
  CLI::App* p2p = app.add_subcommand(
      "prompt2prompt", "Prompt-to-Prompt: sample --prompt and --edit-prompt from one x_T, the edit taking the "
      "source's attention maps early on (text-conditioned DDPM runs)");
  common(p2p);
  p2p->add_option("--edit-prompt", o.edit_prompt, "the edited prompt: as many words as --prompt (word swap), or --prompt's words in order with new ones added (refinement)")
      ->required();
  p2p->add_option("--cross-replace", o.cross_replace,
                  "c in [0, 1]: the edit uses the source's cross-attention maps for the first floor(c K) steps")
      ->capture_default_str();
  p2p->add_option("--self-replace", o.self_replace,
                  "s in [0, 1]: the edit uses the source's self-attention maps for the first floor(s K) steps")
      ->capture_default_str();
  p2p->add_option("--self-replace-max-tokens", o.self_replace_max_tokens,
                  "inject self-attention only in layers of at most N query tokens (the notebook's 16 x 16 of "
                  "SD's 64 x 64 latent, scaled: 64 = 8 x 8); 0 = every layer")
      ->capture_default_str();
  p2p->add_option("--reweight", o.reweight,
                  "WORD=SCALE: scale the cross-attention to WORD (a word of --edit-prompt) in the edit by SCALE >= 0");
  p2p->add_option("--sampler", o.sampler, "auto (= ddim), ddim (eta 0) or ddpm (ancestral, the same noise for both)")
      ->check(CLI::IsMember({"auto", "ddpm", "ddim"}))
      ->capture_default_str();
  p2p->add_option("--num-samples", o.num_samples, "source/edit pairs, each from its own x_T")->capture_default_str();
  p2p->add_option("--guidance-scale", o.guidance_scale, "classifier-free guidance s (unconditional rows not edited)")
      ->capture_default_str();
  p2p->add_option("--negative-prompt", o.negative_prompt,
                  "with --guidance-scale != 1: the prompt guidance steers away from (default: the empty caption)");
  c.subcommands = {inv, i2i, itp, p2p};
}

void edit_command_parsed(EditCommand& c) {
  for (const CLI::App* s : c.subcommands)
    if (s->parsed()) c.options.command = s->get_name();
}

}  // namespace ddpm::run
