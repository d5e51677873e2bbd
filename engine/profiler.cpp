// engine/profiler.cpp: the recording side of OpScope and the Profiler region (see profiler.h).
//
// A record is opened by the outermost scope only. CPU scopes read the steady clock; CUDA
// scopes take a pair of events from a pool that grows to the largest region seen and is
// reused (no cudaEventCreate inside a steady-state step), and record them on
// cuda::stream(). stop() synchronizes once and reads every pair's elapsed time.
#include "engine/profiler.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "engine/error.h"
#if DDPM_HAVE_CUDA
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#endif

namespace ddpm {

namespace {

using Clock = std::chrono::steady_clock;

struct Pending {
  OpRecord record;
  bool on_cuda = false;
  bool done = false;         // the scope closed inside the region
  Clock::time_point t0, t1;  // CPU scopes
  std::size_t event = 0;     // CUDA scopes: events [event] (start) and [event + 1] (end)
};

struct State {
  std::vector<Pending> pending;
  int depth = 0;                // scopes currently open in this region
  std::uint64_t generation = 0;  // bumped by every start() and stop()
  Device device;
  Clock::time_point t0;
#if DDPM_HAVE_CUDA
  std::vector<cudaEvent_t> events;  // the pool; events_used of them taken in this region
  std::size_t events_used = 0;
  std::uint64_t kernels0 = 0, library0 = 0;
#endif
};

State& state() {
  static State s;
  return s;
}

#if DDPM_HAVE_CUDA
// The next free event of the pool, creating one when the pool is exhausted.
std::size_t take_event(State& s) {
  if (s.events_used == s.events.size()) {
    cudaEvent_t e = nullptr;
    DDPM_CUDA_CHECK(cudaEventCreate(&e));
    s.events.push_back(e);
  }
  return s.events_used++;
}
#endif

}  // namespace

double ProfileResult::op_ms() const {
  double t = 0.0;
  for (const OpRecord& r : records) t += r.ms;
  return t;
}

std::vector<OpSummary> ProfileResult::summarize() const {
  std::map<std::string, OpSummary> by_name;
  for (const OpRecord& r : records) {
    OpSummary& s = by_name[r.name];
    s.name = r.name;
    s.calls += 1;
    s.ms += r.ms;
    s.flops += r.flops;
    s.bytes += r.bytes;
  }
  std::vector<OpSummary> out;
  for (auto& kv : by_name) out.push_back(kv.second);
  std::stable_sort(out.begin(), out.end(), [](const OpSummary& a, const OpSummary& b) { return a.ms > b.ms; });
  return out;
}

void Profiler::start(Device device) {
  DDPM_CHECK(!enabled_, "Profiler::start: profiling is already on (regions do not nest)");
  State& s = state();
  s.pending.clear();
  s.depth = 0;
  s.generation += 1;
  s.device = device;
#if DDPM_HAVE_CUDA
  s.events_used = 0;
  if (device.is_cuda()) {
    // Start from an idle device, so the region's time is its own work.
    DDPM_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
    std::size_t e = take_event(s);  // event 0: the region's start
    DDPM_CUDA_CHECK(cudaEventRecord(s.events[e], cuda::stream()));
  }
  s.kernels0 = cuda::kernel_launch_count();
  s.library0 = cuda::library_call_count();
#else
  DDPM_CHECK(device.is_cpu(), "Profiler::start: this build has no CUDA backend");
#endif
  s.t0 = Clock::now();
  enabled_ = true;
}

ProfileResult Profiler::stop() {
  DDPM_CHECK(enabled_, "Profiler::stop: profiling is not on");
  enabled_ = false;
  State& s = state();
  s.generation += 1;
  ProfileResult result;
#if DDPM_HAVE_CUDA
  std::size_t region_end = 0;
  if (s.device.is_cuda()) {
    region_end = take_event(s);
    DDPM_CUDA_CHECK(cudaEventRecord(s.events[region_end], cuda::stream()));
    DDPM_CUDA_CHECK(cudaEventSynchronize(s.events[region_end]));
  }
  if (s.device.is_cuda()) {
    result.engine_kernels = cuda::kernel_launch_count() - s.kernels0;
    result.library_calls = cuda::library_call_count() - s.library0;
    result.counts_launches = true;
  }
#endif
  const Clock::time_point t1 = Clock::now();
  result.total_ms = std::chrono::duration<double, std::milli>(t1 - s.t0).count();
#if DDPM_HAVE_CUDA
  if (s.device.is_cuda()) {
    float ms = 0.0f;
    DDPM_CUDA_CHECK(cudaEventElapsedTime(&ms, s.events[0], s.events[region_end]));
    result.total_ms = ms;
  }
#endif
  result.records.reserve(s.pending.size());
  for (Pending& p : s.pending) {
    if (!p.done) continue;  // stop() was called inside this op: it has no end
    if (p.on_cuda) {
#if DDPM_HAVE_CUDA
      float ms = 0.0f;
      DDPM_CUDA_CHECK(cudaEventElapsedTime(&ms, s.events[p.event], s.events[p.event + 1]));
      p.record.ms = ms;
#endif
    } else {
      p.record.ms = std::chrono::duration<double, std::milli>(p.t1 - p.t0).count();
    }
    result.records.push_back(std::move(p.record));
  }
  s.pending.clear();
  s.depth = 0;
  return result;
}

void OpScope::begin(const char* name, double flops, double bytes, Device device) {
  State& s = state();
  if (s.depth == 0) {
    Pending p;
    p.record.name = name;
    p.record.device = device;
    p.record.flops = flops;
    p.record.bytes = bytes;
#if DDPM_HAVE_CUDA
    if (device.is_cuda()) {
      p.on_cuda = true;
      p.event = take_event(s);
      take_event(s);
      DDPM_CUDA_CHECK(cudaEventRecord(s.events[p.event], cuda::stream()));  // may throw: nothing entered yet
    }
#endif
    index_ = s.pending.size();
    s.pending.push_back(std::move(p));
    outermost_ = true;
  }
  entered_ = true;
  generation_ = s.generation;
  s.depth += 1;
  if (outermost_ && !s.pending[index_].on_cuda) s.pending[index_].t0 = Clock::now();
}

void OpScope::end() {
  State& s = state();
  if (generation_ != s.generation) return;  // the region ended (or restarted) inside this scope
  s.depth -= 1;
  if (!outermost_) return;
  Pending& p = s.pending[index_];
  p.done = true;
  if (p.on_cuda) {
#if DDPM_HAVE_CUDA
    // A destructor must not throw: an error here resurfaces at the next CUDA call.
    (void)cudaEventRecord(s.events[p.event + 1], cuda::stream());
#endif
  } else {
    p.t1 = Clock::now();
  }
}

}  // namespace ddpm
