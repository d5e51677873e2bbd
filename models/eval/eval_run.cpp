// models/eval/eval_run.cpp: the modes of ddpm-eval as library functions (see eval_run.h).
#include "models/eval/eval_run.h"

#include "models/run/latent_run.h"
#include "models/run/super_res_run.h"

#include "models/run/model_source.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <random>
#include <sstream>
#include <tuple>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "engine/io/safetensors.h"
#include "models/data/cifar10.h"
#include "models/data/idx.h"
#include "models/data/image_folder.h"
#include "models/data/toy.h"
#include "models/eval/caption_condition.h"
#include "models/eval/classifier.h"
#include "models/eval/features.h"
#include "models/unet/model_io.h"

namespace fs = std::filesystem;

namespace ddpm::eval {

run::DataSpec parse_eval_data(const std::string& data, const std::string& data_dir) {
  std::string spec = data == "toy-shapes" ? std::string("toy") : data;  // the older name
  if (!data_dir.empty()) {
    // The deprecated --data-dir DIR: the folder of a bare fashion-mnist or cifar10.
    DDPM_CHECK(spec == "fashion-mnist" || spec == "cifar10",
               "--data-dir (deprecated) only gives the folder of --data fashion-mnist or cifar10; with --data "
                   << data << " leave it out (the path belongs in the spec, e.g. --data cifar10:DIR)");
    spec += ":" + data_dir;
  }
  DDPM_CHECK(spec != "cifar10",
             "--data cifar10 needs its folder (the cifar-10-batches-bin directory): --data cifar10:DIR");
  try {
    return run::parse_data_spec(spec);
  } catch (const ValueError&) {
    // The older form: a bare folder of PNGs.
    if (!data.empty() && data_dir.empty() && fs::is_directory(data)) return run::parse_data_spec("folder:" + data);
    throw;
  }
}

Dataset load_eval_dataset(const std::string& data, const std::string& split, const std::string& data_dir) {
  DDPM_CHECK(split == "train" || split == "test", "--split must be train or test, got \"" << split << "\"");
  const run::DataSpec spec = parse_eval_data(data, data_dir);
  switch (spec.kind) {
    case run::DataSpec::Kind::fashion_mnist:
      return load_fashion_mnist(split, spec.path.empty() ? kFashionMnistDir : spec.path);
    case run::DataSpec::Kind::cifar10:
      return load_cifar10(spec.path, split);
    case run::DataSpec::Kind::toy: {
      // Fixed seeds, so every run of every mode sees the same two splits.
      Dataset ds = split == "train" ? make_toy_shapes(2000, 1) : make_toy_shapes(500, 2);
      ds.name = "toy-shapes/" + split;
      return ds;
    }
    case run::DataSpec::Kind::idx:
      return load_idx(spec.path, spec.labels_path, 10, spec.path);
    case run::DataSpec::Kind::folder:
      return load_image_folder(spec.path);
    case run::DataSpec::Kind::moving_fashion_mnist:
    case run::DataSpec::Kind::moving_toy:
      DDPM_THROW(ValueError, "--data " << data << " is video (clips of frames); ddpm-eval measures still images");
  }
  DDPM_THROW(ValueError, "--data " << data << ": unknown dataset kind");
}

Dataset load_eval_images(const std::string& data, const std::string& split, const std::string& data_dir,
                         int image_size) {
  Dataset ds = load_eval_dataset(data, split, data_dir);
  return ds.height < image_size ? pad_to(ds, image_size) : ds;
}

// --- train-classifier ---------------------------------------------------------------------

TrainClassifierResult run_train_classifier(const TrainClassifierArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.out.empty(), "train-classifier needs --out DIR");
  Dataset train = load_eval_dataset(a.data, "train", a.data_dir);
  Dataset test = load_eval_dataset(a.data, "test", a.data_dir);
  DDPM_CHECK(train.has_labels() && test.has_labels(), "train-classifier: " << a.data << " has no labels");
  if (a.limit > 0) train = take(train, std::min(a.limit, train.n));
  const int size = a.image_size > 0 ? a.image_size : static_cast<int>((std::max(train.height, train.width) + 7) / 8 * 8);
  ClassifierConfig cfg;
  cfg.height = cfg.width = size;
  cfg.channels = static_cast<int>(train.channels);
  cfg.num_classes = train.num_classes;
  cfg.base_channels = a.base_channels;
  cfg.feature_dim = a.feature_dim;
  cfg.norm_groups = std::min(8, a.base_channels);
  train = conform(train, cfg, train.name);
  test = conform(test, cfg, test.name);
  out << "train-classifier: " << train.describe() << "; test on " << test.describe() << "\n";
  Generator gen(a.seed);
  Classifier cls(cfg, gen, a.device);
  out << "network: " << kClassifierArchitecture << " w=" << cfg.base_channels << ", " << cls.num_parameters()
      << " parameters, " << cfg.feature_dim << "-d features, input " << size << "x" << size << "x" << cfg.channels
      << ", device " << a.device.str() << std::endl;
  ClassifierTrainOptions o;
  o.epochs = a.epochs;
  o.batch_size = a.batch_size;
  o.lr = a.lr;
  o.weight_decay = a.weight_decay;
  o.seed = a.seed;
  o.max_steps = a.max_steps;
  o.device = a.device;
  const ClassifierTrainReport r =
      train_classifier(cls, train, test, o, [&](const std::string& line) { out << "  " << line << std::endl; });
  nlohmann::json info;
  info["dataset"] = a.data;
  info["train_split"] = train.name;
  info["train_images"] = train.n;
  info["test_split"] = test.name;
  info["test_accuracy"] = r.test_accuracy;
  info["epochs"] = a.epochs;
  info["steps"] = r.steps;
  info["batch_size"] = a.batch_size;
  info["lr"] = a.lr;
  info["seed"] = a.seed;
  info["train_seconds"] = r.train_seconds;
  info["class_names"] = train.class_names;
  save_classifier(cls, a.out, info);
  out << std::fixed << std::setprecision(2) << "test accuracy " << 100 * r.test_accuracy << "% on " << test.name
      << " (" << test.n << " images) after " << r.steps << " steps in " << r.train_seconds << " s; saved to "
      << a.out << "\n";
  return {r.test_accuracy, r.train_seconds, r.losses};
}

