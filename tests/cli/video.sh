#!/usr/bin/env bash
# Video diffusion end to end (ctest `cli.video`): usage
#   video.sh BIN_DIR WORK_DIR
# Trains a tiny video UNet on moving-toy clips, checks config.json, the sample grid (PNG film
# strip and GIF), resume bit for bit against a run that never stopped, and ddpm-sample's video
# set with DDPM, DDIM and DPM-Solver++(2M) (clips of [N, F, H, W, C] in samples.npz). Then Emu
# Video's factorisation: a class-conditional first-frame video model, an image model of the
# same classes trained on the clips' first frames (--frames 1), `--first-frame-from IMAGE` in
# one call equal to the two commands (`ddpm-sample IMAGE` then `--first-frame its
# samples.npz`), a PNG first frame, clips continued with --segments, and a
# text-to-video run with prompts. Last the refusals (exit 2, one error line naming the flag),
# also of the apps that work on still images.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video

clip_base=("${tiny_model[@]/#toy/moving-toy}")
clip_base=("${clip_base[@]}" --canvas 16 --item-size 8 --save-every 2 --num-samples 2 --sample-steps 2)
tiny_video=("${clip_base[@]}" --frames 3)

# 1. An unconditional video run: config, sample grid, resume.
run="$work/run" straight="$work/straight"
"$bin/ddpm-train" "${tiny_video[@]}" --steps 2 --out "$run" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training"
grep -q '"num_frames": 3' "$run/config.json" || fail "config.json does not record num_frames"
grep -q '"frames": 3' "$run/config.json" || fail "config.json does not record the clips' frames"
grep -q '16 clips of 3 frames' "$work/err.txt" || fail "the log does not describe the clips"
test -f "$run/samples/step_2.png" || fail "no film strip of the samples"
head -c 6 "$run/samples/step_2.gif" | grep -q 'GIF89a' || fail "no animated sample grid"
"$bin/ddpm-train" "${tiny_video[@]}" --steps 4 --out "$run" --resume latest >"$work/out.txt" 2>"$work/err.txt" ||
  fail "resume"
"$bin/ddpm-train" "${tiny_video[@]}" --steps 4 --out "$straight" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "straight training"
for f in model.safetensors ema.safetensors; do
  cmp -s "$run/checkpoints/step_4/$f" "$straight/checkpoints/step_4/$f" ||
    fail "resumed $f differs from the run that never stopped"
done
grep -aq 'temp_attentions' "$run/checkpoints/step_4/model.safetensors" || fail "no temporal attention weights"
rc=0
"$bin/ddpm-train" "${clip_base[@]}" --frames 4 --steps 6 --out "$run" --resume latest >"$work/out.txt" 2>"$work/err.txt" ||
  rc=$?
[ "$rc" = 2 ] && grep -q 'data.clips.frames: 3 vs 4' "$work/err.txt" || fail "a resume with other --frames was not refused"

# 2. ddpm-sample writes the video set; every sampler runs on clips.
for sampler in ddpm ddim dpm++2m; do
  "$bin/ddpm-sample" --checkpoint "$run" --sampler "$sampler" --num-samples 3 --batch-size 2 --sampling-steps 4 \
    --device cpu --out "$work/s_$sampler" >"$work/out.txt" 2>"$work/err.txt" || fail "$sampler sampling"
  for f in grid.gif filmstrip.png videos/000000.gif videos/000002.gif samples.npz sample_info.json; do
    test -f "$work/s_$sampler/$f" || fail "$sampler: no $f"
  done
  grep -aq "'descr': '|u1'.*'shape': (3, 3, 16, 16, 1)" "$work/s_$sampler/samples.npz" ||
    fail "$sampler: samples.npz arr_0 is not uint8 [3, 3, 16, 16, 1]"
  grep -q '"frames": 3' "$work/s_$sampler/sample_info.json" || fail "$sampler: sample_info.json has no video record"
done
cmp -s "$work/s_ddpm/samples.npz" "$work/s_ddim/samples.npz" && fail "DDPM and DDIM drew the same clips"

# 3. Emu Video's factorisation: an image model makes the first frame, the video model animates it.
ff="$work/ff" image="$work/image"
"$bin/ddpm-train" "${tiny_video[@]}" --class-cond --first-frame-condition --steps 2 --out "$ff" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "first-frame training"
grep -q '"first_frame_condition": true' "$ff/config.json" || fail "config.json does not record the condition"
# The image model trains on the clips' first frames (--frames 1: still images).
"$bin/ddpm-train" "${clip_base[@]}" --frames 1 --class-cond --steps 2 --out "$image" >"$work/out.txt" 2>"$work/err.txt" || fail "image training"
common=(--num-samples 3 --batch-size 2 --sampling-steps 4 --sampler ddim --device cpu --seed 7)
"$bin/ddpm-sample" --checkpoint "$ff" --first-frame-from "$image" "${common[@]}" --out "$work/emu" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "--first-frame-from"
for f in first_frames/samples.npz first_frames/grid.png grid.gif filmstrip.png samples.npz; do
  test -f "$work/emu/$f" || fail "--first-frame-from: no $f"
