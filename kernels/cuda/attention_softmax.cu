// kernels/cuda/attention_softmax.cu: the softmax and softmax-backward row kernels of the
// attention core (equations and contract in attention_softmax.h).
//
// Register path (rows of at most 1024 floats). Lane `lane` of the row's warp owns the
// vectors i = c*32 + lane, c = 0..kChunks-1, of kVec consecutive floats: one load
// instruction of the warp covers 32*kVec*4 contiguous bytes (512 B with float4), so every
// access is coalesced. The row stays in registers (kChunks*kVec <= 32 floats per lane)
// between the reductions, so the forward reads and writes each float once and calls exp
// once per element (the first version read each row three times and called exp twice).
// kVec is 4 when the row length and the pointers allow 16-byte accesses, 2 for rows of
// 64..127 floats (so all 32 lanes have work at S = 64), else 1; kChunks is rounded up to
// a power of two and the tail is masked per vector.
//
// A logit bias is a template flag (kBias), so the plain op's kernels are the same code as
// before the option; with it, each element adds the matching float of the bias row, loaded
// with the same vector width (the bias row of score row r is r mod bias_rows).
//
// Byte counts at the benchmark's b=128, s=256, heads=4: the score matrix is 128 MiB, so the
// forward kernel moves 256 MiB and the backward 512 MiB (two matrices in, two out), about
// 0.09 and 0.18 ms at 3 TB/s.
#include "kernels/cuda/attention_softmax.h"

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "engine/error.h"
#include "kernels/cuda/check.h"

namespace ddpm::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // one warp per row, 8 warps (256 threads) per block
constexpr int kThreads = kWarp * kRowsPerBlock;
constexpr int kRegisterFloatsPerLane = static_cast<int>(kSoftmaxRegisterRowMax / kWarp);  // 32
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_max(float x) {
  for (int o = kWarp / 2; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
  for (int o = kWarp / 2; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}

// kVec consecutive floats as one 4-, 8- or 16-byte access (the pointer is aligned to it).
template <int kVec>
__device__ __forceinline__ void load_vec(const float* p, float (&v)[kVec]) {
  if constexpr (kVec == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else if constexpr (kVec == 2) {
    const float2 t = *reinterpret_cast<const float2*>(p);
    v[0] = t.x, v[1] = t.y;
  } else {
    v[0] = *p;
  }
}

template <int kVec>
__device__ __forceinline__ void store_vec(float* p, const float (&v)[kVec]) {
  if constexpr (kVec == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (kVec == 2) {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
  } else {
    *p = v[0];
  }
}

// The bias row of score row `row` (kBias only): [bias_rows, cols] wrapped over the batch.
__device__ __forceinline__ const float* bias_row(const float* bias, std::int64_t bias_rows, std::int64_t row,
                                                 std::int64_t cols) {
  return bias + (row % bias_rows) * cols;
}

// Forward, register path: x[row] <- softmax(x[row] (+ bias row)) in place, lse[row] = m + log(l).
template <int kVec, int kChunks, bool kBias>
__global__ void __launch_bounds__(kThreads)
    softmax_rows_registers_kernel(float* x, float* lse, std::int64_t rows, int cols, const float* bias,
                                  std::int64_t bias_rows) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // whole warps leave together: rows map to warps
  float* r = x + row * cols;
  const int vectors = cols / kVec;  // cols % kVec == 0 (host's choice of kVec)
  float v[kChunks][kVec];
  float m = -INFINITY;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kWarp + lane;
    if (i < vectors) {
      load_vec<kVec>(r + i * kVec, v[c]);
      if constexpr (kBias) {
        float b[kVec];
        load_vec<kVec>(bias_row(bias, bias_rows, row, cols) + i * kVec, b);
#pragma unroll
        for (int e = 0; e < kVec; ++e) v[c][e] += b[e];
      }
#pragma unroll
      for (int e = 0; e < kVec; ++e) m = fmaxf(m, v[c][e]);
    }
  }
  m = warp_max(m);  // every lane now holds the row max (finite: the row has >= 1 element)
  float sum = 0.f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    if (c * kWarp + lane < vectors) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        v[c][e] = expf(v[c][e] - m);
        sum += v[c][e];
      }
    }
  }
  sum = warp_sum(sum);
  const float inv = 1.f / sum;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kWarp + lane;
    if (i < vectors) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) v[c][e] *= inv;
      store_vec<kVec>(r + i * kVec, v[c]);
    }
  }
  if (lane == 0) lse[row] = m + logf(sum);
}

