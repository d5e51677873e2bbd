#!/usr/bin/env bash
# scripts/main-job.sh: the README's main job, from a fresh checkout to samples.
#
#   1. scripts/setup.sh (Debian packages, including dataset-fashion-mnist)
#   2. configure and build ddpm-train (and ddpm-sample when the sources have it):
#        - with a usable GPU (nvcc found and nvidia-smi lists a device): preset `default`
#          (Release, CUDA for architectures 80;86;89;90)
#        - otherwise a CPU-only build (preset `cpu`): compiling the CUDA kernels without a
#          GPU to run them would only cost build time
#      into build/main-job-<cuda|cpu>/, tests off (this job only needs the programs)
#   3. ddpm-train --data fashion-mnist --preset auto --out runs/fashion-mnist-<date>
#      (auto: cpu-small on the CPU, gpu-medium on a GPU; see models/run/presets.h)
#   4. ddpm-sample on the run's latest checkpoint, if that program exists
# and prints where the outputs are. Extra arguments go to ddpm-train
# (e.g. scripts/main-job.sh --steps 500).
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
scripts/setup.sh

if command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  preset=default; build=build/main-job-cuda; device=cuda
else
  preset=cpu; build=build/main-job-cpu; device=cpu
fi
echo "main-job: building with preset '$preset' into $build"
cmake --preset "$preset" -B "$build" -DDDPM_TESTS=OFF >/dev/null
jobs=$(nproc 2>/dev/null || echo 2)
targets=(ddpm-train)
[ -f apps/ddpm_sample.cpp ] && targets+=(ddpm-sample)
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

run="runs/fashion-mnist-$(date +%Y%m%d-%H%M%S)"
echo "main-job: training into $run"
"$build/bin/ddpm-train" --data fashion-mnist --preset auto --device "$device" --out "$run" "$@"

if [ -x "$build/bin/ddpm-sample" ]; then
  echo "main-job: sampling with ddpm-sample"
  # DDIM with 50 steps (divides every preset's T = 1000) from the EMA weights.
  "$build/bin/ddpm-sample" --checkpoint "$run" --num-samples 64 --sampler ddim --sampling-steps 50 \
    --out "$run/ddpm-sample" --device "$device" ||
    echo "main-job: ddpm-sample failed (the training outputs above are complete)"
fi

end=$(date +%s)
echo
echo "main-job: done in $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s"
echo "  run folder:   $run"
echo "  samples:      $run/samples/ (EMA weights, fixed seed)"
echo "  metrics:      $run/metrics.csv, $run/metrics.jsonl, loss curve $run/loss.png"
echo "  checkpoints:  $run/checkpoints/$(cat "$run/checkpoints/latest" 2>/dev/null || echo '?')"
[ -d "$run/ddpm-sample" ] && echo "  ddpm-sample:  $run/ddpm-sample/"
exit 0