// --- fid ---------------------------------------------------------------------------------

QualityLine compare_features(const std::string& label, const FeatureMatrix& real, const FeatureMatrix& other,
                             const FidArgs& a) {
  QualityLine q;
  q.label = label;
  q.n = other.n;
  q.fid = fid(real, other);
  q.kid = kid(real, other, a.kid_subsets, a.kid_subset_size, a.seed);
  q.pr = precision_recall(real, other, a.k);
  return q;
}

namespace {

void print_line(std::ostream& out, const QualityLine& q) {
  out << std::left << std::setw(22) << q.label << std::right << std::fixed << std::setprecision(4) << " n=" << q.n
      << "  FID " << std::setw(10) << q.fid << "  KID " << std::setprecision(5) << q.kid.mean << " +- " << q.kid.std
      << std::setprecision(4) << "  precision " << q.pr.precision << "  recall " << q.pr.recall << "\n";
}

// The settings that make a sample-quality number meaningful (checklist: sampler, steps,
// variance, EMA), from the sample_info.json ddpm-sample writes beside samples.npz; "" when
// there is none or it is not one of ddpm-sample's.
std::string settings_from_sample_info(const fs::path& info_path) {
  std::error_code ec;
  if (!fs::is_regular_file(info_path, ec)) return "";
  try {
    const nlohmann::json j = nlohmann::json::parse(read_file(info_path.string()));
    if (!j.is_object() || !j.contains("sampler") || !j.contains("sampling_steps")) return "";
    std::ostringstream os;
    os << j.value("checkpoint", std::string("?")) << ": sampler " << j["sampler"].dump() << ", "
       << j["sampling_steps"].dump() << " steps, variance " << j.value("variance", nlohmann::json("?")).dump()
       << ", EMA " << j.value("ema", nlohmann::json("?")).dump();
    if (j.contains("guidance_scale") && j["guidance_scale"].is_number() && j["guidance_scale"].get<double>() != 1.0)
      os << ", guidance scale " << j["guidance_scale"].dump();
    os << " [" << info_path.string() << "]";
    return os.str();
  } catch (const nlohmann::json::exception&) {
    return "";
  }
}

// What the samples were drawn with: --sample-info, else ddpm-sample's sample_info.json in the
// samples' folder, else another JSON beside them.
std::string sample_settings(const FidArgs& a) {
  if (!a.sample_info.empty()) return a.sample_info;
  const fs::path folder = fs::is_directory(a.samples) ? fs::path(a.samples) : fs::path(a.samples).parent_path();
  if (std::string s = settings_from_sample_info(folder / "sample_info.json"); !s.empty()) return s;
  for (const std::string& p : {a.samples + ".json", a.samples + "/sampling.json",
                               fs::path(a.samples).replace_extension(".json").string()}) {
    std::ifstream in(p);
    if (!in.good() || fs::is_directory(p)) continue;
    try {
      return nlohmann::json::parse(in).dump();
    } catch (const nlohmann::json::exception&) {
    }
  }
  return "unknown (pass --sample-info \"sampler, steps, variance, EMA\")";
}

}  // namespace

