#!/usr/bin/env bash
# Zero terminal SNR end to end (ctest `cli.zero_snr`): usage
#   zero_snr_test.sh BIN_DIR WORK_DIR
# Trains a tiny class-conditional v-prediction run with --zero-terminal-snr, checks that
# config.json records it, samples it with ddpm (respaced), ddim, heun (levels capped at the
# largest finite sigma) and classifier-free guidance with --guidance-rescale, evaluates its
# bits/dim (the prior term is exactly 0), exports it to a diffusers folder whose
# scheduler_config.json carries rescale_betas_zero_snr and re-opens that folder, and checks the
# refusals (exit 2, one "error:" line): --zero-terminal-snr with --predict eps, and
# --guidance-rescale without guidance. Classifier guidance: a noisy classifier trained with
# --zero-terminal-snr guides the run, one trained on the plain schedule is refused. Last,
# --dynamic-threshold under strong guidance and its refusals.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" zero_snr_test

tiny=("${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 3 --diffusion-steps 60)
run="$work/run"
"$bin/ddpm-train" "${tiny[@]}" --steps 2 --predict v --zero-terminal-snr --class-cond --out "$run" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "training"
grep -q '"zero_terminal_snr": true' "$run/config.json" || fail "config.json does not record zero_terminal_snr"
"$bin/ddpm-train" "${tiny[@]}" --steps 4 --predict v --zero-terminal-snr --class-cond --out "$run" --resume latest \
  >"$work/out.txt" 2>"$work/err.txt" || fail "resume"

sample() {  # sample NAME FLAGS...
  local name=$1
  shift
  "$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --device cpu --out "$work/$name" "$@" \
    >"$work/out.txt" 2>"$work/err.txt" || fail "sampling $name"
  grep -q '"zero_terminal_snr": true' "$work/$name/sample_info.json" ||
    fail "$name: sample_info.json's diffusion settings lack zero_terminal_snr"
}
sample ddpm --sampler ddpm --sampling-steps 6
sample ddim --sampler ddim --sampling-steps 6
sample heun --sampler heun --sampling-steps 3
sample rescaled --sampler ddim --sampling-steps 6 --guidance-scale 3 --guidance-rescale 0.7
grep -q '"guidance_rescale": 0.7' "$work/rescaled/sample_info.json" || fail "guidance_rescale not recorded"
# Heun's top level is sigma_{T-2}, the largest finite training sigma (sigma_{T-1} is infinite).
python3 - "$work/heun/sample_info.json" <<'PY' || fail "heun's sigma range"
import json, math, sys
j = json.load(open(sys.argv[1]))
info = j["heun"]
smax = info["sigma_max"]
lo, hi = info["training_sigma_range"]
assert math.isfinite(smax) and smax == hi and smax > 100, info
PY

"$bin/ddpm-eval" bpd --checkpoint "$run" --data toy --limit 2 --batch-size 2 --device cpu \
  >"$work/out.txt" 2>"$work/err.txt" || fail "bits/dim"
grep -Eq '^bits/dim [0-9]+\.[0-9]+ .*prior 0\.0000,' "$work/out.txt" || fail "bits/dim line: $(tail -n 1 "$work/out.txt")"

"$bin/ddpm-export" --checkpoint "$run" --out "$work/exported" >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-export"
grep -q '"rescale_betas_zero_snr": true' "$work/exported/scheduler_config.json" ||
  fail "scheduler_config.json lacks rescale_betas_zero_snr"
grep -q '"timestep_spacing": "trailing"' "$work/exported/scheduler_config.json" ||
  fail "scheduler_config.json lacks trailing timestep spacing"
"$bin/ddpm-sample" --checkpoint "$work/exported" --num-samples 2 --sampler ddim --sampling-steps 6 --device cpu \
  --out "$work/from_export" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the exported folder"
grep -q '"zero_terminal_snr": true' "$work/from_export/sample_info.json" || fail "the export lost zero_terminal_snr"

cls_flags=(train --data toy --steps 2 --batch-size 4 --model-channels 8 --channel-mult 1,2 --norm-groups 4
           --diffusion-steps 60 --device cpu)
"$bin/ddpm-classifier" "${cls_flags[@]}" --zero-terminal-snr --out "$work/cls_zsnr" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "training a zero-SNR classifier"
grep -q '"zero_terminal_snr": true' "$work/cls_zsnr/classifier.json" || fail "classifier.json lacks zero_terminal_snr"
"$bin/ddpm-classifier" "${cls_flags[@]}" --out "$work/cls_plain" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training a plain classifier"
sample guided --sampler ddim --sampling-steps 6 --classifier "$work/cls_zsnr" --classifier-scale 2 --class 1
expect_refusal "--classifier" "zero terminal SNR" "$bin/ddpm-sample" --checkpoint "$run" --classifier "$work/cls_plain" \
  --class 1 --device cpu --out "$work/plain_guided"

refused "--predict v" "$bin/ddpm-train" "${tiny[@]}" --steps 1 --zero-terminal-snr --out "$work/eps"
test ! -e "$work/eps" || fail "a refused run left $work/eps behind"
refused "--guidance-rescale" "$bin/ddpm-sample" --checkpoint "$run" --guidance-rescale 0.5 --out "$work/norescale"
# Dynamic thresholding (Imagen sec. 2.3): strongly guided sampling records it; bad P and S,
# and --clip-x0 false beside it, exit 2.
sample dynamic --sampler ddim --sampling-steps 6 --guidance-scale 6 --dynamic-threshold 0.9 --threshold-max 4
grep -q '"kind": "dynamic"' "$work/dynamic/sample_info.json" || fail "x0_threshold not recorded as dynamic"
refused "--dynamic-threshold must be" "$bin/ddpm-sample" --checkpoint "$run" --dynamic-threshold 1.5 --out "$work/p15"
refused "--threshold-max must be >= 1" "$bin/ddpm-sample" --checkpoint "$run" --dynamic-threshold 0.9 \
  --threshold-max 0.5 --out "$work/s05"
refused "--clip-x0 false" "$bin/ddpm-sample" --checkpoint "$run" --dynamic-threshold 0.9 --clip-x0 false \
  --out "$work/noclip"
test ! -e "$work/p15" && test ! -e "$work/s05" && test ! -e "$work/noclip" || fail "a refused sampling left its --out"
echo "zero_snr_test: ok"
