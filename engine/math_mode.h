// engine/math_mode.h: process-wide settings for how the CUDA backend does fp32 arithmetic
// in its library calls (cuBLAS GEMMs, cuDNN convolutions). Plain flags: callable in any
// build, with or without CUDA, before or after the device is first used; without CUDA they
// are recorded and have no effect.
//
// TF32 (off by default). TF32 is the tensor cores' fp32 input format on Ampere and later:
// 8 exponent bits like fp32 but 10 mantissa bits instead of 23, so each input of a product
// carries a relative error of up to 2^-11 (round to nearest) or 2^-10 (truncation), while
// products are summed in fp32. A dot product of K terms then has a relative error of about
// 1e-3 of its magnitude instead of fp32's ~1e-7 * sqrt(K), for roughly 8x the peak rate of
// fp32 FMA on an H100 (about 495 vs 67 dense TFLOP/s on the SXM part).
//   on:  the engine's cuBLAS handle uses CUBLAS_TF32_TENSOR_OP_MATH, so every cuBLAS call on
//        it (gemm.h, attention's batched products) may use TF32; cuDNN convolutions are
//        planned with CUDNN_DEFAULT_MATH, which in cuDNN 8/9 permits TF32 for fp32 tensors.
//        (Not CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: that one also permits converting fp32
//        data to fp16, 10 mantissa bits but 5 exponent bits, which can overflow.)
//   off: CUBLAS_DEFAULT_MATH and CUDNN_FMA_MATH: exact fp32 FMA arithmetic.
// PyTorch's defaults differ per library: torch.backends.cudnn.allow_tf32 = True,
// torch.backends.cuda.matmul.allow_tf32 = False. This one switch covers both.
// The environment variable NVIDIA_TF32_OVERRIDE=0 disables TF32 in both libraries whatever
// this says.
//
// Convolution algorithm search (benchmark by default). Which cuDNN algorithm computes a
// convolution is chosen once per shape (and per setting below) and cached:
//   benchmark: every candidate algorithm is timed once on the first call
//              (cudnnFind*AlgorithmEx, like torch.backends.cudnn.benchmark = True);
//   heuristic: cuDNN's heuristic ranking (cudnnGet*Algorithm_v7), no device work.
// Benchmarking picks by measured time, which can differ between processes when two
// algorithms are within timing noise of each other; a run that must be bit-identical
// ACROSS processes on the GPU (an interrupted run against an uninterrupted one) should use
// heuristic, whose choice depends only on the shape, device and library version.
//
// Nondeterministic convolution algorithms (not allowed by default). Some cuDNN gradient
// algorithms accumulate with atomics, so the order of the additions (and the rounding of the
// result) changes from call to call. By default only deterministic algorithms are chosen:
// the same inputs give the same bits on every call. Allowing nondeterministic ones lets the
// benchmark take one when it is more than 10% faster than the fastest deterministic one
// (kernels/cuda/conv2d.cpp states the rule).
#pragma once

namespace ddpm {

void set_allow_tf32(bool on);
bool allow_tf32();

enum class ConvAlgoSearch { heuristic, benchmark };
void set_conv_algo_search(ConvAlgoSearch search);
ConvAlgoSearch conv_algo_search();
const char* conv_algo_search_name(ConvAlgoSearch search);  // "heuristic" or "benchmark"
// Parses "heuristic" or "benchmark"; anything else is a ValueError naming the choices.
ConvAlgoSearch parse_conv_algo_search(const char* name);

void set_allow_nondeterministic_conv(bool on);
bool allow_nondeterministic_conv();

// Saves all three settings on construction and restores them on destruction (tests,
// benchmarks, a scoped experiment).
class MathModeScope {
 public:
  MathModeScope();
  ~MathModeScope();
  MathModeScope(const MathModeScope&) = delete;
  MathModeScope& operator=(const MathModeScope&) = delete;

 private:
  bool tf32_;
  ConvAlgoSearch search_;
  bool nondeterministic_;
};

}  // namespace ddpm
