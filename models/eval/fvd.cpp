// models/eval/fvd.cpp: ddpm-eval train-video-classifier and fvd (see fvd.h).
#include "models/eval/fvd.h"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <numeric>
#include <random>

#include "engine/error.h"
#include "models/data/idx.h"
#include "models/data/moving.h"
#include "models/data/toy.h"
#include "models/eval/video_metrics.h"

namespace fs = std::filesystem;

namespace ddpm::eval {
namespace {

std::string clip_shape(const Dataset& d) {
  return std::to_string(d.frames) + " frames of " + std::to_string(d.height) + "x" + std::to_string(d.width) + "x" +
         std::to_string(d.channels);
}

// The clip options a video classifier was trained on (its json's "clips").
EvalClipOptions recorded_clip_options(const LoadedVideoClassifier& c, const std::string& dir) {
  EvalClipOptions o;
  try {
    const nlohmann::json& j = c.info.at("clips");
    o.frames = j.at("frames");
    o.canvas = j.at("canvas");
    o.item_size = j.at("item_size");
    o.moving_items = j.at("moving_items");
  } catch (const nlohmann::json::exception& e) {
    throw IoError(dir + "/video_classifier.json: no clip options (\"clips\"): " + e.what());
  }
  return o;
}

void print_line(std::ostream& out, const QualityLine& q) {
  out << std::left << std::setw(38) << q.label << std::right << std::fixed << std::setprecision(4) << " n=" << q.n
      << "  FVD " << std::setw(10) << q.fid << "  KVD " << std::setprecision(5) << q.kid.mean << " +- " << q.kid.std
      << std::setprecision(4) << "  precision " << q.pr.precision << "  recall " << q.pr.recall << std::defaultfloat
      << "\n";
}

}  // namespace

LabelledClips load_eval_clips(const std::string& data, const std::string& split, const EvalClipOptions& o,
                              std::int64_t count, std::uint64_t seed) {
  DDPM_CHECK(split == "train" || split == "test", "--split must be train or test, got \"" << split << "\"");
  const run::DataSpec spec = run::parse_data_spec(data);
  DDPM_CHECK(spec.is_moving(), "--data " << data << " holds still images, not clips; give a video dataset "
                                                    "(moving-toy or moving-fashion-mnist[:DIR])");
  Dataset source;
  if (spec.kind == run::DataSpec::Kind::moving_fashion_mnist) {
    source = load_fashion_mnist(split, spec.path.empty() ? kFashionMnistDir : spec.path);
  } else {  // moving-toy: ddpm-eval's toy splits (eval_run.cpp load_eval_dataset), fixed seeds
    source = split == "train" ? make_toy_shapes(2000, 1) : make_toy_shapes(500, 2);
    source.name = "toy-shapes/" + split;
  }
  MovingClipsOptions m;
  m.frames = o.frames;
  m.canvas = o.canvas;
  m.item_size = o.item_size;
  m.items = o.moving_items;
  m.count = count;
  m.seed = 2 * seed + (split == "test" ? 1 : 0);  // the splits share no trajectories
  LabelledClips out;
  out.clips = make_moving_clips(source, m);
  out.directions = moving_direction_labels(m, out.clips.n);
  return out;
}

Dataset permute_clip_frames(const Dataset& clips, std::uint64_t seed) {
  DDPM_CHECK(clips.frames >= 2, "permute_clip_frames: " << clips.describe() << " has fewer than 2 frames per clip");
  const int f = static_cast<int>(clips.frames);
  std::vector<int> identity(f), reversal(f), order(f);
  std::iota(identity.begin(), identity.end(), 0);
  std::reverse_copy(identity.begin(), identity.end(), reversal.begin());
  std::mt19937_64 rng(seed);
  Dataset out = clips;
  const std::size_t frame = clips.frame_bytes();
  for (std::int64_t i = 0; i < clips.n; ++i) {
    do {
      order = identity;
      std::shuffle(order.begin(), order.end(), rng);
    } while (order == identity || (f >= 3 && order == reversal));
    const std::uint8_t* src = clips.image(i);
    std::uint8_t* dst = out.images.data() + static_cast<std::size_t>(i) * clips.image_bytes();
    for (int j = 0; j < f; ++j) std::copy_n(src + order[j] * frame, frame, dst + j * frame);  // frame j <- order[j]
  }
  out.name = clips.name + " (frames permuted)";
  return out;
}

// --- train-video-classifier ---------------------------------------------------------------

TrainVideoClassifierResult run_train_video_classifier(const TrainVideoClassifierArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.out.empty(), "train-video-classifier needs --out DIR");
  std::error_code ec;
  DDPM_CHECK(!fs::exists(a.out) || (fs::is_directory(a.out) && fs::is_empty(a.out, ec)) || a.overwrite,
             "train-video-classifier: --out " << a.out << " exists and is not an empty folder; pass --overwrite "
                                                          "to replace it");
  DDPM_CHECK(!fs::exists(a.out) || fs::is_directory(a.out),
             "train-video-classifier: --out " << a.out << " is a file, not a folder");
  DDPM_CHECK(a.clips.canvas > 0 && a.clips.canvas % 8 == 0,
             "train-video-classifier: --canvas must be a positive multiple of 8 (three 2x poolings), got "
                 << a.clips.canvas);
  DDPM_CHECK(a.clips.frames >= 2, "train-video-classifier: --frames must be at least 2 (motion is between frames), got "
                                      << a.clips.frames);
  const LabelledClips train = load_eval_clips(a.data, "train", a.clips, a.limit, a.seed);
  const LabelledClips test = load_eval_clips(a.data, "test", a.clips, a.test_limit, a.seed);
  VideoClassifierConfig cfg;
  cfg.frames = a.clips.frames;
  cfg.height = cfg.width = a.clips.canvas;
  cfg.channels = static_cast<int>(train.clips.channels);
  cfg.num_classes = train.clips.has_labels() ? train.clips.num_classes : 0;
  cfg.base_channels = a.base_channels;
  cfg.frame_dim = a.frame_dim;
  cfg.temporal_dim = a.temporal_dim;
  cfg.feature_dim = a.feature_dim;
  cfg.norm_groups = std::gcd(8, a.base_channels);
  Generator gen(a.seed);
  VideoClassifier cls(cfg, gen, a.device);
  out << "train-video-classifier: " << train.clips.describe() << "; test on " << test.clips.describe() << "\n"
      << "targets: " << (cfg.num_classes > 0 ? std::to_string(cfg.num_classes) + " classes + " : std::string())
      << kDirectionBins << " directions (compass bin of the first item's initial velocity)\n"
      << "network: " << kVideoClassifierArchitecture << " w=" << cfg.base_channels << ", " << cls.num_parameters()
      << " parameters, " << cfg.feature_dim << "-d features, clips " << clip_shape(train.clips) << ", device "
      << a.device.str() << std::endl;
  VideoClassifierTrainOptions o;
  o.epochs = a.epochs;
  o.batch_size = a.batch_size;
  o.lr = a.lr;
  o.weight_decay = a.weight_decay;
  o.seed = a.seed;
  o.max_steps = a.max_steps;
  o.device = a.device;
  const VideoClassifierTrainReport r = train_video_classifier(
      cls, train, test, o, [&](const std::string& line) { out << "  " << line << std::endl; });
  nlohmann::json info;
  info["dataset"] = a.data;
  info["clips"] = {{"frames", a.clips.frames},
                   {"canvas", a.clips.canvas},
                   {"item_size", a.clips.item_size},
                   {"moving_items", a.clips.moving_items}};
  info["train_split"] = train.clips.name;
  info["train_clips"] = train.clips.n;
  info["test_split"] = test.clips.name;
  info["test_clips"] = test.clips.n;
  if (cfg.num_classes > 0) info["test_class_accuracy"] = r.test.class_accuracy;
  info["test_direction_accuracy"] = r.test.direction_accuracy;
  info["epochs"] = a.epochs;
  info["steps"] = r.steps;
  info["batch_size"] = a.batch_size;
  info["lr"] = a.lr;
  info["seed"] = a.seed;
  info["train_seconds"] = r.train_seconds;
  info["class_names"] = train.clips.class_names;
  // Publish: write OUT.partial beside OUT ("vc/" names the folder vc), then swap it in, so a
  // failure leaves OUT as it was.
  fs::path dir = fs::path(a.out);
  if (!dir.has_filename()) dir = dir.parent_path();
  const fs::path partial = dir.string() + ".partial";
  fs::remove_all(partial);
  save_video_classifier(cls, partial.string(), info);
  if (fs::exists(dir)) fs::remove_all(dir);
  fs::rename(partial, dir);
  out << std::fixed << std::setprecision(2) << "test accuracy on " << test.clips.name << " (" << test.clips.n
      << " clips): ";
  if (cfg.num_classes > 0) out << "class " << 100 * r.test.class_accuracy << "%, ";
  out << "direction " << 100 * r.test.direction_accuracy << "% (chance " << 100.0 / kDirectionBins << "%) after "
      << r.steps << " steps in " << r.train_seconds << " s; saved to " << a.out << std::defaultfloat << "\n";
  return {r.test, r.train_seconds, r.losses};
}

