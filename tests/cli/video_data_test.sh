#!/usr/bin/env bash
# Video data flags of ddpm-train (ctest `cli.video_data`): usage
#   video_data_test.sh BIN_DIR WORK_DIR
# --frames, --canvas, --item-size and --moving-items shape the clips of a moving-* dataset
# (models/data/moving.h); given with still-image data, or out of range, they are refused
# (exit 2, one error line naming the flag) and no run folder is left behind.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" video_data_test

run="$work/run"
refused "--frames" "$bin/ddpm-train" "${tiny_model[@]}" --steps 1 --frames 4 --out "$run"
refused "--moving-items" "$bin/ddpm-train" "${tiny_model[@]}" --steps 1 --moving-items 2 --out "$run"
tiny_moving=("${tiny_model[@]/#toy/moving-toy}")
refused "--frames" "$bin/ddpm-train" "${tiny_moving[@]}" --steps 1 --frames 0 --out "$run"
refused "--item-size" "$bin/ddpm-train" "${tiny_moving[@]}" --steps 1 --item-size 40 --out "$run"
refused "--canvas" "$bin/ddpm-train" "${tiny_moving[@]}" --steps 1 --canvas 0 --out "$run"
[ ! -e "$run" ] || fail "a refused run left $run behind"
"$bin/ddpm-train" --help >"$work/out.txt" 2>"$work/err.txt" || fail "--help"
grep -q -- "--item-size" "$work/out.txt" || fail "--help does not list --item-size"
grep -q "moving-fashion-mnist" "$work/out.txt" || fail "--help does not list moving-fashion-mnist"
echo "video_data_test: OK"
