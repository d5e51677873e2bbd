#!/usr/bin/env bash
# Pack prebuilt binaries for a GPU machine that cannot install packages (the device tool's
# H100/H200 machines have CUDA, cuDNN, PyTorch, CMake and ninja, but no apt and no network,
# so gtest, OpenBLAS, CLI11, libpng are missing there). Builds the `ci` preset (sm_90, the
# H100/H200 architecture) here, strips the programs and bundles them with the non-CUDA
# shared libraries they need into .gpu-carry/bundle.tar.xz; diffusers' wheel goes along
# (for the model-level PyTorch baseline) when .whl/ holds it.
#
#   scripts/gpu-pack.sh                 then, on the GPU machine (carry .gpu-carry):
#   scripts/gpu-verify.sh --prebuilt .gpu-carry/bundle.tar.xz
#
# .gpu-carry/ and .whl/ must be ignored by git (.git/info/exclude) so they travel only
# when carried.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset ci > /dev/null
cmake --build --preset ci
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/whl"
for exe in build/ci/bin/*; do
  strip -o "$stage/bin/$(basename "$exe")" "$exe"
done
# Shared libraries outside CUDA and the C/C++ runtime, resolved to their real files.
for lib in $(ldd build/ci/bin/* 2>/dev/null | awk '/=>/ {print $3}' | sort -u); do
  case "$(basename "$lib")" in
    libcu*|libnv*|libnccl*|libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|libstdc++*|libgcc_s*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
cp .whl/*.whl "$stage/whl/" 2>/dev/null || true
mkdir -p .gpu-carry
tar -C "$stage" -cJf .gpu-carry/bundle.tar.xz .
git rev-parse HEAD > .gpu-carry/commit
ls -la .gpu-carry
