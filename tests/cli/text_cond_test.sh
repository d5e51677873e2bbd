#!/usr/bin/env bash
# Text conditioning end to end (ctest `cli.text_cond`): usage
#   text_cond_test.sh BIN_DIR WORK_DIR
# Trains a tiny --text-cond run on the toy shapes (captions generated from the class names
# and brightness), resumes it, samples it with two prompts under classifier-free guidance
# and with a negative prompt, exports it as a pipeline folder that samples the same pixels,
# and checks the refusals (exit 2, one "error:" line): no
# prompt, an over-long prompt, --class, --prompt for a model without text, --text-cond with
# --class-cond, a text-encoder flag (or --text-pooling) without --text-cond, and --text-cond
# without attention resolutions. --text-pooling adds the pooled caption (off by default).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" text_cond_test

# tiny_model (lib.sh) without its empty --attention-resolutions: the captions need one.
model=()
for ((i = 0; i < ${#tiny_model[@]}; ++i)); do
  if [ "${tiny_model[i]}" = --attention-resolutions ]; then i=$((i + 1)); else model+=("${tiny_model[i]}"); fi
done
tiny=("${model[@]}" --attention-resolutions 8 --save-every 2 --num-samples 4 --sample-steps 3
      --diffusion-steps 60 --text-cond --text-width 8 --text-layers 1 --text-heads 2 --context-length 8)
run="$work/run"
"$bin/ddpm-train" "${tiny[@]}" --steps 2 --out "$run" >"$work/out.txt" 2>"$work/err.txt" || fail "training"
grep -q 'distinct captions' "$work/err.txt" || fail "the log does not report the captions"
[ -f "$run/tokenizer.json" ] || fail "no tokenizer.json in the run folder"
grep -q '"text_encoder"' "$run/config.json" || fail "config.json has no text_encoder section"
# The cross-attention-only UNet by default (no context_pool_heads key); --text-pooling adds
# the pooled caption embedding with the --text-heads.
grep -q 'context_pool_heads' "$run/config.json" && fail "a default text run wrote context_pool_heads"
"$bin/ddpm-train" "${tiny[@]}" --text-pooling --steps 2 --out "$work/pool" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "training with --text-pooling"
grep -q '"context_pool_heads": *2' "$work/pool/config.json" || fail "--text-pooling wrote no context_pool_heads 2"
"$bin/ddpm-train" "${tiny[@]}" --steps 4 --out "$run" --resume latest >"$work/out.txt" 2>"$work/err.txt" ||
  fail "resume"

"$bin/ddpm-sample" --checkpoint "$run" --num-samples 4 --sampler ddim --sampling-steps 4 --device cpu \
  --prompt "a dark disc" --prompt "square" --guidance-scale 3 --out "$work/guided" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sampling with prompts"
grep -q 'text-conditioned: 2 prompt' "$work/out.txt" || fail "the log does not name the prompts"
grep -q 'warning: not in the model.s vocabulary' "$work/out.txt" && fail "a warning about known words"
python3 - "$work/guided/sample_info.json" <<'PY' || fail "sample_info.json's prompts"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["prompts"] == ["a dark disc", "square"] and j["negative_prompt"] == "", j
PY
"$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --sampler ddim --sampling-steps 4 --device cpu \
  --prompt "disk" --negative-prompt "dark" --guidance-scale 3 --out "$work/negative" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sampling with a negative prompt"
grep -q 'warning: not in the model.s vocabulary (read as <unk>): disk' "$work/out.txt" ||
  fail "no warning about the unknown word 'disk'"

# ddpm-export: a pipeline folder (unet/ UNet2DConditionModel, text_encoder/, tokenizer/) that
# samples the run's pixels for the same prompts and seed, and a probe with the context.
"$bin/ddpm-export" --checkpoint "$run" --out "$work/exported" --probe "$work/probe.safetensors" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "exporting the text run"
grep -q 'as a pipeline folder' "$work/out.txt" || fail "the export log does not say pipeline folder"
for f in unet/config.json unet/diffusion_pytorch_model.safetensors scheduler/scheduler_config.json \
  text_encoder/config.json text_encoder/model.safetensors tokenizer/tokenizer.json; do
  [ -f "$work/exported/$f" ] || fail "the export has no $f"
done
grep -q 'encoder_hidden_states' "$work/probe.safetensors" || fail "the probe has no encoder_hidden_states"
"$bin/ddpm-sample" --checkpoint "$work/exported" --num-samples 4 --sampler ddim --sampling-steps 4 --device cpu \
  --prompt "a dark disc" --prompt "square" --guidance-scale 3 --out "$work/guided_exported" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the exported folder"
cmp -s "$work/guided/samples.npz" "$work/guided_exported/samples.npz" ||
  fail "the exported folder samples other pixels than the run"
refused "pass --overwrite" "$bin/ddpm-export" --checkpoint "$run" --out "$work/exported"

sample=("$bin/ddpm-sample" --checkpoint "$run" --num-samples 2 --sampling-steps 4 --device cpu --out "$work/no")
refused "give what to draw with --prompt" "${sample[@]}"
refused "has 9 words" "${sample[@]}" --prompt "one two three four five six seven eight nine"
refused "class does not apply" "${sample[@]}" --prompt "disc" --class 1
plain="$work/plain"
"$bin/ddpm-train" "${tiny_model[@]}" --steps 1 --save-every 1 --out "$plain" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "training a model without text"
refused "need a text-conditioned model" "$bin/ddpm-sample" --checkpoint "$plain" --num-samples 2 --device cpu \
  --out "$work/no" --prompt "disc"
[ ! -e "$work/no" ] || fail "a refused sampling left an output folder"
refused "choose one" "$bin/ddpm-train" "${tiny[@]}" --steps 1 --class-cond --out "$work/both"
refused "add --text-cond" "$bin/ddpm-train" "${model[@]}" --attention-resolutions 8 --text-width 16 --steps 1 --out "$work/notext"
refused "--text-pooling sets up the text encoder" "$bin/ddpm-train" "${model[@]}" --attention-resolutions 8 --text-pooling \
  --steps 1 --out "$work/notext"
[ ! -e "$work/notext" ] || fail "a refused training left an output folder"
refused "attention-resolutions" "$bin/ddpm-train" "${tiny_model[@]}" --text-cond --steps 1 --out "$work/noattn"
echo "text_cond_test: passed"
