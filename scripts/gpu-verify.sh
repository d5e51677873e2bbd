#!/usr/bin/env bash
# One call on a machine with a GPU: build for that GPU's architecture (or unpack binaries
# built elsewhere), run every test (the GPU tests included), run compute-sanitizer memcheck
# and racecheck over the GPU tests, run the benchmarks, print a summary table, and append a
# record to docs/GPU-RUNS.md (date, GPU, driver, commit, results).
#
#   scripts/gpu-verify.sh [build-dir]                  build here (needs scripts/setup.sh's packages)
#   scripts/gpu-verify.sh --prebuilt BUNDLE.tar.xz     binaries from scripts/gpu-pack.sh
#
# The prebuilt mode is for machines without a package manager (the device tool's H100/H200):
# the bundle holds stripped programs, the non-CUDA shared libraries they need and optional
# Python wheels; CUDA, cuBLAS and cuDNN come from the machine (the toolkit or PyTorch's pip
# packages). STEPS (default "tests memcheck racecheck bench"; also "cpu_tests", "apps" (scripts/gpu-apps.sh),
# "gn_variants" and "ncu" (Nsight Compute on the GroupNorm kernels)) picks the steps, and each step
# is cut off after STEP_TIMEOUT seconds (default 540), so a lease is never spent waiting;
# SANITIZE_FILTER (a gtest filter, default all) narrows the sanitizer steps, which run the
# tests 10-50x slower.
# Logs go to $OUT when set (the device tool's output folder), else to <build-dir>/logs.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
prebuilt=""
if [ "${1:-}" = "--prebuilt" ]; then prebuilt=$2; build=/tmp/ddpm-prebuilt; else build=${1:-build/gpu}; fi
steps=${STEPS:-tests memcheck racecheck bench}
limit=${STEP_TIMEOUT:-540}
filter=${SANITIZE_FILTER:-*}  # which GPU tests run under compute-sanitizer (gtest filter)
# With $OUT (the device tool, which brings back at most 8 files) the logs are written to a
# scratch folder and packed into $OUT/gpu-logs.tar.gz at the end.
if [ -n "${OUT:-}" ]; then logs=/tmp/gpu-verify-logs; rm -rf "$logs"; else logs=$build/logs; fi
mkdir -p "$logs"

cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
if [ -z "$cap" ]; then echo "gpu-verify: no GPU found by nvidia-smi"; exit 1; fi
# The bundle names the commit it was built from (the tree's .git may not travel with it).
if [ -n "$prebuilt" ] && [ -f "$(dirname "$prebuilt")/commit" ]; then commit=$(cut -c1-7 "$(dirname "$prebuilt")/commit")
else commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown); fi
echo "gpu-verify: $gpu (sm_$cap), driver $driver, commit $commit, steps: $steps"

declare -A result
order=()
step() {  # step NAME command...
  local name=$1; shift
  local t0=$(date +%s)
  order+=("$name")
  if timeout "$limit" "$@" > "$logs/$name.log" 2>&1; then result[$name]="pass"; else result[$name]="FAIL (rc $?)"; fi
  result[$name]="${result[$name]}, $(( $(date +%s) - t0 )) s"
  echo "  $name: ${result[$name]}"
}

