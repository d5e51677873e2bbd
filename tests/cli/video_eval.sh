#!/usr/bin/env bash
# ddpm-eval video end to end (ctest `cli.video_eval`): usage
#   video_eval.sh BIN_DIR WORK_DIR
# A tiny video run (one training step on moving-toy clips) samples 3 clips; `ddpm-eval video`
# measures them beside their frame-shuffled baseline and real moving-toy clips of the same
# shape: the table has the three rows, the real clips (one item translating inside the canvas)
# have motion_residual 0, and --json holds the same rows. Then the refusals (exit 2, one error
# line naming the flag or file, nothing written).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video_eval

clips=(--canvas 16 --item-size 8 --frames 3)
tiny_video=("${tiny_model[@]/#toy/moving-toy}" "${clips[@]}" --save-every 1 --num-samples 2 --sample-steps 2)
run="$work/run" samples="$work/s/samples.npz"
"$bin/ddpm-train" "${tiny_video[@]}" --steps 1 --out "$run" >"$work/out.txt" 2>"$work/err.txt" || fail "training"
"$bin/ddpm-sample" --checkpoint "$run" --num-samples 3 --sampling-steps 2 --device cpu --out "$work/s" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sampling"

"$bin/ddpm-eval" video --samples "$samples" --data moving-toy "${clips[@]}" --limit 4 --json "$work/v.json" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-eval video"
grep -q '^row  *clips  *frame_diff  *motion_residual  *mass_drift$' "$work/out.txt" || fail "no table header"
grep -Eq '^samples  *3  *[0-9.]+  *[0-9.]+  *[0-9.]+$' "$work/out.txt" || fail "no samples row"
grep -Eq '^shuffled  *3  *[0-9.]+  *[0-9.]+  *[0-9.]+$' "$work/out.txt" || fail "no shuffled row"
grep -Eq '^data  *4  *[0-9.]+  *0\.000000  *0\.000000$' "$work/out.txt" ||
  fail "the real clips are not exact translations of constant mass: $(cat "$work/out.txt")"
grep -q '"row": "shuffled"' "$work/v.json" && grep -q '"max_shift": 4' "$work/v.json" || fail "--json lacks the rows"
[ "$(grep -c '"motion_residual"' "$work/v.json")" = 3 ] || fail "--json does not hold three rows"

# Refusals: nothing written, the existing --json kept.
cp "$work/v.json" "$work/keep.json"
refused "--json $work/v.json exists; pass --overwrite" "$bin/ddpm-eval" video --samples "$samples" --json "$work/v.json"
cmp -s "$work/v.json" "$work/keep.json" || fail "a refused run changed the existing --json"
"$bin/ddpm-train" "${tiny_model[@]}" --steps 1 --save-every 1 --num-samples 2 --sample-steps 2 --out "$work/image" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "image training"
"$bin/ddpm-sample" --checkpoint "$work/image" --num-samples 2 --sampling-steps 2 --device cpu --out "$work/si" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "image sampling"
refused "must be clips, uint8 \[N, F, H, W, C\], got uint8 \[2, 16, 16, 1\]" "$bin/ddpm-eval" video \
  --samples "$work/si/samples.npz"
refused "--data toy holds still images, not clips" "$bin/ddpm-eval" video --samples "$samples" --data toy \
  --json "$work/x.json"
refused "gives clips of 8 frames of 16x16x1 but --samples" "$bin/ddpm-eval" video --samples "$samples" \
  --data moving-toy --canvas 16 --item-size 8 --json "$work/x.json"
refused "--frames 3 shapes the real clips of --data" "$bin/ddpm-eval" video --samples "$samples" --frames 3
refused "--max-shift" "$bin/ddpm-eval" video --samples "$samples" --max-shift -1
test ! -e "$work/x.json" || fail "a refused command wrote --json"
echo "video_eval: OK"
