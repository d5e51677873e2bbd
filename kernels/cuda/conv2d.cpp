// kernels/cuda/conv2d.cpp: cuDNN convolution plans (legacy API; the cuDNN C++ frontend is
// not used) and the four calls of conv2d.h. Compiled by the host compiler: no kernels of
// our own, cuDNN does all device work.
//
// A plan holds, for one geometry:
//   x  [n, h, w, cin]  y/gy [n, ho, wo, cout]  bias [1, cout, 1, 1]   tensor descriptors, NHWC
//   w  [cout, kh, kw, cin]                                              filter descriptor, NHWC (KRSC)
//   cross-correlation, pad/stride as given, dilation 1, fp32 compute, CUDNN_FMA_MATH
// and one algorithm per direction. CUDNN_DEFAULT_MATH would let cuDNN use TF32 tensor
// cores on Ampere and later (10-bit mantissa inputs); FMA_MATH keeps the sums exact fp32.
// Algorithms come from the *_v7 heuristics (no trial runs, so choosing one issues no
// device work and is safe during CUDA graph capture): the first successful, non-tensor-op
// result, preferring a deterministic one when the heuristic offers any.
#include "kernels/cuda/conv2d.h"

#include <climits>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"

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

struct Plan {
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  cudnnConvolutionFwdAlgo_t fwd_algo{};
  cudnnConvolutionBwdDataAlgo_t bwd_data_algo{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo{};
  std::size_t fwd_bytes = 0, bwd_data_bytes = 0, bwd_filter_bytes = 0;
};

// From a heuristic's ranked results (fastest first): the first usable one, where usable
// means it runs (status success) in plain fp32 (no tensor-op math); a deterministic one
// if there is any.
template <class Perf>
const Perf* pick(const std::vector<Perf>& perfs, int returned) {
  const Perf* any = nullptr;
  for (int i = 0; i < returned; ++i) {
    const Perf& p = perfs[static_cast<std::size_t>(i)];
    bool usable = p.status == CUDNN_STATUS_SUCCESS && p.mathType != CUDNN_TENSOR_OP_MATH &&
                  p.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (!usable) continue;
    if (p.determinism == CUDNN_DETERMINISTIC) return &p;
    if (!any) any = &p;
  }
  return any;
}

void choose_algorithms(cudnnHandle_t h, Plan& p, const Conv2dGeometry& g) {
  int max_count = 0, returned = 0;

  DDPM_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd(static_cast<std::size_t>(max_count));
  DDPM_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(), max_count,
                                                          &returned, fwd.data()));
  const auto* f = pick(fwd, returned);
  if (!f) DDPM_THROW(CudaError, "conv2d: cuDNN offers no fp32 forward algorithm for " << geometry_str(g));
  p.fwd_algo = f->algo;
  DDPM_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(),
                                                           p.fwd_algo, &p.fwd_bytes));

  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> bd(static_cast<std::size_t>(max_count));
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w.get(), p.y.get(), p.conv.get(), p.x.get(),
                                                               max_count, &returned, bd.data()));
  const auto* d = pick(bd, returned);
  if (!d) DDPM_THROW(CudaError, "conv2d: cuDNN offers no fp32 data-gradient algorithm for " << geometry_str(g));
  p.bwd_data_algo = d->algo;
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w.get(), p.y.get(), p.conv.get(), p.x.get(),
                                                                p.bwd_data_algo, &p.bwd_data_bytes));

  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> bf(static_cast<std::size_t>(max_count));
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(),
                                                                 max_count, &returned, bf.data()));
  const auto* w = pick(bf, returned);
  if (!w) DDPM_THROW(CudaError, "conv2d: cuDNN offers no fp32 filter-gradient algorithm for " << geometry_str(g));
  p.bwd_filter_algo = w->algo;
  DDPM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(),
                                                                  p.bwd_filter_algo, &p.bwd_filter_bytes));
}