if [ -n "$prebuilt" ]; then
  rm -rf "$build" && mkdir -p "$build" && tar -C "$build" -xJf "$prebuilt" || exit 1
  # CUDA's libraries: the toolkit's, else the ones PyTorch's pip packages carry.
  cudalibs=$(find /usr/local /opt /usr/lib -xdev \( -name 'libcudnn.so.9' -o -name 'libcublas.so.13' \
               -o -name 'libcudart.so.13' -o -name 'libcublasLt.so.13' -o -name 'libnccl.so.2' \) 2>/dev/null | xargs -r -n1 dirname | sort -u | tr '\n' ':')
  export LD_LIBRARY_PATH="$build/lib:${cudalibs}${LD_LIBRARY_PATH:-}"
  export DDPM_TEST_DATA_DIR="$repo/tests/data"
  if ls "$build"/whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/ddpm-site "$build"/whl/*.whl > "$logs/pip.log" 2>&1 && export PYTHONPATH=/tmp/ddpm-site
  fi
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$build/bin/gpu_tests" | grep -E "not found|cudnn|cublas" | sed 's/^/  /'
else
  step configure cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$cap"
  step build cmake --build "$build" -j "$(nproc)"
fi

summary=""
for s in $steps; do
  case $s in
    tests)
      step gpu_tests "$build/bin/gpu_tests"
      skipped=$(grep -c "^\[  SKIPPED \]" "$logs/gpu_tests.log")
      passed=$(grep -E "^\[  PASSED  \]" "$logs/gpu_tests.log" | head -1)
      failed=$(grep -E "^\[  FAILED  \] .*\." "$logs/gpu_tests.log" | sed 's/^\[  FAILED  \] //' | tr '\n' ' ')
      summary="gpu_tests: ${passed:-no PASSED line}; skipped: $skipped; failed: ${failed:-none}"
      echo "  $summary" ;;
    cpu_tests)
      step cpu_tests "$build/bin/cpu_tests" --gtest_brief=1 ;;
    memcheck)  # no API errors (the out-of-memory test and cuDNN's search hit them on purpose) and no leak check (the context's handles live until exit)
      step memcheck compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 1 \
        "$build/bin/gpu_tests" --gtest_filter="$filter" ;;
    racecheck)
      step racecheck compute-sanitizer --tool racecheck --error-exitcode 1 "$build/bin/gpu_tests" --gtest_filter="$filter" ;;
    bench)
      step bench env OUT="$logs" bash scripts/bench.sh "$build" ;;
    gn_variants)  # every GroupNorm slab tiling at the benchmark shapes (docs/PERFORMANCE.md)
      step gn_variants "$build/bin/bench-kernels" --gn-variants ;;
    ncu)  # Nsight Compute on the kernels matching NCU_KERNEL (default: the GroupNorm slab kernels)
          # while bench-kernels --gn-variants runs each tiling at 32x32, C=128, batch 128
      ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      printf '{"group_norm_silu": [{"n": 128, "h": 32, "w": 32, "c": 128, "groups": 32}]}\n' > "$logs/ncu-cases.json"
      step ncu "${ncu:-ncu}" --kernel-name "regex:${NCU_KERNEL:-gn_slab}" --launch-count "${NCU_COUNT:-20}" \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
        --section LaunchStats --section SchedulerStats --print-summary none \
        "$build/bin/bench-kernels" --gn-variants --reps 1 --cases "$logs/ncu-cases.json" ;;
    apps)  # Fashion-MNIST from the system, else carried beside the bundle (.gpu-carry/fashion-mnist)
      fm=""; [ -d /usr/share/datasets/fashion-mnist ] || fm="$repo/.gpu-carry/fashion-mnist"
      step apps bash scripts/gpu-apps.sh "$build/bin" "$logs" $fm ;;
    *) echo "gpu-verify: unknown step '$s'"; exit 2 ;;
  esac
done

printf '\n| step | result |\n|---|---|\n'
for k in "${order[@]}"; do printf '| %s | %s |\n' "$k" "${result[$k]}"; done
[ -n "$summary" ] && echo "$summary"
[ -f "$logs/apps.log" ] && grep -E "^(==|train:|sample|classifier seed|samples vs|real |uniform )" "$logs/apps.log"
[ -f "$logs/bench.log" ] && tail -60 "$logs/bench.log"

{
  echo
  echo "## $(date -u +%Y-%m-%d) $gpu (sm_$cap), driver $driver, commit $commit${prebuilt:+ (prebuilt)}"
  echo
  [ -n "$summary" ] && echo "$summary" && echo
  echo "| step | result |"
  echo "|---|---|"
  for k in "${order[@]}"; do echo "| $k | ${result[$k]} |"; done
} >> docs/GPU-RUNS.md
cp docs/GPU-RUNS.md "$logs/GPU-RUNS.md" 2>/dev/null || true
[ -n "${OUT:-}" ] && tar -C "$logs" -czf "$OUT/gpu-logs.tar.gz" .
for k in "${order[@]}"; do case "${result[$k]}" in FAIL*) exit 1;; esac; done
