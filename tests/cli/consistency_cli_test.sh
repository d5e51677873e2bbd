#!/usr/bin/env bash
# ddpm-distill --method consistency from the shell (ctest `cli.consistency`): usage
#   consistency_cli_test.sh BIN_DIR WORK_DIR
# Distils a tiny v-prediction run (T = 32) on 4 levels, samples the folder with the printed
# ddpm-sample command and with --sampler consistency --sampling-steps 2 (sample_info.json
# names 2 network calls), stops a run with SIGTERM (exit 143, no --out written, its state
# saved beside it) and continues it with --resume --out alone to the bits of an uninterrupted
# run (a changed flag, a new run over the state and --method progressive refused; --resume of
# the published folder exits 0), and checks the refusals (exit 2, one line, nothing written):
# another sampler for the consistency folder, --sampler consistency for the teacher, levels
# that do not divide T, a progressive flag with --method consistency and a consistency flag
# without it. Guided (LCM) distillation: --guided 1,3 of a class-conditional run records the
# range, its printed command (with --guidance-scale) samples, two scales give two sample
# sets in one network call per step, a scale off the range, --guidance-scale for the unguided
# student, --guided for an unconditional run and --guided-steps with consistency are refused.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" consistency_cli_test

run="$work/run"
"$bin/ddpm-train" "${tiny_model[@]}" --diffusion-steps 32 --sample-steps 8 --predict v --steps 3 --out "$run" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "training"
cm=(--teacher "$run" --method consistency --consistency-levels 4 --batch-size 4 --log-every 2 --gap-samples 4
    --device cpu)
"$bin/ddpm-distill" "${cm[@]}" --steps 4 --out "$work/cm" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "ddpm-distill --method consistency"
test -f "$work/cm/config.json" -a -f "$work/cm/ema.safetensors" || fail "no consistency folder"
grep -q '"sampler": "consistency"' "$work/cm/config.json" || fail "config.json records no consistency sampler"
cmd=$(grep "^sample: " "$work/out.txt" | sed "s/^sample: //; s/ (or .*//")
[ -n "$cmd" ] || fail "no sampling command printed: $(cat "$work/out.txt")"
"$bin/"$cmd --num-samples 2 --out "$work/s1" >"$work/out.txt" 2>"$work/err.txt" || fail "the printed command: $cmd"
"$bin/ddpm-sample" --checkpoint "$work/cm" --sampler consistency --sampling-steps 2 --num-samples 2 --device cpu \
  --out "$work/s2" >"$work/out.txt" 2>"$work/err.txt" || fail "--sampler consistency --sampling-steps 2"
test -f "$work/s2/samples.npz" || fail "no samples.npz"
grep -q '"network_calls": 2' "$work/s2/sample_info.json" || fail "sample_info.json: not 2 network calls"
grep -q '"sampling_steps": 2,' "$work/s2/sample_info.json" || fail "sample_info.json: not 2 sampling steps"
"$bin/ddpm-sample" --checkpoint "$work/cm" --sampling-steps 2 --num-samples 2 --device cpu --out "$work/s2d" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "a consistency folder without --sampler: $(cat "$work/err.txt")"
cmp "$work/s2/samples.npz" "$work/s2d/samples.npz" || fail "without --sampler, not the consistency sampler's samples"

# SIGTERM during training, then --resume: the same bits as an uninterrupted run. Where the
# signal lands does not matter (every stop resumes to the same result), so the timing only has
# to catch the run before its end: the signal follows the log line of step 2 within a poll
# (20 ms, more on a loaded machine), and 148 steps (seconds) are left then.
long=(--teacher "$run" --method consistency --consistency-levels 4 --batch-size 4 --log-every 1 --gap-samples 4
      --steps 150 --checkpoint-every 7 --device cpu)
"$bin/ddpm-distill" "${long[@]}" --out "$work/whole" >"$work/out.txt" 2>"$work/err.txt" || fail "the uninterrupted run"
start_logged "$work/out.txt" "$bin/ddpm-distill" "${long[@]}" --out "$work/stopped"
term_when "$pid" "$work/out.txt" "^  step 2/150"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 143 ] || fail "a stopped run exited with $rc, expected 143: $(cat "$work/out.txt")"
grep -q "stopped by SIGTERM.*--out not written" "$work/out.txt" || fail "no stop line: $(cat "$work/out.txt")"
grep -q "continue with ddpm-distill --resume --out $work/stopped" "$work/out.txt" ||
  fail "no resume hint: $(cat "$work/out.txt")"
test ! -e "$work/stopped" || fail "a stopped run left $work/stopped behind"
test -f "$work/stopped.distill-state/state.json" || fail "no saved state beside --out after SIGTERM"
grep -q '"method": "consistency"' "$work/stopped.distill-state/state.json" || fail "the state names no method"
refused "--target-ema 0.5 differs from the 0.95 of the run being resumed" "$bin/ddpm-distill" --resume \
  --out "$work/stopped" --target-ema 0.5
refused "holds the saved state of a stopped run" "$bin/ddpm-distill" "${long[@]}" --out "$work/stopped"
refused "--method progressive differs from the --method consistency" "$bin/ddpm-distill" --resume \
  --method progressive --out "$work/stopped"
