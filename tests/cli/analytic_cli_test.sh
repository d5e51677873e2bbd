#!/usr/bin/env bash
# Analytic-DPM from the shell (ctest `cli.analytic`): usage
#   analytic_cli_test.sh BIN_DIR WORK_DIR
# Trains a tiny class-conditional v-prediction run (T = 60) for two steps, estimates Gamma at
# every timestep (ddpm-eval analytic-gamma) and at a 6-step trajectory only, samples with
# --variance analytic (ddpm all steps, ddpm respaced, ddim eta 0), evaluates bits/dim with
# fixed_small and analytic on the same draws (same seed: the prior and decoder terms agree,
# the KL terms differ), and checks the refusals (exit 2, one "error:" line, nothing written):
# a run that learned sigma, a Gamma file of another T or missing the trajectory's steps, a
# missing --analytic-gamma, --analytic-gamma without --variance analytic, an existing --out.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" analytic_cli_test

tiny=("${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 3 --steps 2)
run="$work/run"
"$bin/ddpm-train" "${tiny[@]}" --diffusion-steps 60 --predict v --class-cond --out "$run" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "training"

"$bin/ddpm-eval" analytic-gamma --checkpoint "$run" --data toy --num-images 8 --batch-size 8 \
  --out "$work/gamma.json" --device cpu >"$work/out.txt" 2>"$work/err.txt" || fail "analytic-gamma"
grep -q "wrote $work/gamma.json: Gamma at 60 timesteps from 8 images" "$work/out.txt" ||
  fail "no summary line: $(cat "$work/out.txt")"
python3 - "$work/gamma.json" <<'PY' || fail "bad Gamma file: $(head -c 600 "$work/gamma.json")"
import json, math, sys
g = json.load(open(sys.argv[1]))
assert g["format"] == "ddpm-analytic-gamma" and g["diffusion_steps"] == 60 and g["num_images"] == 8, g
assert g["timesteps"] == list(range(60)) and len(g["gamma"]) == 60, g["timesteps"]
assert g["mean_type"] == "v" and g["noise_schedule"] == "linear" and g["data"] == "toy-shapes/train", g
assert all(math.isfinite(v) and v > 0 for v in g["gamma"]), g["gamma"]
PY
"$bin/ddpm-eval" analytic-gamma --checkpoint "$run" --data toy --num-images 4 --timesteps 6 \
  --out "$work/gamma6.json" --device cpu >"$work/out.txt" 2>"$work/err.txt" || fail "analytic-gamma --timesteps"
python3 -c "import json,sys; g=json.load(open(sys.argv[1])); assert len(g['timesteps']) == 6 and g['timesteps'][-1] == 59, g" \
  "$work/gamma6.json" || fail "gamma6.json does not hold the 6 respaced timesteps"

sample() {  # sample NAME FLAGS...
  local name=$1
  shift
  "$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --device cpu --out "$work/$name" "$@" \
    >"$work/out.txt" 2>"$work/err.txt" || fail "sampling $name"
  grep -q '"variance": "analytic"' "$work/$name/sample_info.json" || fail "$name: sample_info.json lacks the variance"
  [ -f "$work/$name/samples.npz" ] || fail "$name: no samples.npz"
}
sample ddpm_all --variance analytic --analytic-gamma "$work/gamma.json"
sample ddpm_6 --variance analytic --analytic-gamma "$work/gamma6.json" --sampling-steps 6
sample ddim_6 --sampler ddim --sampling-steps 6 --variance analytic --analytic-gamma "$work/gamma.json"

bpd() {  # bpd VARIANCE FLAGS... -> the bits/dim line in $work/bpd_VARIANCE.txt
  local v=$1
  shift
  "$bin/ddpm-eval" bpd --checkpoint "$run" --data toy --split test --limit 2 --batch-size 2 --variance "$v" "$@" \
    --device cpu --seed 7 >"$work/bpd_$v.txt" 2>"$work/err.txt" || fail "bpd --variance $v"
}
bpd fixed_small
bpd analytic --analytic-gamma "$work/gamma.json"
python3 - "$work/bpd_fixed_small.txt" "$work/bpd_analytic.txt" <<'PY' || fail "bpd lines: $(cat "$work"/bpd_*.txt)"
import re, sys
def parse(p):
    m = re.search(r"bits/dim ([0-9.]+) \+- [0-9.]+ \(n=2; prior ([0-9.]+), sum of L_t ([0-9.]+), decoder ([0-9.]+)\)",
                  open(p).read())
    return [float(v) for v in m.groups()]
fs, an = parse(sys.argv[1]), parse(sys.argv[2])
assert fs[1] == an[1] and fs[3] == an[3], (fs, an)  # prior and decoder: same draws, same variance
assert fs[2] != an[2], (fs, an)                      # the KL terms use the other variance
PY
grep -q "variance: analytic (Gamma from $work/gamma.json)" "$work/bpd_analytic.txt" || fail "bpd does not name the Gamma file"

# Refusals.
"$bin/ddpm-train" "${tiny[@]}" --diffusion-steps 60 --learn-sigma --out "$work/learned" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "training the learned-sigma run"
refused "learned its variance" "$bin/ddpm-eval" analytic-gamma --checkpoint "$work/learned" --data toy \
  --num-images 2 --out "$work/learned.json" --device cpu
[ ! -e "$work/learned.json" ] || fail "the refused estimate wrote $work/learned.json"
"$bin/ddpm-train" "${tiny[@]}" --diffusion-steps 45 --out "$work/t45" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training the T = 45 run"
refused "60 diffusion steps; this model has 45" "$bin/ddpm-sample" --checkpoint "$work/t45" --num-samples 1 \
  --variance analytic --analytic-gamma "$work/gamma.json" --out "$work/s45" --device cpu
[ ! -e "$work/s45" ] || fail "the refused sampling left $work/s45"
refused "has no estimate at timestep" "$bin/ddpm-sample" --checkpoint "$run" --num-samples 1 --sampling-steps 10 \
  --variance analytic --analytic-gamma "$work/gamma6.json" --out "$work/s10" --device cpu
refused "has no estimate at timestep" "$bin/ddpm-eval" bpd --checkpoint "$run" --data toy --limit 1 \
  --variance analytic --analytic-gamma "$work/gamma6.json" --device cpu
refused "needs --analytic-gamma" "$bin/ddpm-sample" --checkpoint "$run" --variance analytic --out "$work/x" --device cpu
refused "used with --variance analytic only" "$bin/ddpm-eval" bpd --checkpoint "$run" --data toy \
  --analytic-gamma "$work/gamma.json" --device cpu
refused "exists; pass --overwrite" "$bin/ddpm-eval" analytic-gamma --checkpoint "$run" --data toy \
  --num-images 2 --out "$work/gamma.json" --device cpu
echo "analytic_cli_test: ok"
