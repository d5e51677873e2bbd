// engine/math_mode.cpp: the flags of engine/math_mode.h. They are only read here; the CUDA
// backend applies them lazily where they matter (kernels/cuda/context.cpp sets the cuBLAS
// handle's math mode when it hands the handle out, kernels/cuda/conv2d.cpp keys its plan
// cache on them), so setting one never touches the device.
#include "engine/math_mode.h"

#include <atomic>
#include <cstring>

#include "engine/error.h"

namespace ddpm {

namespace {
std::atomic<bool> g_allow_tf32{false};
std::atomic<ConvAlgoSearch> g_conv_search{ConvAlgoSearch::benchmark};
std::atomic<bool> g_allow_nondeterministic_conv{false};
}  // namespace

void set_allow_tf32(bool on) { g_allow_tf32.store(on, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

void set_conv_algo_search(ConvAlgoSearch search) { g_conv_search.store(search, std::memory_order_relaxed); }
ConvAlgoSearch conv_algo_search() { return g_conv_search.load(std::memory_order_relaxed); }

const char* conv_algo_search_name(ConvAlgoSearch search) {
  return search == ConvAlgoSearch::benchmark ? "benchmark" : "heuristic";
}

ConvAlgoSearch parse_conv_algo_search(const char* name) {
  if (std::strcmp(name, "benchmark") == 0) return ConvAlgoSearch::benchmark;
  if (std::strcmp(name, "heuristic") == 0) return ConvAlgoSearch::heuristic;
  DDPM_THROW(ValueError, "unknown convolution algorithm search '" << name << "': expected benchmark or heuristic");
}

void set_allow_nondeterministic_conv(bool on) { g_allow_nondeterministic_conv.store(on, std::memory_order_relaxed); }
bool allow_nondeterministic_conv() { return g_allow_nondeterministic_conv.load(std::memory_order_relaxed); }

MathModeScope::MathModeScope()
    : tf32_(allow_tf32()), search_(conv_algo_search()), nondeterministic_(allow_nondeterministic_conv()) {}

MathModeScope::~MathModeScope() {
  set_allow_tf32(tf32_);
  set_conv_algo_search(search_);
  set_allow_nondeterministic_conv(nondeterministic_);
}

}  // namespace ddpm
