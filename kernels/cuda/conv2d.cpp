// kernels/cuda/conv2d.cpp: cuDNN convolution plans (legacy API; the cuDNN C++ frontend is
// not used) and the four calls of conv2d.h. Compiled by the host compiler: cuDNN does the
// convolutions, and the forward's bias/sample-bias/residual epilogue is our own kernel
// (kernels/cuda/conv_epilogue.cu).
//
// A plan holds, for one geometry and one combination of settings (engine/math_mode.h):
//   x  [n, h, w, cin]  y/gy [n, ho, wo, cout]  bias [1, cout, 1, 1]   tensor descriptors, NHWC
//   w  [cout, kh, kw, cin]                                              filter descriptor, NHWC (KRSC)
// and per direction (forward, data gradient, filter gradient) a convolution descriptor
// (cross-correlation, pad/stride as given, dilation 1, fp32 compute) carrying that
// direction's math type, its algorithm and its workspace size. One descriptor per direction
// because the math type is per algorithm: a TF32 plan may run its forward on tensor cores
// and its filter gradient with FMA.
//
// Math type. fp32 (the default): CUDNN_FMA_MATH, exact fp32 FMA kernels only, and results
// that report tensor-op math are refused. TF32 allowed: the descriptor starts at
// CUDNN_DEFAULT_MATH (cuDNN 8/9: TF32 permitted for fp32 tensors) and then takes the math
// type the chosen algorithm reported, as cuDNN's find/heuristic results are measured with
// it. CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION (fp32 data converted to fp16) is always refused.
//
// Algorithm choice, per direction, on the direction's first call:
//   benchmark (default): cudnnFind*AlgorithmEx runs every candidate once on the call's own
//     buffers (the output buffer is scribbled on, then overwritten by the real call) with a
//     workspace from the pool: as large as the largest the heuristic lists for a usable
//     algorithm, at most 1 GiB, halved while the pool cannot supply it. Find blocks the host
//     and issues device work, so while cuda::stream() is being captured into a CUDA graph
//     the heuristic is used instead.
//   heuristic: cudnnGet*Algorithm_v7, ranked best first, no device work.
// Among the usable results (status success, math type allowed as above):
//   D = the fastest deterministic one, A = the fastest of all (for the heuristic, "fastest"
//   means first in its ranking).
//   Nondeterministic algorithms not allowed (the default): D. Should cuDNN offer no
//     deterministic algorithm at all for a direction, A, with a warning on stderr; the GPU
//     tests check that the UNet's shapes never need this.
//   Allowed: D when time(D) <= 1.10 * time(A), else A; the heuristic always takes D when it
//     lists one. A 10% margin is about what a deterministic algorithm typically costs over
//     an atomics-based one, and is well above run-to-run timing noise of the find (~2%).
// A deterministic algorithm gives the same bits on every call with the same inputs; the
// benchmark's choice itself can differ between processes (see engine/math_mode.h).
#include "kernels/cuda/conv2d.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "engine/math_mode.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/conv_epilogue.h"

