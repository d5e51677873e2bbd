#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what is missing, configures the
# `ci` preset (CUDA compiled for sm_90 when nvcc is present, so CUDA code never rots),
# builds with every core, and runs the whole suite under ctest. GPU tests report as
# skipped on machines without a device.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset ci
cmake --build --preset ci -j "$(nproc)"
ctest --preset ci