std::unique_ptr<Plan> make_plan(cudnnHandle_t h, const Conv2dGeometry& g) {
  // The legacy descriptors take int sizes and index tensors with 32-bit offsets.
  for (std::int64_t elems : {g.n * g.h * g.w * g.cin, g.n * g.ho * g.wo * g.cout, g.cout * g.kh * g.kw * g.cin})
    DDPM_CHECK(elems <= INT_MAX, "conv2d: a tensor of " << geometry_str(g) << " has more than 2^31-1 elements, "
                                                        << "beyond what the cuDNN path supports");
  auto p = std::make_unique<Plan>();
  p->x.set_nhwc(g.n, g.cin, g.h, g.w);
  p->y.set_nhwc(g.n, g.cout, g.ho, g.wo);
  p->bias.set_nhwc(1, g.cout, 1, 1);
  DDPM_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, static_cast<int>(g.cout),
                                              static_cast<int>(g.cin), static_cast<int>(g.kh),
                                              static_cast<int>(g.kw)));
  const int pad = static_cast<int>(g.pad), stride = static_cast<int>(g.stride);
  DDPM_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv.get(), pad, pad, stride, stride, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  DDPM_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv.get(), CUDNN_FMA_MATH));

  // cuDNN's own idea of the output size must agree with ours.
  int on = 0, oc = 0, oh = 0, ow = 0;
  DDPM_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv.get(), p->x.get(), p->w.get(), &on, &oc, &oh, &ow));
  DDPM_CHECK(on == g.n && oc == g.cout && oh == g.ho && ow == g.wo,
             "conv2d: cuDNN computes output [" << on << ", " << oh << ", " << ow << ", " << oc << "] for "
                                               << geometry_str(g) << ", expected [" << g.n << ", " << g.ho << ", "
                                               << g.wo << ", " << g.cout << "]");
  choose_algorithms(h, *p, g);
  return p;
}

using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                       std::int64_t, std::int64_t, std::int64_t>;

std::mutex& plans_mutex() {
  static std::mutex m;
  return m;
}

std::map<Key, std::unique_ptr<Plan>>& plans() {
  static std::map<Key, std::unique_ptr<Plan>> m;
  return m;
}

// The plan for g (made on first use), with the cuDNN handle checked to be on `stream`.
const Plan& plan_for(const Conv2dGeometry& g, cudaStream_t stream) {
  DDPM_CHECK(stream == cuda::stream(), "conv2d: the cuDNN path runs on cuda::stream() (its workspace is "
                                       "stream-ordered pool memory), but another stream was passed");
  Key key{g.n, g.h, g.w, g.cin, g.cout, g.kh, g.kw, g.stride, g.pad};
  std::lock_guard<std::mutex> lock(plans_mutex());
  auto it = plans().find(key);
  if (it == plans().end()) it = plans().emplace(key, make_plan(cudnn(), g)).first;
  return *it->second;
}

}  // namespace

void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const Conv2dGeometry& g,
                    cudaStream_t stream) {
  const Plan& p = plan_for(g, stream);
  const float one = 1.f, zero = 0.f;
  {
    Workspace ws(p.fwd_bytes);
    DDPM_CUDNN_CHECK(cudnnConvolutionForward(cudnn(), &one, p.x.get(), x, p.w.get(), w, p.conv.get(), p.fwd_algo,
                                             ws.get(), ws.bytes(), &zero, p.y.get(), y));
  }
  // y += bias, broadcast from [1, cout, 1, 1] over n, ho, wo.
  if (bias) DDPM_CUDNN_CHECK(cudnnAddTensor(cudnn(), &one, p.bias.get(), bias, &one, p.y.get(), y));
  DDPM_LAUNCH_CHECK("conv2d_forward");
}

void conv2d_backward_data(const float* gy, const float* w, float* gx, const Conv2dGeometry& g, cudaStream_t stream) {
  const Plan& p = plan_for(g, stream);
  const float one = 1.f, zero = 0.f;
  Workspace ws(p.bwd_data_bytes);
  DDPM_CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn(), &one, p.w.get(), w, p.y.get(), gy, p.conv.get(),
                                                p.bwd_data_algo, ws.get(), ws.bytes(), &zero, p.x.get(), gx));
  DDPM_LAUNCH_CHECK("conv2d_backward_data");
}

void conv2d_backward_filter(const float* x, const float* gy, float* gw, const Conv2dGeometry& g,
                            cudaStream_t stream) {
  const Plan& p = plan_for(g, stream);
  const float one = 1.f, zero = 0.f;
  Workspace ws(p.bwd_filter_bytes);
  DDPM_CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn(), &one, p.x.get(), x, p.y.get(), gy, p.conv.get(),
                                                  p.bwd_filter_algo, ws.get(), ws.bytes(), &zero, p.w.get(), gw));
  DDPM_LAUNCH_CHECK("conv2d_backward_filter");
}

void conv2d_backward_bias(const float* gy, float* gb, const Conv2dGeometry& g, cudaStream_t stream) {
  const Plan& p = plan_for(g, stream);
  const float one = 1.f, zero = 0.f;
  // gb [1, cout, 1, 1] = sum of gy over n, ho, wo.
  DDPM_CUDNN_CHECK(cudnnConvolutionBackwardBias(cudnn(), &one, p.y.get(), gy, &zero, p.bias.get(), gb));
  DDPM_LAUNCH_CHECK("conv2d_backward_bias");
}

std::size_t conv2d_plan_count() {
  std::lock_guard<std::mutex> lock(plans_mutex());
  return plans().size();
}

}  // namespace ddpm::cuda