namespace ddpm::cuda {

namespace {

std::string geometry_str(const Conv2dGeometry& g) {
  std::ostringstream os;
  os << "x [" << g.n << ", " << g.h << ", " << g.w << ", " << g.cin << "], weight [" << g.cout << ", " << g.kh << ", "
     << g.kw << ", " << g.cin << "], stride " << g.stride << ", padding " << g.pad;
  return os.str();
}

void log_destroy_failure(const char* what, cudnnStatus_t st) noexcept {
  if (st != CUDNN_STATUS_SUCCESS) std::fprintf(stderr, "ddpm: %s failed: %s\n", what, cudnnGetErrorString(st));
}

// RAII descriptors: created in the constructor, destroyed (failures logged, never
// thrown) in the destructor; neither copyable nor movable.
class TensorDesc {
 public:
  TensorDesc() { DDPM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_)); }
  ~TensorDesc() { log_destroy_failure("cudnnDestroyTensorDescriptor", cudnnDestroyTensorDescriptor(d_)); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  // Logical dims are always given as (n, c, h, w); the NHWC format sets the strides.
  void set_nhwc(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
    DDPM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d_, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, static_cast<int>(n),
                                                static_cast<int>(c), static_cast<int>(h), static_cast<int>(w)));
  }
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc() { DDPM_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_)); }
  ~FilterDesc() { log_destroy_failure("cudnnDestroyFilterDescriptor", cudnnDestroyFilterDescriptor(d_)); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

class ConvDesc {
 public:
  ConvDesc() { DDPM_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_)); }
  ~ConvDesc() { log_destroy_failure("cudnnDestroyConvolutionDescriptor", cudnnDestroyConvolutionDescriptor(d_)); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

// Scratch memory from the pool for the duration of one cuDNN call.
class Workspace {
 public:
  explicit Workspace(std::size_t bytes) : bytes_(bytes), ptr_(bytes ? pool_alloc(bytes) : nullptr) {}
  ~Workspace() { pool_free(ptr_); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t bytes_;
  void* ptr_;
};

// The settings of engine/math_mode.h a plan is made under (part of the cache key).
struct Settings {
  bool tf32 = false;
  bool benchmark = true;
  bool nondeterministic = false;
};

Settings current_settings() {
  return Settings{allow_tf32(), conv_algo_search() == ConvAlgoSearch::benchmark, allow_nondeterministic_conv()};
}

// One direction of a plan: Algo is cudnnConvolutionFwdAlgo_t, ...BwdDataAlgo_t or
// ...BwdFilterAlgo_t.
template <class Algo>
struct Choice {
  ConvDesc conv;  // this direction's descriptor; its math type is the chosen algorithm's
  bool chosen = false;
  Algo algo{};
  cudnnMathType_t math = CUDNN_FMA_MATH;
  bool deterministic = false;
  bool benchmarked = false;
  float find_ms = -1;
  std::size_t bytes = 0;
};

struct Plan {
  Settings settings;
  TensorDesc x, y, bias;
  FilterDesc w;
  Choice<cudnnConvolutionFwdAlgo_t> fwd;
  Choice<cudnnConvolutionBwdDataAlgo_t> bwd_data;
  Choice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter;
};

constexpr float kDeterministicSlack = 1.10f;                   // see the rule at the top
constexpr std::size_t kFindWorkspaceCap = std::size_t(1) << 30;  // 1 GiB
constexpr std::size_t kFindWorkspaceMin = std::size_t(1) << 20;  // a failed request below this: none

// A result cuDNN can run under the plan's settings (see "Math type" at the top).
template <class Perf>
bool usable(const Perf& p, const Settings& s) {
  if (p.status != CUDNN_STATUS_SUCCESS) return false;
  if (p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
  if (!s.tf32 && p.mathType == CUDNN_TENSOR_OP_MATH) return false;
  return true;
}

// The selection rule at the top of the file. `measured`: the results carry find times
// (benchmark); otherwise they are a heuristic ranking, best first. nullptr when nothing
// is usable; *fell_back is set when only nondeterministic algorithms were usable although
// they are not allowed.
template <class Perf>
const Perf* pick(const std::vector<Perf>& perfs, int returned, const Settings& s, bool measured, bool* fell_back) {
  const Perf* best_any = nullptr;
  const Perf* best_det = nullptr;
  for (int i = 0; i < returned; ++i) {
    const Perf& p = perfs[static_cast<std::size_t>(i)];
    if (!usable(p, s)) continue;
    if (!best_any || (measured && p.time < best_any->time)) best_any = &p;
    if (p.determinism == CUDNN_DETERMINISTIC && (!best_det || (measured && p.time < best_det->time))) best_det = &p;
  }
  *fell_back = false;
  if (!best_det) {
    *fell_back = best_any != nullptr && !s.nondeterministic;
    return best_any;
  }
  if (!s.nondeterministic || !measured) return best_det;
  return best_det->time <= kDeterministicSlack * best_any->time ? best_det : best_any;
}

// The find workspace: the largest workspace a usable heuristic result needs, capped.
template <class Perf>
std::size_t find_budget(const std::vector<Perf>& perfs, int returned, const Settings& s) {
  std::size_t most = 0;
  for (int i = 0; i < returned; ++i) {
    const Perf& p = perfs[static_cast<std::size_t>(i)];
    if (usable(p, s)) most = std::max(most, p.memory);
  }
  return std::min(most, kFindWorkspaceCap);
}

// Up to `bytes` of workspace: halves the request while the pool cannot supply it, and gives
// none once a request below 1 MiB fails (the find then tries only workspace-free algorithms).
std::unique_ptr<Workspace> workspace_up_to(std::size_t bytes) {
  while (bytes > 0) {
    try {
      return std::make_unique<Workspace>(bytes);
    } catch (const OutOfMemoryError&) {
      bytes = bytes < kFindWorkspaceMin ? 0 : bytes / 2;
    }
  }
  return std::make_unique<Workspace>(0);
}

// Benchmark unless the plan says heuristic or the stream is being captured (Find would
// synchronize inside a capture).
bool benchmark_now(const Settings& s) {
  if (!s.benchmark) return false;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  DDPM_CUDA_CHECK(cudaStreamIsCapturing(stream(), &status));
  return status == cudaStreamCaptureStatusNone;
}

// Records the picked result in `c` and gives c.conv its math type; the caller then asks
// cuDNN for the workspace size under that math type.
template <class Algo, class Perf>
void adopt(Choice<Algo>& c, const Perf* p, const Settings& s, bool measured, bool fell_back, const char* direction,
           const Conv2dGeometry& g) {
  if (!p)
    DDPM_THROW(CudaError, "conv2d: cuDNN offers no usable " << (s.tf32 ? "fp32/TF32 " : "fp32 ") << direction
                                                            << " algorithm for " << geometry_str(g));
  if (fell_back)
    std::fprintf(stderr,
                 "ddpm: conv2d: cuDNN offers no deterministic %s algorithm for %s; using a nondeterministic one\n",
                 direction, geometry_str(g).c_str());
  c.algo = p->algo;
  c.math = s.tf32 ? p->mathType : CUDNN_FMA_MATH;
  c.deterministic = p->determinism == CUDNN_DETERMINISTIC;
  c.benchmarked = measured;
  c.find_ms = measured ? p->time : -1.f;
  DDPM_CUDNN_CHECK(cudnnSetConvolutionMathType(c.conv.get(), c.math));
}

void choose_forward(Plan& p, const Conv2dGeometry& g, const float* x, const float* w, float* y) {
  cudnnHandle_t h = cudnn();
  int max_count = 0, returned = 0;
  DDPM_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> perfs(static_cast<std::size_t>(max_count));
  DDPM_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x.get(), p.w.get(), p.fwd.conv.get(), p.y.get(),
                                                          max_count, &returned, perfs.data()));
  const bool measured = benchmark_now(p.settings);
  if (measured) {
    auto ws = workspace_up_to(find_budget(perfs, returned, p.settings));
    DDPM_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, p.x.get(), x, p.w.get(), w, p.fwd.conv.get(), p.y.get(),
                                                            y, max_count, &returned, perfs.data(), ws->get(),
                                                            ws->bytes()));
  }
  bool fell_back = false;
  const auto* best = pick(perfs, returned, p.settings, measured, &fell_back);
  adopt(p.fwd, best, p.settings, measured, fell_back, "forward", g);
  DDPM_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), p.w.get(), p.fwd.conv.get(), p.y.get(),
                                                           p.fwd.algo, &p.fwd.bytes));
  p.fwd.chosen = true;
}

