#!/usr/bin/env bash
# One call on a machine with a GPU: build for that GPU's architecture, run every test
# (the `gpu` label included), run compute-sanitizer memcheck and racecheck over the GPU
# tests, run the benchmarks that exist, print a summary table, and append a record to
# docs/GPU-RUNS.md (date, GPU, driver, commit, results).
#
#   scripts/gpu-verify.sh [build-dir]      (default build/gpu)
#
# Logs go to $OUT when set (the device tool's output folder), else to <build-dir>/logs.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/gpu}
logs=${OUT:-$build/logs}
mkdir -p "$logs"

cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
if [ -z "$cap" ]; then echo "gpu-verify: no GPU found by nvidia-smi"; exit 1; fi
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "gpu-verify: $gpu (sm_$cap), driver $driver, commit $commit"

declare -A result
step() {  # step NAME command...
  local name=$1; shift
  local t0=$(date +%s)
  if "$@" > "$logs/$name.log" 2>&1; then result[$name]="pass"; else result[$name]="FAIL"; fi
  result[$name]="${result[$name]} ($(( $(date +%s) - t0 )) s)"
  echo "  $name: ${result[$name]}"
}

step configure cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$cap"
step build cmake --build "$build" -j "$(nproc)"
step ctest ctest --test-dir "$build" --output-on-failure -j 4
tests_line=$(grep -E "tests passed|tests failed" "$logs/ctest.log" | tail -1)
skipped=$(grep -c "(Skipped)" "$logs/ctest.log")
step memcheck compute-sanitizer --tool memcheck --leak-check full --error-exitcode 1 "$build/bin/gpu_tests"
step racecheck compute-sanitizer --tool racecheck --error-exitcode 1 "$build/bin/gpu_tests"
step bench bash scripts/bench.sh "$build"   # kernel figures + PyTorch eager ratios

printf '\n| step | result |\n|---|---|\n'
for k in "${!result[@]}"; do printf '| %s | %s |\n' "$k" "${result[$k]}"; done
echo "ctest: $tests_line; skipped: $skipped"

{
  echo
  echo "## $(date -u +%Y-%m-%d) $gpu (sm_$cap), driver $driver, commit $commit"
  echo
  echo "ctest: $tests_line; skipped: $skipped"
  echo
  echo "| step | result |"
  echo "|---|---|"
  for k in "${!result[@]}"; do echo "| $k | ${result[$k]} |"; done
} >> docs/GPU-RUNS.md
cp docs/GPU-RUNS.md "$logs/GPU-RUNS.md" 2>/dev/null || true
for k in "${!result[@]}"; do case "${result[$k]}" in FAIL*) exit 1;; esac; done
