#!/usr/bin/env bash
# ddpm-eval train-video-classifier and fvd end to end (ctest `cli.fvd`): usage
#   fvd.sh BIN_DIR WORK_DIR
# A tiny video classifier trains on moving-toy clips (4 frames of 16x16) and is saved as a
# folder; a tiny video run (one training step) samples 200 clips of the same shape; `ddpm-eval
# fvd` scores them against real test clips and prints the three lines: samples, the real floor
# (train clips vs test clips) and the shuffled line (the floor clips with their frames
# permuted), which must score clearly worse than the floor, and the one-step samples worse
# still. Then the refusals (exit 2, one error line naming the flag or the shapes, nothing
# written or replaced).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" fvd

clips=(--canvas 16 --item-size 8 --frames 4)
net=(--width 8 --frame-dim 32 --temporal-dim 32 --feature-dim 32 --batch-size 32 --lr 3e-3)
"$bin/ddpm-eval" train-video-classifier --data moving-toy "${clips[@]}" "${net[@]}" --limit 2000 --test-limit 128 \
  --epochs 8 --device cpu --out "$work/vc" >"$work/out.txt" 2>"$work/err.txt" || fail "train-video-classifier"
test -f "$work/vc/model.safetensors" && test -f "$work/vc/video_classifier.json" || fail "no classifier folder"
test ! -e "$work/vc.partial" || fail "the .partial folder was left behind"
grep -Eq '^test accuracy on moving-toy-shapes/test \(128 clips\): class [0-9.]+%, direction [0-9.]+%' "$work/out.txt" ||
  fail "no test accuracy line: $(cat "$work/out.txt")"
grep -q '"test_direction_accuracy"' "$work/vc/video_classifier.json" || fail "the json lacks the direction accuracy"

tiny_video=("${tiny_model[@]/#toy/moving-toy}" "${clips[@]}" --save-every 1 --num-samples 2 --sample-steps 2)
"$bin/ddpm-train" "${tiny_video[@]}" --steps 1 --out "$work/run" >"$work/out.txt" 2>"$work/err.txt" || fail "training"
"$bin/ddpm-sample" --checkpoint "$work/run" --num-samples 200 --sampling-steps 1 --device cpu --out "$work/s" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sampling"
samples="$work/s/samples.npz"

"$bin/ddpm-eval" fvd --classifier "$work/vc" --samples "$samples" --device cpu >"$work/out.txt" 2>"$work/err.txt" ||
  fail "ddpm-eval fvd"
grep -q '^reference: moving-toy-shapes/test, 200 clips of 4 frames of 16x16x1' "$work/out.txt" ||
  fail "no reference line: $(cat "$work/out.txt")"
fvd_of() { sed -n "s|^$1.* FVD *\([0-9.]*\) .*|\1|p" "$work/out.txt"; }
sample_fvd=$(fvd_of 'samples vs moving-toy-shapes/test') floor=$(fvd_of 'real (moving-toy-shapes/train)')
shuffled=$(fvd_of 'shuffled real')
[ -n "$sample_fvd" ] && [ -n "$floor" ] && [ -n "$shuffled" ] || fail "missing FVD lines: $(cat "$work/out.txt")"
grep -Eq '^shuffled real.* KVD -?[0-9.]+ \+- [0-9.]+  precision' "$work/out.txt" || fail "no KVD on the shuffled line"
awk -v f="$floor" -v s="$shuffled" 'BEGIN { exit !(s > 1.5 * f) }' ||
  fail "the shuffled real clips (FVD $shuffled) do not score clearly worse than the real floor ($floor)"
awk -v s="$shuffled" -v g="$sample_fvd" 'BEGIN { exit !(g > s) }' ||
  fail "one-step samples (FVD $sample_fvd) score better than shuffled real clips ($shuffled)"

# Refusals: nothing written, the existing folder kept.
cp "$work/vc/video_classifier.json" "$work/keep.json"
refused "--out $work/vc exists and is not an empty folder; pass --overwrite" "$bin/ddpm-eval" train-video-classifier \
  --data moving-toy "${clips[@]}" --out "$work/vc"
cmp -s "$work/vc/video_classifier.json" "$work/keep.json" || fail "a refused run changed the existing folder"
refused "--data toy holds still images, not clips" "$bin/ddpm-eval" train-video-classifier --data toy \
  --out "$work/x"
refused "--canvas must be a positive multiple of 8" "$bin/ddpm-eval" train-video-classifier --data moving-toy \
  --canvas 12 --item-size 8 --out "$work/x"
test ! -e "$work/x" && test ! -e "$work/x.partial" || fail "a refused train-video-classifier wrote --out"
"$bin/ddpm-eval" train-video-classifier --data moving-toy --canvas 16 --item-size 8 --frames 3 "${net[@]}" \
  --limit 32 --test-limit 8 --max-steps 1 --device cpu --out "$work/vc3/" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "train-video-classifier --frames 3"
test -f "$work/vc3/video_classifier.json" && test ! -e "$work/vc3.partial" || fail "--out DIR/ was not published as DIR"
refused "--samples $samples holds clips of 4 frames of 16x16x1 but the video classifier $work/vc3 takes clips of 3 frames of 16x16x1" \
  "$bin/ddpm-eval" fvd --classifier "$work/vc3" --samples "$samples"
refused "--data toy holds still images, not clips" "$bin/ddpm-eval" fvd --classifier "$work/vc" --samples "$samples" \
  --data toy
refused "needs more than k = 3 sample clips" "$bin/ddpm-eval" fvd --classifier "$work/vc" --samples "$samples" \
  --limit 3
echo "fvd: OK"
