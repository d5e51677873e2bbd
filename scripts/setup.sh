#!/usr/bin/env bash
# Installs every Debian package the project needs. Idempotent: a second run
# installs nothing. The CUDA toolkit (nvcc, cuBLAS, cuDNN 9, NCCL) is expected
# to be present already on the project's machines; without nvcc the build is
# CPU-only.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  libgtest-dev          # GoogleTest for tests/
  libopenblas-dev       # CPU GEMM (cblas_sgemm / cblas_dgemm)
  libcli11-dev          # command-line parsing in apps/
  nlohmann-json3-dev    # config.json and safetensors headers
  zlib1g-dev libpng-dev # gzip'd IDX files, PNG output
  dataset-fashion-mnist # the default training set
  libopenmpi-dev openmpi-bin  # data-parallel training (mpirun) and its tests (optional in CMake)
  python3               # CLI tests that read JSON, and docs_flags.sh (the docs' commands)
  clang libclang-rt-dev # the fuzz preset: clang, libFuzzer and its sanitizer runtimes (scripts/fuzz.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