done
grep -q '"image_stage"' "$work/emu/sample_info.json" || fail "sample_info.json does not record the image stage"
# The two-command form gives the same clips.
"$bin/ddpm-sample" --checkpoint "$image" "${common[@]}" --out "$work/two_a" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "image sampling"
"$bin/ddpm-sample" --checkpoint "$ff" --first-frame "$work/two_a/samples.npz" "${common[@]}" --out "$work/two_b" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "--first-frame NPZ"
cmp -s "$work/two_a/samples.npz" "$work/emu/first_frames/samples.npz" || fail "the image stage differs from ddpm-sample"
cmp -s "$work/two_b/samples.npz" "$work/emu/samples.npz" || fail "--first-frame-from differs from the two commands"
"$bin/ddpm-sample" --checkpoint "$ff" --first-frame "$work/two_a/images/000001.png" --num-samples 2 \
  --sampling-steps 2 --device cpu --out "$work/png" >"$work/out.txt" 2>"$work/err.txt" || fail "--first-frame PNG"
grep -aq "'shape': (2, 3, 16, 16, 1)" "$work/png/samples.npz" || fail "--first-frame PNG: not 2 clips"
# --segments 3: each clip continued twice from its last frame, 3 + 2 * 2 = 7 frames (the
# chaining itself: VideoRun.ExtendClipsChainsEachSegmentFromTheLastFrame).
"$bin/ddpm-sample" --checkpoint "$ff" --first-frame "$work/two_a/samples.npz" "${common[@]}" --segments 3 \
  --out "$work/long" >"$work/out.txt" 2>"$work/err.txt" || fail "--segments 3"
grep -aq "'shape': (3, 7, 16, 16, 1)" "$work/long/samples.npz" || fail "--segments 3: clips are not 7 frames long"
grep -q '"frames_per_clip": 7' "$work/long/sample_info.json" || fail "--segments 3: sample_info.json"

# 4. Text to video: the clips' captions ("disc moving up-left") condition a text model.
text_video=(--data moving-toy --toy-count 16 --frames 3 --canvas 16 --item-size 8 --preset none --num-channels 8
            --channel-mult 1,2 --num-res-blocks 1 --attention-resolutions 8 --num-head-channels 8 --norm-groups 4
            --dropout 0 --batch-size 4 --log-every 1 --save-every 2 --num-samples 2 --sample-steps 2 --device cpu)
"$bin/ddpm-train" "${text_video[@]}" --text-cond --text-width 16 --text-layers 1 --text-heads 2 --steps 2 \
  --out "$work/text" >"$work/out.txt" 2>"$work/err.txt" || fail "text-to-video training"
"$bin/ddpm-sample" --checkpoint "$work/text" --prompt "disc moving left" --num-samples 2 --sampling-steps 2 \
  --guidance-scale 2 --device cpu --out "$work/s_text" >"$work/out.txt" 2>"$work/err.txt" || fail "text-to-video sampling"
grep -q "samples: .*/grid.gif" "$work/out.txt" || fail "text-to-video: the summary line does not name grid.gif"

# 5. Refusals.
refused "--first-frame-condition conditions a video model" "$bin/ddpm-train" "${tiny_model[@]}" --steps 1 \
  --first-frame-condition --out "$work/x"
refused "--inpaint" "$bin/ddpm-sample" --checkpoint "$run" --inpaint "$work/two_a/images/000000.png" \
  --inpaint-mask "$work/two_a/images/000000.png" --device cpu --out "$work/x"
refused "--show-steps does not apply" "$bin/ddpm-sample" --checkpoint "$run" --show-steps --device cpu --out "$work/x"
refused "--first-frame applies to a first-frame-conditioned video model" "$bin/ddpm-sample" --checkpoint "$run" \
  --first-frame "$work/two_a/images/000000.png" --device cpu --out "$work/x"
refused "is a first-frame-conditioned video model" "$bin/ddpm-sample" --checkpoint "$ff" --device cpu --out "$work/x"
refused "--segments 2 continues clips from their last frame" "$bin/ddpm-sample" --checkpoint "$run" --segments 2 \
  --device cpu --out "$work/x"
refused "--segments must be at least 1" "$bin/ddpm-sample" --checkpoint "$ff" --segments 0 --device cpu --out "$work/x"
refused "is a video model; the first frames come from an image model" "$bin/ddpm-sample" --checkpoint "$ff" \
  --first-frame-from "$run" --device cpu --out "$work/x"
refused "--first-frame" "$bin/ddpm-sample" --checkpoint "$ff" --first-frame "$work/s_ddpm/samples.npz" \
  --device cpu --out "$work/x"
refused "ddpm-edit does not apply to $run: it is a video model" "$bin/ddpm-edit" img2img --checkpoint "$run" \
  --images "$work/two_a/samples.npz" --device cpu --out "$work/x"
refused "distillation (--teacher) does not apply" "$bin/ddpm-distill" --teacher "$run" --teacher-steps 4 \
  --device cpu --out "$work/x"
refused "it is a video model" "$bin/ddpm-export" --checkpoint "$run" --out "$work/x"
refused "it is a video model" "$bin/ddpm-eval" bpd --checkpoint "$run" --data toy --limit 2 --device cpu
refused "is a video model of 3 frames" "$bin/ddpm-train" --init-from "$run" --data toy --steps 1 --out "$work/x"
refused "holds video clips" "$bin/ddpm-classifier" train --data moving-toy --steps 1 --device cpu --out "$work/x"
test ! -e "$work/x" || fail "a refused command left $work/x behind"
echo "video: OK"
