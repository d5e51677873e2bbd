// bench-kernels: times each op's production kernel (the very functions the engine calls)
// at the shapes in bench/cases.json, and reports achieved bandwidth or FLOP rate against
// this device's measured copy bandwidth and SGEMM rate.
//
//   bench-kernels [--cases FILE] [--reps N] [--json] [--tf32] [--conv-algo benchmark|heuristic]
//                 [--allow-nondeterministic] [--gn-variants]
//
// --gn-variants times every GroupNorm slab tiling instead (bench_group_norm_variants, below)
// and exits 1 if any tiling's outputs differ from the production kernel's.
// --json prints one JSON object per line, the format scripts/bench_pytorch.py prints too;
// scripts/bench.sh runs both and prints the ratios. Without a GPU it says so and exits 0.
// --tf32 sets ddpm::set_allow_tf32(true) (engine/math_mode.h) for every op timed: rows carry
// "mode": "fp32" or "tf32". The FLOP rates are always relative to the fp32 SGEMM rate (so a
// TF32 row can pass 100%); with --tf32 the header also gives the TF32 GEMM rate. Conv rows
// carry "algos": the algorithms the plan chose for that case (cuda::conv2d_plan_info).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "engine/device.h"
#include "engine/error.h"
#include "engine/math_mode.h"
#include "engine/rng.h"
#include "kernels/common/conv2d_geometry.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/conv2d.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/group_norm.h"
#include "kernels/cuda/group_norm_slab.h"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/optim.h"

using nlohmann::json;
using namespace ddpm;