// --- fvd -----------------------------------------------------------------------------------

FvdResult run_fvd(const FvdArgs& a, std::ostream& out) {
  DDPM_CHECK(!a.classifier.empty() && !a.samples.empty(), "fvd needs --classifier DIR and --samples FILE");
  DDPM_CHECK(a.split == "train" || a.split == "test", "fvd: --split must be train or test, got \"" << a.split << "\"");
  const LoadedVideoClassifier cls = load_video_classifier(a.classifier, a.device);
  const VideoClassifierConfig& c = cls.model->config();
  const EvalClipOptions clips = recorded_clip_options(cls, a.classifier);
  const std::string data = a.data.empty() ? cls.info.value("dataset", std::string()) : a.data;
  DDPM_CHECK(run::parse_data_spec(data).is_moving(),
             "fvd: --data " << data << " holds still images, not clips; give a video dataset (moving-toy or "
                                       "moving-fashion-mnist[:DIR])");
  Dataset samples = load_sample_clips(a.samples, "fvd: --samples");
  DDPM_CHECK(samples.frames == c.frames && samples.height == c.height && samples.width == c.width &&
                 samples.channels == c.channels,
             "fvd: --samples " << a.samples << " holds clips of " << clip_shape(samples) << " but the video classifier "
                               << a.classifier << " takes clips of " << c.frames << " frames of " << c.height << "x"
                               << c.width << "x" << c.channels
                               << "; train one on clips of the samples' shape (train-video-classifier --frames, "
                                  "--canvas)");
  if (a.limit > 0 && samples.n > a.limit) samples = take(samples, a.limit);
  const std::int64_t n = samples.n;
  DDPM_CHECK(n > a.k && n >= 2, "fvd: needs more than k = " << a.k << " sample clips (and at least 2), got " << n);
  const std::string other = a.split == "test" ? "train" : "test";
  const LabelledClips reference = load_eval_clips(data, a.split, clips, n, a.seed);
  const LabelledClips floor = load_eval_clips(data, other, clips, n, a.seed);
  const Dataset shuffled = permute_clip_frames(floor.clips, a.seed);
  out << "feature network: " << describe_video_classifier(cls) << " [" << a.classifier << "]\n"
      << "reference: " << reference.clips.name << ", " << n << " clips of " << clip_shape(reference.clips)
      << " (clip seed " << a.seed << "); samples: " << a.samples << ", " << n << " clips\n"
      << "FVD: Frechet distance of the video classifier's features (not I3D's: not comparable to published FVD); "
      << "KVD: cubic polynomial kernel MMD^2, " << a.kid_subsets << " subsets of "
      << std::min<std::int64_t>(a.kid_subset_size, n) << "; precision/recall: k-NN manifolds, k = " << a.k << "\n";
  FidArgs m;  // compare_features' settings: the same metrics FID prints
  m.kid_subsets = a.kid_subsets;
  m.kid_subset_size = a.kid_subset_size;
  m.k = a.k;
  m.seed = a.seed;
  const VideoClassifier& net = *cls.model;
  const FeatureMatrix ref_f = extract_video_features(net, reference.clips, "fvd: --data " + data, a.batch_size);
  FvdResult r;
  r.samples = compare_features("samples vs " + reference.clips.name, ref_f,
                               extract_video_features(net, samples, "fvd: --samples " + a.samples, a.batch_size), m);
  print_line(out, r.samples);
  r.real_vs_real = compare_features("real (" + floor.clips.name + ")", ref_f,
                                    extract_video_features(net, floor.clips, "fvd: --data " + data, a.batch_size), m);
  print_line(out, r.real_vs_real);
  r.shuffled = compare_features("shuffled real (frames permuted)", ref_f,
                                extract_video_features(net, shuffled, "fvd: --data " + data, a.batch_size), m);
  print_line(out, r.shuffled);
  return r;
}

}  // namespace ddpm::eval
