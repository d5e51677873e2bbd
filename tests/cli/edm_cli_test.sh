#!/usr/bin/env bash
# ddpm-train --objective edm and ddpm-sample on its run (ctest `cli.edm`): usage
#   edm_cli_test.sh BIN_DIR WORK_DIR
# Trains a tiny EDM run on the toy data for a few steps, resumes it, samples it with heun
# (the default for EDM runs), euler, dpm++2m, euler-ancestral, unipc and dpm++2m-sde, and
# checks the refusals: DDPM-only flags with
# --objective edm, EDM flags with ddpm, --sampler ddpm/ddim on an EDM run, ddpm-export and
# ddpm-eval bpd of it (each exit 2, one "error:" line naming the flag or the objective).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" edm_cli_test

tiny=("${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 3 --objective edm)
run="$work/run"
"$bin/ddpm-train" "${tiny[@]}" --steps 2 --out "$run" >"$work/out.txt" 2>"$work/err.txt" || fail "training"
grep -q '"objective": "edm"' "$run/config.json" || fail "config.json does not record the objective"
grep -q '"sigma_data": 0.5' "$run/config.json" || fail "config.json does not record sigma_data"
"$bin/ddpm-train" "${tiny[@]}" --steps 4 --out "$run" --resume latest >"$work/out.txt" 2>"$work/err.txt" ||
  fail "resume"
test -f "$run/checkpoints/step_4/ema.safetensors" || fail "no step-4 checkpoint after resuming"
test -f "$run/samples/step_4.png" || fail "no EMA sample grid"

"$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --sampling-steps 3 --device cpu --out "$work/heun" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "heun sampling"
for f in grid.png samples.npz sample_info.json images/000001.png; do test -f "$work/heun/$f" || fail "heun: no $f"; done
grep -q '"solver": "heun"' "$work/heun/sample_info.json" || fail "heun is not the default sampler of an EDM run"
"$bin/ddpm-sample" --checkpoint "$run" --sampler euler --num-samples 2 --sampling-steps 3 --sigma-max 100 \
  --s-churn 1 --device cpu --out "$work/euler" >"$work/out.txt" 2>"$work/err.txt" || fail "euler sampling"
grep -q '"network_evaluations_per_sample": 3' "$work/euler/sample_info.json" || fail "euler: not N evaluations"
"$bin/ddpm-sample" --checkpoint "$run" --sampler dpm++2m --num-samples 2 --sampling-steps 4 --device cpu \
  --out "$work/dpm" >"$work/out.txt" 2>"$work/err.txt" || fail "dpm++2m sampling"
grep -q '"solver": "dpm++2m"' "$work/dpm/sample_info.json" || fail "dpm++2m: solver not recorded"
grep -q '"network_evaluations_per_sample": 4' "$work/dpm/sample_info.json" || fail "dpm++2m: not N evaluations"
"$bin/ddpm-sample" --checkpoint "$run" --sampler euler-ancestral --num-samples 2 --sampling-steps 4 --device cpu \
  --out "$work/ancestral" >"$work/out.txt" 2>"$work/err.txt" || fail "euler-ancestral sampling"
grep -q '"solver": "euler-ancestral"' "$work/ancestral/sample_info.json" || fail "euler-ancestral: solver not recorded"
for sampler in unipc dpm++2m-sde; do
  "$bin/ddpm-sample" --checkpoint "$run" --sampler "$sampler" --num-samples 2 --sampling-steps 4 --rho 5 --device cpu \
    --out "$work/$sampler" >"$work/out.txt" 2>"$work/err.txt" || fail "$sampler sampling"
  grep -q "\"solver\": \"$sampler\"" "$work/$sampler/sample_info.json" || fail "$sampler: solver not recorded"
  grep -q '"network_evaluations_per_sample": 4' "$work/$sampler/sample_info.json" || fail "$sampler: not N evaluations"
  refused "applies to --sampler heun or euler only" "$bin/ddpm-sample" --checkpoint "$run" --sampler "$sampler" \
    --s-churn 1 --device cpu --out "$work/${sampler}_churn"
done

"$bin/ddpm-sample" --checkpoint "$run" --sampler unipc --solver-order 3 --num-samples 2 --sampling-steps 4 --device cpu \
  --out "$work/unipc3" >"$work/out.txt" 2>"$work/err.txt" || fail "unipc order 3 sampling"
grep -q '"solver_order": 3' "$work/unipc3/sample_info.json" || fail "unipc: solver_order not recorded"
refused "--solver-order applies to --sampler unipc only" "$bin/ddpm-sample" --checkpoint "$run" --sampler dpm++2m \
  --solver-order 3 --device cpu --out "$work/dpm_order"
refused "--solver-order must be 1, 2 or 3" "$bin/ddpm-sample" --checkpoint "$run" --sampler unipc --solver-order 4 \
  --device cpu --out "$work/unipc4"

# Refusals: exit 2 and the reason on stderr.
for flag in "--diffusion-steps 100" "--noise-schedule cosine" "--predict eps" "--loss simple" "--learn-sigma" \
            "--schedule-sampler uniform"; do
  # shellcheck disable=SC2086
  refused "${flag%% *} applies to --objective ddpm only" "$bin/ddpm-train" "${tiny[@]}" $flag --out "$work/x"
done
refused "--p-std applies to --objective edm only" "$bin/ddpm-train" --data toy --p-std 1 --out "$work/x"
refused "training objective 've' is unknown" "$bin/ddpm-train" --data toy --objective ve --out "$work/x"
test ! -e "$work/x" || fail "a refused run left $work/x behind"
for s in ddpm ddim; do
  refused "--sampler $s does not apply" "$bin/ddpm-sample" --checkpoint "$run" --sampler $s --device cpu \
    --out "$work/s_$s"
  test ! -e "$work/s_$s" || fail "a refused sampling left $work/s_$s behind"
done
refused "EDM objective" "$bin/ddpm-export" --checkpoint "$run" --out "$work/export"
refused "EDM objective" "$bin/ddpm-eval" bpd --checkpoint "$run" --data toy
echo "edm_cli_test: ok"
