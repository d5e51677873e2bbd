#!/usr/bin/env bash
# Fine-tuning an image run into a video run from the shell (ctest `cli.video_finetune`): usage
#   video_finetune.sh BIN_DIR WORK_DIR
# A tiny class-conditional image run on the first frames of moving-toy clips (--frames 1, 2
# steps), fine-tuned with --init-from on clips of 4 frames with --first-frame-condition (2
# steps): config.json's model and "init_from" record, the temporal weights in the checkpoint,
# a resume, and ddpm-sample animating first frames. Then the refusals (exit 2, one error line,
# no output folder): another F for a video source, --lora-rank on clips. And AnimateDiff's
# motion-module training (--train-only temporal): the counts, config.json, sampling, refusals.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video_finetune

clips=(--data moving-toy --toy-count 8 --canvas 16 --item-size 8 --batch-size 2 --log-every 1 --sample-every 0
       --device cpu)
image="$work/image" video="$work/video"
"$bin/ddpm-train" "${tiny_model[@]/#toy/moving-toy}" --canvas 16 --item-size 8 --frames 1 --class-cond --steps 2 \
  --save-every 2 --num-samples 2 --sample-steps 2 --out "$image" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "image training"
ft=("${clips[@]}" --init-from "$image" --frames 4 --first-frame-condition --save-every 1 --num-samples 2
    --sample-steps 2)
"$bin/ddpm-train" "${ft[@]}" --steps 1 --out "$video" >"$work/out.txt" 2>"$work/err.txt" || fail "video fine-tune"
python3 - "$video/config.json" "$image/config.json" <<'PY' || fail "config.json of the video fine-tune"
import json, sys
v, i = (json.load(open(p)) for p in sys.argv[1:3])
assert v["model"]["num_frames"] == 4 and v["model"]["first_frame_condition"], v["model"]
assert v["init_from"]["video"] == {"num_frames": 4, "from_image": True}, v["init_from"]
for k in ("image_size", "in_channels", "model_channels", "channel_mult", "num_classes"):
    assert v["model"][k] == i["model"][k], k
PY
grep -aq 'temp_attentions' "$video/checkpoints/step_1/model.safetensors" || fail "no temporal attention weights"
"$bin/ddpm-train" "${clips[@]}" --frames 4 --first-frame-condition --save-every 1 --num-samples 2 --sample-steps 2 \
  --steps 2 --out "$video" --resume latest >"$work/out.txt" 2>"$work/err.txt" || fail "resume of the video fine-tune"
test -f "$video/checkpoints/step_2/ema.safetensors" || fail "the resume wrote no step 2"
test -f "$video/samples/step_2.gif" || fail "no animated sample grid"
# A resume without --first-frame-condition is refused as a resume (not as a new fine-tune),
# naming the flag to add, and the run is left as it was.
refused "--resume latest: the fine-tune in $video is conditioned on each clip's first frame .*add --first-frame-condition to continue it" \
  "$bin/ddpm-train" "${clips[@]}" --frames 4 --save-every 1 --steps 3 --out "$video" --resume latest
[ ! -e "$video/checkpoints/step_3" ] || fail "the refused resume wrote a step 3"
"$bin/ddpm-sample" --checkpoint "$video" --first-frame-from "$image" --num-samples 2 --batch-size 2 \
  --sampling-steps 2 --device cpu --out "$work/samples" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample"
grep -aq "'shape': (2, 4, 16, 16, 1)" "$work/samples/samples.npz" || fail "samples.npz is not 2 clips of 4 frames"

# --train-only temporal: the counts are printed, the frozen weights stay the image run's (the
# bit-for-bit checks: VideoFineTune.TrainOnlyTemporalFreezesTheRest), and the run samples as
# any video run.
motion="$work/motion"
"$bin/ddpm-train" "${ft[@]}" --train-only temporal --steps 2 --out "$motion" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--train-only temporal"
grep -q 'train-only temporal: training [0-9]* of [0-9]* parameters' "$work/err.txt" ||
  fail "no trained/total parameter counts"
grep -q '"train_only": "temporal"' "$motion/config.json" || fail "config.json does not record --train-only"
"$bin/ddpm-sample" --checkpoint "$motion" --first-frame-from "$image" --num-samples 2 --batch-size 2 \
  --sampling-steps 2 --device cpu --out "$work/motion_samples" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "ddpm-sample of the --train-only run"
test -f "$work/motion_samples/grid.gif" || fail "no clips from the --train-only run"

refuse() {  # refuse PATTERN FLAGS...
  local pattern=$1
  shift
  refused "$pattern" "$bin/ddpm-train" "${clips[@]}" --steps 1 --out "$work/refused" "$@"
  [ ! -e "$work/refused" ] || fail "a refused fine-tune left $work/refused behind"
}
refuse "holds clips of 3 frames, but the --init-from model $video is a video model of 4 frames" \
  --init-from "$video" --frames 3 --first-frame-condition
refuse "--lora-rank 2 does not apply to a video fine-tune" --init-from "$image" --frames 4 --lora-rank 2
refuse "--train-only temporal needs --init-from" --frames 4 --train-only temporal
refuse "--train-only temporal trains a video model's temporal blocks" --init-from "$image" --frames 1 \
  --train-only temporal
echo "video_finetune: OK"
