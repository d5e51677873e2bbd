#!/usr/bin/env bash
# The kernel benchmark in one call, on a machine with a GPU: this project's kernels
# (bench-kernels) and PyTorch eager at the same shapes (scripts/bench_pytorch.py, when
# torch is importable), joined into one table with the ratio torch_ms / our_ms (> 1 means
# we are faster), and the model-level figures (bench-unet vs scripts/bench_pytorch_unet.py:
# training images/s and sampling evaluations/s of the DDPM CIFAR-10 UNet at batch 128), and
# whole 20-step DDIM chains with staged and waiting small uploads (bench-unet --chain).
# Both sides run in this one invocation, so the ratios compare like with like. Our side runs
# twice, fp32 (the default) and with --tf32 (TF32 in cuBLAS and cuDNN, engine/math_mode.h);
# the rows carry "mode" and the report puts each beside PyTorch's fp32 and TF32 figures.
#
#   scripts/bench.sh [build-dir]       (default build/gpu; built by scripts/gpu-verify.sh)
#   TORCH_UNET_MODES=eager_fp32,...    PyTorch model-level modes (default: all three; torch.compile
#                                      spends a minute or more compiling)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/gpu}
out=${OUT:-$build}
mkdir -p "$out"
"$build/bin/bench-kernels" --cases bench/cases.json --json > "$out/bench-ours.jsonl"
"$build/bin/bench-kernels" --cases bench/cases.json --json --tf32 >> "$out/bench-ours.jsonl"
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  python3 scripts/bench_pytorch.py > "$out/bench-torch.jsonl"
else
  echo "bench: PyTorch with CUDA not importable; printing our figures only" >&2
  : > "$out/bench-torch.jsonl"
fi
"$build/bin/bench-unet" --json >> "$out/bench-ours.jsonl"
"$build/bin/bench-unet" --json --tf32 >> "$out/bench-ours.jsonl"
if python3 -c "import torch, diffusers; assert torch.cuda.is_available()" 2>/dev/null; then
  python3 scripts/bench_pytorch_unet.py ${TORCH_UNET_MODES:+--modes $TORCH_UNET_MODES} >> "$out/bench-torch.jsonl"
else
  echo "bench: diffusers not importable; no PyTorch model-level baseline (pip install diffusers)" >&2
fi
python3 scripts/bench_report.py "$out/bench-ours.jsonl" "$out/bench-torch.jsonl"
# Whole sampling chains (20 DDIM steps) with and without the staging ring for small uploads
# (kernels/cuda/staging.h), TF32 as the apps use it: the ratio is the host-device overlap won.
for b in 1 16 128; do "$build/bin/bench-unet" --chain --tf32 --batch "$b" --reps 5; done