namespace {

struct Options {
  std::string cases = DDPM_SOURCE_DIR "/bench/cases.json";
  int reps = 50;
  bool json_lines = false;
  bool tf32 = false;
  ConvAlgoSearch conv_search = ConvAlgoSearch::benchmark;
  bool allow_nondeterministic = false;
  bool gn_variants = false;  // time every slab tiling of the GroupNorm cases, then stop
  const char* mode() const { return tf32 ? "tf32" : "fp32"; }
};

struct Peaks {
  double copy_gbps = 0;    // device-to-device copy, counting read + write
  double sgemm_tflops = 0;  // fp32 SGEMM 8192^3 (TF32 off)
  double tf32_tflops = 0;   // the same GEMM with TF32 allowed (measured with --tf32 only)
};

Tensor dev_randn(const Shape& s, std::uint64_t seed) {
  Generator g(seed);
  return randn(s, g, Device::cuda());
}

// The GEMM rates are measured under explicit TF32 settings; the caller's are restored.
Peaks measure_peaks(bench::Timer& timer, bool with_tf32) {
  MathModeScope restore;
  Peaks p;
  const std::int64_t n = std::int64_t(1) << 28;  // 1 GiB of floats
  Tensor a = Tensor::empty({n}, DType::f32, Device::cuda()), b = Tensor::empty({n}, DType::f32, Device::cuda());
  double ms = timer.median_ms([&] {
    DDPM_CUDA_CHECK(cudaMemcpyAsync(b.raw_data(), a.raw_data(), a.nbytes(), cudaMemcpyDeviceToDevice, cuda::stream()));
  });
  p.copy_gbps = 2.0 * a.nbytes() / (ms * 1e6);
  const std::int64_t m = 8192;
  Tensor x = dev_randn({m, m}, 1), y = dev_randn({m, m}, 2), z = Tensor::empty({m, m}, DType::f32, Device::cuda());
  auto gemm_tflops = [&](bool tf32) {
    set_allow_tf32(tf32);
    double t = timer.median_ms([&] {
      cuda::gemm(false, false, m, m, m, 1.f, x.data<float>(), m, y.data<float>(), m, 0.f, z.data<float>(), m,
                 cuda::stream());
    });
    return 2.0 * m * m * m / (t * 1e9);
  };
  p.sgemm_tflops = gemm_tflops(false);
  if (with_tf32) p.tf32_tflops = gemm_tflops(true);
  return p;
}

struct Reporter {
  const Options& opt;
  const Peaks& peaks;
  // bytes: DRAM traffic of an ideal kernel; flops: arithmetic. Either may be 0.
  void row(const std::string& op, const json& c, const std::string& direction, double ms, double bytes,
           double flops, const std::string& algos = "") const {
    double gbps = bytes / (ms * 1e6), tflops = flops / (ms * 1e9);
    if (opt.json_lines) {
      json j{{"op", op}, {"case", c}, {"direction", direction}, {"mode", opt.mode()}, {"ms", ms}};
      if (!algos.empty()) j["algos"] = algos;
      if (bytes > 0) j["gbps"] = gbps, j["pct_copy_bw"] = 100 * gbps / peaks.copy_gbps;
      if (flops > 0) j["tflops"] = tflops, j["pct_sgemm"] = 100 * tflops / peaks.sgemm_tflops;
      std::cout << j.dump() << "\n";
      return;
    }
    std::printf("%-16s %-9s %s %-44s %9.3f ms", op.c_str(), direction.c_str(), opt.mode(), c.dump().c_str(), ms);
    if (bytes > 0) std::printf("  %7.1f GB/s (%5.1f%% of copy)", gbps, 100 * gbps / peaks.copy_gbps);
    if (flops > 0) std::printf("  %6.2f TFLOP/s (%5.1f%% of SGEMM)", tflops, 100 * tflops / peaks.sgemm_tflops);
    if (!algos.empty()) std::printf("\n    %s", algos.c_str());
    std::printf("\n");
  }
};

void bench_group_norm(const json& cases, bench::Timer& timer, const Reporter& rep);  // below
int bench_group_norm_variants(const json& cases, bench::Timer& timer, const Peaks& peaks);

void bench_attention(const json& cases, bench::Timer& timer, const Reporter& rep) {
  for (const json& c : cases) {
    // s query tokens; "sk" key/value tokens (cross-attention), self-attention when absent.
    std::int64_t b = c["b"], s = c["s"], ch = c["c"], heads = c["heads"];
    const std::int64_t sk = c.value("sk", s);
    Tensor q = dev_randn({b, s, ch}, 1), k = dev_randn({b, sk, ch}, 2), v = dev_randn({b, sk, ch}, 3);
    Tensor out = Tensor::empty({b, s, ch}, DType::f32, Device::cuda());
    Tensor lse = Tensor::empty({b, heads, s}, DType::f32, Device::cuda());
    Tensor g = dev_randn({b, s, ch}, 4);
    Tensor dq = Tensor::empty({b, s, ch}, DType::f32, Device::cuda());
    Tensor dk = Tensor::empty({b, sk, ch}, DType::f32, Device::cuda()), dv = dk.clone();
    // QK^T and PV: 2 * 2*b*s*sk*ch flops; backward: 2.5x forward (dV, dP, dQ, dK + recompute S).
    double fwd_flops = 4.0 * b * s * sk * ch;
    double ms = timer.median_ms([&] {
      cuda::attention_forward(q.data<float>(), k.data<float>(), v.data<float>(), out.data<float>(), lse.data<float>(),
                              b, s, sk, ch, heads, cuda::cublas(), cuda::stream());
    });
    rep.row("attention", c, "forward", ms, 0, fwd_flops);
    ms = timer.median_ms([&] {
      cuda::attention_backward(q.data<float>(), k.data<float>(), v.data<float>(), lse.data<float>(), g.data<float>(),
                               dq.data<float>(), dk.data<float>(), dv.data<float>(), b, s, sk, ch, heads,
                               cuda::cublas(), cuda::stream());
    });
    rep.row("attention", c, "backward", ms, 0, 2.5 * fwd_flops);
  }
}

// LayerNorm over the C channels of n*l tokens; an ideal kernel reads x and writes y
// (forward), reads x and dy and writes dx (backward): 8 and 12 bytes per element.
void bench_layer_norm(const json& cases, bench::Timer& timer, const Reporter& rep) {
  for (const json& c : cases) {
    std::int64_t n = c["n"], l = c["l"], ch = c["c"], rows = n * l;
    Tensor x = dev_randn({rows, ch}, 1), gamma = dev_randn({ch}, 2), beta = dev_randn({ch}, 3);
    Tensor y = Tensor::empty({rows, ch}, DType::f32, Device::cuda());
    Tensor mean = Tensor::empty({rows}, DType::f32, Device::cuda()), rstd = mean.clone();
    Tensor g = dev_randn({rows, ch}, 4), dx = y.clone(), dgamma = gamma.clone(), dbeta = gamma.clone();
    const double elems = static_cast<double>(rows * ch);
    double ms = timer.median_ms([&] {
      cuda::layer_norm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(), y.data<float>(),
                               mean.data<float>(), rstd.data<float>(), rows, ch, 1e-5f, cuda::stream());
    });
    rep.row("layer_norm", c, "forward", ms, 8.0 * elems, 0);
    ms = timer.median_ms([&] {
      cuda::layer_norm_backward(x.data<float>(), gamma.data<float>(), mean.data<float>(), rstd.data<float>(),
                                g.data<float>(), dx.data<float>(), dgamma.data<float>(), dbeta.data<float>(), rows,
                                ch, cuda::stream());
    });
    rep.row("layer_norm", c, "backward", ms, 12.0 * elems, 0);
  }
}