FidResult run_fid(const FidArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.classifier.empty() && !a.samples.empty(), "fid needs --classifier DIR and --samples FILE|DIR");
  const LoadedClassifier cls = load_classifier(a.classifier, a.device);
  Dataset samples = load_samples(a.samples);
  if (a.num_samples > 0 && samples.n > a.num_samples) samples = take(samples, a.num_samples);
  const Dataset ref_split = load_eval_dataset(a.data, a.split, a.data_dir);
  const std::int64_t n = std::min(samples.n, ref_split.n);
  DDPM_CHECK(n > a.k, "fid: needs more than k = " << a.k << " images per set, got " << n);
  if (samples.n > n) samples = take(samples, n);
  const Dataset reference = take(ref_split, n);
  out << "feature network: " << describe_classifier(cls) << " [" << a.classifier << "]\n"
      << "reference: " << ref_split.name << ", first " << n << " images; samples: " << a.samples << ", " << n
      << " images\n"
      << "samples drawn with: " << sample_settings(a) << "\n"
      << "KID: cubic polynomial kernel, " << a.kid_subsets << " subsets of " << std::min<std::int64_t>(a.kid_subset_size, n)
      << "; precision/recall: k-NN manifolds, k = " << a.k << "\n";
  const Classifier& net = *cls.model;
  const FeatureMatrix ref_f = extract_features(net, reference, a.batch_size);
  FidResult r;
  r.samples = compare_features("samples vs " + ref_split.name, ref_f, extract_features(net, samples, a.batch_size), a);
  print_line(out, r.samples);
  if (a.real_vs_real && a.split != "train") {
    Dataset train = load_eval_dataset(a.data, "train", a.data_dir);
    train = take(train, std::min(n, train.n));
    r.real_vs_real = compare_features("real (" + train.name + ")", ref_f, extract_features(net, train, a.batch_size), a);
    print_line(out, r.real_vs_real);
  }
  // Noise: uniform random bytes, the far end of the scale.
  Dataset noise = reference;
  noise.name = "uniform noise";
  noise.labels.clear();
  std::mt19937_64 rng(a.seed);
  for (std::uint8_t& v : noise.images) v = static_cast<std::uint8_t>(rng() & 0xFF);
  r.noise = compare_features("uniform noise", ref_f, extract_features(net, noise, a.batch_size), a);
  print_line(out, r.noise);
  return r;
}

// --- class-accuracy ------------------------------------------------------------------------

ClassAccuracyResult run_class_accuracy(const ClassAccuracyArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.classifier.empty() && !a.samples.empty(), "class-accuracy needs --classifier DIR and --samples FILE");
  const LoadedClassifier cls = load_classifier(a.classifier, a.device);
  const Dataset samples = load_samples(a.samples);
  DDPM_CHECK(samples.has_labels(), "class-accuracy: " << a.samples << " has no \"labels\" array (the classes the "
                                                      << "samples were requested for)");
  const int k = cls.model->config().num_classes;
  for (std::int64_t y : samples.labels)
    DDPM_CHECK(y < k, "class-accuracy: sample label " << y << " is not a class of the classifier (" << k << " classes)");
  const std::vector<std::int64_t> pred =
      predict(*cls.model, conform(samples, cls.model->config(), samples.name), a.batch_size);
  ClassAccuracyResult r;
  r.count.assign(k, 0);
  r.correct.assign(k, 0);
  for (std::int64_t i = 0; i < samples.n; ++i) {
    ++r.count[samples.labels[i]];
    r.correct[samples.labels[i]] += pred[i] == samples.labels[i];
  }
  std::int64_t right = 0;
  for (std::int64_t c : r.correct) right += c;
  r.overall = static_cast<double>(right) / static_cast<double>(samples.n);
  std::vector<std::string> names;
  if (cls.info.contains("class_names")) names = cls.info["class_names"].get<std::vector<std::string>>();
  out << "feature network: " << describe_classifier(cls) << " [" << a.classifier << "]\n"
      << "samples: " << a.samples << ", " << samples.n << " images\n";
  for (int c = 0; c < k; ++c) {
    if (r.count[c] == 0) continue;
    out << "class " << c << (c < static_cast<int>(names.size()) ? " (" + names[c] + ")" : "") << ": " << std::fixed
        << std::setprecision(2) << 100.0 * r.correct[c] / r.count[c] << "% of " << r.count[c] << "\n";
  }
  out << "overall: " << 100.0 * r.overall << "%\n";
  return r;
}

