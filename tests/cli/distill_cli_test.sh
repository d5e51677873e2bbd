#!/usr/bin/env bash
# ddpm-distill from the shell (ctest `cli.distill`): usage
#   distill_cli_test.sh BIN_DIR WORK_DIR
# Distils a tiny v-prediction run two rounds (8 -> 4 -> 2 DDIM steps), samples each round
# folder with the printed ddpm-sample command, and checks the refusals (exit 2, one line):
# teacher steps that do not halve, a non-empty --out, latent and EDM runs.
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
done
grep -q '"sampling_steps": 2' "$work/dist/round_2/config.json" || fail "round_2 does not record 2 steps"
grep -q '"student_steps": 4' "$work/dist/distill.json" || fail "distill.json lacks round 1"

refused "cannot be halved 2 times" "$bin/ddpm-distill" "${common[@]}" --teacher-steps 12 --rounds 2 --out "$work/x"
refused "exists and is not empty" "$bin/ddpm-distill" "${dist[@]}" --out "$work/dist"
test ! -e "$work/x" || fail "a refused run left $work/x behind"
"$bin/ddpm-distill" "${dist[@]}" --out "$work/dist" --overwrite >"$work/out.txt" 2>"$work/err.txt" ||
  fail "--overwrite"
test ! -e "$work/dist/round_2" || fail "--overwrite kept the old round_2"
# A latent run and an EDM run are refused before any training.
"$bin/ddpm-autoencoder" train --data toy --steps 1 --batch-size 8 --base-channels 8 --channel-mult 1,2 \
  --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu --out "$work/ae" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "ddpm-autoencoder train"
"$bin/ddpm-train" "${tiny_model[@]}" --autoencoder "$work/ae" --diffusion-steps 32 --sample-steps 8 --steps 1 \
  --out "$work/latent" >"$work/out.txt" 2>"$work/err.txt" || fail "latent training"
refused "latent runs are not supported yet" "$bin/ddpm-distill" "${dist[@]/$run/$work/latent}" --out "$work/x"
"$bin/ddpm-train" "${tiny_model[@]}" --objective edm --sample-steps 8 --steps 1 --out "$work/edm" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "EDM training"
refused "EDM objective" "$bin/ddpm-distill" "${dist[@]/$run/$work/edm}" --out "$work/x"
test ! -e "$work/x" || fail "a refused run left $work/x behind"
echo "distill_cli_test: OK"