void bench_conv2d(const json& cases, bench::Timer& timer, const Reporter& rep) {
  for (const json& c : cases) {
    Conv2dGeometry geo = make_conv2d_geometry(c["n"], c["h"], c["w"], c["cin"], c["cout"], c["k"], c["k"],
                                              c["stride"], c["pad"]);
    Tensor x = dev_randn({geo.n, geo.h, geo.w, geo.cin}, 1);
    Tensor w = dev_randn({geo.cout, geo.kh, geo.kw, geo.cin}, 2), bias = dev_randn({geo.cout}, 3);
    Tensor y = Tensor::empty({geo.n, geo.ho, geo.wo, geo.cout}, DType::f32, Device::cuda());
    Tensor gy = dev_randn(y.shape(), 4), gx = Tensor::empty(x.shape(), DType::f32, Device::cuda());
    Tensor gw = Tensor::empty(w.shape(), DType::f32, Device::cuda());
    double flops = 2.0 * geo.n * geo.ho * geo.wo * geo.cout * geo.patch_size();
    double ms = timer.median_ms(
        [&] { cuda::conv2d_forward(x.data<float>(), w.data<float>(), bias.data<float>(), y.data<float>(), geo, cuda::stream()); });
    // The plan's choices, as the forward row's note (the backward is chosen below).
    rep.row("conv2d", c, "forward", ms, 0, flops, cuda::conv2d_plan_info(geo).str());
    ms = timer.median_ms([&] {
      cuda::conv2d_backward_data(gy.data<float>(), w.data<float>(), gx.data<float>(), geo, cuda::stream());
      cuda::conv2d_backward_filter(x.data<float>(), gy.data<float>(), gw.data<float>(), geo, cuda::stream());
    });
    rep.row("conv2d", c, "backward", ms, 0, 2 * flops, cuda::conv2d_plan_info(geo).str());
  }
}

void bench_linear(const json& cases, bench::Timer& timer, const Reporter& rep) {
  for (const json& c : cases) {
    std::int64_t m = c["m"], k = c["k"], n = c["n"];
    Tensor x = dev_randn({m, k}, 1), w = dev_randn({n, k}, 2), y = Tensor::empty({m, n}, DType::f32, Device::cuda());
    double ms = timer.median_ms([&] {
      cuda::gemm(false, true, m, n, k, 1.f, x.data<float>(), k, w.data<float>(), k, 0.f, y.data<float>(), n,
                 cuda::stream());
    });
    rep.row("linear", c, "forward", ms, 0, 2.0 * m * n * k);
  }
}