void choose_backward_data(Plan& p, const Conv2dGeometry& g, const float* gy, const float* w, float* gx) {
  cudnnHandle_t h = cudnn();
  int max_count = 0, returned = 0;
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perfs(static_cast<std::size_t>(max_count));
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w.get(), p.y.get(), p.bwd_data.conv.get(),
                                                               p.x.get(), max_count, &returned, perfs.data()));
  const bool measured = benchmark_now(p.settings);
  if (measured) {
    auto ws = workspace_up_to(find_budget(perfs, returned, p.settings));
    DDPM_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, p.w.get(), w, p.y.get(), gy, p.bwd_data.conv.get(),
                                                                 p.x.get(), gx, max_count, &returned, perfs.data(),
                                                                 ws->get(), ws->bytes()));
  }
  bool fell_back = false;
  const auto* best = pick(perfs, returned, p.settings, measured, &fell_back);
  adopt(p.bwd_data, best, p.settings, measured, fell_back, "data-gradient", g);
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w.get(), p.y.get(), p.bwd_data.conv.get(),
                                                                p.x.get(), p.bwd_data.algo, &p.bwd_data.bytes));
  p.bwd_data.chosen = true;
}

void choose_backward_filter(Plan& p, const Conv2dGeometry& g, const float* x, const float* gy, float* gw) {
  cudnnHandle_t h = cudnn();
  int max_count = 0, returned = 0;
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perfs(static_cast<std::size_t>(max_count));
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x.get(), p.y.get(), p.bwd_filter.conv.get(),
                                                                 p.w.get(), max_count, &returned, perfs.data()));
  const bool measured = benchmark_now(p.settings);
  if (measured) {
    auto ws = workspace_up_to(find_budget(perfs, returned, p.settings));
    DDPM_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p.x.get(), x, p.y.get(), gy,
                                                                   p.bwd_filter.conv.get(), p.w.get(), gw, max_count,
                                                                   &returned, perfs.data(), ws->get(), ws->bytes()));
  }
  bool fell_back = false;
  const auto* best = pick(perfs, returned, p.settings, measured, &fell_back);
  adopt(p.bwd_filter, best, p.settings, measured, fell_back, "filter-gradient", g);
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x.get(), p.y.get(), p.bwd_filter.conv.get(),
                                                                  p.w.get(), p.bwd_filter.algo, &p.bwd_filter.bytes));
  p.bwd_filter.chosen = true;
}