// --- bpd -------------------------------------------------------------------------------------

EvalModel load_eval_model(const std::string& path, bool ema, Device device, const std::string& mode) {
  // One reader for run folders, checkpoint folders, model files and diffusers folders.
  run::ModelSource src = run::open_model(path, device, ema);
  const run::DiffusionSettings& d = src.diffusion;
  run::refuse_video_model(src, path, "ddpm-eval " + mode);
  DDPM_CHECK(!d.edm, mode << ": " << path
                          << " was trained with the EDM objective (continuous sigma, no discrete process): "
                             "the DDPM variational bound it would need is not defined for it");
  DDPM_CHECK(!d.ict, mode << ": " << path
                          << " was trained with --objective ict (a consistency function, models/diffusion/"
                             "consistency_training.h): it models no diffusion process, so no likelihood bound exists "
                             "for it");
  DDPM_CHECK(!d.vdm || mode == "bpd",
             mode << ": " << path
                  << " was trained with the VDM objective (continuous t, models/diffusion/vdm.h): of the likelihood "
                     "evaluations only ddpm-eval bpd (its own variational bound) supports it");
  EvalModel m;
  m.vdm_curve = d.vdm_curve;
  m.schedule = std::make_unique<diffusion::DiffusionSchedule>(run::diffusion_betas(d));
  m.noise_schedule = d.noise_schedule;
  m.options.mean_type = d.predict;
  m.options.learned_sigma = src.net->config().learn_sigma;
  // The reverse-process variance of an unlearned model: the posterior's (fixed-small).
  m.options.variance = diffusion::VarianceType::fixed_small;
  m.options.num_classes = src.net->config().num_classes;
  m.description = src.weights_path + " (" + src.kind + (src.ema ? ", EMA" : "") + "), T=" +
                  std::to_string(d.diffusion_steps) + " " + diffusion::noise_schedule_name(d.noise_schedule) +
                  ", predicts " + diffusion::model_mean_type_name(m.options.mean_type) + ", variance " +
                  (m.options.learned_sigma ? "learned_range" : diffusion::variance_type_name(m.options.variance));
  m.net = std::move(src.net);  // the text view refers to the UNet object, which does not move
  m.text_encoder = std::move(src.text_encoder);
  m.tokenizer = std::move(src.tokenizer);
  m.text = std::move(src.text);
  return m;
}