// Backward, register path: P over the scores, dS over dP, one exp per element.
template <int kVec, int kChunks, bool kBias>
__global__ void __launch_bounds__(kThreads)
    softmax_backward_rows_registers_kernel(float* scores_to_p, float* dp_to_ds, const float* lse,
                                           std::int64_t rows, int cols, const float* bias, std::int64_t bias_rows) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  float* sp = scores_to_p + row * cols;
  float* dd = dp_to_ds + row * cols;
  const int vectors = cols / kVec;
  const float l = lse[row];
  float p[kChunks][kVec], dp[kChunks][kVec];
  float dot = 0.f;  // sum_j p_ij dp_ij
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kWarp + lane;
    if (i < vectors) {
      load_vec<kVec>(sp + i * kVec, p[c]);
      load_vec<kVec>(dd + i * kVec, dp[c]);
      if constexpr (kBias) {
        float b[kVec];
        load_vec<kVec>(bias_row(bias, bias_rows, row, cols) + i * kVec, b);
#pragma unroll
        for (int e = 0; e < kVec; ++e) p[c][e] += b[e];
      }
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        p[c][e] = expf(p[c][e] - l);
        dot += p[c][e] * dp[c][e];
      }
    }
  }
  dot = warp_sum(dot);
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kWarp + lane;
    if (i < vectors) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) dp[c][e] = p[c][e] * (dp[c][e] - dot);
      store_vec<kVec>(sp + i * kVec, p[c]);
      store_vec<kVec>(dd + i * kVec, dp[c]);
    }
  }
}

// Streaming path for rows longer than kSoftmaxRegisterRowMax (S > 1024 tokens, e.g. a 64x64
// grid): the row does not fit in registers, so it is read three times (max, sum, write);
// the rereads of a 4+ KiB row mostly hit L1/L2.
template <bool kBias>
__global__ void __launch_bounds__(kThreads)
    softmax_rows_streaming_kernel(float* x, float* lse, std::int64_t rows, std::int64_t cols, const float* bias,
                                  std::int64_t bias_rows) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  float* r = x + row * cols;
  if constexpr (kBias) {  // the biased scores replace the scores first; each lane its own elements
    const float* b = bias_row(bias, bias_rows, row, cols);
    for (std::int64_t j = lane; j < cols; j += kWarp) r[j] += b[j];
  }
  float m = -INFINITY;
  for (std::int64_t j = lane; j < cols; j += kWarp) m = fmaxf(m, r[j]);
  m = warp_max(m);
  float sum = 0.f;
  for (std::int64_t j = lane; j < cols; j += kWarp) {
    const float e = expf(r[j] - m);
    r[j] = e;  // keep exp(x - m): the last pass only scales
    sum += e;
  }
  sum = warp_sum(sum);
  const float inv = 1.f / sum;
  for (std::int64_t j = lane; j < cols; j += kWarp) r[j] *= inv;
  if (lane == 0) lse[row] = m + logf(sum);
}

// Streaming backward: each lane rereads only the elements it wrote itself.
template <bool kBias>
__global__ void __launch_bounds__(kThreads)
    softmax_backward_rows_streaming_kernel(float* scores_to_p, float* dp_to_ds, const float* lse, std::int64_t rows,
                                           std::int64_t cols, const float* bias, std::int64_t bias_rows) {
  const std::int64_t row = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  float* p = scores_to_p + row * cols;
  float* ds = dp_to_ds + row * cols;
  const float l = lse[row];
  const float* b = kBias ? bias_row(bias, bias_rows, row, cols) : nullptr;
  float dot = 0.f;
  for (std::int64_t j = lane; j < cols; j += kWarp) {
    const float pj = kBias ? expf(p[j] + b[j] - l) : expf(p[j] - l);
    p[j] = pj;
    dot += pj * ds[j];
  }
  dot = warp_sum(dot);
  for (std::int64_t j = lane; j < cols; j += kWarp) ds[j] = p[j] * (ds[j] - dot);
}

unsigned row_blocks(std::int64_t rows) { return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

bool aligned(const void* p, int bytes) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; }

// Widest vector (4, 2 or 1 floats) that divides the row length, keeps every row start
// aligned for all the given pointers, and leaves no more than half of the warp idle
// (float4 from 128 floats, float2 from 64). `c` is the bias, or a again without one.
int vector_width(std::int64_t cols, const void* a, const void* b, const void* c) {
  if (cols % 4 == 0 && cols >= 4 * kWarp && aligned(a, 16) && aligned(b, 16) && aligned(c, 16)) return 4;
  if (cols % 2 == 0 && cols >= 2 * kWarp && aligned(a, 8) && aligned(b, 8) && aligned(c, 8)) return 2;
  return 1;
}

