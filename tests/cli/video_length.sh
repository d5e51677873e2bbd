#!/usr/bin/env bash
# Clips of another length than trained, and the relative-position range, from the shell
# (ctest `cli.video_length`): usage
#   video_length.sh BIN_DIR WORK_DIR
# A tiny relative video run on 3-frame clips with --temporal-max-distance 2 (config.json key,
# relative_bias tables of 2R + 1 = 5 rows), sampled with --frames 6 (samples.npz clips of 6
# frames, sample_info.json "video" frames 6 and trained_frames 3) and with the default
# length; a first-frame-conditioned run (K = 2) animating an image model's samples over
# --frames 5, continued with --segments; then the refusals (exit 2, one error line naming the flag, no output folder):
# R < 1, R without relative positions, R on images, R against a video --init-from source of
# another R, --frames 1, --frames for an image model, and segments of --frames that leave
# no new frame.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video_length

clips=("${tiny_model[@]/#toy/moving-toy}")
clips=("${clips[@]}" --canvas 16 --item-size 8 --num-samples 2 --sample-steps 2)
sample=(--num-samples 2 --batch-size 2 --sampling-steps 2 --device cpu)

# The row counts of every safetensors tensor whose name contains NAME, one per line.
rows_of() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
path, part = sys.argv[1:3]
raw = open(path, "rb").read()
header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
for k, v in header.items():
    if part in k:
        print(v["shape"][0])
PY
}

# 1. Relative positions with R = 2 on clips of 3 frames.
rel="$work/rel"
"$bin/ddpm-train" "${clips[@]}" --frames 3 --temporal-position relative --temporal-max-distance 2 --steps 1 \
  --save-every 1 --out "$rel" >"$work/out.txt" 2>"$work/err.txt" || fail "training with --temporal-max-distance 2"
grep -q '"temporal_max_distance": 2' "$rel/config.json" || fail "config.json does not record R"
rows=$(rows_of "$rel/checkpoints/step_1/model.safetensors" relative_bias | sort -u)
[ "$rows" = 5 ] || fail "the relative_bias tables have $rows rows, not 2R + 1 = 5"
"$bin/ddpm-profile" --checkpoint "$rel" --device cpu >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-profile"
grep -q "relative positions up to distance 2" "$work/out.txt" || fail "ddpm-profile does not name R"

# 2. Longer clips than trained: 6 frames.
"$bin/ddpm-sample" --checkpoint "$rel" "${sample[@]}" --frames 6 --out "$work/long" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample --frames 6"
grep -aq "'descr': '|u1'.*'shape': (2, 6, 16, 16, 1)" "$work/long/samples.npz" ||
  fail "samples.npz is not 2 clips of 6 frames"
python3 - "$work/long/sample_info.json" <<'PY' || fail "sample_info.json does not record the 6 sampled frames"
import json, sys
v = json.load(open(sys.argv[1]))["video"]
assert v["frames"] == 6 and v["trained_frames"] == 3 and v["frames_per_clip"] == 6, v
PY
"$bin/ddpm-sample" --checkpoint "$rel" "${sample[@]}" --out "$work/default" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "ddpm-sample without --frames"
grep -aq "'shape': (2, 3, 16, 16, 1)" "$work/default/samples.npz" || fail "the default is not the trained 3 frames"

# 3. A first-frame model (K = 2 known frames) animating first frames from an image model
# over 5 frames, continued once: 5 + (5 - 2) = 8 frames per clip.
ff="$work/ff" image="$work/image"
"$bin/ddpm-train" "${clips[@]}" --frames 3 --first-frame-condition --condition-frames 2 --steps 1 --save-every 1 \
  --out "$ff" >"$work/out.txt" 2>"$work/err.txt" || fail "first-frame training"
"$bin/ddpm-train" "${clips[@]}" --frames 1 --steps 1 --save-every 1 --out "$image" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "image training on the clips' first frames"
"$bin/ddpm-sample" --checkpoint "$image" "${sample[@]}" --out "$work/first" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "image sampling"
"$bin/ddpm-sample" --checkpoint "$ff" "${sample[@]}" --first-frame "$work/first/samples.npz" --frames 5 --segments 2 \
  --out "$work/ff_long" >"$work/out.txt" 2>"$work/err.txt" || fail "first-frame sampling with --frames 5 --segments 2"
grep -aq "'shape': (2, 8, 16, 16, 1)" "$work/ff_long/samples.npz" || fail "5 + (5 - 2) = 8 frames per clip expected"

# 4. Refusals.
refuse() {  # refuse PATTERN APP FLAGS...
  local pattern=$1 app=$2
  shift 2
  refused "$pattern" "$bin/$app" --out "$work/refused" "$@"
  [ ! -e "$work/refused" ] || fail "a refused run left $work/refused behind"
}
refuse "--temporal-max-distance must be at least 1" ddpm-train "${clips[@]}" --frames 3 --steps 1 \
  --temporal-position relative --temporal-max-distance 0
refuse "--temporal-max-distance 2 clips the distances of relative frame positions and needs --temporal-position relative" \
  ddpm-train "${clips[@]}" --frames 3 --steps 1 --temporal-max-distance 2
refuse "--temporal-max-distance 2 clips the frame distances of a video model; --data moving-toy holds images" \
  ddpm-train "${clips[@]}" --frames 1 --steps 1 --temporal-max-distance 2
refuse "--temporal-max-distance 1 differs from the --init-from video model" ddpm-train \
  --data moving-toy --toy-count 16 --canvas 16 --item-size 8 --frames 3 --batch-size 4 --sample-every 0 --device cpu \
  --steps 1 --init-from "$rel" --temporal-max-distance 1
refuse "--frames must be at least 2" ddpm-sample --checkpoint "$rel" "${sample[@]}" --frames 1
refuse "--frames 4 sets the clip length of a video model" ddpm-sample --checkpoint "$image" "${sample[@]}" --frames 4
refuse "--overlap 2 (the default) leaves no new frame in a segment of 2 frames (--frames 2)" ddpm-sample \
  --checkpoint "$ff" "${sample[@]}" --first-frame "$work/first/samples.npz" --frames 2 --segments 2
echo "video_length: OK"
