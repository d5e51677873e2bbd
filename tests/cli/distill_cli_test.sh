#!/usr/bin/env bash
# ddpm-distill from the shell (ctest `cli.distill`): usage
#   distill_cli_test.sh BIN_DIR WORK_DIR
# Distils a tiny v-prediction run two rounds (8 -> 4 -> 2 DDIM steps), samples each round
# folder with the printed ddpm-sample command, checks ddpm-sample's defaults for a round
# folder (no --clip-x0 is --clip-x0 false; one warning line off the trained grid), stops a
# run with SIGTERM in round 2 (round_1 kept, exit 143), stops one with SIGTERM in round 1 and
# continues it with --resume to the bits of an uninterrupted run (a changed flag and a new run
# over the saved state refused, a complete run reported), distils and samples a latent run, and
# checks the refusals (exit 2, one line): teacher steps that do not halve, a non-empty --out,
# an EDM run. Guided distillation (--guided 1,3) of a class-conditional run: stage 1 as
# round_0 and one round, each sampled with --guidance-scale by the printed command; a scale
# outside the trained range and --guided on an unconditional run are refused; a guided run
# stopped by SIGTERM in stage 1 resumes to round_0's bits (another --guided refused).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" distill_cli_test

run="$work/run"
"$bin/ddpm-train" "${tiny_model[@]}" --diffusion-steps 32 --sample-steps 8 --predict v --steps 3 --out "$run" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "training"
common=(--teacher "$run" --steps-per-round 4 --batch-size 4 --log-every 2 --gap-samples 4 --device cpu)
dist=("${common[@]}" --teacher-steps 8)
"$bin/ddpm-distill" "${dist[@]}" --rounds 2 --out "$work/dist" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "ddpm-distill"
grep -q "DDIM steps 8 -> 4 -> 2" "$work/out.txt" || fail "no plan printed: $(cat "$work/out.txt")"
for k in 1 2; do
  test -f "$work/dist/round_$k/config.json" -a -f "$work/dist/round_$k/ema.safetensors" || fail "no round_$k folder"
  cmd=$(grep "^sample round $k: " "$work/out.txt" | sed "s/^sample round $k: //")
  [ -n "$cmd" ] || fail "no sampling command for round $k"
  # The printed command, run as printed (with the binary's folder and an output folder).
  "$bin/"$cmd --num-samples 2 --out "$work/samples_$k" >"$work/sample_out.txt" 2>"$work/err.txt" ||
    fail "sampling round $k: $cmd"
  ! grep -q "^warning: " "$work/sample_out.txt" || fail "a warning on the trained grid: $(cat "$work/sample_out.txt")"
done
grep -q '"sampling_steps": 2' "$work/dist/round_2/config.json" || fail "round_2 does not record 2 steps"
grep -q '"student_steps": 4' "$work/dist/distill.json" || fail "distill.json lacks round 1"
grep -q '"rounds_done": 2' "$work/dist/distill.json" || fail "distill.json does not say 2 rounds done"

# A round folder samples unclamped by default: the same files as with --clip-x0 false.
smp=("$bin/ddpm-sample" --checkpoint "$work/dist/round_2" --sampler ddim --sampling-steps 2 --num-samples 2
     --device cpu --seed 5)
"${smp[@]}" --out "$work/s_default" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling with no --clip-x0"
"${smp[@]}" --clip-x0 false --out "$work/s_noclip" >"$work/out.txt" 2>"$work/err.txt" || fail "--clip-x0 false"
cmp "$work/s_default/samples.npz" "$work/s_noclip/samples.npz" || fail "no --clip-x0 differs from --clip-x0 false"
# Off the trained grid: exactly one warning line, naming the grid.
"$bin/ddpm-sample" --checkpoint "$work/dist/round_2" --sampler ddim --sampling-steps 4 --num-samples 2 --device cpu \
  --out "$work/s_off" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling off the grid"
[ "$(grep -c "^warning: " "$work/out.txt")" = 1 ] || fail "not one warning line: $(cat "$work/out.txt")"
grep -q "trained for --sampler ddim --sampling-steps 2 only" "$work/out.txt" || fail "the warning names no grid"

# SIGTERM in round 2: the step finishes, round_1 stays published, round_2 is not, exit 143.
start_logged "$work/out.txt" "$bin/ddpm-distill" --teacher "$run" --teacher-steps 8 --rounds 2 \
  --steps-per-round 150 --batch-size 4 --log-every 50 --gap-samples 4 --device cpu --out "$work/stopped"
term_when "$pid" "$work/out.txt" "^round 2/2"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 143 ] || fail "a stopped ddpm-distill exited with $rc, expected 143: $(cat "$work/out.txt")"
grep -q "stopped by SIGTERM.*round 2 (not published); 1 of 2 rounds complete" "$work/out.txt" ||
  fail "no stop line: $(cat "$work/out.txt")"