void bench_adamw(const json& cases, bench::Timer& timer, const Reporter& rep) {
  for (const json& c : cases) {
    std::int64_t n = c["params"];
    Tensor p = dev_randn({n}, 1), g = dev_randn({n}, 2), m = Tensor::zeros({n}, DType::f32, Device::cuda());
    Tensor v = Tensor::zeros({n}, DType::f32, Device::cuda());
    cuda::AdamWScalars s{};
    s.beta1 = 0.9f, s.beta2 = 0.999f, s.one_minus_beta1 = 0.1f, s.one_minus_beta2 = 0.001f;
    s.step_size = 1e-4f, s.inv_sqrt_bc2 = 1.f, s.eps = 1e-8f, s.decay = 1.f;
    double ms = timer.median_ms([&] {
      cuda::adamw_step(p.data<float>(), g.data<float>(), m.data<float>(), v.data<float>(), n, s, cuda::stream());
    });
    rep.row("adamw", c, "step", ms, 7.0 * 4 * n, 0);  // read p, g, m, v; write p, m, v
  }
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json") {
      o.json_lines = true;
    } else if (a == "--reps" && i + 1 < argc) {
      o.reps = std::atoi(argv[++i]);
    } else if (a == "--cases" && i + 1 < argc) {
      o.cases = argv[++i];
    } else if (a == "--gn-variants") {
      o.gn_variants = true;
    } else if (a == "--tf32") {
      o.tf32 = true;
    } else if (a == "--conv-algo" && i + 1 < argc) {
      try {
        o.conv_search = parse_conv_algo_search(argv[++i]);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-kernels: %s\n", e.what());
        std::exit(2);
      }
    } else if (a == "--allow-nondeterministic") {
      o.allow_nondeterministic = true;
    } else {
      std::fprintf(stderr,
                   "usage: bench-kernels [--cases FILE] [--reps N] [--json] [--tf32] [--conv-algo benchmark|heuristic] "
                   "[--allow-nondeterministic] [--gn-variants]\n");
      std::exit(2);
    }
  }
  if (o.reps < 1) {
    std::fprintf(stderr, "bench-kernels: --reps must be positive\n");
    std::exit(2);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  try {
    if (!cuda_available()) {
      std::printf("bench-kernels: no CUDA device (%s): nothing to time\n", cuda_unavailable_reason().c_str());
      return 0;
    }
    std::ifstream f(opt.cases);
    DDPM_CHECK_AS(f, IoError, "bench-kernels: cannot open the cases file " << opt.cases);
    json cases = json::parse(f);
    bench::Timer timer(opt.reps);
    Peaks peaks = measure_peaks(timer, opt.tf32);
    set_allow_tf32(opt.tf32);
    set_conv_algo_search(opt.conv_search);
    set_allow_nondeterministic_conv(opt.allow_nondeterministic);
    cudaDeviceProp prop{};
    DDPM_CUDA_CHECK(cudaGetDeviceProperties(&prop, cuda::current_device()));
    if (opt.json_lines) {
      json h{{"device", prop.name},
             {"mode", opt.mode()},
             {"conv_algo", conv_algo_search_name(opt.conv_search)},
             {"allow_nondeterministic", opt.allow_nondeterministic},
             {"copy_gbps", peaks.copy_gbps},
             {"sgemm_tflops", peaks.sgemm_tflops}};
      if (opt.tf32) h["tf32_gemm_tflops"] = peaks.tf32_tflops;
      std::cout << h.dump() << "\n";
    } else {
      std::printf("device: %s; measured copy bandwidth %.0f GB/s, SGEMM %.1f TFLOP/s", prop.name, peaks.copy_gbps,
                  peaks.sgemm_tflops);
      if (opt.tf32) std::printf(", TF32 GEMM %.1f TFLOP/s", peaks.tf32_tflops);
      std::printf("; median of %d, L2 flushed\nmode %s, convolution algorithms: %s%s\n", opt.reps, opt.mode(),
                  conv_algo_search_name(opt.conv_search),
                  opt.allow_nondeterministic ? ", nondeterministic allowed" : ", deterministic only");
    }
    Reporter rep{opt, peaks};
    if (opt.gn_variants) {
      const int failures = bench_group_norm_variants(cases["group_norm_silu"], timer, peaks);
      if (failures > 0) {
        std::fprintf(stderr, "bench-kernels: %d GroupNorm tilings differ from the production kernel by over 1e-5\n",
                     failures);
        return 1;
      }
      return 0;
    }
    bench_group_norm(cases["group_norm_silu"], timer, rep);
    bench_attention(cases["attention"], timer, rep);
    bench_layer_norm(cases["layer_norm"], timer, rep);
    bench_conv2d(cases["conv2d"], timer, rep);
    bench_linear(cases["linear"], timer, rep);
    bench_adamw(cases["adamw"], timer, rep);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-kernels: %s\n", e.what());
    return 1;
  }
  return 0;
}

