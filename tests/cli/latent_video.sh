#!/usr/bin/env bash
# Latent video diffusion end to end from the shell (ctest `cli.latent_video`): usage
#   latent_video.sh BIN_DIR WORK_DIR
# A tiny autoencoder on the first frames of moving-toy clips at --canvas 16 (16x16x1, f = 2 ->
# 8x8x3; ddpm-autoencoder trains on the clips' first frames as still images),
# then a video UNet on moving-toy clips in its latent space (2 steps), ddpm-sample on it
# (clips of 3 decoded 16x16x1 frames: npz uint8 [2, 3, 16, 16, 1], GIFs of 16x16 frames),
# ddpm-eval video on those pixels, and the refusal of --autoencoder with --init-from.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" latent_video

"$bin/ddpm-autoencoder" train --data moving-toy --canvas 16 --item-size 8 --steps 2 --batch-size 8 --base-channels 8 --channel-mult 1,2 \
  --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu --out "$work/ae" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-autoencoder train"

clips=(--canvas 16 --item-size 8 --frames 3)
tiny_video=("${tiny_model[@]/#toy/moving-toy}" "${clips[@]}" --save-every 2 --num-samples 2 --sample-steps 2)
"$bin/ddpm-train" "${tiny_video[@]}" --autoencoder "$work/ae" --steps 2 --out "$work/run" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-train --data moving-toy --autoencoder"
[ -f "$work/run/autoencoder/model.safetensors" ] || fail "the run has no copy of the autoencoder"
cmp -s "$work/ae/model.safetensors" "$work/run/autoencoder/model.safetensors" || fail "the run's autoencoder differs"
grep -q '"num_frames": 3' "$work/run/config.json" || fail "config.json does not record num_frames"
grep -q '"image_size": 8' "$work/run/config.json" || fail "the UNet is not the latent's size (8)"
head -c 6 "$work/run/samples/step_2.gif" | grep -q 'GIF89a' || fail "no animated sample grid"

"$bin/ddpm-sample" --checkpoint "$work/run" --num-samples 2 --sampler ddim --sampling-steps 2 --device cpu \
  --out "$work/s" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample on a latent video run"
for f in grid.gif filmstrip.png videos/000000.gif videos/000001.gif samples.npz sample_info.json; do
  [ -f "$work/s/$f" ] || fail "no $f"
done
# samples.npz is stored uncompressed, so arr_0's npy header is plain text: decoded pixels.
grep -aq "'descr': '|u1'.*'shape': (2, 3, 16, 16, 1)" "$work/s/samples.npz" ||
  fail "samples.npz arr_0 is not uint8 [2, 3, 16, 16, 1]"
# A GIF's logical screen width and height are the little-endian words at bytes 6 and 8.
size=$(od -An -tu1 -j6 -N4 "$work/s/videos/000000.gif" | tr -s ' ')
[ "$size" = " 16 0 16 0" ] || fail "videos/000000.gif is not 16x16 (bytes:$size)"

"$bin/ddpm-eval" video --samples "$work/s/samples.npz" --data moving-toy "${clips[@]}" --limit 2 \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-eval video on the decoded clips"
grep -Eq '^samples  *2 ' "$work/out.txt" || fail "no samples row"

expect_refusal "--autoencoder with --init-from" "--autoencoder" "$bin/ddpm-train" "${tiny_video[@]}" \
  --init-from "$work/run" --autoencoder "$work/ae" --steps 1 --out "$work/refused"
[ ! -e "$work/refused" ] || fail "a refused run left $work/refused behind"
echo "latent_video: ok"
