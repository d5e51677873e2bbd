// models/data/hints.cpp: see hints.h.
#include "models/data/hints.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/error.h"
#include "models/diffusion/super_res.h"

namespace ddpm::data {

namespace {

// The registry: name, whether it takes ":K", and its help line.
struct HintKind {
  const char* name;
  bool takes_arg;
  const char* help;
};
constexpr HintKind kHints[] = {
    {"edges", false, "edges: Sobel gradient magnitude of the luminance, 1 channel"},
    {"lowres", true, "lowres:K: the image area-averaged to K x K and upsampled back bilinearly, its channels"},
};

const HintKind* find_kind(const std::string& name) {
  for (const HintKind& k : kHints)
    if (name == k.name) return &k;
  return nullptr;
}

}  // namespace

std::string hint_help() {
  std::ostringstream os;
  for (std::size_t i = 0; i < std::size(kHints); ++i) os << (i ? "; " : "") << kHints[i].help;
  return os.str();
}

HintSpec parse_hint(const std::string& text) {
  const std::size_t colon = text.find(':');
  HintSpec h;
  h.name = text.substr(0, colon);
  const HintKind* kind = find_kind(h.name);
  DDPM_CHECK(kind != nullptr, "unknown hint '" << text << "'; the hints are " << hint_help());
  if (!kind->takes_arg) {
    DDPM_CHECK(colon == std::string::npos, "the hint '" << h.name << "' takes no argument, got '" << text << "'");
    return h;
  }
  const std::string arg = colon == std::string::npos ? std::string() : text.substr(colon + 1);
  DDPM_CHECK(!arg.empty() && arg.size() <= 6 && std::all_of(arg.begin(), arg.end(), ::isdigit) && std::stoi(arg) >= 1,
             "the hint '" << h.name << "' needs a size: " << h.name << ":K with K >= 1, got '" << text << "'");
  h.arg = std::stoi(arg);
  return h;
}

std::string hint_string(const HintSpec& h) { return h.arg > 0 ? h.name + ":" + std::to_string(h.arg) : h.name; }

int hint_channels(const HintSpec& h, int image_channels) { return h.name == "edges" ? 1 : image_channels; }

void check_hint_fits(const HintSpec& h, int size) {
  if (h.name != "lowres") return;
  DDPM_CHECK(h.arg < size && size % h.arg == 0,
             "the hint lowres:" << h.arg << " needs K smaller than the image size " << size << " and dividing it");
}

std::vector<double> sobel_edge_hint(const std::vector<double>& y, int H, int W) {
  auto at = [&](int r, int c) {  // replicated borders
    r = std::clamp(r, 0, H - 1);
    c = std::clamp(c, 0, W - 1);
    return y[static_cast<std::size_t>(r) * W + c];
  };
  std::vector<double> e(static_cast<std::size_t>(H) * W);
  for (int r = 0; r < H; ++r)
    for (int c = 0; c < W; ++c) {
      const double gx = (at(r - 1, c + 1) + 2 * at(r, c + 1) + at(r + 1, c + 1)) -
                        (at(r - 1, c - 1) + 2 * at(r, c - 1) + at(r + 1, c - 1));
      const double gy = (at(r + 1, c - 1) + 2 * at(r + 1, c) + at(r + 1, c + 1)) -
                        (at(r - 1, c - 1) + 2 * at(r - 1, c) + at(r - 1, c + 1));
      e[static_cast<std::size_t>(r) * W + c] = 2.0 * std::min(std::sqrt(gx * gx + gy * gy) / 4.0, 1.0) - 1.0;
    }
  return e;
}

Tensor compute_hint(const HintSpec& h, const Tensor& x) {
  DDPM_CHECK(x.defined() && x.ndim() == 4 && x.device().is_cpu(),
             "compute_hint: the images must be [N, H, W, C] on the CPU, got " << (x.defined() ? x.describe() : "none"));
  const int N = static_cast<int>(x.dim(0)), H = static_cast<int>(x.dim(1)), W = static_cast<int>(x.dim(2)),
            C = static_cast<int>(x.dim(3));
  if (h.name == "lowres") {
    DDPM_CHECK(H == W, "the hint lowres:" << h.arg << " needs square images, got " << H << "x" << W);
    check_hint_fits(h, H);
    return diffusion::super_res_condition(x.to(DType::f32), h.arg);
  }
  DDPM_CHECK(h.name == "edges", "compute_hint: unknown hint '" << h.name << "'");
  DDPM_CHECK(C == 1 || C == 3, "the edges hint needs 1- or 3-channel images, got " << C << " channels");
  const std::vector<double> v = x.to_double_vector();
  const std::size_t P = static_cast<std::size_t>(H) * W;
  std::vector<float> out(static_cast<std::size_t>(N) * P);
  std::vector<double> y(P);
  for (int n = 0; n < N; ++n) {
    const double* px = v.data() + static_cast<std::size_t>(n) * P * C;
    for (std::size_t p = 0; p < P; ++p) {
      const double* q = px + p * C;
      const double lum = C == 1 ? q[0] : 0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2];  // in [-1, 1]
      y[p] = (lum + 1.0) / 2.0;                                                       // in [0, 1]
    }
    const std::vector<double> e = sobel_edge_hint(y, H, W);
    for (std::size_t p = 0; p < P; ++p) out[static_cast<std::size_t>(n) * P + p] = static_cast<float>(e[p]);
  }
  return Tensor::from_vector(out, {N, H, W, 1});
}

}  // namespace ddpm::data
