#include "models/run/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "engine/io/png.h"
#include "engine/storage.h"
#include "models/run/loss_plot.h"

namespace fs = std::filesystem;

namespace ddpm::run {
namespace {

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
double number_or_nan(const nlohmann::json& j) {
  return j.is_number() ? j.get<double>() : std::numeric_limits<double>::quiet_NaN();
}
std::string csv_number(double v) {
  if (!std::isfinite(v)) return "";
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

nlohmann::json MetricsLine::to_json() const {
  nlohmann::json j;
  j["step"] = step;
  j["loss"] = finite_or_null(loss);
  for (int q = 0; q < 4; ++q) j["loss_q" + std::to_string(q)] = finite_or_null(loss_quartile[q]);
  j["grad_norm"] = finite_or_null(grad_norm);
  j["lr"] = lr;
  j["images_per_s"] = images_per_s;
  j["skipped"] = skipped;
  j["peak_mib"] = peak_mib;
  if (std::isfinite(video_loss)) j["video_loss"] = video_loss;
  if (std::isfinite(still_loss)) j["still_loss"] = still_loss;
  return j;
}

MetricsLine MetricsLine::from_json(const nlohmann::json& j) {
  MetricsLine m;
  m.step = j.at("step").get<std::int64_t>();
  m.loss = number_or_nan(j.at("loss"));
  for (int q = 0; q < 4; ++q) m.loss_quartile[q] = number_or_nan(j.at("loss_q" + std::to_string(q)));
  m.grad_norm = number_or_nan(j.at("grad_norm"));
  m.lr = j.at("lr").get<double>();
  m.images_per_s = j.at("images_per_s").get<double>();
  m.skipped = j.value("skipped", std::int64_t{0});
  m.peak_mib = j.value("peak_mib", 0.0);
  if (j.contains("video_loss")) m.video_loss = number_or_nan(j.at("video_loss"));
  if (j.contains("still_loss")) m.still_loss = number_or_nan(j.at("still_loss"));
  return m;
}

std::string MetricsLine::to_csv() const {
  std::ostringstream os;
  os << step << ',' << csv_number(loss);
  for (double q : loss_quartile) os << ',' << csv_number(q);
  os << ',' << csv_number(grad_norm) << ',' << csv_number(lr) << ',' << csv_number(images_per_s) << ',' << skipped
     << ',' << csv_number(peak_mib);
  return os.str();
}

double take_peak_mib(DeviceType type) {
  const double mib = static_cast<double>(memory_stats(type).peak) / (1 << 20);
  reset_peak_memory(type);
  return mib;
}

MetricsWriter::MetricsWriter(const std::string& run_dir, bool resume, std::int64_t keep_upto) : dir_(run_dir) {
  const fs::path jsonl = fs::path(run_dir) / "metrics.jsonl";
  if (resume && fs::exists(jsonl)) {
    std::istringstream in(read_file(jsonl.string()));
    std::string text;
    while (std::getline(in, text)) {
      if (text.empty()) continue;
      try {
        MetricsLine m = MetricsLine::from_json(nlohmann::json::parse(text));
        if (m.step <= keep_upto) lines_.push_back(m);
      } catch (const nlohmann::json::exception&) {
        break;  // a line cut short by a crash: everything before it is kept
      }
    }
  }
  std::string j, c = std::string(kMetricsCsvHeader) + "\n";
  for (const MetricsLine& m : lines_) {
    j += m.to_json().dump() + "\n";
    c += m.to_csv() + "\n";
  }
  write_file_atomic(jsonl.string(), j);
  write_file_atomic((fs::path(run_dir) / "metrics.csv").string(), c);
}

void MetricsWriter::append(const MetricsLine& line) {
  lines_.push_back(line);
  std::ofstream j(fs::path(dir_) / "metrics.jsonl", std::ios::app);
  j << line.to_json().dump() << "\n";
  std::ofstream c(fs::path(dir_) / "metrics.csv", std::ios::app);
  c << line.to_csv() << "\n";
  DDPM_CHECK_AS(j.good() && c.good(), IoError, "could not append to the metrics files in " << dir_);
}

void MetricsWriter::write_loss_png() const {
  std::vector<std::int64_t> steps;
  std::vector<double> losses;
  for (const MetricsLine& m : lines_) {  // draw_loss_curve leaves out non-finite / non-positive losses
    steps.push_back(m.step);
    losses.push_back(m.loss);
  }
  const int h = 360, w = 640;
  std::vector<std::uint8_t> img = draw_loss_curve(steps, losses, h, w);
  write_png((fs::path(dir_) / "loss.png").string(), img.data(), h, w, 3);
}

bool is_terminal(std::FILE* stream) { return stream != nullptr && ::isatty(::fileno(stream)) == 1; }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
  return buf;
}

Progress::Progress(std::int64_t total_steps, std::FILE* out, bool terminal)
    : total_(total_steps), out_(out), terminal_(terminal) {}

void Progress::update(std::int64_t done, double loss, double images_per_s, double eta_seconds) {
  if (!terminal_ || out_ == nullptr) return;
  const double t = now_seconds();
  if (done < total_ && last_draw_ >= 0 && t - last_draw_ < 0.2) return;
  last_draw_ = t;
  const int width = 24;
  const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
  char buf[200];
  std::snprintf(buf, sizeof buf, "[%s%s] %lld/%lld %3d%%  loss %.4g  %.1f img/s  ETA %s",
                std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                static_cast<long long>(done), static_cast<long long>(total_),
                total_ > 0 ? static_cast<int>(100 * done / total_) : 100, loss, images_per_s,
                format_duration(eta_seconds).c_str());
  last_bar_ = buf;
  std::fprintf(out_, "\r%s\033[K", buf);
  std::fflush(out_);
}

void Progress::line(const std::string& text) {
  if (out_ == nullptr) return;
  if (terminal_)
    std::fprintf(out_, "\r\033[K%s\n%s", text.c_str(), last_bar_.c_str());
  else
    std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

void Progress::finish() {
  if (out_ != nullptr && terminal_ && !last_bar_.empty()) std::fprintf(out_, "\n");
  if (out_ != nullptr) std::fflush(out_);
}

}  // namespace ddpm::run
