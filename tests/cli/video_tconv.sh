#!/usr/bin/env bash
# Temporal convolutions from the shell (ctest `cli.video_tconv`): usage
#   video_tconv.sh BIN_DIR WORK_DIR
# A tiny video run on moving-toy clips with --temporal-conv (config.json records it, the
# checkpoint holds temp_convs weights), ddpm-sample of it (clips in samples.npz), ddpm-profile
# --checkpoint of it; an image run fine-tuned into a video model with --temporal-conv and
# --train-only temporal; and the refusal of the flag on images (exit 2, one error line naming
# the flag, no output folder).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video_tconv

clip_base=("${tiny_model[@]/#toy/moving-toy}")
clip_base=("${clip_base[@]}" --canvas 16 --item-size 8 --save-every 2 --num-samples 2 --sample-steps 2)

# 1. A video run with temporal convolutions: config, weights, sampling, profiling.
run="$work/run"
"$bin/ddpm-train" "${clip_base[@]}" --frames 3 --temporal-conv --steps 2 --out "$run" >"$work/out.txt" \
  2>"$work/err.txt" || fail "training with --temporal-conv"
grep -q '"temporal_conv": true' "$run/config.json" || fail "config.json does not record temporal_conv"
grep -aq 'mid_block.temp_convs.1.proj_out.weight' "$run/checkpoints/step_2/model.safetensors" ||
  fail "no temporal convolution weights in the checkpoint"
"$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --batch-size 2 --sampling-steps 2 --device cpu \
  --out "$work/samples" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample"
grep -aq "'shape': (2, 3, 16, 16, 1)" "$work/samples/samples.npz" || fail "samples.npz is not 2 clips of 3 frames"
"$bin/ddpm-profile" --checkpoint "$run" --device cpu --warmup 0 --json >"$work/profile.json" 2>"$work/err.txt" ||
  fail "ddpm-profile --checkpoint"
grep -q '"num_frames": 3' "$work/profile.json" || fail "the profile is not of the video model"
"$bin/ddpm-profile" --checkpoint "$run" --device cpu --warmup 0 >"$work/profile.txt" 2>"$work/err.txt" ||
  fail "ddpm-profile --checkpoint (tables)"
grep -q 'kernel-3 temporal convolutions after every resnet' "$work/profile.txt" ||
  fail "the profile does not say the model has temporal convolutions"

# 2. An image run made a video model with fresh temporal convolutions, which alone (with the
# temporal attention) train under --train-only temporal.
image="$work/image" motion="$work/motion"
"$bin/ddpm-train" "${clip_base[@]}" --frames 1 --steps 2 --out "$image" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "image training"
"$bin/ddpm-train" --data moving-toy --toy-count 16 --canvas 16 --item-size 8 --batch-size 2 --log-every 1 \
  --sample-every 0 --device cpu --init-from "$image" --frames 3 --temporal-conv --train-only temporal --steps 1 \
  --save-every 1 --num-samples 2 --sample-steps 2 --out "$motion" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--init-from an image run with --temporal-conv --train-only temporal"
python3 - "$motion/config.json" <<'PY' || fail "config.json of the fine-tune"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["model"]["temporal_conv"] is True and c["model"]["num_frames"] == 3, c["model"]
assert c["train"]["train_only"] == "temporal", c["train"]
PY
grep -aq 'up_blocks.0.temp_convs.0.conv.weight' "$motion/checkpoints/step_1/model.safetensors" ||
  fail "no temporal convolution weights in the fine-tune's checkpoint"

# 3. The flag on images is refused by name, and leaves nothing behind.
refused "--temporal-conv adds convolutions over a video model's frames; --data moving-toy holds images" \
  "$bin/ddpm-train" "${clip_base[@]}" --frames 1 --temporal-conv --steps 1 --out "$work/refused"
[ ! -e "$work/refused" ] || fail "a refused run left $work/refused behind"
echo "video_tconv: OK"