test -f "$work/stopped/round_1/ema.safetensors" -a ! -e "$work/stopped/round_2" || fail "rounds on disk after the stop"
grep -q '"rounds_done": 1' "$work/stopped/distill.json" || fail "distill.json does not say 1 round done"
"$bin/ddpm-sample" --checkpoint "$work/stopped/round_1" --sampler ddim --sampling-steps 4 --num-samples 2 \
  --device cpu --out "$work/s_stopped" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the kept round_1"

# SIGTERM in round 1, then --resume: the same bits as an uninterrupted run. Where the signal
# lands does not matter (every stop resumes to the same result), so the timing only has to
# catch the run before its end: the signal follows the log line of step 2 within a poll
# (20 ms, more on a loaded machine), and the run has 238 steps (seconds) left then. (With
# 30 steps a round, a fraction of a second, a busy machine once let the run finish first.)
long=(--teacher "$run" --teacher-steps 8 --rounds 2 --steps-per-round 120 --batch-size 4 --log-every 1 --gap-samples 4
      --checkpoint-every 7 --device cpu)
"$bin/ddpm-distill" "${long[@]}" --out "$work/whole" >"$work/out.txt" 2>"$work/err.txt" || fail "the uninterrupted run"
start_logged "$work/out.txt" "$bin/ddpm-distill" "${long[@]}" --out "$work/resumed"
term_when "$pid" "$work/out.txt" "^  step 2/120"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 143 ] || fail "ddpm-distill stopped for --resume exited with $rc, expected 143: $(cat "$work/out.txt")"
grep -q "continue with ddpm-distill --resume --out $work/resumed" "$work/out.txt" || fail "no resume hint: $(cat "$work/out.txt")"
test -f "$work/resumed.distill-state/state.json" || fail "no saved state beside --out after SIGTERM"
refused "--lr 0.5 differs from the 0.0001 of the run being resumed" "$bin/ddpm-distill" --resume --out "$work/resumed" --lr 0.5
refused "holds the saved state of a stopped run" "$bin/ddpm-distill" "${long[@]}" --out "$work/resumed"
"$bin/ddpm-distill" --resume --out "$work/resumed" --checkpoint-every 5 >"$work/out.txt" 2>"$work/err.txt" || fail "--resume"
grep -q "resumed after step" "$work/out.txt" || fail "no resume line: $(cat "$work/out.txt")"
for k in 1 2; do
  cmp "$work/whole/round_$k/ema.safetensors" "$work/resumed/round_$k/ema.safetensors" ||
    fail "round_$k after SIGTERM + --resume differs from the uninterrupted run's"
  cmp "$work/whole/round_$k/config.json" "$work/resumed/round_$k/config.json" || fail "round_$k/config.json differs"
done
test ! -e "$work/resumed.distill-state" || fail "the saved state outlived the complete run"
"$bin/ddpm-distill" --resume --out "$work/resumed" >"$work/out.txt" 2>"$work/err.txt" || fail "--resume of a complete run"
grep -q "is complete (2 of 2 rounds published): nothing to resume" "$work/out.txt" || fail "complete run: $(cat "$work/out.txt")"
refused "no saved state to resume from" "$bin/ddpm-distill" --resume --out "$work/nothing"
test ! -e "$work/nothing" || fail "a refused --resume left $work/nothing behind"

refused "cannot be halved 2 times" "$bin/ddpm-distill" "${common[@]}" --teacher-steps 12 --rounds 2 --out "$work/x"
refused "exists and is not empty" "$bin/ddpm-distill" "${dist[@]}" --out "$work/dist"
test ! -e "$work/x" || fail "a refused run left $work/x behind"
"$bin/ddpm-distill" "${dist[@]}" --out "$work/dist" --overwrite >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--overwrite"
test ! -e "$work/dist/round_2" || fail "--overwrite kept the old round_2"
# A latent run distils on its latents; the round folder carries the autoencoder and samples decoded images.
"$bin/ddpm-autoencoder" train --data toy --steps 1 --batch-size 8 --base-channels 8 --channel-mult 1,2 \
  --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu --out "$work/ae" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-autoencoder train"
"$bin/ddpm-train" "${tiny_model[@]}" --autoencoder "$work/ae" --diffusion-steps 32 --sample-steps 8 --predict v \
  --steps 1 --out "$work/latent" >"$work/out.txt" 2>"$work/err.txt" || fail "latent training"
