#!/usr/bin/env python3
"""PyTorch/diffusers baseline for the model-level benchmark: the DDPM CIFAR-10 UNet
(diffusers UNet2DModel in the original layout: 128 channels, multipliers 1,2,2,2, two
residual blocks per level, attention at 16x16, 35.7M parameters) at batch 128:

  train   images/s of one training step (forward, L_simple, backward, AdamW)
  train_recompute  the same with activation checkpointing (eager fp32 only)
  peak_mib  CUDA tensor memory at the peak of one call (torch.cuda.max_memory_allocated)
  sample  network evaluations/s of one no-grad forward at the sampling batch

for three modes: eager fp32 (TF32 allowed, as PyTorch users run it), eager bf16 autocast
with channels_last, and torch.compile (fp32, TF32 allowed). Prints JSON lines
{"op": "unet", "mode", "what", "batch", "ms", "per_s"}; scripts/bench.sh joins them with
bench-unet's figures for the same configuration. Needs torch and diffusers
(pip install torch diffusers).

    python3 scripts/bench_pytorch_unet.py [--batch 128] [--reps 20] [--device cuda]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel


def ddpm_cifar10_unet(sample_size=32):
    return UNet2DModel(
        sample_size=sample_size, in_channels=3, out_channels=3, layers_per_block=2,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None, norm_num_groups=32, dropout=0.1,
        flip_sin_to_cos=False, freq_shift=1, time_embedding_type="positional")


def timed(fn, reps, device):
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--modes", default="eager_fp32,eager_bf16_channels_last,compile")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(json.dumps({"model": "ddpm_cifar10", "params": sum(p.numel() for p in ddpm_cifar10_unet().parameters()),
                      "torch": torch.__version__}), flush=True)
    for mode in args.modes.split(","):
        torch.manual_seed(0)
        net = ddpm_cifar10_unet().to(dev)
        x = torch.randn(args.batch, 3, 32, 32, device=dev)
        noise = torch.randn_like(x)
        t = torch.randint(0, 1000, (args.batch,), device=dev)
        use_bf16 = mode == "eager_bf16_channels_last"
        if use_bf16:
            net = net.to(memory_format=torch.channels_last)
            x = x.to(memory_format=torch.channels_last)
        fwd = torch.compile(net) if mode == "compile" else net
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=(args.device == "cuda"))

        def train_step():
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=use_bf16):
                out = fwd(x, t).sample
                loss = F.mse_loss(out.float(), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        @torch.no_grad()
        def sample_step():
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=use_bf16):
                fwd(x, t)

        def peak_mib(fn):
            # Tensor bytes at the peak of one call, parameters and optimizer state included
            # (bench-unet reports the same for ours).
            if dev.type != "cuda":
                return None
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20

        steps = [("train", train_step), ("sample", sample_step)]
        if mode == "eager_fp32":
            # diffusers' activation checkpointing (UNet2DModel.enable_gradient_checkpointing),
            # against bench-unet's train_recompute.
            def train_recompute_step():
                net.enable_gradient_checkpointing()
                try:
                    train_step()
                finally:
                    net.disable_gradient_checkpointing()
            steps.append(("train_recompute", train_recompute_step))
        for what, fn in steps:
            ms = timed(fn, args.reps, args.device)
            row = {"op": "unet", "mode": mode, "what": what, "batch": args.batch, "ms": ms,
                   "per_s": args.batch / ms * 1e3}
            peak = peak_mib(fn)
            if peak is not None:
                row["peak_mib"] = peak
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
