// models/run/control_eval.h: `ddpm-control eval`, how well a ControlNet's samples follow their
// hint (Zhang, Rao, Agrawala 2023 evaluate this way too: sec. 4.3 / table 2 re-detect the
// condition on the generated image and compare it with the input condition).
//
// For M images x_i of a split (--data, --split, --limit M):
//   hint_i     = hint(x_i)                                  (the control run's hint, hints.h)
//   c_i        = a sample of base + ControlNet given hint_i  (--control-scale S, default 1)
//   b_i        = the same draw with --control-scale 0       (the base alone: same seed, so
//                the same x_T and noise; bit for bit the base's own samples)
// Both go through ddpm-sample's library path (run_sample with --control-from the M images),
// so every sampler and its flags behave as there. The scores are means over i of a distance
// in hint space between hint(sample_i) and hint_i, and the same for unrelated data pairs
// hint(x_{(i+1) mod M}) vs hint_i: the level a sample that ignores its hint reaches on this
// data (the chance line that gives the numbers their scale; 0 is perfect agreement).
//
// The distances (score_hint_agreement):
//   edges     mad  = mean over pixels of |e(sample) - e(data)|, e the edge map in [-1, 1]
//                    (hints.h: e = 2 min(|Sobel| / 4, 1) - 1); 0 = identical maps, at most 2.
//             f1, iou: binary edge maps, a pixel is an edge when its normalised gradient
//                    magnitude m = (e + 1) / 2 = min(|Sobel| / 4, 1) is >= tau
//                    (--edge-threshold, default 0.25: a quarter of an ideal black-to-white
//                    step). With the data's edges as the reference and the sample's as the
//                    prediction, TP / FP / FN counted per image:
//                      F1 = 2 TP / (2 TP + FP + FN),   IoU = TP / (TP + FP + FN),
//                    both 1 for an image where neither map has an edge; higher is better.
//   lowres:K  mse  = mean over pixels and channels of (a(sample) - a(data))^2, a the image
//                    area-averaged to K x K (the low-res image the hint upsamples), in the
//                    [-1, 1] pixel units of the data.
// Output: a small table (or one JSON object with --json); --out DIR publishes atomically
// DIR/eval.png (one row per image: hint | controlled sample | baseline sample; a 1-channel
// hint is repeated over the image's channels) and DIR/eval.json (the same JSON).
// A class-conditional base: c_i and b_i are conditioned on x_i's own label when the data has
// labels (the images go to run_sample with their labels as arr_1, control_run.h), so the
// sample and its hint's source agree in class; data without labels gets ddpm-sample's
// balanced labels i mod num_classes. The report records them: "labels" (the M labels, null
// for an unconditional base) and "labels_from" ("images", "balanced" or null).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "engine/tensor.h"
#include "models/data/hints.h"

namespace ddpm::run {

inline constexpr double kDefaultEdgeThreshold = 0.25;

// One row of the table: the mean over images of the hint-space distances.
struct HintAgreement {
  double mad = 0;   // edges: mean |e_a - e_b|; NaN for lowres
  double f1 = 0;    // edges: mean per-image edge F1 at the threshold; NaN for lowres
  double iou = 0;   // edges: mean per-image edge IoU; NaN for lowres
  double mse = 0;   // lowres:K: mean squared error of the K x K images; NaN for edges
  nlohmann::json to_json() const;  // the metrics of the hint only
};

// Edge maps a (prediction) and b (reference), each [P] values in [-1, 1] as hints.h makes
// them, for one image: mad, f1 and iou (mse NaN). ValueError when the sizes differ.
HintAgreement edge_map_agreement(const std::vector<double>& a, const std::vector<double>& b, double threshold);

// Images a (the samples) and b (the data) [M, H, W, C] in [-1, 1] on the CPU: the mean over
// the M pairs (a_i, b_i) of the distance above for the hint h.
HintAgreement score_hint_agreement(const data::HintSpec& h, const Tensor& a, const Tensor& b,
                                   double edge_threshold = kDefaultEdgeThreshold);

struct ControlEvalArgs {
  std::string control;     // the ddpm-control run
  std::string checkpoint;  // the base ("" = the base run the control run records)
  std::string data;        // ddpm-eval's --data forms ("" = the control run's data)
  std::string split = "test";
  std::int64_t limit = 16;  // M, >= 2 (the unrelated pairs need two images)
  std::int64_t batch_size = 16;
  std::string sampler;      // "" = ddim, or heun for an EDM base (ddpm-sample's default for it)
  int sampling_steps = 20;
  double scale = 1.0;       // --control-scale of the controlled samples
  double edge_threshold = kDefaultEdgeThreshold;
  bool use_ema = true;
  bool json = false;
  std::string out;          // "" = no files
  bool overwrite = false;
  std::uint64_t seed = 0;
  Device device = Device::cpu();
};

// ValueError naming the flag for what can be checked without the files.
void check_control_eval_args(const ControlEvalArgs& a);

struct ControlEvalReport {
  data::HintSpec hint;
  std::int64_t images = 0, height = 0, width = 0, channels = 0;
  HintAgreement controlled, baseline, unrelated;
  std::vector<std::int64_t> labels;   // [M] the class labels of both sample sets; empty: unconditional
  bool labels_from_images = false;    // labels are the images' own (else balanced, or none)
  std::vector<std::uint8_t> data_pixels, controlled_pixels, baseline_pixels;  // uint8 [M, H, W, C]
  nlohmann::json json;  // what --json prints and eval.json holds
};

// The whole evaluation (see the top of this file); prints the table (or the JSON line) to out.
ControlEvalReport run_control_eval(const ControlEvalArgs& a, std::ostream& out);

// ddpm-control eval's flags, bound to a.
CLI::App* add_control_eval_subcommand(CLI::App& app, ControlEvalArgs& a);

}  // namespace ddpm::run
