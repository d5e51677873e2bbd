#!/usr/bin/env bash
# Latent diffusion end to end from the shell (ctest `cli.latent_diffusion`): usage
#   latent_diffusion_test.sh BIN_DIR WORK_DIR
# Trains a tiny autoencoder on the toy shapes (16x16x1, f = 2 -> 8x8x3 latents), evaluates
# it, trains a tiny UNet in its latent space, samples, and checks that the samples are
# pixel-space images (PNG 16x16, npz uint8 [3, 16, 16, 1]); then that what makes no sense in
# latent space (inpainting, bits/dim, a pixel-space classifier, the VLB losses) exits 2.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" latent_diffusion_test

"$bin/ddpm-autoencoder" train --data toy --steps 3 --batch-size 8 --base-channels 8 --channel-mult 1,2 \
  --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu --out "$work/ae" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-autoencoder train"
for f in model.safetensors config.json reconstructions.png; do [ -f "$work/ae/$f" ] || fail "no ae/$f"; done
grep -q '"scale_factor"' "$work/ae/config.json" || fail "no scale_factor in ae/config.json"
"$bin/ddpm-autoencoder" eval --autoencoder "$work/ae" --data toy --split test --limit 8 --device cpu \
  >"$work/eval.txt" 2>"$work/err.txt" || fail "ddpm-autoencoder eval"
grep -q '^{.*"psnr":' "$work/eval.txt" || fail "no JSON line with the PSNR"

"$bin/ddpm-train" --autoencoder "$work/ae" --data toy --toy-count 16 --preset none --num-channels 8 \
  --channel-mult 1,2 --num-res-blocks 1 --attention-resolutions "" --norm-groups 4 --dropout 0 \
  --diffusion-steps 40 --batch-size 4 --steps 2 --save-every 2 --sample-every 0 --log-every 1 --num-samples 4 \
  --sample-steps 4 --device cpu --out "$work/run" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --autoencoder"
[ -f "$work/run/autoencoder/model.safetensors" ] || fail "the run has no copy of the autoencoder"
[ -f "$work/run/samples/step_2.png" ] || fail "no training sample grid"

"$bin/ddpm-sample" --checkpoint "$work/run" --num-samples 3 --sampler ddim --sampling-steps 4 --device cpu \
  --out "$work/samples" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample"
[ -f "$work/samples/grid.png" ] || fail "no grid.png"
# PNG width and height are the big-endian words at bytes 16 and 20 of the IHDR chunk.
size=$(od -An -tu1 -j16 -N8 "$work/samples/images/000000.png" | tr -s ' ')
[ "$size" = " 0 0 0 16 0 0 0 16" ] || fail "images/000000.png is not 16x16 (IHDR bytes:$size)"
# samples.npz is stored uncompressed, so arr_0's npy header is plain text.
grep -aq "'descr': '|u1'.*'shape': (3, 16, 16, 1)" "$work/samples/samples.npz" || fail "samples.npz arr_0 is not uint8 [3, 16, 16, 1]"

printf 'x' >"$work/not.png"
expect_refusal "--inpaint" "" "$bin/ddpm-sample" --checkpoint "$work/run" --inpaint "$work/not.png" --mask "$work/not.png" \
  --device cpu --out "$work/inpaint"
expect_refusal "--classifier" "" "$bin/ddpm-sample" --checkpoint "$work/run" --classifier "$work/ae" --device cpu --out "$work/cls"
expect_refusal "bpd" "" "$bin/ddpm-eval" bpd --checkpoint "$work/run" --data toy --limit 2 --device cpu
expect_refusal "export" "" "$bin/ddpm-export" --checkpoint "$work/run" --out "$work/exported"
[ ! -e "$work/exported" ] || fail "a refused export left $work/exported behind"
expect_refusal "--loss hybrid" "" "$bin/ddpm-train" --autoencoder "$work/ae" --data toy --loss hybrid --learn-sigma --device cpu \
  --out "$work/run2"
expect_refusal "existing --out" "" "$bin/ddpm-autoencoder" train --data toy --device cpu --out "$work/ae"
expect_refusal "unknown subcommand" "" "$bin/ddpm-autoencoder" tran
# EDM on latents: sigma_data defaults to 1 (unit-variance latents); a given --sigma-data stays.
edm_tiny=(--objective edm --autoencoder "$work/ae" --data toy --toy-count 16 --preset none --num-channels 8
          --channel-mult 1,2 --num-res-blocks 1 --attention-resolutions "" --norm-groups 4 --dropout 0 --batch-size 4
          --steps 1 --save-every 1 --sample-every 0 --num-samples 2 --sample-steps 3 --device cpu)
"$bin/ddpm-train" "${edm_tiny[@]}" --out "$work/edm" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --objective edm --autoencoder"
grep -q '"sigma_data": 1.0' "$work/edm/config.json" || fail "EDM on latents did not default sigma_data to 1"
"$bin/ddpm-train" "${edm_tiny[@]}" --sigma-data 0.7 --out "$work/edm2" >"$work/out.txt" 2>"$work/err.txt" || fail "--sigma-data 0.7"
grep -q '"sigma_data": 0.7' "$work/edm2/config.json" || fail "a given --sigma-data was not kept"
"$bin/ddpm-sample" --checkpoint "$work/edm" --sampler dpm++2m --sampling-steps 3 --num-samples 2 --device cpu \
  --out "$work/edm_samples" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the EDM latent run"
grep -aq "'descr': '|u1'.*'shape': (2, 16, 16, 1)" "$work/edm_samples/samples.npz" || fail "EDM latent samples are not pixels"
echo "latent_diffusion_test: ok"
