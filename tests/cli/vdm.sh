#!/usr/bin/env bash
# ddpm-train --objective vdm, ddpm-sample and ddpm-eval bpd on its runs (ctest `cli.vdm`): usage
#   vdm.sh BIN_DIR WORK_DIR
# Trains tiny VDM runs on the toy data (fixed schedule with the continuous loss, learned
# schedule with the discrete T = 10 loss), checks config.json and that the learned schedule's
# tensors are in the checkpoint, resumes the learned run and compares it bit for bit with one
# that never stopped (the schedule's weights must be restored), samples both runs with the
# ancestral (grid) sampler and DDIM, evaluates the VDM bound with ddpm-eval bpd, and checks
# the refusals (exit 2, one error line naming the flag), also of the apps that do not map a
# VDM network's time (ddpm-edit, ddpm-distill, ddpm-control, --init-from). A third run has
# learned endpoints and Fourier features: config.json records both, the endpoints are in the
# checkpoint and move, resume is bit-exact, and it samples and evaluates like the others.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" vdm

tiny=("${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 3 --objective vdm)
fixed="$work/fixed" learned="$work/learned" straight="$work/straight"
"$bin/ddpm-train" "${tiny[@]}" --steps 2 --out "$fixed" >"$work/out.txt" 2>"$work/err.txt" || fail "fixed training"
grep -q '"objective": "vdm"' "$fixed/config.json" || fail "config.json does not record the objective"
grep -q '"vdm_schedule": "fixed"' "$fixed/config.json" || fail "config.json does not record the schedule"
test -f "$fixed/samples/step_2.png" || fail "no sample grid of the fixed run"

learn=("${tiny[@]}" --vdm-schedule learned --vdm-steps 10 --gamma-min -10 --gamma-max 6)
"$bin/ddpm-train" "${learn[@]}" --steps 2 --out "$learned" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "learned training"
grep -q '"vdm_steps": 10' "$learned/config.json" || fail "config.json does not record --vdm-steps"
grep -q '"gamma_min": -10' "$learned/config.json" || fail "config.json does not record --gamma-min"
grep -aq 'vdm_gamma.l2.weight' "$learned/checkpoints/step_2/model.safetensors" ||
  fail "the learned schedule's weights are not in the checkpoint"
"$bin/ddpm-train" "${learn[@]}" --steps 4 --out "$learned" --resume latest >"$work/out.txt" 2>"$work/err.txt" ||
  fail "resume"
"$bin/ddpm-train" "${learn[@]}" --steps 4 --out "$straight" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "straight training"
for f in model.safetensors ema.safetensors; do
  cmp -s "$learned/checkpoints/step_4/$f" "$straight/checkpoints/step_4/$f" ||
    fail "resumed $f differs from the run that never stopped"
done
# The schedule trained: its step-4 tensors differ from step 2's.
cmp -s "$learned/checkpoints/step_2/model.safetensors" "$learned/checkpoints/step_4/model.safetensors" &&
  fail "the weights did not change between steps 2 and 4"

for run in "$fixed" "$learned"; do
  name=$(basename "$run")
  "$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --sampling-steps 4 --device cpu --out "$work/s_$name" \
    >"$work/out.txt" 2>"$work/err.txt" || fail "$name: ancestral sampling"
  for f in grid.png samples.npz sample_info.json; do test -f "$work/s_$name/$f" || fail "$name: no $f"; done
  "$bin/ddpm-sample" --checkpoint "$run" --sampler ddim --num-samples 2 --sampling-steps 2 --device cpu \
    --out "$work/d_$name" >"$work/out.txt" 2>"$work/err.txt" || fail "$name: ddim sampling"
  "$bin/ddpm-eval" bpd --checkpoint "$run" --data toy --limit 4 --batch-size 2 --device cpu >"$work/bpd.txt" \
    2>"$work/err.txt" || fail "$name: bpd"
  grep -Eq '^bits/dim [0-9.]+ \+- [0-9.]+ \(n=4; prior [0-9.]+, diffusion [0-9.]+, reconstruction [0-9.]+\)' \
    "$work/bpd.txt" || { cat "$work/bpd.txt" >&2; fail "$name: no bits/dim line"; }
done
# Learned endpoints and Fourier features (vdm.h, fourier_features.h).
ends="$work/ends" ends_straight="$work/ends_straight"
both=("${tiny[@]}" --vdm-schedule learned --vdm-learn-endpoints --vdm-fourier-features 6,7)
"$bin/ddpm-train" "${both[@]}" --steps 2 --out "$ends" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training with learned endpoints and Fourier features"
grep -q '"vdm_learn_endpoints": true' "$ends/config.json" || fail "config.json does not record learned endpoints"
tr -d ' \n' <"$ends/config.json" | grep -q '"fourier_features":\[6,7\]' ||
  fail "config.json does not record the Fourier features"
grep -aq 'vdm_gamma.gamma_0' "$ends/checkpoints/step_2/model.safetensors" ||
  fail "the learned endpoints are not in the checkpoint"
"$bin/ddpm-train" "${both[@]}" --steps 4 --out "$ends" --resume latest >"$work/out.txt" 2>"$work/err.txt" ||
  fail "resume with learned endpoints"
"$bin/ddpm-train" "${both[@]}" --steps 4 --out "$ends_straight" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "straight training with learned endpoints"
for f in model.safetensors ema.safetensors; do
  cmp -s "$ends/checkpoints/step_4/$f" "$ends_straight/checkpoints/step_4/$f" ||
    fail "resumed $f (learned endpoints) differs from the run that never stopped"
done
"$bin/ddpm-sample" --checkpoint "$ends" --num-samples 2 --sampling-steps 4 --device cpu --out "$work/s_ends" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ends: ancestral sampling"
test -f "$work/s_ends/samples.npz" || fail "ends: no samples.npz"
"$bin/ddpm-profile" --checkpoint "$ends" --device cpu >"$work/out.txt" 2>"$work/err.txt" || fail "ends: ddpm-profile"
grep -q "VDM's Fourier features, n = 6..7" "$work/out.txt" || fail "ddpm-profile does not name the Fourier features"
"$bin/ddpm-eval" bpd --checkpoint "$ends" --data toy --limit 4 --batch-size 2 --device cpu >"$work/bpd.txt" \
  2>"$work/err.txt" || fail "ends: bpd"
grep -Eq '^bits/dim [0-9.]+ \+- [0-9.]+' "$work/bpd.txt" || { cat "$work/bpd.txt" >&2; fail "ends: no bits/dim line"; }
# The report names the endpoints read from the weights: they moved off -13.3 and 5.
grep -q 'gamma in \[' "$work/bpd.txt" || fail "ddpm-eval bpd does not name the endpoints"
grep -q 'gamma in \[-13.3, 5\]' "$work/bpd.txt" && fail "ddpm-eval bpd did not read the learned endpoints"

# --vdm-steps 10 makes the learned run's grid T = 10: 4 sampling steps respace it.
grep -q '"respacing": "4"' "$work/s_learned/sample_info.json" || fail "the grid was not respaced to 4 steps"

# Refusals: exit 2, the flag named, no run folder left behind.
for flag in "--predict v" "--learn-sigma" "--diffusion-steps 100" "--loss vlb" "--schedule-sampler uniform"; do
  # shellcheck disable=SC2086
  refused "${flag%% *} applies to --objective ddpm only" "$bin/ddpm-train" "${tiny[@]}" $flag --out "$work/x"
done
refused "--gamma-min applies to --objective vdm only" "$bin/ddpm-train" "${tiny_model[@]}" --gamma-min -5 --out "$work/x"
refused "--gamma-min (6) must be below --gamma-max (5)" "$bin/ddpm-train" "${tiny[@]}" --gamma-min 6 --out "$work/x"
refused "--vdm-schedule must be fixed or learned" "$bin/ddpm-train" "${tiny[@]}" --vdm-schedule cosine --out "$work/x"
refused "--vdm-steps must be >= 0" "$bin/ddpm-train" "${tiny[@]}" --vdm-steps -1 --out "$work/x"
refused "--vdm-learn-endpoints trains the endpoints of the learned schedule" "$bin/ddpm-train" "${tiny[@]}" \
  --vdm-learn-endpoints --out "$work/x"
refused "would pull the learned endpoints" "$bin/ddpm-train" "${tiny[@]}" --vdm-schedule learned \
  --vdm-learn-endpoints --weight-decay 0.01 --out "$work/x"
refused "--vdm-fourier-features must be N_MIN,N_MAX" "$bin/ddpm-train" "${tiny[@]}" --vdm-fourier-features 6 \
  --out "$work/x"
refused "--vdm-fourier-features applies to --objective vdm only" "$bin/ddpm-train" "${tiny_model[@]}" \
  --vdm-fourier-features 6,7 --out "$work/x"
refused "--noise-offset is a DDPM training recipe" "$bin/ddpm-train" "${tiny[@]}" --noise-offset 0.1 --out "$work/x"
test ! -e "$work/x" || fail "a refused run left a folder behind"
refused "VDM objective" "$bin/ddpm-eval" nll --checkpoint "$fixed" --data toy --limit 2 --device cpu
refused "VDM objective" "$bin/ddpm-export" --checkpoint "$fixed" --out "$work/export"
# The apps that build a model's discrete schedule and time input themselves refuse a vdm run
# (model_source.h refuse_vdm_model) instead of feeding its network the wrong time.
refused "ddpm-edit does not apply to $fixed: it was trained with the VDM objective" "$bin/ddpm-edit" img2img \
  --checkpoint "$fixed" --images "$work/s_fixed/samples.npz" --device cpu --out "$work/x"
refused "distillation (--teacher) does not apply" "$bin/ddpm-distill" --teacher "$fixed" --teacher-steps 4 \
  --device cpu --out "$work/x"
refused "distillation (--teacher) does not apply" "$bin/ddpm-distill" --teacher "$fixed" \
  --method consistency --consistency-levels 4 --steps 1 --device cpu --out "$work/x"
refused "ControlNet (--base) does not apply" "$bin/ddpm-control" train --base "$fixed" --hint edges --data toy \
  --steps 1 --device cpu --out "$work/x"
refused "--init-from does not apply" "$bin/ddpm-train" --init-from "$fixed" --data toy --steps 1 --out "$work/x"
test ! -e "$work/x" || fail "a refused command left $work/x behind"
echo "vdm: OK"
