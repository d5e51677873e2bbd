#!/usr/bin/env bash
# Post-hoc EMA from the shell (ctest `cli.posthoc_ema`): usage
#   posthoc_ema_test.sh BIN_DIR WORK_DIR
# Trains a tiny EDM run with --posthoc-ema, resumes it, reconstructs an EMA of another width
# with ddpm-export --posthoc-ema, samples the exported folder with ddpm-sample (heun: the EDM
# settings survived the export), and checks the refusals (exit 2, one error line).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" posthoc_ema_test

tiny=("${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 3 --objective edm --posthoc-ema 0.05,0.10
      --posthoc-snapshot-every 1)
run="$work/run"
"$bin/ddpm-train" "${tiny[@]}" --steps 2 --out "$run" >"$work/out.txt" 2>"$work/err.txt" || fail "training"
"$bin/ddpm-train" "${tiny[@]}" --steps 4 --out "$run" --resume latest >"$work/out.txt" 2>"$work/err.txt" ||
  fail "resume"
for s in 1 2 3 4; do test -f "$run/posthoc/step_$s.safetensors" || fail "no snapshot of step $s"; done
test -f "$run/checkpoints/step_4/power_ema.safetensors" || fail "the checkpoint lacks the power EMAs"

"$bin/ddpm-export" --checkpoint "$run" --posthoc-ema 0.08 --out "$work/ema_0.08" >"$work/out.txt" \
  2>"$work/err.txt" || fail "ddpm-export --posthoc-ema"
grep -q "post-hoc EMA sigma_rel 0.08 .* at step 4 from 4 snapshots: 8 coefficients" "$work/out.txt" ||
  fail "ddpm-export did not report the reconstruction: $(cat "$work/out.txt")"
grep -q "relative residual" "$work/out.txt" || fail "no residual reported"
grep -q '"objective": "edm"' "$work/ema_0.08/config.json" || fail "the export lost the EDM objective"
"$bin/ddpm-sample" --checkpoint "$work/ema_0.08" --num-samples 2 --sampling-steps 3 --device cpu --out "$work/samples" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the reconstructed EMA"
grep -q '"solver": "heun"' "$work/samples/sample_info.json" || fail "the export is not sampled as an EDM model"
"$bin/ddpm-export" --checkpoint "$run/checkpoints/step_4" --posthoc-ema 0.2 --posthoc-step 3 --out "$work/ema_0.2" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-export --posthoc-step from a checkpoint folder"

refused "sigma_rel must be in" "$bin/ddpm-export" --checkpoint "$run" --posthoc-ema 0.4 --out "$work/x"
refused "past the last post-hoc EMA snapshot" "$bin/ddpm-export" --checkpoint "$run" --posthoc-ema 0.08 \
  --posthoc-step 5 --out "$work/x"
refused "needs at least 2 snapshots" "$bin/ddpm-export" --checkpoint "$run" --posthoc-ema 0.08 --posthoc-step 1 \
  --out "$work/x"
refused "--posthoc-step needs --posthoc-ema" "$bin/ddpm-export" --checkpoint "$run" --posthoc-step 2 --out "$work/x"
refused "not empty" "$bin/ddpm-export" --checkpoint "$run" --posthoc-ema 0.08 --out "$work/ema_0.08"
# A changed list is a changed run (the listing of differences spans several lines).
rc=0
"$bin/ddpm-train" "${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 3 --objective edm \
  --posthoc-ema 0.05 --steps 6 --out "$run" --resume latest >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 2 ] || fail "resume with another --posthoc-ema: exit status $rc, expected 2"
grep -q "train.posthoc_ema: \[0.05,0.1\] vs \[0.05\]" "$work/err.txt" || fail "the changed list is not named"
refused "--posthoc-ema: sigma_rel" "$bin/ddpm-train" "${tiny_model[@]}" --posthoc-ema 0.05,0.5 --out "$work/x"
"$bin/ddpm-train" "${tiny_model[@]}" --steps 1 --out "$work/plain" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "plain training"
rc=0
"$bin/ddpm-export" --checkpoint "$work/plain" --posthoc-ema 0.08 --out "$work/x" >"$work/out.txt" 2>"$work/err.txt" ||
  rc=$?
[ "$rc" = 1 ] || fail "a run without snapshots: exit status $rc, expected 1"
grep -q "has no posthoc/ folder" "$work/err.txt" || fail "a run without snapshots: no reason given"
echo "posthoc_ema_test: OK"