namespace {

// One GroupNorm+SiLU case's device buffers: inputs x, dy, gamma, beta (random) and the
// outputs and statistics the kernels write.
struct GroupNormCase {
  std::int64_t n, hw, ch, g;
  Tensor x, dy, gamma, beta, y, dx, mean, rstd;
  explicit GroupNormCase(const json& c)
      : n(c["n"]), hw(std::int64_t(c["h"]) * std::int64_t(c["w"])), ch(c["c"]), g(c["groups"]),
        x(dev_randn({n, hw, ch}, 1)), dy(dev_randn({n, hw, ch}, 2)), gamma(dev_randn({ch}, 3)),
        beta(dev_randn({ch}, 4)), y(Tensor::empty(x.shape(), DType::f32, Device::cuda())), dx(y.clone()),
        mean(Tensor::empty({n, g}, DType::f32, Device::cuda())), rstd(mean.clone()) {}
};

// GroupNorm+SiLU: an ideal forward reads x once and writes y once (2 * 4 bytes per
// element); an ideal backward reads x and dy and writes dx (3 * 4 bytes per element).
void bench_group_norm(const json& cases, bench::Timer& timer, const Reporter& rep) {
  for (const json& c : cases) {
    GroupNormCase k(c);
    const std::int64_t n = k.n, hw = k.hw, ch = k.ch, g = k.g;
    Tensor &x = k.x, &dy = k.dy, &gamma = k.gamma, &beta = k.beta, &y = k.y, &dx = k.dx, &mean = k.mean,
           &rstd = k.rstd;
    Tensor dgamma = Tensor::empty({ch}, DType::f32, Device::cuda()), dbeta = dgamma.clone();
    double elems = static_cast<double>(x.numel());
    json tagged = c;
    tagged["fused_path"] = cuda::group_norm_forward_is_fused(hw, ch, g);
    double ms = timer.median_ms([&] {
      cuda::group_norm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(), nullptr, nullptr,
                               y.data<float>(), mean.data<float>(), rstd.data<float>(), n, hw, ch, g, 1e-5f, true,
                               cuda::stream());
    });
    rep.row("group_norm_silu", tagged, "forward", ms, 8 * elems, 0);
    tagged["fused_path"] = cuda::group_norm_backward_is_fused(hw, ch, g);
    ms = timer.median_ms([&] {
      cuda::group_norm_backward(x.data<float>(), gamma.data<float>(), beta.data<float>(), nullptr, nullptr,
                                mean.data<float>(), rstd.data<float>(), dy.data<float>(), dx.data<float>(),
                                dgamma.data<float>(), dbeta.data<float>(), nullptr, nullptr, n, hw, ch, g, true,
                                cuda::stream());
    });
    rep.row("group_norm_silu", tagged, "backward", ms, 12 * elems, 0);
  }
}

