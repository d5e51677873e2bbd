#!/usr/bin/env bash
# ddpm-eval bpd --rate-distortion end to end (ctest `cli.rate_distortion`): usage
#   rate_distortion_cli_test.sh BIN_DIR WORK_DIR
# Trains a tiny DDPM run and a tiny EDM run on the toy data for two steps, writes the
# rate-distortion curve of two test images at a stride (CSV rows t = T, then multiples of the
# stride down to 0; the last rate equals the printed bits/dim; rate never falls; the plot is
# a PNG), and checks the refusals (exit 2, one "error:" line): an EDM run (no discrete bound,
# and nothing written), an existing non-empty folder without --overwrite, --rd-stride 0.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" rate_distortion_cli_test

tiny=("${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 3 --steps 2)
"$bin/ddpm-train" "${tiny[@]}" --diffusion-steps 60 --out "$work/ddpm" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training the DDPM run"
"$bin/ddpm-train" "${tiny[@]}" --objective edm --out "$work/edm" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training the EDM run"

"$bin/ddpm-eval" bpd --checkpoint "$work/ddpm" --data toy --split test --limit 2 --batch-size 2 \
  --rate-distortion "$work/rd" --rd-stride 20 --device cpu >"$work/out.txt" 2>"$work/err.txt" ||
  fail "bpd --rate-distortion of the DDPM run"
grep -q "distortion below 1 RMSE from rate" "$work/out.txt" || fail "no summary line: $(cat "$work/out.txt")"
bpd=$(sed -n 's/^bits\/dim \([0-9.]*\) .*/\1/p' "$work/out.txt")
python3 - "$work/rd/rate_distortion.csv" "$bpd" <<'PY' || fail "bad CSV: $(cat "$work/rd/rate_distortion.csv")"
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["t"]) for r in rows] == [60, 40, 20, 0], [r["t"] for r in rows]
rates = [float(r["rate_bpd"]) for r in rows]
assert all(math.isfinite(v) for v in rates) and rates == sorted(rates), rates
assert abs(rates[-1] - float(sys.argv[2])) < 1e-3, (rates[-1], sys.argv[2])
assert float(rows[-1]["distortion_rmse"]) == 0.0, rows[-1]
PY
head -c 8 "$work/rd/rate_distortion.png" | od -An -c | grep -q "P   N   G" || fail "rate_distortion.png is not a PNG"

refused "EDM" "$bin/ddpm-eval" bpd --checkpoint "$work/edm" --data toy --limit 1 --rate-distortion "$work/rd_edm" \
  --device cpu
[ ! -e "$work/rd_edm" ] || fail "the refused EDM run left $work/rd_edm behind"
refused "--overwrite" "$bin/ddpm-eval" bpd --checkpoint "$work/ddpm" --data toy --limit 1 --rate-distortion "$work/rd"
refused "--rd-stride" "$bin/ddpm-eval" bpd --checkpoint "$work/ddpm" --data toy --rate-distortion "$work/x" --rd-stride 0
echo "rate_distortion_cli_test: ok"
