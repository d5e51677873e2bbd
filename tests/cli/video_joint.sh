#!/usr/bin/env bash
# Joint image-video training (ctest `cli.video_joint`): usage
#   video_joint.sh BIN_DIR WORK_DIR
# A tiny class-conditional video UNet trained on moving-toy clips with --joint-images 2 (Ho et
# al. 2022: each step also trains on two still images, first frames of random clips, as
# one-frame clips): config.json records it, the stills change the weights, resume is bit for
# bit, a resume with another count is refused, and ddpm-sample draws clips from the run. Then
# the refusals (exit 2, one error line naming the flag).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video_joint

clip_base=("${tiny_model[@]/#toy/moving-toy}")
tiny_video=("${clip_base[@]}" --canvas 16 --item-size 8 --frames 3 --class-cond --save-every 2 --num-samples 2
            --sample-steps 2)

# 1. Training with stills: config, resume bit for bit, another count refused.
run="$work/run" straight="$work/straight" plain="$work/plain"
"$bin/ddpm-train" "${tiny_video[@]}" --joint-images 2 --steps 2 --out "$run" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training with --joint-images 2"
grep -q '"joint_images": 2' "$run/config.json" || fail "config.json does not record joint_images"
"$bin/ddpm-train" "${tiny_video[@]}" --joint-images 2 --steps 4 --out "$run" --resume latest \
  >"$work/out.txt" 2>"$work/err.txt" || fail "resume"
"$bin/ddpm-train" "${tiny_video[@]}" --joint-images 2 --steps 4 --out "$straight" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "straight training"
for f in model.safetensors ema.safetensors; do
  cmp -s "$run/checkpoints/step_4/$f" "$straight/checkpoints/step_4/$f" ||
    fail "resumed $f differs from the run that never stopped"
done
"$bin/ddpm-train" "${tiny_video[@]}" --steps 4 --out "$plain" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training without stills"
grep -q '"joint_images": 0' "$plain/config.json" || fail "config.json of a plain run does not record joint_images 0"
grep -q '"still_loss":' "$straight/metrics.jsonl" && grep -q '"video_loss":' "$straight/metrics.jsonl" ||
  fail "metrics.jsonl of a joint run does not log the clips' and the stills' losses"
grep -q 'still_loss' "$plain/metrics.jsonl" && fail "metrics.jsonl of a plain run logs a still_loss"
cmp -s "$plain/checkpoints/step_4/model.safetensors" "$straight/checkpoints/step_4/model.safetensors" &&
  fail "the stills did not change the weights"
rc=0
"$bin/ddpm-train" "${tiny_video[@]}" --joint-images 1 --steps 6 --out "$run" --resume latest \
  >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 2 ] && grep -q 'train.joint_images: 2 vs 1' "$work/err.txt" ||
  fail "a resume with another --joint-images was not refused"

# 2. The run samples clips.
"$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --sampling-steps 2 --device cpu --out "$work/s" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sampling"
grep -aq "'descr': '|u1'.*'shape': (2, 3, 16, 16, 1)" "$work/s/samples.npz" ||
  fail "samples.npz arr_0 is not uint8 [2, 3, 16, 16, 1]"

# 3. Refusals, each before a run folder exists.
out="$work/refused"
refused '--joint-images must be >= 0' "$bin/ddpm-train" "${tiny_video[@]}" --joint-images -1 --steps 2 --out "$out"
refused 'holds images, not clips' "$bin/ddpm-train" "${tiny_model[@]}" --joint-images 2 --steps 2 --out "$out"
refused 'not --objective edm' "$bin/ddpm-train" "${tiny_video[@]}" --joint-images 2 --objective edm --steps 2 --out "$out"
refused '--schedule-sampler loss-second-moment' "$bin/ddpm-train" "${tiny_video[@]}" --joint-images 2 \
  --schedule-sampler loss-second-moment --steps 2 --out "$out"
refused 'with --first-frame-condition' "$bin/ddpm-train" "${tiny_video[@]}" --joint-images 2 \
  --first-frame-condition --steps 2 --out "$out"
text_video=(--data moving-toy --toy-count 16 --frames 3 --canvas 16 --item-size 8 --preset none --num-channels 8
            --channel-mult 1,2 --num-res-blocks 1 --attention-resolutions 8 --num-head-channels 8 --norm-groups 4
            --dropout 0 --batch-size 4 --device cpu --text-cond)
refused 'with --text-cond' "$bin/ddpm-train" "${text_video[@]}" --joint-images 2 --steps 2 --out "$out"
test ! -e "$out" || fail "a refused run left $out behind"
echo "video_joint: OK"
