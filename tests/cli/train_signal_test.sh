#!/usr/bin/env bash
# ddpm-train stopped by a signal (ctest `cli.ddpm_train.stop_signal`): usage
#   train_signal_test.sh DDPM_TRAIN WORK_DIR SIGNAL EXPECTED_STATUS   (e.g. TERM 143, INT 130)
# Starts a long run on the toy data, waits until it has logged a step, sends SIGNAL, and
# checks that the run exits with EXPECTED_STATUS (128 + the signal's number) after writing a
# checkpoint of the step it stopped after and saying so, and that --resume latest continues
# from exactly that step. The run tracks post-hoc EMAs (--posthoc-ema) with snapshots too
# rare to fall on the stopping step: the stop must write a snapshot of that step anyway
# (the only one), and ddpm-export --posthoc-ema uses it beside the resumed run's last one.
set -euo pipefail
bin=$1 work=$2 sig=$3 expected=$4
source "$(dirname "$0")/lib.sh" "train_signal_test ($sig)"

tiny=("${tiny_model[@]}" --diffusion-steps 50 --save-every 100000 --num-samples 4 --sample-steps 5
      --posthoc-ema 0.05,0.10 --posthoc-snapshot-every 100000)

"$bin" "${tiny[@]}" --steps 100000 --out "$work/run" >"$work/out.txt" 2>"$work/err.txt" &
pid=$!
for _ in $(seq 600); do  # up to 60 s for the first logged step
  grep -q '^step [0-9]' "$work/err.txt" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "ddpm-train ended before the signal"
  sleep 0.1
done
grep -q '^step [0-9]' "$work/err.txt" || { kill -KILL "$pid"; fail "no step logged within 60 s"; }
kill -s "$sig" "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" = "$expected" ] || fail "exit status $rc, expected $expected"
line=$(grep "stopped by SIG$sig after step" "$work/err.txt") || fail "no 'stopped by SIG$sig' line"
step=$(sed -E 's/.*after step ([0-9]+);.*/\1/' <<<"$line")
[ -d "$work/run/checkpoints/step_$step" ] || fail "no checkpoint step_$step"
[ ! -d "$work/run/samples" ] || [ -z "$(ls "$work/run/samples")" ] || fail "a stopped run drew a sample grid"
[ "$(ls "$work/run/posthoc")" = "step_$step.safetensors" ] ||
  fail "the stop wrote no post-hoc EMA snapshot of step $step alone: $(ls "$work/run/posthoc")"

"$bin" "${tiny[@]}" --steps $((step + 2)) --resume latest --out "$work/run" >"$work/out2.txt" 2>"$work/err2.txt" ||
  { cat "$work/err2.txt"; fail "the resumed run exited with $?"; }
grep -q "resumed from .*step_$step at step $step" "$work/err2.txt" || { cat "$work/err2.txt"; fail "did not resume at step $step"; }
[ -d "$work/run/checkpoints/step_$((step + 2))" ] || fail "the resumed run wrote no step_$((step + 2)) checkpoint"
# The stop's snapshot is a valid one: the reconstruction at the end mixes it with the last.
"$(dirname "$bin")/ddpm-export" --checkpoint "$work/run" --posthoc-ema 0.08 --out "$work/ema" >"$work/out3.txt" \
  2>"$work/err3.txt" || { cat "$work/err3.txt"; fail "ddpm-export --posthoc-ema after the stop"; }
grep -q "at step $((step + 2)) from 2 snapshots" "$work/out3.txt" ||
  fail "the export did not use the stop's snapshot: $(cat "$work/out3.txt")"
echo "train_signal_test ($sig): passed (stopped after step $step)"
