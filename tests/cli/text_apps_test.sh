#!/usr/bin/env bash
# Text-conditioned runs in ddpm-edit, ddpm-eval and ddpm-distill (ctest `cli.text_apps`): usage
#   text_apps_test.sh BIN_DIR WORK_DIR
# Trains a tiny --text-cond run on the toy shapes, edits an image with prompts (img2img with
# two prompts under classifier-free guidance, invert with one), measures bits/dim conditioned
# on the test split's generated captions, and checks the refusals (exit 2, one "error:" line,
# no output folder): ddpm-edit without --prompt, ddpm-distill and ddpm-control train with the
# text run as teacher or base.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" text_apps_test

# tiny_model (lib.sh) without its empty --attention-resolutions: the captions need one.
model=()
for ((i = 0; i < ${#tiny_model[@]}; ++i)); do
  if [ "${tiny_model[i]}" = --attention-resolutions ]; then i=$((i + 1)); else model+=("${tiny_model[i]}"); fi
done
run="$work/run"
"$bin/ddpm-train" "${model[@]}" --attention-resolutions 8 --save-every 2 --diffusion-steps 40 --sample-steps 4 --steps 2 --text-cond \
  --text-width 8 --text-layers 1 --text-heads 2 --context-length 8 --out "$run" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training"
# One 16x16 guide image: the first sample ddpm-sample draws from the run.
"$bin/ddpm-sample" --checkpoint "$run" --num-samples 1 --sampler ddim --sampling-steps 2 --device cpu \
  --prompt "disc" --out "$work/guide" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling a guide image"
guide=$(ls "$work"/guide/images/*.png | head -1)

edit=(--checkpoint "$run" --images "$guide" --sampling-steps 4 --device cpu)
"$bin/ddpm-edit" img2img "${edit[@]}" --prompt "a light square" --prompt "triangle" --num-samples 2 \
  --guidance-scale 2 --negative-prompt "dark" --out "$work/i2i" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "img2img with prompts"
"$bin/ddpm-edit" invert "${edit[@]}" --prompt "disc" --out "$work/inv" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "invert with a prompt"
python3 - "$work/i2i/edit_info.json" "$work/inv/edit_info.json" <<'PY' || fail "edit_info.json's prompts"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["prompts"] == ["a light square", "triangle"] and a["negative_prompt"] == "dark", a
assert b["prompts"] == ["disc"], b
PY

"$bin/ddpm-eval" bpd --checkpoint "$run" --data toy --limit 2 --batch-size 2 --device cpu \
  >"$work/out.txt" 2>"$work/err.txt" || fail "ddpm-eval bpd of a text run"
grep -q "conditioned on each image's caption" "$work/out.txt" || fail "bpd does not say it used the captions"
grep -q '^bits/dim ' "$work/out.txt" || fail "bpd printed no bits/dim"

refused "is text-conditioned: give --prompt" "$bin/ddpm-edit" img2img "${edit[@]}" --out "$work/no"
refused "ddpm-distill does not distil text models" "$bin/ddpm-distill" --teacher "$run" --teacher-steps 4 \
  --steps-per-round 2 --batch-size 2 --device cpu --out "$work/no"
refused "does not pass prompts to its base" "$bin/ddpm-control" train --base "$run" --steps 1 --device cpu \
  --out "$work/no"
[ ! -e "$work/no" ] || fail "a refused command left an output folder"
echo "text_apps_test: passed"
