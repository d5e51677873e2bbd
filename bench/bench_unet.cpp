// bench-unet: the model-level figures compared with PyTorch/diffusers by scripts/bench.sh:
// the DDPM CIFAR-10 UNet (35.7M parameters) at batch 128 on CUDA,
//   train   images/s of one training step (forward, L_simple, backward, AdamW on the slab)
//   train_recompute  the same with activation checkpointing (nn::Context::recompute)
//   sample  network evaluations/s of one no-grad forward
// each with the tensor bytes at the peak of one call (peak_mib: parameters, gradients and
// AdamW moments included; engine/storage.h memory_stats), as torch.cuda.max_memory_allocated.
// median of --reps after warm-up. JSON lines with --json (the format of
// scripts/bench_pytorch_unet.py), "mode" "ours_fp32" or, with --tf32 (ddpm::set_allow_tf32,
// engine/math_mode.h: TF32 in cuBLAS and cuDNN), "ours_tf32". --conv-algo picks the cuDNN
// algorithm search (benchmark, the default, or heuristic). Without a GPU it says so and exits 0.
//   chain   (--chain) milliseconds of a whole 20-step DDIM sampling chain at --batch, with
//           small host-to-device uploads staged (kernels/cuda/staging.h) and with every
//           upload waiting for the GPU, in one run: the ratio is what the staging ring buys.
//           At small batches the host's op dispatch is comparable to the GPU's work, and a
//           wait per upload serializes the two.
// Text conditioning (--context-dim D [--context-length L], default L = 77, CLIP's): the same
// network with its attention blocks replaced by spatial transformers (UNetConfig::context_dim,
// models/unet/transformer.h: self-attention, cross-attention to a context [batch, L, D] and
// a GEGLU feed-forward), as a UNet2DConditionModel is timed with encoder_hidden_states given.
// The context is a fixed random tensor (the text encoder is not timed: ddpm-profile
// --text-cond profiles both). Every JSON line then has "context_dim" and "context_length", and
// the JSON "op" is "unet_context" so scripts/bench.sh never pairs it with the plain UNet.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "engine/autograd.h"
#include "engine/math_mode.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "engine/storage.h"
#include "engine/ops/reduce.h"
#include "kernels/cuda/staging.h"
#include "models/diffusion/sampler.h"
#include "models/diffusion/schedule.h"
#include "models/unet/unet.h"

using namespace ddpm;