// Calls launch(vec, chunks) with kChunks the smallest power of two >= `needed` (needed <=
// kRegisterFloatsPerLane / kVec, the host checks), as compile-time constants.
template <int kVec, int kChunks = 1, typename Launch>
void with_chunks(int needed, const Launch& launch) {
  if constexpr (kChunks * kVec < kRegisterFloatsPerLane) {
    if (needed > kChunks) {
      with_chunks<kVec, kChunks * 2>(needed, launch);
      return;
    }
  }
  launch(std::integral_constant<int, kVec>{}, std::integral_constant<int, kChunks>{});
}

// Picks kVec for the row length and pointers, then kChunks; `launch` gets both as types.
template <typename Launch>
void with_register_layout(std::int64_t cols, const void* a, const void* b, const void* c, const Launch& launch) {
  const int vec = vector_width(cols, a, b, c);
  const int needed = static_cast<int>((cols / vec + kWarp - 1) / kWarp);  // vectors per lane
  if (vec == 4) with_chunks<4>(needed, launch);
  else if (vec == 2) with_chunks<2>(needed, launch);
  else with_chunks<1>(needed, launch);
}

}  // namespace

void attention_softmax_rows(float* x, float* lse, std::int64_t rows, std::int64_t cols, cudaStream_t stream,
                            const float* bias, std::int64_t bias_rows) {
  if (rows == 0 || cols == 0) return;
  DDPM_CHECK(bias == nullptr || bias_rows > 0, "attention softmax_rows: a bias needs bias_rows > 0");
  const void* c = bias != nullptr ? static_cast<const void*>(bias) : static_cast<const void*>(x);
  if (cols <= kSoftmaxRegisterRowMax) {
    with_register_layout(cols, x, x, c, [&](auto vec, auto chunks) {
      constexpr int kVec = decltype(vec)::value, kChunks = decltype(chunks)::value;
      if (bias != nullptr)
        softmax_rows_registers_kernel<kVec, kChunks, true>
            <<<row_blocks(rows), kThreads, 0, stream>>>(x, lse, rows, static_cast<int>(cols), bias, bias_rows);
      else
        softmax_rows_registers_kernel<kVec, kChunks, false>
            <<<row_blocks(rows), kThreads, 0, stream>>>(x, lse, rows, static_cast<int>(cols), nullptr, 0);
    });
    DDPM_LAUNCH_CHECK("attention softmax_rows_registers");
  } else {
    if (bias != nullptr)
      softmax_rows_streaming_kernel<true><<<row_blocks(rows), kThreads, 0, stream>>>(x, lse, rows, cols, bias,
                                                                                     bias_rows);
    else
      softmax_rows_streaming_kernel<false><<<row_blocks(rows), kThreads, 0, stream>>>(x, lse, rows, cols, nullptr, 0);
    DDPM_LAUNCH_CHECK("attention softmax_rows_streaming");
  }
}

void attention_softmax_backward_rows(float* scores_to_p, float* dp_to_ds, const float* lse, std::int64_t rows,
                                     std::int64_t cols, cudaStream_t stream, const float* bias,
                                     std::int64_t bias_rows) {
  if (rows == 0 || cols == 0) return;
  DDPM_CHECK(bias == nullptr || bias_rows > 0, "attention softmax_backward_rows: a bias needs bias_rows > 0");
  const void* c = bias != nullptr ? static_cast<const void*>(bias) : static_cast<const void*>(scores_to_p);
  if (cols <= kSoftmaxRegisterRowMax) {
    with_register_layout(cols, scores_to_p, dp_to_ds, c, [&](auto vec, auto chunks) {
      constexpr int kVec = decltype(vec)::value, kChunks = decltype(chunks)::value;
      if (bias != nullptr)
        softmax_backward_rows_registers_kernel<kVec, kChunks, true><<<row_blocks(rows), kThreads, 0, stream>>>(
            scores_to_p, dp_to_ds, lse, rows, static_cast<int>(cols), bias, bias_rows);
      else
        softmax_backward_rows_registers_kernel<kVec, kChunks, false><<<row_blocks(rows), kThreads, 0, stream>>>(
            scores_to_p, dp_to_ds, lse, rows, static_cast<int>(cols), nullptr, 0);
    });
    DDPM_LAUNCH_CHECK("attention softmax_backward_rows_registers");
  } else {
    if (bias != nullptr)
      softmax_backward_rows_streaming_kernel<true><<<row_blocks(rows), kThreads, 0, stream>>>(
          scores_to_p, dp_to_ds, lse, rows, cols, bias, bias_rows);
    else
      softmax_backward_rows_streaming_kernel<false><<<row_blocks(rows), kThreads, 0, stream>>>(
          scores_to_p, dp_to_ds, lse, rows, cols, nullptr, 0);
    DDPM_LAUNCH_CHECK("attention softmax_backward_rows_streaming");
  }
}

}  // namespace ddpm::cuda