// Largest |a - b| over two device tensors of one shape, divided by max(1, max |b|) when
// `relative` (for sums of many terms, whose absolute rounding grows with their size). NaN
// counts as infinitely far.
double max_diff(const Tensor& a, const Tensor& b, bool relative = false) {
  const Tensor ha = a.cpu(), hb = b.cpu();
  const float *pa = ha.data<float>(), *pb = hb.data<float>();
  double worst = 0, scale = 1;
  bool nan = false;
  for (std::int64_t i = 0; i < ha.numel(); ++i) {
    const double d = std::fabs(static_cast<double>(pa[i]) - pb[i]);
    if (std::isnan(d)) nan = true;
    else worst = std::max(worst, d);
    scale = std::max(scale, std::fabs(static_cast<double>(pb[i])));
  }
  if (nan) return HUGE_VAL;
  return relative ? worst / scale : worst;
}

// Tuning aid (--gn-variants): the slab kernels (kernels/cuda/group_norm_slab.h) with register
// and shared-memory slices at every pixels-per-thread count their plan could take, with
// 32-channel spans (the plan's) and 16-channel spans (a variant, marked "span=16"), K =
// ceil(HW / pix) blocks per cluster (K <= 8), one text line each; the production plan is
// marked with '*'. Each line also gives the largest difference from the production kernel's
// outputs (forward: y, mean, rstd; backward: dx, and the per-(n, c) sums of dz and dz * xhat
// relative to their size), with "FAIL" past 1e-5. Returns the number of failing tilings.
int bench_group_norm_variants(const json& cases, bench::Timer& timer, const Peaks& peaks) {
  constexpr double kTolerance = 1e-5;
  int failures = 0;
  for (const json& c : cases) {
    GroupNormCase k(c);
    const std::int64_t n = k.n, hw = k.hw, ch = k.ch, g = k.g;
    Tensor &x = k.x, &dy = k.dy, &gamma = k.gamma, &beta = k.beta, &y = k.y, &dx = k.dx, &mean = k.mean,
           &rstd = k.rstd;
    Tensor sdz = Tensor::empty({n, ch}, DType::f32, Device::cuda()), sdzx = sdz.clone();
    // The production kernel's outputs; its mean and rstd are also the backward's inputs.
    Tensor y_ref = y.clone(), mean_ref = mean.clone(), rstd_ref = rstd.clone(), dx_ref = dx.clone();
    Tensor sdz_ref = sdz.clone(), sdzx_ref = sdz.clone();
    cuda::group_norm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(), nullptr, nullptr,
                             y_ref.data<float>(), mean_ref.data<float>(), rstd_ref.data<float>(), n, hw, ch, g, 1e-5f,
                             true, cuda::stream());
    const double elems = static_cast<double>(x.numel());
    for (bool backward : {false, true}) {
      const cuda::gn_slab::Plan chosen = cuda::gn_slab::plan(hw, ch, g, backward);
      if (!chosen.ok) continue;
      auto run = [&](const cuda::gn_slab::Plan& p, Tensor& out, Tensor& m, Tensor& r, Tensor& s1, Tensor& s2) {
        if (!backward)
          cuda::gn_slab::forward(p, x.data<float>(), gamma.data<float>(), beta.data<float>(), nullptr, nullptr,
                                 out.data<float>(), m.data<float>(), r.data<float>(), n, hw, ch, g, 1e-5f, true,
                                 cuda::stream());
        else
          cuda::gn_slab::backward(p, x.data<float>(), gamma.data<float>(), beta.data<float>(), nullptr, nullptr,
                                  mean_ref.data<float>(), rstd_ref.data<float>(), dy.data<float>(), out.data<float>(),
                                  s1.data<float>(), s2.data<float>(), n, hw, ch, g, true, cuda::stream());
      };
      if (backward) run(chosen, dx_ref, mean_ref, rstd_ref, sdz_ref, sdzx_ref);  // forward: y_ref above
      // Copies moving the same bytes (forward x -> y: 8 per element; backward also half of dy
      // -> dx: 12): the ceiling at this size, launch and tail included.
      const double copy_ms = timer.median_ms([&] {
        const auto d2d = cudaMemcpyDeviceToDevice;
        DDPM_CUDA_CHECK(cudaMemcpyAsync(y.raw_data(), x.raw_data(), x.nbytes(), d2d, cuda::stream()));
        if (backward) DDPM_CUDA_CHECK(cudaMemcpyAsync(dx.raw_data(), dy.raw_data(), dy.nbytes() / 2, d2d, cuda::stream()));
      });
      std::printf("gn %s n=%lld hw=%lld c=%lld: cudaMemcpy of the same bytes %.4f ms (%.1f%% of copy)\n",
                  backward ? "bwd" : "fwd", static_cast<long long>(n), static_cast<long long>(hw),
                  static_cast<long long>(ch), copy_ms,
                  100 * (backward ? 12 : 8) * elems / (copy_ms * 1e6) / peaks.copy_gbps);
      for (int span : {32, 16}) {
        for (int variant = 0; variant < 10; ++variant) {
          const int items = 1 << (variant / 2);
          const bool staged = variant % 2 == 1;  // slices in shared memory, else in registers
          const cuda::gn_slab::Plan p = cuda::gn_slab::tiling(hw, ch, g, backward, span, items, staged);
          if (!p.ok || (items > 1 && p.pix / 2 >= hw)) continue;  // (half the items would do in one block)
          const double ms = timer.median_ms([&] { run(p, backward ? dx : y, mean, rstd, sdz, sdzx); });
          const double diff = backward ? std::max({max_diff(dx, dx_ref), max_diff(sdz, sdz_ref, true),
                                                   max_diff(sdzx, sdzx_ref, true)})
                                       : std::max({max_diff(y, y_ref), max_diff(mean, mean_ref),
                                                   max_diff(rstd, rstd_ref)});
          const bool fail = !(diff <= kTolerance);
          failures += fail ? 1 : 0;
          const double gbps = (backward ? 12 : 8) * elems / (ms * 1e6);
          const bool is_chosen = span == chosen.span && items == chosen.items && staged == chosen.staged;
          // Waves: work items over resident clusters. With w = items / resident, the last wave
          // is fractional, and a launch of ceil(w) equal waves runs at best at w / ceil(w) of
          // the full-device rate (the "wave efficiency"; the tail-effect hypothesis of
          // docs/PERFORMANCE.md predicts the C=128 forward's gap from it).
          const cuda::gn_slab::Residency res = cuda::gn_slab::residency(p, backward, n, ch);
          const double waves = static_cast<double>(res.work_items) / std::max(res.resident, 1);
          std::printf("gn %s n=%lld hw=%lld c=%lld g=%lld %-9s items=%2d K=%d%s  %.4f ms  %6.0f GB/s (%4.1f%% of copy)"
                      "  resident %d of %lld: %.2f waves (%.0f%% wave efficiency)  max|diff| %.1e%s%s\n",
                      backward ? "bwd" : "fwd", static_cast<long long>(n), static_cast<long long>(hw),
                      static_cast<long long>(ch), static_cast<long long>(g), staged ? "shared" : "registers", items,
                      p.blocks_k, is_chosen ? "*" : " ", ms, gbps, 100 * gbps / peaks.copy_gbps, res.resident,
                      static_cast<long long>(res.work_items), waves, 100 * waves / std::ceil(waves), diff,
                      span == 16 ? "  span=16" : "", fail ? "  <<< FAIL: differs from the production kernel" : "");
        }
      }
    }
  }
  return failures;
}

}  // namespace
