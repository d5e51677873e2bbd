#!/usr/bin/env bash
# ddpm-edit from the shell (ctest `cli.edit`): usage
#   edit_cli_test.sh BIN_DIR WORK_DIR
# Trains a tiny DDPM run on the toy data for a few steps, draws two samples with ddpm-sample as
# input images, then runs the three subcommands (invert, img2img, interpolate from seeds and
# from images) and checks their files, and the refusals (exit 2, one "error:" line naming
# the problem, nothing left on disk).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" edit_cli_test

tiny=("${tiny_model[@]}" --save-every 2 --num-samples 4 --sample-steps 4)
run="$work/run"
"$bin/ddpm-train" "${tiny[@]}" --diffusion-steps 40 --steps 2 --out "$run" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training"
"$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --sampling-steps 4 --device cpu --out "$work/inputs" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the input images"

edit() { "$bin/ddpm-edit" "$@" --checkpoint "$run" --device cpu >"$work/out.txt" 2>"$work/err.txt"; }

edit invert --images "$work/inputs/images" --sampling-steps 10 --out "$work/inv" || fail "invert"
for f in latents.npz grid.png comparison.png samples.npz images/000001.png edit_info.json; do
  test -f "$work/inv/$f" || fail "invert: no $f"
done
grep -q '"psnr"' "$work/inv/edit_info.json" || fail "invert: no PSNR in edit_info.json"
grep -q 'PSNR' "$work/out.txt" || fail "invert: the reconstruction error is not printed"
grep -q '"sampling_steps": 10' "$work/inv/edit_info.json" || fail "invert: steps not recorded"

edit img2img --images "$work/inputs/samples.npz" --strength 0.5 --sampler ddpm --sampling-steps 10 --num-samples 2 \
  --out "$work/sdedit" || fail "img2img"
for f in grid.png comparison.png samples.npz images/000003.png edit_info.json; do
  test -f "$work/sdedit/$f" || fail "img2img: no $f"
done
# DDPM respacing "10" of T = 40 keeps round(i 39 / 9) = 0, 4, 9, 13, 17, 22, ...; t0 = 0.5 * 40 = 20
# starts at the last kept t with t + 1 <= 20: t = 17.
grep -q '"start_timestep": 17' "$work/sdedit/edit_info.json" || fail "img2img: strength 0.5 does not start at t = 17"
test -f "$work/sdedit/images/000004.png" && fail "img2img: 2 images x 2 samples wrote more than 4 results"

edit interpolate --seeds 1,2 --frames 4 --sampling-steps 10 --out "$work/interp" || fail "interpolate --seeds"
for f in strip.png samples.npz images/000003.png edit_info.json; do
  test -f "$work/interp/$f" || fail "interpolate: no $f"
done
edit interpolate --images "$work/inputs/images/000000.png,$work/inputs/images/000001.png" --frames 3 \
  --sampling-steps 10 --out "$work/interp2" || fail "interpolate --images"
test -f "$work/interp2/strip.png" || fail "interpolate --images: no strip.png"

# Refusals: exit 2 and the reason on stderr, nothing written.
refused() {  # refused PATTERN ARGS...: ddpm-edit ARGS is refused, and writes nothing
  local pattern=$1
  shift
  expect_refusal "ddpm-edit $*" "$pattern" "$bin/ddpm-edit" "$@"
  test ! -e "$work/x" || fail "a refused edit left $work/x behind"
}
img="$work/inputs/images/000000.png"
refused "unknown subcommand 'invrt'" invrt --checkpoint "$run" --images "$img" --out "$work/x"
refused "--strength must lie in (0, 1]" img2img --checkpoint "$run" --images "$img" --strength 0 --out "$work/x"
refused "--strength must lie in (0, 1]" img2img --checkpoint "$run" --images "$img" --strength 1.5 --out "$work/x"
refused "smallest usable strength" img2img --checkpoint "$run" --images "$img" --strength 0.05 --sampling-steps 10 \
  --device cpu --out "$work/x"
refused "--frames must be at least 2" interpolate --checkpoint "$run" --seeds 1,2 --frames 1 --out "$work/x"
refused "exactly one of --images" interpolate --checkpoint "$run" --seeds 1,2 --images "$img,$img" --out "$work/x"
refused "the model's images are" invert --checkpoint "$run" --images "$work/inv/comparison.png" --sampling-steps 10 \
  --device cpu --out "$work/x"
refused "must divide\|exact" invert --checkpoint "$run" --images "$img" --sampling-steps 7 --device cpu --out "$work/x"
refused "is not empty; pass --overwrite" invert --checkpoint "$run" --images "$img" --out "$work/inv"
refused "unexpected argument" invert --checkpoint "$run" --images "$img" --guidance-scale 2 --out "$work/x"
refused "heun and euler are for EDM runs" img2img --checkpoint "$run" --images "$img" --sampler heun --device cpu \
  --out "$work/x"
# Latent diffusion and EDM runs: tests/cli/edit_latent_edm_test.sh.
echo "edit_cli_test: ok"