namespace {

// The bits/dim report of a rate-distortion curve: its first row is the prior, its last the
// decoder, the rows between the KL terms.
BpdEvalReport bpd_report(const RateDistortionCurve& c) {
  BpdEvalReport r;
  r.n = c.n;
  r.timesteps = c.timesteps;
  r.bpd = c.bpd;
  r.bpd_stderr = c.bpd_stderr;
  r.prior_bpd = c.points.front().term_bpd;
  r.decoder_bpd = c.points.back().term_bpd;
  for (std::size_t i = 1; i + 1 < c.points.size(); ++i) r.terms_bpd += c.points[i].term_bpd;
  r.seconds = c.seconds;
  return r;
}

// The rate-distortion outputs: the folder, and the summary lines.
void publish_rate_distortion(const BpdArgs& a, const RateDistortionCurve& c, std::ostream& out) {
  const std::vector<RateDistortionPoint> rows = strided_points(c, a.rd_stride);
  const std::string csv = rate_distortion_csv(rows);
  const int height = 360, panel_width = 480;
  const std::vector<std::uint8_t> plot = draw_rate_distortion(rows, c.timesteps, height, panel_width);
  publish_directory(
      a.rate_distortion,
      [&](const std::string& tmp) {
        write_file_atomic(tmp + "/rate_distortion.csv", csv);
        write_png(tmp + "/rate_distortion.png", plot.data(), height, 3 * panel_width, 3);
      },
      a.overwrite ? IfExists::replace : IfExists::fail);
  // The paper's lossy end point: x_1 received, only the decoder term L_0 still to pay.
  const RateDistortionPoint& at1 = c.points[static_cast<std::size_t>(c.timesteps - 1)];
  out << std::fixed << std::setprecision(4) << "rate-distortion: at t=1 (all but L_0 received) rate " << at1.rate_bpd
      << " bits/dim, distortion " << at1.distortion_rmse << " RMSE [0, 255]; L_0 " << c.points.back().term_bpd
      << " bits/dim\n";
  for (double d : {10.0, 5.0, 1.0})
    out << "rate-distortion: distortion below " << std::setprecision(0) << d << " RMSE from rate "
        << std::setprecision(4) << rate_at_distortion(c, d) << " bits/dim\n";
  out << "rate-distortion: wrote " << rows.size() << " rows to " << a.rate_distortion
      << "/rate_distortion.csv and the plot rate_distortion.png\n";
}

bool nonempty_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && !fs::is_empty(path, ec);
}

}  // namespace

