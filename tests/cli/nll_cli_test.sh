#!/usr/bin/env bash
# ddpm-eval nll end to end (ctest `cli.nll`): usage
#   nll_cli_test.sh BIN_DIR WORK_DIR
# Trains a tiny DDPM run (v-prediction, learned sigma: the adapter's two less common paths) and
# a tiny EDM run on the toy data for two steps, evaluates the exact bits/dim of two test images
# through the probability-flow ODE with both Hutchinson probes (and RK45 once), checks the JSON line (finite
# numbers, prior + divergence = total, 2K network evaluations per image) and the refusals
# (exit 2, one "error:" line): an unknown estimator or solver, zero ODE steps, a sigma range outside a
# DDPM run's training levels, no --checkpoint.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" nll_cli_test

tiny=("${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 3 --steps 2)
"$bin/ddpm-train" "${tiny[@]}" --diffusion-steps 60 --predict v --learn-sigma --out "$work/ddpm" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "training the DDPM run"
"$bin/ddpm-train" "${tiny[@]}" --objective edm --out "$work/edm" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training the EDM run"

# check_json FILE OBJECTIVE STEPS: the last line is the JSON report.
check_json() {
  tail -n 1 "$1" | python3 -c '
import json, math, sys
j = json.loads(sys.stdin.read())
objective, steps = sys.argv[1], int(sys.argv[2])
assert j["mode"] == "nll" and j["objective"] == objective, j
assert j["n"] == 2, j
for k in ("bpd", "bpd_stderr", "prior_bpd", "divergence_bpd", "sigma_min", "sigma_max"):
    assert math.isfinite(j[k]), (k, j[k])
assert abs(j["prior_bpd"] + j["divergence_bpd"] - j["bpd"]) < 1e-6, j
if steps > 0:  # heun: 2K evaluations
    assert j["ode_solver"] == "heun" and j["ode_steps"] == steps, j
    assert j["network_evaluations_per_image"] == 2 * steps, j
else:  # rk45: 1 + 6 per attempted step
    assert j["ode_solver"] == "rk45" and (j["network_evaluations_per_image"] - 1) % 6 == 0, j
assert 0 < j["sigma_min"] < j["sigma_max"], j
' "$2" "$3" || fail "bad JSON line for $2: $(tail -n 1 "$1")"
}
for est in rademacher gaussian; do
  "$bin/ddpm-eval" nll --checkpoint "$work/ddpm" --data toy --split test --limit 2 --batch-size 2 --ode-steps 3 \
    --hutchinson $est --device cpu >"$work/out.txt" 2>"$work/err.txt" || fail "nll of the DDPM run ($est)"
  check_json "$work/out.txt" ddpm 3
done
grep -q "^bits/dim " "$work/out.txt" || fail "no bits/dim line"
grep -q "predicts v" "$work/out.txt" || fail "the model line does not name the mean type"
"$bin/ddpm-eval" nll --checkpoint "$work/edm" --data toy --limit 2 --batch-size 1 --ode-steps 2 --device cpu \
  >"$work/out.txt" 2>"$work/err.txt" || fail "nll of the EDM run"
check_json "$work/out.txt" edm 2
grep -q '"sigma_max":80' "$work/out.txt" || fail "EDM's default sigma_max is not 80"
# The adaptive solver, with loose tolerances (the untrained network is cheap to follow).
"$bin/ddpm-eval" nll --checkpoint "$work/edm" --data toy --limit 2 --ode-solver rk45 --rtol 1e-2 --atol 1e-2 \
  --device cpu >"$work/out.txt" 2>"$work/err.txt" || fail "nll of the EDM run with rk45"
check_json "$work/out.txt" edm 0

refused "--hutchinson" "$bin/ddpm-eval" nll --checkpoint "$work/edm" --data toy --hutchinson normal
refused "--ode-steps" "$bin/ddpm-eval" nll --checkpoint "$work/edm" --data toy --ode-steps 0
refused "--ode-solver" "$bin/ddpm-eval" nll --checkpoint "$work/edm" --data toy --ode-solver rk4
refused "sigma" "$bin/ddpm-eval" nll --checkpoint "$work/ddpm" --data toy --sigma-max 1e6 --limit 1
refused "--checkpoint" "$bin/ddpm-eval" nll --data toy
echo "nll_cli_test: ok"
