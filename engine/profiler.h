// engine/profiler.h: per-op timing, cost estimates and NVTX ranges.
//
// Every op opens an OpScope at the top of its forward and of its backward lambda:
//   OpScope scope("conv2d", flops, bytes, x.device());
// with an ESTIMATE of the work:
//   flops  floating-point operations (a multiply-add counts 2): GEMM 2*M*N*K,
//          conv2d 2*N*Ho*Wo*Cout*kh*kw*Cin, elementwise ~1 per output element;
//   bytes  ideal DRAM traffic: every input read once and every output written once
//          (what a perfectly fused kernel would move; real kernels move more).
// Achieved rates (FLOP/s, B/s) are these estimates divided by the measured time.
//
// Always (CUDA builds): the scope pushes an NVTX range named after the op, so an Nsight
// Systems timeline shows every op and the kernels it launched. Builds without CUDA: no-op.
//
// Only while profiling is on (Profiler::start() .. Profiler::stop(); off by default, so a
// disabled scope costs one branch plus the NVTX push): the scope's time is recorded.
//   CUDA: two events from a reused pool are recorded on cuda::stream() around the op; they
//         are resolved in stop(), so profiling never synchronizes per op.
//   CPU:  std::chrono::steady_clock around the op (CPU ops are synchronous).
// Nesting (an op calling other ops: linear.backward -> matmul + sum, add.backward ->
// sum): the time is attributed to the OUTERMOST scope only, inclusive of its inner ops,
// whose ranges still appear in NVTX. So the records never overlap and their times add up
// to the time spent inside ops; the rest of the region is host work and launch gaps.
//
// Profiling is single-threaded, like the engine's tape, and must not span a CUDA graph
// capture (the timing events would be captured too). Work outside any op (Tensor::to
// copies, Tensor::zeros, host code) is not recorded: it is the region's remainder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/dtype.h"
#if DDPM_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace ddpm {

// One outermost op call of a profiled region.
struct OpRecord {
  std::string name;
  Device device;
  double ms = 0.0;     // measured time
  double flops = 0.0;  // estimate (see above)
  double bytes = 0.0;  // estimate
};

// The records of one name, summed.
struct OpSummary {
  std::string name;
  std::int64_t calls = 0;
  double ms = 0.0, flops = 0.0, bytes = 0.0;
};

struct ProfileResult {
  std::vector<OpRecord> records;  // in call order
  double total_ms = 0.0;          // the whole region, start() to stop()
  // Launches counted between start() and stop() (regions on a CUDA device; 0 otherwise):
  std::uint64_t engine_kernels = 0;  // kernels launched by the engine (each DDPM_LAUNCH_CHECK)
  std::uint64_t library_calls = 0;   // cuBLAS/cuDNN compute calls, each one or more kernels
  bool counts_launches = false;      // true for a region on a CUDA device

  double op_ms() const;  // sum of the records' times
  // Summed per name, sorted by time, longest first.
  std::vector<OpSummary> summarize() const;
};

class Profiler {
 public:
  // Clears the records and turns profiling on; `device` says how the region is timed (CUDA:
  // events on cuda::stream(); CPU: the steady clock). Throws if profiling is already on.
  static void start(Device device);
  // Turns profiling off, waits for the device once, and returns what was recorded.
  static ProfileResult stop();
  static bool enabled() { return enabled_; }

 private:
  friend class OpScope;
  static inline bool enabled_ = false;
};

class OpScope {
 public:
  OpScope(const char* name, double flops, double bytes, Device device) {
    push_range(name);
    if (Profiler::enabled_) {
      try {
        begin(name, flops, bytes, device);
      } catch (...) {
        pop_range();  // the destructor will not run
        throw;
      }
    }
  }
  ~OpScope() {
    if (entered_) end();
    pop_range();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  void begin(const char* name, double flops, double bytes, Device device);
  void end();
  static void push_range(const char* name) {
#if DDPM_HAVE_CUDA
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  static void pop_range() {
#if DDPM_HAVE_CUDA
    nvtxRangePop();
#endif
  }

  bool entered_ = false;  // counted in the nesting depth
  bool outermost_ = false;
  std::uint64_t generation_ = 0;  // the profiled region this scope began in
  std::size_t index_ = 0;         // its record
};

// Cost estimates shared by the ops (bytes = elements moved x element size).
namespace cost {
// C[M,N] = A[M,K] B[K,N], `batch` times, plus `extra_out` output elements read (beta = 1).
inline double gemm_flops(std::int64_t M, std::int64_t N, std::int64_t K, std::int64_t batch = 1) {
  return 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) * static_cast<double>(batch);
}
inline double conv2d_flops(std::int64_t n, std::int64_t ho, std::int64_t wo, std::int64_t cout, std::int64_t kh,
                           std::int64_t kw, std::int64_t cin) {
  return 2.0 * static_cast<double>(n) * static_cast<double>(ho) * static_cast<double>(wo) *
         static_cast<double>(cout) * static_cast<double>(kh) * static_cast<double>(kw) * static_cast<double>(cin);
}
// Bytes of `elements` values of dtype t.
inline double bytes(std::int64_t elements, DType t) {
  return static_cast<double>(elements) * static_cast<double>(dtype_size(t));
}
}  // namespace cost

}  // namespace ddpm