int main(int argc, char** argv) {
  int batch = 128, reps = 20, context_dim = 0, context_length = 77;
  bool json_lines = false, tf32 = false, chain = false;
  ConvAlgoSearch conv_search = ConvAlgoSearch::benchmark;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json") json_lines = true;
    else if (a == "--tf32") tf32 = true;
    else if (a == "--chain") chain = true;
    else if (a == "--conv-algo" && i + 1 < argc) {
      try {
        conv_search = parse_conv_algo_search(argv[++i]);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-unet: %s\n", e.what());
        return 2;
      }
    }
    else if (a == "--batch" && i + 1 < argc) batch = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--context-dim" && i + 1 < argc) context_dim = std::atoi(argv[++i]);
    else if (a == "--context-length" && i + 1 < argc) context_length = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench-unet [--batch N] [--reps N] [--json] [--tf32] [--conv-algo benchmark|heuristic] "
                           "[--chain] [--context-dim D [--context-length L]]\n");
      return 2;
    }
  }
  if (batch < 1 || reps < 1) {
    std::fprintf(stderr, "bench-unet: --batch and --reps must be positive\n");
    return 2;
  }
  if (context_dim < 0 || context_length < 1) {
    std::fprintf(stderr, "bench-unet: --context-dim must be >= 0 (0: no cross-attention) and --context-length >= 1, "
                         "got %d and %d\n", context_dim, context_length);
    return 2;
  }
  try {
    if (!cuda_available()) {
      std::printf("bench-unet: no CUDA device (%s): nothing to time\n", cuda_unavailable_reason().c_str());
      return 0;
    }
    set_allow_tf32(tf32);
    set_conv_algo_search(conv_search);
    Generator gen(0);
    unet::UNetConfig config = unet::UNetConfig::ddpm_cifar10();
    config.context_dim = context_dim;
    unet::UNet net(config, gen, Device::cuda());
    ParameterSlab slab(net.named_parameters());
    AdamW opt(slab, AdamWConfig{});
    Tensor x = randn({batch, 32, 32, 3}, gen, Device::cuda());
    Tensor noise = randn({batch, 32, 32, 3}, gen, Device::cuda());
    // The cross-attention's context [batch, L, D] (undefined for the plain UNet).
    const Tensor context =
        context_dim > 0 ? randn({batch, context_length, context_dim}, gen, Device::cuda()) : Tensor();
    std::vector<double> t(static_cast<std::size_t>(batch));
    for (int i = 0; i < batch; ++i) t[static_cast<std::size_t>(i)] = (i * 997) % 1000;
    // One network call (every call here is at --batch), with the context when the model
    // cross-attends.
    auto forward = [&](const Tensor& xt, const std::vector<double>& ts, const nn::Context& ctx) {
      if (context_dim == 0) return net.forward(xt, ts, {}, ctx);
      return net.forward(xt, ts, {}, context, ctx);
    };
    const char* op_name = context_dim > 0 ? "unet_context" : "unet";
    auto add_context_fields = [&](nlohmann::json& line) {  // the plain UNet's lines stay as they were
      if (context_dim == 0) return;
      line["context_dim"] = context_dim;
      line["context_length"] = context_length;
    };

    bench::Timer timer(reps);
    if (chain) {
      const diffusion::DiffusionSchedule schedule(diffusion::linear_betas(1000));
      diffusion::SamplerConfig cfg;
      cfg.kind = diffusion::SamplerConfig::Kind::ddim;
      cfg.respacing = "ddim20";
      const diffusion::DenoiseFn denoise = [&](const Tensor& xt, const std::vector<double>& ts,
                                               const std::vector<std::int64_t>& labels) {
        (void)labels;
        return forward(xt, ts, nn::Context{});
      };
      auto chain_ms = [&](bool staged) {
        cuda::set_staging_enabled(staged);
        const double ms = timer.median_ms([&] {
          Generator g(1);
          (void)diffusion::sample(schedule, denoise, {batch, 32, 32, 3}, {}, cfg, g, Device::cuda());
        });
        cuda::set_staging_enabled(true);
        return ms;
      };
      const double staged = chain_ms(true), waiting = chain_ms(false);
      if (json_lines) {
        nlohmann::json line{{"op", context_dim > 0 ? "unet_context_chain" : "unet_chain"},
                            {"mode", tf32 ? "ours_tf32" : "ours_fp32"},
                            {"steps", 20}, {"batch", batch}, {"staged_ms", staged},
                            {"waiting_ms", waiting}, {"speedup", waiting / staged}};
        add_context_fields(line);
        std::cout << line.dump() << "\n";
      }
      else
        std::printf("DDIM chain of 20 steps, batch %d: %.2f ms with staged uploads, %.2f ms with waiting uploads "
                    "(%.2fx)\n", batch, staged, waiting, waiting / staged);
      return 0;
    }
    auto train_step = [&](bool recompute) {
      slab.zero_grad();
      Tensor loss = mse_loss(forward(x, t, nn::Context{true, &gen, recompute}), noise);
      loss.backward();
      opt.step();
    };
    auto sample_step = [&] {
      NoGradGuard no_grad;
      forward(x, t, nn::Context{});
    };
    // Tensor bytes at the peak of one call (parameters, gradients and AdamW moments
    // included), in MiB: what torch.cuda.max_memory_allocated reports for PyTorch's side.
    auto peak_mib = [&](const std::function<void()>& fn) {
      reset_peak_memory(DeviceType::cuda);
      fn();
      return static_cast<double>(memory_stats(DeviceType::cuda).peak) / (1 << 20);
    };
    const double train_ms = timer.median_ms([&] { train_step(false); });
    const double recompute_ms = timer.median_ms([&] { train_step(true); });
    const double sample_ms = timer.median_ms(sample_step);
    const double train_peak = peak_mib([&] { train_step(false); });
    const double recompute_peak = peak_mib([&] { train_step(true); });
    const double sample_peak = peak_mib(sample_step);
    auto emit = [&](const char* what, double ms, double peak) {
      double per_s = batch / ms * 1e3;
      if (json_lines) {
        nlohmann::json line{{"op", op_name},    {"mode", tf32 ? "ours_tf32" : "ours_fp32"},
                            {"conv_algo", conv_algo_search_name(conv_search)},
                            {"what", what},     {"batch", batch},
                            {"ms", ms},         {"per_s", per_s},
                            {"peak_mib", peak}};
        add_context_fields(line);
        std::cout << line.dump() << "\n";
      } else
        std::printf("unet %-15s batch %d: %.2f ms, %.1f %s/s, peak %.0f MiB\n", what, batch, ms, per_s,
                    std::string(what) == "sample" ? "evaluations" : "images", peak);
    };
    if (!json_lines)
    {
      std::printf("DDPM CIFAR-10 UNet, %lld parameters, %s, convolution algorithms: %s\n", (long long)slab.numel(),
                  tf32 ? "fp32 storage with TF32 GEMMs and convolutions" : "fp32 (no TF32)",
                  conv_algo_search_name(conv_search));
      if (context_dim > 0)
        std::printf("with spatial transformers at 16x16 and in the middle, cross-attending to a context of %d tokens "
                    "x %d channels\n", context_length, context_dim);
    }
    emit("train", train_ms, train_peak);
    emit("train_recompute", recompute_ms, recompute_peak);
    emit("sample", sample_ms, sample_peak);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-unet: %s\n", e.what());
    return 1;
  }
  return 0;
}
