#!/usr/bin/env bash
# Relative frame positions in the temporal attention from the shell (ctest
# `cli.video_relative`): usage
#   video_relative.sh BIN_DIR WORK_DIR
# A tiny video run with --temporal-position relative (config.json key, the relative_bias
# tables in the checkpoint, ddpm-sample), an image run turned into a relative video run by
# --init-from with --train-only temporal (the tables are trained: non-zero after two steps),
# then the refusals (exit 2, one error line naming the flag, no output folder): the flag on
# images, an unknown value, and switching the positions of a video source either way.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video_relative

# data: the flags of any run on the clips; clips: with tiny_model's network (a fine-tune
# takes its source's network and refuses the architecture flags).
data=(--data moving-toy --toy-count 16 --canvas 16 --item-size 8 --batch-size 4 --log-every 1 --sample-every 0
      --num-samples 2 --sample-steps 2 --device cpu)
clips=("${tiny_model[@]/#toy/moving-toy}")
clips=("${clips[@]}" --canvas 16 --item-size 8 --num-samples 2 --sample-steps 2)

# The largest |value| of every tensor whose name contains NAME in a safetensors file (f32).
max_abs() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
path, part = sys.argv[1:3]
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
found = [(k, v) for k, v in header.items() if part in k]
assert found and all(v["dtype"] == "F32" for k, v in found), found
lo, hi = min(v["data_offsets"][0] for k, v in found), max(v["data_offsets"][1] for k, v in found)
values = [abs(x) for k, v in found
          for x in struct.unpack("<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4),
                                 raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])]
print(len(found), max(values))
PY
}

# 1. A relative video run from scratch, sampled.
rel="$work/rel"
"$bin/ddpm-train" "${clips[@]}" --frames 3 --temporal-position relative --steps 2 --save-every 2 --out "$rel" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "training with --temporal-position relative"
grep -q '"temporal_position": "relative"' "$rel/config.json" || fail "config.json does not record the positions"
read -r tables _ < <(max_abs "$rel/checkpoints/step_2/model.safetensors" relative_bias) ||
  fail "no relative_bias tables in the checkpoint"
[ "$tables" -ge 3 ] || fail "only $tables relative_bias tables"
"$bin/ddpm-sample" --checkpoint "$rel" --num-samples 2 --batch-size 2 --sampling-steps 2 --device cpu \
  --out "$work/samples" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-sample of the relative run"
grep -aq "'shape': (2, 3, 16, 16, 1)" "$work/samples/samples.npz" || fail "samples.npz is not 2 clips of 3 frames"

# 2. Image run -> relative video run, only the temporal blocks trained: the tables start at
# zero and learn (they are temporal parameters).
image="$work/image" motion="$work/motion"
"$bin/ddpm-train" "${clips[@]}" --frames 1 --steps 1 --save-every 1 --out "$image" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "image training"
"$bin/ddpm-train" "${data[@]}" --init-from "$image" --frames 3 --temporal-position relative --train-only temporal \
  --steps 2 --save-every 2 --out "$motion" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--init-from an image run with --temporal-position relative --train-only temporal"
grep -q '"temporal_position": "relative"' "$motion/config.json" || fail "the fine-tune is not relative"
read -r _ largest < <(max_abs "$motion/checkpoints/step_2/model.safetensors" relative_bias)
python3 -c "import sys; sys.exit(0 if float('$largest') > 0 else 1)" ||
  fail "--train-only temporal left the relative_bias tables at zero"

# 3. Refusals.
sin="$work/sin"
"$bin/ddpm-train" "${clips[@]}" --frames 3 --steps 1 --save-every 1 --out "$sin" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sinusoid video training"
refuse() {  # refuse PATTERN FLAGS... (the run's flags: clips, or data with --init-from)
  local pattern=$1
  shift
  refused "$pattern" "$bin/ddpm-train" --steps 1 --out "$work/refused" "$@"
  [ ! -e "$work/refused" ] || fail "a refused run left $work/refused behind"
}
refuse "--temporal-position relative positions the frames of a video model" "${clips[@]}" --frames 1 \
  --temporal-position relative
refuse "--temporal-position must be sinusoid or relative, got 'rotary'" "${clips[@]}" --frames 3 \
  --temporal-position rotary
refuse "--temporal-position relative positions the frames of a video model" "${data[@]}" --init-from "$image" \
  --frames 1 --temporal-position relative
refuse "--temporal-position relative differs from the --init-from video model" "${data[@]}" --init-from "$sin" \
  --frames 3 --temporal-position relative
refuse "--temporal-position sinusoid differs from the --init-from video model" "${data[@]}" --init-from "$rel" \
  --frames 3 --temporal-position sinusoid
echo "video_relative: OK"