"$bin/ddpm-distill" "${dist[@]/$run/$work/latent}" --out "$work/ldist" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "latent ddpm-distill"
test -d "$work/ldist/round_1/autoencoder" || fail "the latent round folder has no autoencoder"
cmd=$(grep "^sample round 1: " "$work/out.txt" | sed "s/^sample round 1: //")
"$bin/"$cmd --num-samples 2 --out "$work/s_latent" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the latent round"
grep -q "latent diffusion: decoding with" "$work/out.txt" || fail "the latent round was not decoded"
# An EDM run is refused before any training.
"$bin/ddpm-train" "${tiny_model[@]}" --objective edm --sample-steps 8 --steps 1 --out "$work/edm" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "EDM training"
refused "EDM objective" "$bin/ddpm-distill" "${dist[@]/$run/$work/edm}" --out "$work/x"
test ! -e "$work/x" || fail "a refused run left $work/x behind"
# Guided distillation: stage 1 (round_0) + one round; both sampled with one call per step.
cond="$work/cond"
"$bin/ddpm-train" "${tiny_model[@]}" --class-cond --diffusion-steps 32 --sample-steps 8 --predict v --steps 2 \
  --out "$cond" >"$work/out.txt" 2>"$work/err.txt" || fail "class-conditional training"
gdist=(--teacher "$cond" --teacher-steps 8 --steps-per-round 2 --guided-steps 3 --batch-size 4 --log-every 2
       --gap-samples 4 --device cpu)
"$bin/ddpm-distill" "${gdist[@]}" --guided 1,3 --rounds 1 --out "$work/gdist" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "ddpm-distill --guided"
grep -q "guided distillation (Meng et al. 2023)" "$work/out.txt" || fail "no guided plan: $(cat "$work/out.txt")"
grep -q '"scale_max": 3' "$work/gdist/distill.json" || fail "distill.json lacks the guided range"
grep -q '"guidance_embedding": true' "$work/gdist/round_1/config.json" || fail "round_1 has no guidance embedding"
for k in 0 1; do
  cmd=$(grep "^sample round $k: " "$work/out.txt" | sed "s/^sample round $k: //")
  case "$cmd" in *"--guidance-scale 2"*) ;; *) fail "round $k's command has no --guidance-scale: $cmd" ;; esac
  "$bin/"$cmd --num-samples 2 --out "$work/gs_$k" >"$work/sample_out.txt" 2>"$work/err.txt" ||
    fail "sampling guided round $k: $cmd"
  grep -q '"network_calls_per_step": 1' "$work/gs_$k/sample_info.json" || fail "round $k: not one call per step"
done
refused "outside the range \[1, 3\]" "$bin/ddpm-sample" --checkpoint "$work/gdist/round_1" --sampler ddim \
  --sampling-steps 4 --num-samples 2 --guidance-scale 5 --device cpu --out "$work/x"
refused "--teacher $run is unconditional" "$bin/ddpm-distill" "${gdist[@]/$cond/$run}" --guided 1,3 --out "$work/x"
test ! -e "$work/x" || fail "a refused run left $work/x behind"
# SIGTERM in stage 1 of a guided run, then --resume (--guided given with its saved value):
# round_0 of an uninterrupted run, bit for bit; another --guided is refused.
glong=(--teacher "$cond" --teacher-steps 8 --guided 1,3 --rounds 0 --guided-steps 240 --batch-size 4 --log-every 1
       --gap-samples 4 --checkpoint-every 7 --device cpu)
"$bin/ddpm-distill" "${glong[@]}" --out "$work/gwhole" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "the uninterrupted guided run"
start_logged "$work/out.txt" "$bin/ddpm-distill" "${glong[@]}" --out "$work/gresumed"
term_when "$pid" "$work/out.txt" "^  step 2/240"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 143 ] || fail "the stopped guided run exited with $rc, expected 143: $(cat "$work/out.txt")"
grep -q "of round 0 (not published)" "$work/out.txt" || fail "no stage-1 stop line: $(cat "$work/out.txt")"
refused '--guided "1.0,4.0" differs from the "1.0,3.0"' "$bin/ddpm-distill" --resume --out "$work/gresumed" --guided 1,4
"$bin/ddpm-distill" --resume --out "$work/gresumed" --guided 1,3 >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--resume of the guided run: $(cat "$work/err.txt")"
grep -q "^round 0: resumed after step" "$work/out.txt" || fail "no stage-1 resume line: $(cat "$work/out.txt")"
cmp "$work/gwhole/round_0/ema.safetensors" "$work/gresumed/round_0/ema.safetensors" ||
  fail "round_0 after SIGTERM + --resume differs from the uninterrupted guided run's"
cmp "$work/gwhole/round_0/config.json" "$work/gresumed/round_0/config.json" || fail "round_0/config.json differs"
echo "distill_cli_test: OK"