BpdEvalReport run_bpd(const BpdArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.checkpoint.empty(), "bpd needs --checkpoint RUN|CHECKPOINT_DIR");
  const bool rd = !a.rate_distortion.empty();
  DDPM_CHECK(a.rd_stride >= 1, "bpd: --rd-stride must be at least 1, got " << a.rd_stride);
  // Refused before the evaluation, which may take hours.
  DDPM_CHECK(!rd || a.overwrite || !nonempty_directory(a.rate_distortion),
             "bpd: --rate-distortion " << a.rate_distortion << " exists and is not empty; pass --overwrite to "
                                                              "replace it");
  // The bound's t = 0 term is the discretised likelihood of 8-bit pixels; a latent model's
  // bound would be over latents, not comparable with pixel models (latent_run.h).
  run::refuse_latent_model(a.checkpoint, "ddpm-eval bpd (bits/dim of pixels)");
  const diffusion::VarianceType variance = diffusion::parse_variance_type(a.variance);
  DDPM_CHECK(variance != diffusion::VarianceType::learned_range,
             "bpd: --variance learned_range is the model's own (used whenever it learned sigma); choose fixed_small, "
             "fixed_large or analytic for a model without one");
  DDPM_CHECK((variance == diffusion::VarianceType::analytic) == !a.analytic_gamma.empty(),
             (a.analytic_gamma.empty() ? "bpd: --variance analytic needs --analytic-gamma FILE (ddpm-eval analytic-gamma)"
                                       : "bpd: --analytic-gamma is used with --variance analytic only"));
  // Read before the model: a bad file is refused at once.
  std::shared_ptr<const diffusion::AnalyticGamma> gamma;
  if (!a.analytic_gamma.empty())
    gamma = std::make_shared<const diffusion::AnalyticGamma>(diffusion::read_analytic_gamma(a.analytic_gamma));
  EvalModel m = load_eval_model(a.checkpoint, a.ema, a.device, rd ? "bpd --rate-distortion" : "bpd");
  run::refuse_super_res_model(m.net->config(), a.checkpoint, "ddpm-eval bpd");  // super_res_run.h
  DDPM_CHECK(variance == diffusion::VarianceType::fixed_small || !m.options.learned_sigma,
             "bpd: " << a.checkpoint << " learned its variance; --variance " << a.variance
                     << " applies to models without one");
  m.options.variance = variance;
  if (!m.options.learned_sigma) {  // the description named the default, fixed_small
    const std::string tail = ", variance fixed_small";
    if (m.description.size() >= tail.size() && m.description.compare(m.description.size() - tail.size(), tail.size(), tail) == 0)
      m.description.replace(m.description.size() - tail.size(), tail.size(), ", variance " + a.variance);
  }
  m.options.analytic_gamma = gamma;
  m.options.analytic_gamma_file = a.analytic_gamma;
  if (gamma) {
    diffusion::check_gamma_fits(*gamma, *m.schedule, a.analytic_gamma);
    (void)diffusion::analytic_likelihood_variances(*m.schedule, *gamma, a.analytic_gamma);  // every t is there
  }
  Dataset data = load_eval_images(a.data, a.split, a.data_dir, m.net->config().image_size);
  BpdEvalOptions o = m.options;
  o.clip_x0 = a.clip_x0;
  o.batch_size = a.batch_size;
  o.limit = a.limit;
  o.seed = a.seed;
  o.device = a.device;
  const unet::UNet& net = *m.net;
  diffusion::DenoiseFn fn = [&net](const Tensor& x, const std::vector<double>& t,
                                   const std::vector<std::int64_t>& labels) {
    return net.forward(x, t, labels, nn::Context{});
  };
  std::string condition;
  if (m.text) {  // -log p(x | caption): each image's label becomes its caption's index
    const CaptionCondition c = condition_on_captions(*m.text, data, "bpd");
    fn = c.fn;
    o.num_classes = static_cast<int>(c.table.size());
    condition = "; conditioned on each image's caption (" + c.source + ", " + std::to_string(c.table.size()) +
                " distinct)";
  }
  if (m.vdm_curve) {  // the VDM bound (bpd_eval.h evaluate_vdm_bpd): one network evaluation per image
    DDPM_CHECK(variance == diffusion::VarianceType::fixed_small && !gamma,
               "bpd: " << a.checkpoint << " is a VDM model: its bound has no reverse variance to choose (--variance, "
                       << "--analytic-gamma)");
    out << "model: " << m.description << " (VDM, " << diffusion::vdm_schedule_kind_name(m.vdm_curve->config().schedule)
        << " gamma in [" << m.vdm_curve->gamma_0() << ", " << m.vdm_curve->gamma_1() << "], "
        << (m.vdm_curve->config().steps > 0 ? "T = " + std::to_string(m.vdm_curve->config().steps) : "continuous t")
        << ")\n"
        << "data: " << data.describe() << (a.limit > 0 ? ", first " + std::to_string(a.limit) + " images" : "")
        << "; 1 network evaluation per image (one t each)" << condition << std::endl;
    const BpdEvalReport r = evaluate_vdm_bpd(*m.vdm_curve, fn, data, o, [&](const std::string& line) {
      out << "  " << line << std::endl;
    });
    out << std::fixed << std::setprecision(4) << "bits/dim " << r.bpd << " +- " << r.bpd_stderr << " (n=" << r.n
        << "; prior " << r.prior_bpd << ", diffusion " << r.terms_bpd << ", reconstruction " << r.decoder_bpd
        << ") in " << std::setprecision(1) << r.seconds << " s\n";
    return r;
  }
  if (!m.options.learned_sigma && variance != diffusion::VarianceType::fixed_small)
    out << "variance: " << a.variance << (gamma ? " (Gamma from " + a.analytic_gamma + ")" : std::string()) << "\n";
  out << "model: " << m.description << "\n"
      << "data: " << data.describe() << (a.limit > 0 ? ", first " + std::to_string(a.limit) + " images" : "")
      << "; " << m.schedule->num_timesteps() << " network evaluations per image" << condition << std::endl;
  const auto log = [&](const std::string& line) { out << "  " << line << std::endl; };
  // The same draws either way (one generator seeded alike, one calc_bpd_loop per batch).
  RateDistortionCurve curve;
  const BpdEvalReport r =
      rd ? bpd_report(curve = evaluate_rate_distortion(*m.schedule, fn, data, o, log))
         : evaluate_bpd(*m.schedule, fn, data, o, log);
  out << std::fixed << std::setprecision(4) << "bits/dim " << r.bpd << " +- " << r.bpd_stderr << " (n=" << r.n
      << "; prior " << r.prior_bpd << ", sum of L_t " << r.terms_bpd << ", decoder " << r.decoder_bpd << ") in "
      << std::setprecision(1) << r.seconds << " s\n";
  if (rd) publish_rate_distortion(a, curve, out);
  return r;
}

void check_report_file(const std::string& path, const char* flag, bool overwrite, const std::string& mode) {
  if (path.empty()) return;
  std::error_code ec;
  DDPM_CHECK(!fs::is_directory(path, ec), mode << ": " << flag << " " << path << " is a folder; give the JSON file to write");
  DDPM_CHECK(overwrite || !fs::exists(path, ec),
             mode << ": " << flag << " " << path << " exists; pass --overwrite to replace it");
}

}  // namespace ddpm::eval
