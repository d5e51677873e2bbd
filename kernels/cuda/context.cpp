#include "kernels/cuda/context.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "engine/math_mode.h"
#include "kernels/cuda/check.h"

namespace ddpm::cuda {

bool sync_after_every_kernel() {
  static const bool on = [] {
    const char* v = std::getenv("DDPM_SYNC_KERNELS");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

namespace {
std::atomic<std::uint64_t> g_kernel_launches{0};
std::atomic<std::uint64_t> g_library_calls{0};
}  // namespace

void count_kernel_launch() noexcept { g_kernel_launches.fetch_add(1, std::memory_order_relaxed); }
void count_library_call() noexcept { g_library_calls.fetch_add(1, std::memory_order_relaxed); }
std::uint64_t kernel_launch_count() noexcept { return g_kernel_launches.load(std::memory_order_relaxed); }
std::uint64_t library_call_count() noexcept { return g_library_calls.load(std::memory_order_relaxed); }

bool is_library_compute_call(const char* expr) noexcept {
  // The function name follows the library prefix; bookkeeping calls start with a verb that
  // does no device work.
  const char* name = nullptr;
  if (std::strncmp(expr, "cublas", 6) == 0) name = expr + 6;
  else if (std::strncmp(expr, "cudnn", 5) == 0) name = expr + 5;
  if (name == nullptr) return false;
  for (const char* verb : {"Create", "Destroy", "Set", "Get", "Find"})
    if (std::strncmp(name, verb, std::strlen(verb)) == 0) return false;
  return true;
}

namespace {

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cudaMemPool_t pool = nullptr;
  void* cublas_workspace = nullptr;
  // The TF32 setting (engine/math_mode.h) last applied to the cuBLAS handle.
  std::atomic<bool> cublas_tf32{false};
  bool ready = false;
};

Context& ctx() {
  static Context c;
  return c;
}

std::mutex& ctx_mutex() {
  static std::mutex m;
  return m;
}

int g_requested_device = 0;
constexpr std::size_t kCublasWorkspaceBytes = std::size_t(32) << 20;

Context& ready_ctx() {
  Context& c = ctx();
  if (c.ready) return c;
  std::lock_guard<std::mutex> lock(ctx_mutex());
  if (c.ready) return c;
  c.device = g_requested_device;
  DDPM_CUDA_CHECK(cudaSetDevice(c.device));
  DDPM_CUDA_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
  DDPM_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&c.pool, c.device));
  // Keep freed memory in the pool instead of returning it to the driver at every sync.
  std::uint64_t threshold = UINT64_MAX;
  DDPM_CUDA_CHECK(cudaMemPoolSetAttribute(c.pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  DDPM_CUBLAS_CHECK(cublasCreate(&c.cublas));
  DDPM_CUBLAS_CHECK(cublasSetStream(c.cublas, c.stream));
  DDPM_CUBLAS_CHECK(cublasSetMathMode(c.cublas, CUBLAS_DEFAULT_MATH));
  DDPM_CUBLAS_CHECK(cublasSetPointerMode(c.cublas, CUBLAS_POINTER_MODE_HOST));
  // A workspace of our own: cuBLAS must not allocate during CUDA-graph capture. 32 MiB is
  // cuBLAS's recommendation for Hopper. (cublasSetStream resets it; callers that switch
  // streams must set it again.)
  DDPM_CUDA_CHECK(cudaMalloc(&c.cublas_workspace, kCublasWorkspaceBytes));
  DDPM_CUBLAS_CHECK(cublasSetWorkspace(c.cublas, c.cublas_workspace, kCublasWorkspaceBytes));
  DDPM_CUDNN_CHECK(cudnnCreate(&c.cudnn));
  DDPM_CUDNN_CHECK(cudnnSetStream(c.cudnn, c.stream));
  c.ready = true;
  return c;
}

}  // namespace

void set_device(int index) {
  DDPM_CHECK(!ctx().ready || ctx().device == index,
             "cuda::set_device(" << index << "): this process already uses device " << ctx().device
                                 << "; one process drives one GPU");
  g_requested_device = index;
}

int current_device() { return ready_ctx().device; }
cudaStream_t stream() { return ready_ctx().stream; }

// The handle's math mode follows allow_tf32(): checked on every hand-out (one relaxed load
// and a compare), changed under the context mutex only when the setting has changed, so
// every cuBLAS call made through cublas() sees the current setting.
cublasHandle_t cublas() {
  Context& c = ready_ctx();
  const bool want = allow_tf32();
  if (c.cublas_tf32.load(std::memory_order_relaxed) != want) {
    std::lock_guard<std::mutex> lock(ctx_mutex());
    if (c.cublas_tf32.load(std::memory_order_relaxed) != want) {
      DDPM_CUBLAS_CHECK(cublasSetMathMode(c.cublas, want ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
      c.cublas_tf32.store(want, std::memory_order_relaxed);
    }
  }
  return c.cublas;
}

cudnnHandle_t cudnn() { return ready_ctx().cudnn; }

void* pool_alloc(std::size_t bytes) {
  Context& c = ready_ctx();
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t err = cudaMallocAsync(&p, bytes, c.stream);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    std::size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    DDPM_THROW(OutOfMemoryError,
               "out of GPU memory: requested " << bytes << " bytes (" << (bytes >> 20) << " MiB) with "
                                               << (free_b >> 20) << " MiB free of " << (total_b >> 20)
                                               << " MiB; the pool holds " << (pool_reserved_bytes() >> 20)
                                               << " MiB");  // the apps add which flag to lower
  }
  DDPM_CUDA_CHECK(err);
  return p;
}

void pool_free(void* ptr) noexcept {
  if (!ptr) return;
  Context& c = ctx();
  if (!c.ready) return;
  cudaError_t err = cudaFreeAsync(ptr, c.stream);
  if (err != cudaSuccess)
    std::fprintf(stderr, "ddpm: cudaFreeAsync failed: %s\n", cudaGetErrorString(err));
}

std::size_t pool_reserved_bytes() {
  std::uint64_t v = 0;
  if (ctx().ready) cudaMemPoolGetAttribute(ctx().pool, cudaMemPoolAttrReservedMemCurrent, &v);
  return static_cast<std::size_t>(v);
}

std::size_t pool_used_bytes() {
  std::uint64_t v = 0;
  if (ctx().ready) cudaMemPoolGetAttribute(ctx().pool, cudaMemPoolAttrUsedMemCurrent, &v);
  return static_cast<std::size_t>(v);
}

void synchronize() { DDPM_CUDA_CHECK(cudaStreamSynchronize(stream())); }

}  // namespace ddpm::cuda
