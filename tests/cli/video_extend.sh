#!/usr/bin/env bash
# Video extension conditioned on K frames (ctest `cli.video_extend`; Ho et al. 2022 sec. 3.1):
#   video_extend.sh BIN_DIR WORK_DIR
# Trains a tiny first-frame video model with --condition-frames 2 (config.json records it,
# a resume with another K is refused), animates a first frame from a tiny image model with
# --segments 3 --overlap 2 (4 + 2 * (4 - 2) = 8 frames in samples.npz, the GIFs and
# sample_info.json; the default overlap is the model's K, --overlap 1 gives 4 + 2 * 3 = 10),
# then the refusals (exit 2, one error line naming the flag). The chaining itself is checked
# by VideoRun.ExtendClipsConditionsOnTheLastKFrames.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video_extend

clip_base=("${tiny_model[@]/#toy/moving-toy}")
clip_base=("${clip_base[@]}" --canvas 16 --item-size 8 --save-every 2 --num-samples 2 --sample-steps 2)
ff="$work/ff" image="$work/image"

# 1. Training with k ~ Uniform{1, 2} known frames per clip.
"$bin/ddpm-train" "${clip_base[@]}" --frames 4 --first-frame-condition --condition-frames 2 --steps 2 --out "$ff" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "--condition-frames 2 training"
grep -q '"condition_frames": 2' "$ff/config.json" || fail "config.json does not record condition_frames"
rc=0
"$bin/ddpm-train" "${clip_base[@]}" --frames 4 --first-frame-condition --condition-frames 3 --steps 4 --out "$ff" \
  --resume latest >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 2 ] && grep -q 'model.condition_frames: 2 vs 3' "$work/err.txt" ||
  fail "a resume with another --condition-frames was not refused"
# The first frames come from an image model trained on the clips' first frames.
"$bin/ddpm-train" "${clip_base[@]}" --frames 1 --steps 1 --out "$image" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "image training"
"$bin/ddpm-sample" --checkpoint "$image" --num-samples 2 --sampling-steps 2 --device cpu --out "$work/first" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "image sampling"

# 2. --segments 3 --overlap 2: each segment continues from the last 2 frames of the one before.
common=(--checkpoint "$ff" --first-frame "$work/first/samples.npz" --sampler ddim --sampling-steps 2 --device cpu
        --seed 3 --segments 3)
"$bin/ddpm-sample" "${common[@]}" --overlap 2 --out "$work/k2" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--segments 3 --overlap 2"
grep -aq "'shape': (2, 8, 16, 16, 1)" "$work/k2/samples.npz" || fail "--overlap 2: clips are not 4 + 2 * 2 = 8 frames"
grep -q '"frames_per_clip": 8' "$work/k2/sample_info.json" || fail "--overlap 2: sample_info.json frames_per_clip"
grep -q '"overlap": 2' "$work/k2/sample_info.json" || fail "--overlap 2: sample_info.json does not record it"
# Each frame of a GIF is one image descriptor after a graphic control extension (21 F9 04 04, engine/io/gif.cpp).
gif_frames() { LC_ALL=C grep -obUaP '\x21\xF9\x04\x04' "$1" | wc -l; }
[ "$(gif_frames "$work/k2/videos/000001.gif")" = 8 ] || fail "--overlap 2: videos/000001.gif does not have 8 frames"
"$bin/ddpm-sample" "${common[@]}" --out "$work/default" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--segments 3 with the default overlap"
cmp -s "$work/k2/samples.npz" "$work/default/samples.npz" || fail "the default overlap is not the model's 2"
"$bin/ddpm-sample" "${common[@]}" --overlap 1 --out "$work/k1" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--overlap 1"
grep -aq "'shape': (2, 10, 16, 16, 1)" "$work/k1/samples.npz" || fail "--overlap 1: clips are not 4 + 2 * 3 = 10 frames"

# 3. Refusals.
refused "--overlap 3 exceeds the known frames .*condition_frames is 2" "$bin/ddpm-sample" "${common[@]}" \
  --overlap 3 --out "$work/x"
refused "--overlap 2 sets how segments join and needs --segments 2" "$bin/ddpm-sample" --checkpoint "$ff" \
  --first-frame "$work/first/samples.npz" --overlap 2 --device cpu --out "$work/x"
refused "--condition-frames must be in \[1, 3\] for clips of --frames 4" "$bin/ddpm-train" "${clip_base[@]}" \
  --frames 4 --first-frame-condition --condition-frames 4 --steps 1 --out "$work/x"
refused "--condition-frames 2 .* needs --first-frame-condition" "$bin/ddpm-train" "${clip_base[@]}" --frames 4 \
  --condition-frames 2 --steps 1 --out "$work/x"

# 4. An unconditional video model continues its clips by reconstruction guidance (Ho et al.
# eq. 7; the formula is checked by ReconstructionGuidance.MatchesEquation7WrittenOut). Two
# training steps leave the temporal blocks near their zero start, so the frames barely
# interact and the guidance term is tiny here: this checks the plumbing, not the effect.
plain="$work/plain"
"$bin/ddpm-train" "${clip_base[@]}" --frames 4 --steps 2 --out "$plain" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "unconditional video training"
rg=(--checkpoint "$plain" --num-samples 2 --sampling-steps 2 --device cpu --seed 3 --segments 3)
"$bin/ddpm-sample" "${rg[@]}" --sampler ddim --overlap 2 --reconstruction-guidance 2 --out "$work/rg" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "--reconstruction-guidance 2"
grep -aq "'shape': (2, 8, 16, 16, 1)" "$work/rg/samples.npz" || fail "reconstruction guidance: clips are not 8 frames"
grep -q '"reconstruction_guidance": 2' "$work/rg/sample_info.json" || fail "sample_info.json does not record the weight"
"$bin/ddpm-sample" "${rg[@]}" --sampler ddim --overlap 2 --reconstruction-guidance 0 --out "$work/rg0" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "--reconstruction-guidance 0 (the replacement method)"
grep -q '"reconstruction_guidance": 0' "$work/rg0/sample_info.json" || fail "sample_info.json does not record W = 0"
refused "--reconstruction-guidance: Value -1 not in range" "$bin/ddpm-sample" "${rg[@]}" \
  --reconstruction-guidance -1 --out "$work/x"
refused "--segments 3 continues clips from their last frames, which needs" "$bin/ddpm-sample" "${rg[@]}" \
  --out "$work/x"
refused "--reconstruction-guidance steps with the guided x_0 estimate of the ddpm and ddim samplers" \
  "$bin/ddpm-sample" "${rg[@]}" --reconstruction-guidance 2 --sampler plms --out "$work/x"
refused "--reconstruction-guidance guides an unconditional video model" "$bin/ddpm-sample" "${common[@]}" \
  --reconstruction-guidance 2 --out "$work/x"
refused "--reconstruction-guidance 2 guides the segments after the first" "$bin/ddpm-sample" --checkpoint "$plain" \
  --reconstruction-guidance 2 --device cpu --out "$work/x"
test ! -e "$work/x" || fail "a refused command left $work/x behind"
echo "video_extend: OK"