// Cross-correlation with the geometry's padding and stride, dilation 1, fp32 compute.
void set_conv(ConvDesc& d, const Conv2dGeometry& g, cudnnMathType_t math) {
  const int pad = static_cast<int>(g.pad), stride = static_cast<int>(g.stride);
  DDPM_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d.get(), pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
  DDPM_CUDNN_CHECK(cudnnSetConvolutionMathType(d.get(), math));
}

std::unique_ptr<Plan> make_plan(const Conv2dGeometry& g, const Settings& settings) {
  // The legacy descriptors take int sizes and index tensors with 32-bit offsets.
  for (std::int64_t elems : {g.n * g.h * g.w * g.cin, g.n * g.ho * g.wo * g.cout, g.cout * g.kh * g.kw * g.cin})
    DDPM_CHECK(elems <= INT_MAX, "conv2d: a tensor of " << geometry_str(g) << " has more than 2^31-1 elements, "
                                                        << "beyond what the cuDNN path supports");
  auto p = std::make_unique<Plan>();
  p->settings = settings;
  p->x.set_nhwc(g.n, g.cin, g.h, g.w);
  p->y.set_nhwc(g.n, g.cout, g.ho, g.wo);
  p->bias.set_nhwc(1, g.cout, 1, 1);
  DDPM_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, static_cast<int>(g.cout),
                                              static_cast<int>(g.cin), static_cast<int>(g.kh),
                                              static_cast<int>(g.kw)));
  const cudnnMathType_t math = settings.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  set_conv(p->fwd.conv, g, math);
  set_conv(p->bwd_data.conv, g, math);
  set_conv(p->bwd_filter.conv, g, math);

  // cuDNN's own idea of the output size must agree with ours.
  int on = 0, oc = 0, oh = 0, ow = 0;
  DDPM_CUDNN_CHECK(
      cudnnGetConvolution2dForwardOutputDim(p->fwd.conv.get(), p->x.get(), p->w.get(), &on, &oc, &oh, &ow));
  DDPM_CHECK(on == g.n && oc == g.cout && oh == g.ho && ow == g.wo,
             "conv2d: cuDNN computes output [" << on << ", " << oh << ", " << ow << ", " << oc << "] for "
                                               << geometry_str(g) << ", expected [" << g.n << ", " << g.ho << ", "
                                               << g.wo << ", " << g.cout << "]");
  return p;
}

