#!/usr/bin/env bash
# ddpm-train --objective ict and ddpm-sample on its run (ctest `cli.ict`): usage
#   ict.sh BIN_DIR WORK_DIR
# Trains a tiny improved-consistency-training run (class-conditional, so labels flow) on the
# toy data for a few steps, resumes it, samples it with one step (the consistency sampler is
# the default for it), two steps and explicit levels, and checks the refusals: another
# sampler, guidance, ddpm-export, ddpm-eval bpd, ddpm-distill, a bad --ict-discretization, the
# ict flags with another objective and DDPM-only flags with ict (each exit 2, one error line).
# Then a latent ict run (--autoencoder): trained, its sigma_data 1 recorded, sampled in two
# steps and decoded to pixels of the autoencoder's image size.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" ict_test

tiny=("${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 2 --objective ict --class-cond)
run="$work/run"
"$bin/ddpm-train" "${tiny[@]}" --steps 2 --ict-discretization 4,16 --out "$run" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training"
for key in '"objective": "ict"' '"sigma_min": 0.002' '"sigma_max": 80.0' '"rho": 7.0' '"sigma_data": 0.5' \
           '"p_mean": -1.1' '"p_std": 2.0' '"s0": 4' '"s1": 16' '"consistency_loss": "pseudo-huber"' \
           '"sampler": "consistency"'; do
  grep -q -- "$key" "$run/config.json" || fail "config.json does not record $key"
done
"$bin/ddpm-train" "${tiny[@]}" --steps 4 --ict-discretization 4,16 --out "$run" --resume latest \
  >"$work/out.txt" 2>"$work/err.txt" || fail "resume"
test -f "$run/checkpoints/step_4/ema.safetensors" || fail "no step-4 checkpoint after resuming"
test -f "$run/samples/step_4.png" || fail "no EMA sample grid"

"$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --device cpu --out "$work/one" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "one-step sampling"
for f in grid.png samples.npz sample_info.json images/000001.png; do test -f "$work/one/$f" || fail "one step: no $f"; done
grep -q '"sampler": "consistency"' "$work/one/sample_info.json" || fail "consistency is not the default of an ict run"
tr -d ' \n' <"$work/one/sample_info.json" | grep -q '"sigmas":\[80.0\]' || fail "one step is not at sigma_max"
"$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --sampling-steps 2 --class 1 --device cpu --out "$work/two" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "two-step sampling"
tr -d ' \n' <"$work/two/sample_info.json" | grep -q '"sigmas":\[80.0,0.821\]' || fail "two steps: not 80, 0.821"
grep -q '"network_calls": 2' "$work/two/sample_info.json" || fail "two steps: not two network calls"
"$bin/ddpm-sample" --checkpoint "$run" --sampler consistency --num-samples 2 --consistency-sigmas 80,5,0.5 \
  --device cpu --out "$work/three" >"$work/out.txt" 2>"$work/err.txt" || fail "explicit levels"
grep -q '"sigmas_from": "--consistency-sigmas"' "$work/three/sample_info.json" || fail "explicit levels not recorded"

# Refusals: exit 2, the reason on stderr, nothing written.
for s in ddpm ddim heun; do
  refused "--sampler $s does not apply" "$bin/ddpm-sample" --checkpoint "$run" --sampler $s --device cpu \
    --out "$work/s_$s"
  test ! -e "$work/s_$s" || fail "a refused sampling left $work/s_$s behind"
done
refused "--consistency-sigmas must be strictly descending" "$bin/ddpm-sample" --checkpoint "$run" \
  --consistency-sigmas 1,2 --device cpu --out "$work/bad_sigmas"
refused "--guidance-scale" "$bin/ddpm-sample" --checkpoint "$run" --guidance-scale 2 --device cpu --out "$work/g"
refused "objective ict" "$bin/ddpm-export" --checkpoint "$run" --out "$work/export"
test ! -e "$work/export" || fail "a refused export left $work/export behind"
refused "objective ict" "$bin/ddpm-eval" bpd --checkpoint "$run" --data toy
refused "objective ict" "$bin/ddpm-eval" nll --checkpoint "$run" --data toy
refused "objective ict" "$bin/ddpm-distill" --teacher "$run" --method consistency --steps 1 --out "$work/distill"
test ! -e "$work/distill" || fail "a refused distillation left $work/distill behind"
refused "--ict-discretization 1280,10 needs 2 <= S0 <= S1" "$bin/ddpm-train" "${tiny[@]}" \
  --ict-discretization 1280,10 --out "$work/x"
refused "--ict-discretization takes two numbers" "$bin/ddpm-train" "${tiny[@]}" --ict-discretization 10 --out "$work/x"
refused "--ict-discretization applies to --objective ict only" "$bin/ddpm-train" --data toy \
  --ict-discretization 10,1280 --out "$work/x"
refused "--consistency-loss must be l2 or pseudo-huber" "$bin/ddpm-train" "${tiny[@]}" --consistency-loss huber \
  --out "$work/x"
refused "--diffusion-steps applies to --objective ddpm only" "$bin/ddpm-train" "${tiny[@]}" --diffusion-steps 100 \
  --out "$work/x"
refused "--learn-sigma applies to --objective ddpm only" "$bin/ddpm-train" "${tiny[@]}" --learn-sigma --out "$work/x"
test ! -e "$work/x" || fail "a refused run left $work/x behind"
# Latent iCT: a tiny autoencoder (16x16x1 -> 8x8x3 latents), an ict run on its latents, and
# two-step samples decoded to 16x16 pixels.
"$bin/ddpm-autoencoder" train --data toy --steps 2 --batch-size 8 --base-channels 8 --channel-mult 1,2 \
  --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu --out "$work/ae" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "ddpm-autoencoder train"
"$bin/ddpm-train" --autoencoder "$work/ae" --data toy --toy-count 16 --preset none --num-channels 8 \
  --channel-mult 1,2 --num-res-blocks 1 --attention-resolutions "" --norm-groups 4 --dropout 0 --objective ict \
  --ict-discretization 4,16 --batch-size 4 --steps 2 --save-every 2 --sample-every 0 --num-samples 2 \
  --device cpu --out "$work/latent" >"$work/out.txt" 2>"$work/err.txt" || fail "latent ict training"
grep -q '"sigma_data": 1.0' "$work/latent/config.json" || fail "a latent ict run does not record sigma_data 1"
"$bin/ddpm-sample" --checkpoint "$work/latent" --num-samples 2 --sampling-steps 2 --device cpu --out "$work/lsamples" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "latent ict sampling"
grep -aq "'descr': '|u1'.*'shape': (2, 16, 16, 1)" "$work/lsamples/samples.npz" ||
  fail "latent ict samples are not decoded to uint8 [2, 16, 16, 1]"
echo "ict_test: ok"
