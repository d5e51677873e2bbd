#!/usr/bin/env bash
# ddpm-edit on latent diffusion and EDM runs from the shell (ctest `cli.edit_latent_edm`): usage
#   edit_latent_edm_test.sh BIN_DIR WORK_DIR
# Trains a tiny autoencoder (16x16x1 toy shapes, f = 2 -> 8x8x3 latents), a tiny latent DDPM
# run on it and a tiny pixel EDM run, then runs invert, img2img and interpolate on both and
# checks that every output is pixels of the input's size (latent runs decode), that the
# records name the autoencoder / the sigma levels, and the refusals (exit 2, nothing written).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" edit_latent_edm_test

# PNG width and height are the big-endian words at bytes 16 and 20 of the IHDR chunk.
png_size() { od -An -tu1 -j16 -N8 "$1" | tr -s ' '; }
edit() { "$bin/ddpm-edit" "$@" --device cpu >"$work/out.txt" 2>"$work/err.txt"; }
all_three() {  # all_three RUN NAME SAMPLER: invert, img2img, interpolate (images, seeds) on RUN
  local run=$1 name=$2 sampler=$3 inputs=$4
  edit invert --checkpoint "$run" --images "$inputs/images" --sampling-steps 4 --out "$work/$name-inv" ||
    fail "$name: invert"
  for f in latents.npz grid.png comparison.png samples.npz images/000001.png edit_info.json; do
    test -f "$work/$name-inv/$f" || fail "$name: invert: no $f"
  done
  grep -q 'PSNR' "$work/out.txt" || fail "$name: invert: the reconstruction error is not printed"
  edit img2img --checkpoint "$run" --images "$inputs/samples.npz" --strength 0.5 --sampler "$sampler" \
    --sampling-steps 4 --num-samples 2 --out "$work/$name-i2i" || fail "$name: img2img"
  grep -aq "'descr': '|u1'.*'shape': (4, 16, 16, 1)" "$work/$name-i2i/samples.npz" ||
    fail "$name: img2img results are not uint8 [4, 16, 16, 1] pixels"
  edit interpolate --checkpoint "$run" --images "$inputs/images/000000.png,$inputs/images/000001.png" --frames 3 \
    --sampling-steps 4 --out "$work/$name-itp" || fail "$name: interpolate --images"
  edit interpolate --checkpoint "$run" --seeds 1,2 --frames 3 --sampling-steps 4 --out "$work/$name-itp2" ||
    fail "$name: interpolate --seeds"
  for d in inv itp itp2; do
    [ "$(png_size "$work/$name-$d/images/000000.png")" = " 0 0 0 16 0 0 0 16" ] ||
      fail "$name: $d/images/000000.png is not 16x16"
  done
}

"$bin/ddpm-autoencoder" train --data toy --steps 2 --batch-size 8 --base-channels 8 --channel-mult 1,2 \
  --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu --out "$work/ae" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-autoencoder train"
"$bin/ddpm-train" "${tiny_model[@]}" --autoencoder "$work/ae" --diffusion-steps 40 --steps 2 --save-every 2 \
  --num-samples 2 --sample-steps 4 --out "$work/latent" >"$work/out.txt" 2>"$work/err.txt" || fail "latent training"
"$bin/ddpm-sample" --checkpoint "$work/latent" --num-samples 2 --sampling-steps 4 --device cpu --out "$work/inputs" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the 16x16 input images"

all_three "$work/latent" latent ddim "$work/inputs"
grep -q '"autoencoder": ".*autoencoder"' "$work/latent-inv/edit_info.json" || fail "latent: no autoencoder recorded"
grep -q '"latent_reconstruction"' "$work/latent-inv/edit_info.json" || fail "latent: no latent-space error"
# The diffusion latents x_T have the latent shape, not the pixels'.
grep -aq "'descr': '<f4'.*'shape': (2, 8, 8, 3)" "$work/latent-inv/latents.npz" ||
  fail "latent: latents.npz is not float32 [2, 8, 8, 3]"

"$bin/ddpm-train" "${tiny_model[@]}" --objective edm --image-size 16 --steps 2 --save-every 2 --num-samples 2 \
  --sample-steps 3 --out "$work/edm" >"$work/out.txt" 2>"$work/err.txt" || fail "EDM training"
all_three "$work/edm" edm heun "$work/inputs"
grep -q '"sigmas"' "$work/edm-inv/edit_info.json" || fail "edm: no sigma levels recorded"
grep -aq "'descr': '<f8'.*'shape': (5,)" "$work/edm-inv/latents.npz" || fail "edm: latents.npz has no sigmas [N + 1]"
grep -q '"sampler": "euler"' <(edit img2img --checkpoint "$work/edm" --images "$work/inputs/samples.npz" \
  --sampler euler --sampling-steps 4 --out "$work/edm-euler" && cat "$work/edm-euler/edit_info.json") ||
  fail "edm: img2img --sampler euler"

refused "trained with the EDM objective" "$bin/ddpm-edit" img2img --checkpoint "$work/edm" --images "$work/inputs/samples.npz" \
  --sampler ddim --device cpu --out "$work/x"
refused "heun and euler are for EDM runs" "$bin/ddpm-edit" img2img --checkpoint "$work/latent" --images "$work/inputs/samples.npz" \
  --sampler heun --device cpu --out "$work/x"
refused "the model's images are 16x16" "$bin/ddpm-edit" invert --checkpoint "$work/latent" --images "$work/latent-inv/comparison.png" \
  --sampling-steps 4 --device cpu --out "$work/x"
test ! -e "$work/x" || fail "a refused edit left $work/x behind"
echo "edit_latent_edm_test: ok"