// Geometry, then the three settings as 0/1.
using Key = std::array<std::int64_t, 12>;

Key key_of(const Conv2dGeometry& g, const Settings& s) {
  return Key{g.n, g.h, g.w, g.cin, g.cout, g.kh, g.kw, g.stride, g.pad, s.tf32, s.benchmark, s.nondeterministic};
}

// Guards the cache and every plan's lazily chosen directions.
std::mutex& plans_mutex() {
  static std::mutex m;
  return m;
}

std::map<Key, std::unique_ptr<Plan>>& plans() {
  static std::map<Key, std::unique_ptr<Plan>> m;
  return m;
}

// The plan for g under the current settings (made on first use); the caller holds
// plans_mutex(). Checks that `stream` is the one the cuDNN handle and the pool use.
Plan& plan_for(const Conv2dGeometry& g, cudaStream_t stream) {
  DDPM_CHECK(stream == cuda::stream(), "conv2d: the cuDNN path runs on cuda::stream() (its workspace is "
                                       "stream-ordered pool memory), but another stream was passed");
  const Settings s = current_settings();
  Key key = key_of(g, s);
  auto it = plans().find(key);
  if (it == plans().end()) it = plans().emplace(key, make_plan(g, s)).first;
  return *it->second;
}

const char* fwd_algo_name(int a) {
  static const char* const names[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM",     "DIRECT",
                                      "FFT",           "FFT_TILING",            "WINOGRAD", "WINOGRAD_NONFUSED"};
  return a >= 0 && a < 8 ? names[a] : "?";
}
const char* bwd_data_algo_name(int a) {
  static const char* const names[] = {"ALGO_0", "ALGO_1", "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
  return a >= 0 && a < 6 ? names[a] : "?";
}
const char* bwd_filter_algo_name(int a) {
  static const char* const names[] = {"ALGO_0",   "ALGO_1",            "FFT",       "ALGO_3",
                                      "WINOGRAD", "WINOGRAD_NONFUSED", "FFT_TILING"};
  return a >= 0 && a < 7 ? names[a] : "?";
}

template <class Algo>
Conv2dAlgoInfo info_of(const Choice<Algo>& c, const char* (*name)(int)) {
  Conv2dAlgoInfo i;
  if (!c.chosen) return i;
  i.chosen = true;
  i.algo = static_cast<int>(c.algo);
  i.name = name(i.algo);
  i.deterministic = c.deterministic;
  i.tf32_permitted = c.math != CUDNN_FMA_MATH;
  i.benchmarked = c.benchmarked;
  i.find_ms = c.find_ms;
  i.workspace_bytes = c.bytes;
  return i;
}

}  // namespace

void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g,
                    cudaStream_t stream, const float* sample_bias, const float* residual) {
  std::unique_lock<std::mutex> lock(plans_mutex());
  Plan& p = plan_for(g, stream);
  if (!p.fwd.chosen) choose_forward(p, g, x, w, y);
  lock.unlock();  // a chosen direction is never changed again
  const float one = 1.f, zero = 0.f;
  {
    Workspace ws(p.fwd.bytes);
    DDPM_CUDNN_CHECK(cudnnConvolutionForward(cudnn(), &one, p.x.get(), x, p.w.get(), w, p.fwd.conv.get(), p.fwd.algo,
                                             ws.get(), ws.bytes(), &zero, p.y.get(), y));
  }
  DDPM_LAUNCH_CHECK("conv2d_forward");
  // y = ((y + bias) + sample_bias) + residual in one read-modify-write of y (it replaced
  // cudnnAddTensor, which moved as many bytes for the bias alone); a no-op when all are null.
  conv2d_epilogue(y, bias, sample_bias, residual, g.n, g.out_pixels(), g.cout, stream);
}