"$bin/ddpm-distill" --resume --out "$work/stopped" --checkpoint-every 5 >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--resume: $(cat "$work/err.txt")"
grep -q "resumed after step" "$work/out.txt" || fail "no resume line: $(cat "$work/out.txt")"
cmp "$work/whole/ema.safetensors" "$work/stopped/ema.safetensors" ||
  fail "the student after SIGTERM + --resume differs from the uninterrupted run's"
test ! -e "$work/stopped.distill-state" || fail "the saved state outlived the published run"
"$bin/ddpm-distill" --resume --out "$work/stopped" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--resume of a published run: $(cat "$work/err.txt")"
grep -q "is complete" "$work/out.txt" || fail "--resume of a published run said: $(cat "$work/out.txt")"
refused "no saved state to resume from" "$bin/ddpm-distill" --resume --method consistency --out "$work/none"
test ! -e "$work/none" || fail "a refused --resume left $work/none behind"

# Guided consistency distillation (LCM) of a class-conditional run.
cond="$work/cond"
"$bin/ddpm-train" "${tiny_model[@]}" --class-cond --diffusion-steps 32 --sample-steps 8 --predict v --steps 2 \
  --out "$cond" >"$work/out.txt" 2>"$work/err.txt" || fail "class-conditional training"
gcm=(--teacher "$cond" --method consistency --consistency-levels 4 --batch-size 4 --log-every 2 --gap-samples 4
     --lr 1e-2 --warmup-steps 1
     --steps 6 --device cpu)
"$bin/ddpm-distill" "${gcm[@]}" --guided 1,3 --out "$work/gcm" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "ddpm-distill --method consistency --guided: $(cat "$work/err.txt")"
grep -q "guided consistency distillation (LCM)" "$work/out.txt" || fail "no guided plan: $(cat "$work/out.txt")"
grep -q '"scale_max": 3' "$work/gcm/config.json" || fail "config.json lacks the guided range"
grep -q '"guidance_embedding": true' "$work/gcm/config.json" || fail "config.json: no guidance embedding"
cmd=$(grep "^sample: " "$work/out.txt" | sed "s/^sample: //; s/ (or .*//")
case "$cmd" in *"--guidance-scale 2"*) ;; *) fail "the printed command has no --guidance-scale 2: $cmd" ;; esac
"$bin/"$cmd --num-samples 2 --out "$work/gs0" >"$work/out.txt" 2>"$work/err.txt" || fail "the printed command: $cmd"
for s in 1.5 3; do
  "$bin/ddpm-sample" --checkpoint "$work/gcm" --sampler consistency --sampling-steps 2 --guidance-scale "$s" \
    --class 1 --num-samples 2 --device cpu --out "$work/gs$s" >"$work/out.txt" 2>"$work/err.txt" ||
    fail "--guidance-scale $s: $(cat "$work/err.txt")"
  grep -q "fed to the network as w = " "$work/out.txt" || fail "--guidance-scale $s: no w line: $(cat "$work/out.txt")"
  grep -q '"network_calls": 2' "$work/gs$s/sample_info.json" || fail "--guidance-scale $s: not 2 network calls"
done
grep -q '"guidance_weight_w": 2.0' "$work/gs3/sample_info.json" || fail "--guidance-scale 3: sample_info.json has no w = 2"
! cmp -s "$work/gs1.5/samples.npz" "$work/gs3/samples.npz" || fail "two guidance scales gave the same samples"
refused "outside the range \[1, 3\]" "$bin/ddpm-sample" --checkpoint "$work/gcm" --sampler consistency \
  --guidance-scale 4 --device cpu --out "$work/x"
refused "does not combine with --guidance-scale 2" "$bin/ddpm-sample" --checkpoint "$work/cm" --sampler consistency \
  --guidance-scale 2 --device cpu --out "$work/x"
refused "is unconditional" "$bin/ddpm-distill" "${cm[@]}" --steps 2 --guided 1,3 --out "$work/x"
refused "--guided-steps applies to --method progressive only" "$bin/ddpm-distill" "${gcm[@]}" --guided 1,3 \
  --guided-steps 2 --out "$work/x"

refused "is a consistency model" "$bin/ddpm-sample" --checkpoint "$work/cm" --sampler ddim --sampling-steps 4 \
  --device cpu --out "$work/x"
refused "needs a consistency model" "$bin/ddpm-sample" --checkpoint "$run" --sampler consistency --device cpu \
  --out "$work/x"
refused "consistency-levels 5 does not fit" "$bin/ddpm-distill" "${cm[@]/--consistency-levels/--steps}" \
  --consistency-levels 5 --out "$work/x"
refused "--rounds applies to --method progressive only" "$bin/ddpm-distill" "${cm[@]}" --rounds 2 --out "$work/x"
refused "--steps applies to --method consistency only" "$bin/ddpm-distill" --teacher "$run" --teacher-steps 8 \
  --steps 3 --device cpu --out "$work/x"
test ! -e "$work/x" || fail "a refused run left $work/x behind"
echo "consistency_cli_test: ok"
