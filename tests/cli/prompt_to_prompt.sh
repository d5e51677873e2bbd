#!/usr/bin/env bash
# ddpm-edit prompt2prompt (ctest `cli.prompt_to_prompt`): usage
#   prompt_to_prompt.sh BIN_DIR WORK_DIR
# Trains a tiny --text-cond run on the toy shapes (2 steps), draws 2 Prompt-to-Prompt pairs
# with DDIM under classifier-free guidance and a re-weighted word (raw weights: the EMA of two
# steps still has a zero proj_out, so prompts would not reach the pixels), then with DDPM, and checks
# the files and edit_info.json, then a refinement (an added word), then a latent text run
# (--autoencoder: the pair decoded to pixels); then the refusals (exit 2,
# one "error:" line, no output folder): an unconditional run, different token counts that do
# not align, a fraction outside [0, 1], an unknown re-weighted word, --images (not a flag of
# prompt2prompt).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" prompt_to_prompt

# tiny_model (lib.sh) without its empty --attention-resolutions: the captions need one.
model=()
for ((i = 0; i < ${#tiny_model[@]}; ++i)); do
  if [ "${tiny_model[i]}" = --attention-resolutions ]; then i=$((i + 1)); else model+=("${tiny_model[i]}"); fi
done
run="$work/run"
"$bin/ddpm-train" "${model[@]}" --attention-resolutions 8 --save-every 2 --diffusion-steps 40 --sample-steps 4 --steps 2 \
  --text-cond --text-width 8 --text-layers 1 --text-heads 2 --context-length 8 --out "$run" >"$work/out.txt" \
  2>"$work/err.txt" || fail "training"

p2p=(--checkpoint "$run" --prompt "a light square" --edit-prompt "a dark square" --sampling-steps 4 --device cpu)
"$bin/ddpm-edit" prompt2prompt "${p2p[@]}" --num-samples 2 --sampler ddim --guidance-scale 2 --reweight dark=2 --no-ema \
  --seed 3 --out "$work/ddim" >"$work/out.txt" 2>"$work/err.txt" || fail "prompt2prompt with ddim"
grep -q "mean |edit - source|" "$work/out.txt" || fail "no difference printed"
for f in grid.png comparison.png samples.npz edit_info.json images/000000.png images/000003.png; do
  [ -e "$work/ddim/$f" ] || fail "ddim: $f missing"
done
"$bin/ddpm-edit" prompt2prompt "${p2p[@]}" --num-samples 1 --sampler ddpm --cross-replace 1 --self-replace 0.5 \
  --self-replace-max-tokens 0 \
  --out "$work/ddpm" >"$work/out.txt" 2>"$work/err.txt" || fail "prompt2prompt with ddpm"
# Refinement: the edit adds a word ("big"); the other words keep the source's maps.
"$bin/ddpm-edit" prompt2prompt "${p2p[@]/a dark square/a light big square}" --num-samples 1 \
  --out "$work/refine" >"$work/out.txt" 2>"$work/err.txt" || fail "prompt2prompt refinement"
python3 - "$work/ddim/edit_info.json" "$work/ddpm/edit_info.json" "$work/ddim/samples.npz" \
  "$work/refine/edit_info.json" <<'PY' ||
import json, sys, zipfile
a, b, r = (json.load(open(p)) for p in sys.argv[1:3] + sys.argv[4:5])
assert a["cross_edit"] == "word swap" and a["token_map"] is None, a
assert r["cross_edit"] == "refinement" and r["token_map"] == [0, 1, 2, -1, 3, 4], r
assert a["command"] == "prompt2prompt" and a["prompts"] == ["a light square"], a
assert a["edit_prompt"] == "a dark square" and a["edit_tokens"] == ["a", "dark", "square"], a
assert a["cross_replace"] == 0.8 and a["self_replace"] == 0.4, a
assert a["cross_replace_steps"] == 3 and a["self_replace_steps"] == 1, a  # floor(0.8 * 4), floor(0.4 * 4)
assert a["reweight"] == {"word": "dark", "token": 2, "scale": 2.0}, a["reweight"]
assert a["sampler"] == "ddim" and a["guidance_scale"] == 2 and a["mean_abs_difference"] > 0, a
assert b["sampler"] == "ddpm" and b["cross_replace_steps"] == 4 and b["self_replace_steps"] == 2, b
assert b["reweight"] is None, b
assert a["self_replace_max_tokens"] == 64 and b["self_replace_max_tokens"] == 0, (a, b)
names = zipfile.ZipFile(sys.argv[3]).namelist()
assert "arr_0.npy" in names, names
PY
  fail "edit_info.json"

# A latent text run: a tiny autoencoder (16x16x1 -> 8x8x3), a text run on its latents, and
# one pair sampled as latents and decoded to 16x16x1 pixels.
"$bin/ddpm-autoencoder" train --data toy --steps 2 --batch-size 8 --base-channels 8 --channel-mult 1,2 \
  --norm-groups 4 --z-channels 3 --scale-images 16 --device cpu --out "$work/ae" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "ddpm-autoencoder train"
"$bin/ddpm-train" --autoencoder "$work/ae" "${model[@]}" --attention-resolutions 8 --save-every 2 --diffusion-steps 40 --sample-steps 4 \
  --steps 2 --text-cond --text-width 8 --text-layers 1 --text-heads 2 --context-length 8 --out "$work/lrun" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "latent text training"
"$bin/ddpm-edit" prompt2prompt "${p2p[@]/$run/$work/lrun}" --num-samples 1 --no-ema --out "$work/latent" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "prompt2prompt on a latent run"
grep -q "latent diffusion" "$work/out.txt" || fail "the latent run was not recognised"
grep -aq "'descr': '|u1'.*'shape': (2, 16, 16, 1)" "$work/latent/samples.npz" ||
  fail "latent prompt2prompt images are not decoded to uint8 [2, 16, 16, 1]"
grep -q '"autoencoder": "' "$work/latent/edit_info.json" || fail "edit_info.json does not name the autoencoder"

"$bin/ddpm-train" "${tiny_model[@]}" --save-every 1 --diffusion-steps 40 --sample-steps 4 --steps 1 \
  --out "$work/plain" >"$work/out.txt" 2>"$work/err.txt" || fail "training an unconditional run"
refused "is not text-conditioned" "$bin/ddpm-edit" prompt2prompt --checkpoint "$work/plain" --prompt "a" \
  --edit-prompt "b" --device cpu --out "$work/no"
refused "nor a refinement" "$bin/ddpm-edit" prompt2prompt "${p2p[@]/a dark square/a dark big square}" --out "$work/no"
refused "cross-replace must lie in \[0, 1\]" "$bin/ddpm-edit" prompt2prompt "${p2p[@]}" --cross-replace 1.2 --out "$work/no"
refused "'disc' is not a word of --edit-prompt" "$bin/ddpm-edit" prompt2prompt "${p2p[@]}" --reweight disc=2 \
  --out "$work/no"
refused "unexpected argument" "$bin/ddpm-edit" prompt2prompt "${p2p[@]}" --images x.png --out "$work/no"
refused "edit-prompt" "$bin/ddpm-edit" prompt2prompt --checkpoint "$run" --prompt "a" --device cpu --out "$work/no"
[ ! -e "$work/no" ] || fail "a refused command left an output folder"
echo "prompt_to_prompt: passed"
