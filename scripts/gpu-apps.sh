#!/usr/bin/env bash
# The apps on a GPU, in one call (run by scripts/gpu-verify.sh's `apps` step, or alone):
#   1. ddpm-profile: the per-op table of one training and one sampling step of the DDPM
#      CIFAR-10 UNet at batch 128 (CUDA event timings, kernel launch counts), then the same
#      with --text-cond (text encoder, cross-attention, layer_norm, gelu);
#   2. ddpm-train --preset gpu-medium on Fashion-MNIST for $TRAIN_STEPS steps (default 2000),
#      timed, with its loss curve and sample grid;
#   3. ddpm-sample from that run: 64 images, DDIM with 100 steps;
#   4. unless EVAL=0: the Fashion-MNIST classifier of ddpm-eval trained with seeds 0, 1, 2
#      (its test accuracy per seed), then 5000 samples of the run (DDIM 100 steps) scored
#      with FID/KID/precision/recall against the test split with the seed-0 classifier;
#   5. unless EVAL=0 or TEXT=0: the text-conditioning measurement of docs/RESULTS.md (session
#      12) at this budget: ddpm-train --text-cond (gpu-medium, attention 16,8), 500 samples
#      of the 20 prompts "a dark|light CLASS" at guidance 3, their per-prompt mean intensity
#      (scripts/prompt_stats.py), the class accuracy of the prompted class and the
#      condition gap (ddpm-eval condition-gap: does the network read the caption at all);
#   6. unless VIDEO=0: a class-conditional video UNet on moving-fashion-mnist (8 frames of
#      32x32) for the same number of steps, timed, 64 sampled clips (grid.gif, filmstrip) and
#      their temporal consistency beside shuffled frames and real clips (ddpm-eval video); then
#      12-frame clips extended with --reconstruction-guidance 0 (replacement) and 2.
#      VIDEO_FLAGS adds training flags to that model, e.g. VIDEO_FLAGS="--temporal-conv
#      --temporal-position relative" (session 17's temporal options) in a second call with
#      VIDEO_ONLY=1 (steps 1-5 skipped) to compare with the default model.
#
#   scripts/gpu-apps.sh BIN_DIR LOG_DIR [FASHION_MNIST_DIR]
set -uo pipefail
bin=$1
logs=$2
data=${3:-}
steps=${TRAIN_STEPS:-2000}
mkdir -p "$logs"
run=/tmp/ddpm-gpu-run
rm -rf "$run" "$run-samples"
status=0

if [ "${VIDEO_ONLY:-0}" = 0 ]; then  # steps 1-5 (body not indented)
echo "== ddpm-profile (DDPM CIFAR-10 UNet, batch 128)"
"$bin/ddpm-profile" > "$logs/profile.txt" 2>&1 || status=1
head -60 "$logs/profile.txt"
echo "== ddpm-profile --text-cond (the same UNet with spatial transformers and ddpm-train's default text encoder)"
"$bin/ddpm-profile" --text-cond > "$logs/profile_text.txt" 2>&1 || status=1
head -70 "$logs/profile_text.txt"

echo "== ddpm-train --preset gpu-medium, $steps steps"
t0=$(date +%s)
"$bin/ddpm-train" --data "fashion-mnist${data:+:$data}" --preset gpu-medium --steps "$steps" \
  --warmup-steps 200 --ema-rate 0.999 --save-every "$steps" --sample-every "$steps" --log-every 100 \
  --out "$run" > "$logs/train.log" 2>&1 || status=1
echo "train: $(( $(date +%s) - t0 )) s wall, rc so far $status"
tail -8 "$logs/train.log"
cp "$run"/metrics.jsonl "$logs/" 2>/dev/null
cp "$run"/loss.png "$logs/train-loss.png" 2>/dev/null

echo "== ddpm-sample: 64 images, DDIM 100 steps"
t0=$(date +%s)
"$bin/ddpm-sample" --checkpoint "$run" --num-samples 64 --batch-size 64 --sampler ddim --sampling-steps 100 \
  --out "$run-samples" > "$logs/sample.log" 2>&1 || status=1
echo "sample: $(( $(date +%s) - t0 )) s wall"
tail -3 "$logs/sample.log"
cp "$run-samples/grid.png" "$logs/sample-grid.png" 2>/dev/null

