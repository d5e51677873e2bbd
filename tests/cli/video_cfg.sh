#!/usr/bin/env bash
# Classifier-free guidance on the frame condition (ctest `cli.video_cfg`; Emu Video sec. 3,
# InstructPix2Pix eq. 3; video_run.h "Frame guidance"):
#   video_cfg.sh BIN_DIR WORK_DIR
# Trains a tiny class-conditional first-frame video model with --frame-condition-dropout 0.2
# (config.json records it; a resume with another P is refused), animates an image model's
# samples with --frame-guidance-scale 2 alone and with --guidance-scale 2 (the two-scale
# form), checks that scale 1 is the unguided sampling byte for byte and that sample_info.json
# records the scale, then the refusals (exit 2, one error line naming the flag). The formula
# itself is checked by VideoCfg.* in tests/cpu/test_video_cfg.cpp.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video_cfg

clip_base=("${tiny_model[@]/#toy/moving-toy}")
clip_base=("${clip_base[@]}" --canvas 16 --item-size 8 --save-every 2 --num-samples 2 --sample-steps 2 --class-cond)
ff="$work/ff" image="$work/image"

# 1. Training with the condition dropped for 20% of the clips.
"$bin/ddpm-train" "${clip_base[@]}" --frames 3 --first-frame-condition --frame-condition-dropout 0.2 --steps 2 \
  --out "$ff" >"$work/out.txt" 2>"$work/err.txt" || fail "--frame-condition-dropout 0.2 training"
grep -q '"frame_condition_dropout": 0.2' "$ff/config.json" || fail "config.json does not record the dropout"
rc=0
"$bin/ddpm-train" "${clip_base[@]}" --frames 3 --first-frame-condition --frame-condition-dropout 0.3 --steps 4 \
  --out "$ff" --resume latest >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 2 ] && grep -q 'train.frame_condition_dropout: 0.2 vs 0.3' "$work/err.txt" ||
  fail "a resume with another --frame-condition-dropout was not refused"
"$bin/ddpm-train" "${clip_base[@]}" --frames 1 --steps 1 --out "$image" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "image training"
"$bin/ddpm-sample" --checkpoint "$image" --num-samples 2 --sampling-steps 2 --device cpu --out "$work/first" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "image sampling"

# 2. Sampling: scale 1 is the unguided sampler byte for byte; 2 guides (2n rows per call),
# with --guidance-scale 2 the two-scale form (3n rows).
common=(--checkpoint "$ff" --first-frame "$work/first/samples.npz" --sampler ddim --sampling-steps 2 --device cpu
        --seed 3)
"$bin/ddpm-sample" "${common[@]}" --out "$work/plain" >"$work/out.txt" 2>"$work/err.txt" || fail "plain sampling"
"$bin/ddpm-sample" "${common[@]}" --frame-guidance-scale 1 --out "$work/s1" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--frame-guidance-scale 1"
cmp -s "$work/plain/samples.npz" "$work/s1/samples.npz" || fail "--frame-guidance-scale 1 changed the samples"
"$bin/ddpm-sample" "${common[@]}" --frame-guidance-scale 2 --out "$work/s2" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--frame-guidance-scale 2"
grep -q "frame guidance: scale 2 (2n rows" "$work/out.txt" || fail "no frame guidance line in the log"
grep -q '"frame_guidance_scale": 2' "$work/s2/sample_info.json" || fail "sample_info.json does not record the scale"
grep -aq "'shape': (2, 3, 16, 16, 1)" "$work/s2/samples.npz" || fail "guided clips are not [2, 3, 16, 16, 1]"
! cmp -s "$work/plain/samples.npz" "$work/s2/samples.npz" || fail "--frame-guidance-scale 2 changed nothing"
"$bin/ddpm-sample" "${common[@]}" --frame-guidance-scale 2 --guidance-scale 2 --out "$work/st" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "--frame-guidance-scale 2 --guidance-scale 2"
grep -q "two-scale form, 3n rows" "$work/out.txt" || fail "no two-scale line in the log"

# 3. Refusals.
refused "--frame-guidance-scale 2 applies to a first-frame-conditioned video model" "$bin/ddpm-sample" \
  --checkpoint "$image" --frame-guidance-scale 2 --device cpu --out "$work/x"
refused "--frame-guidance-scale must be a finite number >= 0" "$bin/ddpm-sample" "${common[@]}" \
  --frame-guidance-scale -1 --out "$work/x"
refused "--frame-condition-dropout 0.2 drops the frame condition .* needs --first-frame-condition" \
  "$bin/ddpm-train" "${clip_base[@]}" --frames 3 --frame-condition-dropout 0.2 --steps 1 --out "$work/x"
refused "--frame-condition-dropout must be a probability in \[0, 1), got 1" "$bin/ddpm-train" "${clip_base[@]}" \
  --frames 3 --first-frame-condition --frame-condition-dropout 1 --steps 1 --out "$work/x"
test ! -e "$work/x" || fail "a refused command left $work/x behind"
echo "video_cfg: OK"
