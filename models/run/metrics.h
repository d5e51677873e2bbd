// models/run/metrics.h: what a training run reports while it runs.
//
// - metrics.jsonl: one JSON object per logged step; metrics.csv: the same as a table with
//   the header
//     step,loss,loss_q0,loss_q1,loss_q2,loss_q3,grad_norm,lr,images_per_s,skipped
//   where loss_qK is the mean loss of the samples whose timestep fell in quartile K
//   (t in [K T/4, (K+1) T/4)), averaged over the steps since the previous line (empty in
//   the CSV / null in JSON when no sample fell there).
// - loss.png: the chart of `loss` against `step` on a log axis, with labelled ticks
//   (loss_plot.h).
// - A progress bar with ETA and images/s on a terminal, plain periodic lines otherwise.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/device.h"

namespace ddpm::run {

struct MetricsLine {
  std::int64_t step = 0;  // the number of steps done when the line was written (1-based)
  double loss = 0;  // mean training loss of the finite steps since the previous line (NaN if none)
  std::array<double, 4> loss_quartile{};  // NaN where no sample fell in the quartile
  double grad_norm = 0, lr = 0, images_per_s = 0;
  std::int64_t skipped = 0;  // non-finite steps in the window
  // Tensor memory of the training device at its peak in the window, in MiB (parameters,
  // gradients, optimizer state and activations: engine/storage.h memory_stats), what
  // PyTorch users read from torch.cuda.max_memory_allocated. 0 in lines from older runs.
  double peak_mib = 0;
  // Joint image-video training (--joint-images): the window's mean loss of the clips and of
  // the stills (trainer.h StepMetrics). NaN otherwise; metrics.jsonl has the keys
  // "video_loss" and "still_loss" only when they are finite, metrics.csv never.
  double video_loss = std::numeric_limits<double>::quiet_NaN();
  double still_loss = std::numeric_limits<double>::quiet_NaN();
  nlohmann::json to_json() const;
  static MetricsLine from_json(const nlohmann::json& j);
  std::string to_csv() const;
};

inline constexpr const char* kMetricsCsvHeader =
    "step,loss,loss_q0,loss_q1,loss_q2,loss_q3,grad_norm,lr,images_per_s,skipped,peak_mib";

// The metrics files of a run folder. On resume, lines past the checkpoint's step (written
// after it, by the interrupted run) are dropped so the files describe one continuous run.
// The peak tensor memory of `type` since the last call (or the start), in MiB; starts the
// next window (reset_peak_memory).
double take_peak_mib(DeviceType type);

class MetricsWriter {
 public:
  // Reads run_dir/metrics.jsonl when resuming (keeping lines with step <= keep_upto), or
  // starts empty files; rewrites both files atomically.
  MetricsWriter(const std::string& run_dir, bool resume, std::int64_t keep_upto);
  void append(const MetricsLine& line);  // appends to both files (and flushes)
  const std::vector<MetricsLine>& lines() const { return lines_; }
  // Draws the loss curve of every line so far into run_dir/loss.png (atomically).
  void write_loss_png() const;

 private:
  std::string dir_;
  std::vector<MetricsLine> lines_;
};

// "[#########.........]  450/1000  45%  loss 0.0513  12.3 img/s  ETA 01:02:03" redrawn in
// place on a terminal (\r); on a pipe or file, one plain line per call to line().
class Progress {
 public:
  Progress(std::int64_t total_steps, std::FILE* out, bool terminal);
  // Called after each step; redraws the bar on a terminal (at most 5 times per second).
  void update(std::int64_t done, double loss, double images_per_s, double eta_seconds);
  // A plain line (logged steps): on a terminal it is printed above the bar.
  void line(const std::string& text);
  void finish();

 private:
  std::int64_t total_;
  std::FILE* out_;
  bool terminal_;
  double last_draw_ = -1;
  std::string last_bar_;
};

// Whether stream is a terminal.
bool is_terminal(std::FILE* stream);
// "1:02:03" or "02:03".
std::string format_duration(double seconds);

}  // namespace ddpm::run