if [ "${EVAL:-1}" != 0 ]; then
  for seed in 0 1 2; do
    echo "== ddpm-eval train-classifier --seed $seed"
    t0=$(date +%s)
    "$bin/ddpm-eval" train-classifier --data "fashion-mnist${data:+:$data}" --out "/tmp/ddpm-clf-$seed" --seed "$seed" \
      > "$logs/classifier-$seed.log" 2>&1 || status=1
    echo "classifier seed $seed: $(( $(date +%s) - t0 )) s wall; $(grep -i "accuracy" "$logs/classifier-$seed.log" | tail -1)"
  done
  echo "== 5000 samples (DDIM 100) and FID against fashion-mnist/test"
  t0=$(date +%s)
  "$bin/ddpm-sample" --checkpoint "$run" --num-samples 5000 --batch-size 1000 --sampler ddim --sampling-steps 100 \
    --out "$run-5000" > "$logs/sample-5000.log" 2>&1 || status=1
  echo "sample 5000: $(( $(date +%s) - t0 )) s wall"
  "$bin/ddpm-eval" fid --classifier /tmp/ddpm-clf-0 --samples "$run-5000/samples.npz" --data "fashion-mnist${data:+:$data}" \
    --sample-info "gpu-medium run of $steps steps, EMA weights, DDIM 100 steps, eta 0" > "$logs/fid.log" 2>&1 || status=1
  tail -6 "$logs/fid.log"
  if [ "${TEXT:-1}" != 0 ]; then
    echo "== ddpm-train --text-cond --preset gpu-medium, $steps steps, then 20 prompts at guidance 3"
    text=/tmp/ddpm-gpu-text
    rm -rf "$text" "$text-samples"
    t0=$(date +%s)
    "$bin/ddpm-train" --data "fashion-mnist${data:+:$data}" --preset gpu-medium --steps "$steps" --text-cond \
      --attention-resolutions 16,8 --warmup-steps 200 --ema-rate 0.999 --save-every "$steps" --sample-every "$steps" \
      --log-every 100 --out "$text" > "$logs/train-text.log" 2>&1 || status=1
    echo "train --text-cond: $(( $(date +%s) - t0 )) s wall"
    prompts=()
    for c in "t-shirt or top" trouser pullover dress coat sandal shirt sneaker bag "ankle boot"; do
      prompts+=(--prompt "a dark $c" --prompt "a light $c")
    done
    "$bin/ddpm-sample" --checkpoint "$text" --num-samples 500 --batch-size 500 --sampler ddim --sampling-steps 50 \
      --guidance-scale 3 --seed 7 "${prompts[@]}" --out "$text-samples" > "$logs/sample-text.log" 2>&1 || status=1
    python3 "$(dirname "$0")/prompt_stats.py" "$text-samples" --relabel "$text-classes.npz" \
      > "$logs/prompt-stats.txt" 2>&1 || status=1
    cat "$logs/prompt-stats.txt"
    "$bin/ddpm-eval" class-accuracy --classifier /tmp/ddpm-clf-0 --samples "$text-classes.npz" \
      > "$logs/text-class-accuracy.log" 2>&1 || status=1
    tail -1 "$logs/text-class-accuracy.log"
    "$bin/ddpm-eval" condition-gap --checkpoint "$text" --data "fashion-mnist${data:+:$data}" --split train \
      --limit 256 > "$logs/text-condition-gap.log" 2>&1 || status=1
    tail -1 "$logs/text-condition-gap.log"
    cp "$text-samples/grid.png" "$logs/text-grid.png" 2>/dev/null
  fi
fi
fi  # VIDEO_ONLY
if [ "${VIDEO:-1}" != 0 ]; then
  echo "== video: ddpm-train --data moving-fashion-mnist (8 frames of 32x32) ${VIDEO_FLAGS:-}, $steps steps, then 64 clips"
  video=/tmp/ddpm-gpu-video
  rm -rf "$video" "$video-samples"
  t0=$(date +%s)
  "$bin/ddpm-train" --data "moving-fashion-mnist${data:+:$data}" --frames 8 --preset none --num-channels 64 \
    --channel-mult 1,2,2 --num-res-blocks 2 --attention-resolutions 8 --num-head-channels 32 --dropout 0 \
    --batch-size 32 --lr 5e-4 --warmup-steps 200 --ema-rate 0.999 --class-cond --steps "$steps" \
    --save-every "$steps" --log-every 100 ${VIDEO_FLAGS:-} --out "$video" > "$logs/train-video.log" 2>&1 || status=1
  echo "train video: $(( $(date +%s) - t0 )) s wall; $(grep -E '^step' "$logs/train-video.log" | tail -1)"
  "$bin/ddpm-sample" --checkpoint "$video" --num-samples 64 --batch-size 64 --sampler ddim --sampling-steps 50 \
    --out "$video-samples" > "$logs/sample-video.log" 2>&1 || status=1
  "$bin/ddpm-eval" video --samples "$video-samples/samples.npz" --data "moving-fashion-mnist${data:+:$data}" \
    --frames 8 > "$logs/video-eval.log" 2>&1 || status=1
  cat "$logs/video-eval.log"
  cp "$video-samples/grid.gif" "$logs/video-grid.gif" 2>/dev/null
  cp "$video-samples/filmstrip.png" "$logs/video-filmstrip.png" 2>/dev/null
  # Longer clips from the same unconditional model (8 + (8 - 4) = 12 frames): Ho et al.'s
  # replacement method alone (W = 0) against reconstruction guidance (W = 2, their eq. 7).
  for w in 0 2; do
    "$bin/ddpm-sample" --checkpoint "$video" --num-samples 64 --batch-size 64 --sampler ddim --sampling-steps 50 \
      --segments 2 --overlap 4 --reconstruction-guidance "$w" --out "$video-rg$w" > "$logs/sample-video-rg$w.log" 2>&1 ||
      status=1
    "$bin/ddpm-eval" video --samples "$video-rg$w/samples.npz" --data "moving-fashion-mnist${data:+:$data}" \
      --frames 12 > "$logs/video-eval-rg$w.log" 2>&1 || status=1
    echo "-- 12-frame clips, reconstruction guidance W = $w"
    cat "$logs/video-eval-rg$w.log"
  done
fi
exit $status