void conv2d_backward_data(const float* gy, const float* w, float* gx, const Conv2dGeometry& g, cudaStream_t stream) {
  std::unique_lock<std::mutex> lock(plans_mutex());
  Plan& p = plan_for(g, stream);
  if (!p.bwd_data.chosen) choose_backward_data(p, g, gy, w, gx);
  lock.unlock();
  const float one = 1.f, zero = 0.f;
  Workspace ws(p.bwd_data.bytes);
  DDPM_CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn(), &one, p.w.get(), w, p.y.get(), gy, p.bwd_data.conv.get(),
                                                p.bwd_data.algo, ws.get(), ws.bytes(), &zero, p.x.get(), gx));
  DDPM_LAUNCH_CHECK("conv2d_backward_data");
}

void conv2d_backward_filter(const float* x, const float* gy, float* gw, const Conv2dGeometry& g,
                            cudaStream_t stream) {
  std::unique_lock<std::mutex> lock(plans_mutex());
  Plan& p = plan_for(g, stream);
  if (!p.bwd_filter.chosen) choose_backward_filter(p, g, x, gy, gw);
  lock.unlock();
  const float one = 1.f, zero = 0.f;
  Workspace ws(p.bwd_filter.bytes);
  DDPM_CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn(), &one, p.x.get(), x, p.y.get(), gy, p.bwd_filter.conv.get(),
                                                  p.bwd_filter.algo, ws.get(), ws.bytes(), &zero, p.w.get(), gw));
  DDPM_LAUNCH_CHECK("conv2d_backward_filter");
}

void conv2d_backward_bias(const float* gy, float* gb, const Conv2dGeometry& g, cudaStream_t stream) {
  std::unique_lock<std::mutex> lock(plans_mutex());
  Plan& p = plan_for(g, stream);
  lock.unlock();
  const float one = 1.f, zero = 0.f;
  // gb [1, cout, 1, 1] = sum of gy over n, ho, wo (a reduction: no algorithm, no TF32).
  DDPM_CUDNN_CHECK(cudnnConvolutionBackwardBias(cudnn(), &one, p.y.get(), gy, &zero, p.bias.get(), gb));
  DDPM_LAUNCH_CHECK("conv2d_backward_bias");
}

std::size_t conv2d_plan_count() {
  std::lock_guard<std::mutex> lock(plans_mutex());
  return plans().size();
}

bool Conv2dPlanInfo::deterministic() const {
  for (const Conv2dAlgoInfo* a : {&forward, &backward_data, &backward_filter})
    if (a->chosen && !a->deterministic) return false;
  return true;
}

std::string Conv2dPlanInfo::str() const {
  if (!exists) return "no plan";
  std::ostringstream os;
  os << std::fixed << std::setprecision(3);
  const char* labels[] = {"fwd", "dgrad", "wgrad"};
  const Conv2dAlgoInfo* dirs[] = {&forward, &backward_data, &backward_filter};
  for (int i = 0; i < 3; ++i) {
    const Conv2dAlgoInfo& a = *dirs[i];
    if (i) os << " | ";
    os << labels[i] << " ";
    if (!a.chosen) {
      os << "-";
      continue;
    }
    os << a.name << (a.deterministic ? " det " : " nondet ") << (a.tf32_permitted ? "tf32" : "fma");
    if (a.benchmarked) os << " " << a.find_ms << "ms";
    os << " ws " << std::setprecision(1) << static_cast<double>(a.workspace_bytes) / (1 << 20) << "MiB"
       << std::setprecision(3);
  }
  return os.str();
}

Conv2dPlanInfo conv2d_plan_info(const Conv2dGeometry& g) {
  std::lock_guard<std::mutex> lock(plans_mutex());
  Conv2dPlanInfo info;
  auto it = plans().find(key_of(g, current_settings()));
  if (it == plans().end()) return info;
  const Plan& p = *it->second;
  info.exists = true;
  info.forward = info_of(p.fwd, fwd_algo_name);
  info.backward_data = info_of(p.bwd_data, bwd_data_algo_name);
  info.backward_filter = info_of(p.bwd_filter, bwd_filter_algo_name);
  return info;
}

}  // namespace ddpm::cuda
