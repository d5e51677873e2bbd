#!/usr/bin/env bash
# Fine-tuning end to end (ctest `cli.finetune`): usage
#   finetune.sh BIN_DIR WORK_DIR
# Trains a tiny class-conditional run, fine-tunes it with ddpm-train --init-from on other toy
# images (another --seed draws them), checks config.json's "init_from" record (source, EMA
# weights, and a SHA-256 equal to sha256sum's), resumes the fine-tune, samples it, and
# fine-tunes from the base's diffusers export too (one set of weights: --init-weights is
# refused there). Refusals (exit 2, one "error:" line, no --out folder left): an architecture
# flag, a diffusion flag, an image-size mismatch, a missing SRC, --lora-rank without SRC.
# LoRA (--lora-rank): adapters-only checkpoints, resume, sampling base + adapters, post-hoc EMA
# export of a LoRA run (adapters only, sampled as base + adapters), the merged
# export sampling alike, and a changed base refused.
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" finetune_test

base="$work/base" ft="$work/ft"
"$bin/ddpm-train" "${tiny_model[@]}" --class-cond --diffusion-steps 60 --sample-steps 3 --num-samples 4 \
  --steps 3 --save-every 3 --out "$base" >"$work/out.txt" 2>"$work/err.txt" || fail "training the base"

# Data, optimiser and run flags only: the rest comes from the base.
ft_flags=(--data toy --toy-count 8 --seed 7 --preset none --batch-size 4 --lr 1e-3 --sample-every 0
          --sample-steps 3 --num-samples 4 --log-every 1 --device cpu)
"$bin/ddpm-train" --init-from "$base" "${ft_flags[@]}" --steps 2 --save-every 2 --out "$ft" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "fine-tuning"
python3 - "$base" "$ft" <<'EOF' || fail "config.json of the fine-tune"
import json, os, sys
base, ft = sys.argv[1], sys.argv[2]
b, f = json.load(open(base + "/config.json")), json.load(open(ft + "/config.json"))
rec = f["init_from"]
assert rec["source"] == os.path.abspath(base), rec
assert rec["weights"] == "ema" and rec["kind"] == "run folder", rec
assert rec["files"][0]["path"] == os.path.abspath(base + "/checkpoints/step_3/ema.safetensors"), rec
assert f["model"] == b["model"], "the architecture is not the base's"
for k in ("diffusion_steps", "noise_schedule", "predict", "learn_sigma"):
    assert f["diffusion"][k] == b["diffusion"][k], k
assert f["model"]["num_classes"] > 0
EOF
digest=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['init_from']['files'][0]['sha256'])" "$ft/config.json")
[ "$digest" = "$(sha256sum "$base/checkpoints/step_3/ema.safetensors" | cut -d' ' -f1)" ] ||
  fail "the recorded SHA-256 is not sha256sum's"

# Resume like any run (the base is not opened again: move it away meanwhile).
mv "$base" "$work/base.moved"
"$bin/ddpm-train" "${ft_flags[@]}" --steps 4 --save-every 2 --out "$ft" --resume latest \
  >"$work/out.txt" 2>"$work/err.txt" || fail "resuming the fine-tune"
grep -q "resumed from .*step_2 at step 2" "$work/err.txt" || fail "the resume did not continue from step 2"
[ -d "$ft/checkpoints/step_4" ] || fail "no checkpoint at step 4 after the resume"
mv "$work/base.moved" "$base"
"$bin/ddpm-sample" --checkpoint "$ft" --num-samples 2 --sampler ddim --sampling-steps 3 --device cpu \
  --out "$work/samples" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the fine-tune"
[ -s "$work/samples/samples.npz" ] || [ -n "$(ls "$work/samples"/*.png 2>/dev/null)" ] || fail "no samples written"

# From a diffusers folder (the base exported), with the raw weights of the checkpoint too.
"$bin/ddpm-export" --checkpoint "$base" --out "$work/diffusers" --device cpu >"$work/out.txt" 2>"$work/err.txt" ||
  fail "exporting the base"
"$bin/ddpm-train" --init-from "$work/diffusers" "${ft_flags[@]}" --steps 1 --out "$work/ft_diffusers" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "fine-tuning from a diffusers folder"
grep -q '"kind": "diffusers folder"' "$work/ft_diffusers/config.json" || fail "the diffusers source is not recorded"
"$bin/ddpm-train" --init-from "$base" --init-weights raw "${ft_flags[@]}" --steps 1 --out "$work/ft_raw" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "fine-tuning from the raw weights"
grep -q '"weights": "raw"' "$work/ft_raw/config.json" || fail "--init-weights raw is not recorded"

# LoRA: adapters on the attention projections (here the middle block's) of a frozen base.
lbase="$work/lora_base" lora="$work/lora"
"$bin/ddpm-train" "${tiny_model[@]}" --diffusion-steps 60 --sample-steps 3 --num-samples 4 \
  --steps 2 --save-every 2 --out "$lbase" >"$work/out.txt" 2>"$work/err.txt" || fail "training the LoRA base"
"$bin/ddpm-train" --init-from "$lbase" --lora-rank 2 --lora-alpha 4 "${ft_flags[@]}" --steps 2 --save-every 2 \
  --out "$lora" >"$work/out.txt" 2>"$work/err.txt" || fail "training LoRA adapters"
python3 - "$lora/checkpoints/step_2" "$lbase/checkpoints/step_2" <<'PY' || fail "the LoRA checkpoint"
import json, os, struct, sys
def names(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return [k for k in json.loads(f.read(n)) if k != "__metadata__"]
ck, base = sys.argv[1], sys.argv[2]
for f in ("model.safetensors", "ema.safetensors"):
    assert names(ck + "/" + f) and all(".lora_A." in k or ".lora_B." in k for k in names(ck + "/" + f)), f
assert os.path.getsize(ck + "/ema.safetensors") < os.path.getsize(base + "/ema.safetensors") / 4
PY
"$bin/ddpm-train" --lora-rank 2 --lora-alpha 4 "${ft_flags[@]}" --steps 3 --save-every 3 --out "$lora" --resume latest \
  >"$work/out.txt" 2>"$work/err.txt" || fail "resuming the LoRA run"
"$bin/ddpm-sample" --checkpoint "$lora" --num-samples 2 --sampler ddim --sampling-steps 3 --device cpu \
  --out "$work/lora_samples" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the LoRA run (base + adapters)"
"$bin/ddpm-export" --checkpoint "$lora" --out "$work/lora_merged" --device cpu >"$work/out.txt" 2>"$work/err.txt" ||
  fail "exporting the merged LoRA model"
"$bin/ddpm-sample" --checkpoint "$work/lora_merged" --num-samples 2 --sampler ddim --sampling-steps 3 --device cpu \
  --out "$work/merged_samples" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the merged export"
python3 - "$work/lora_samples/samples.npz" "$work/merged_samples/samples.npz" <<'PY' || fail "merged samples differ"
import sys, zipfile
# Same seed, the same model up to the float rounding of W + s B A: the 8-bit samples agree
# almost everywhere.
xa, xb = (zipfile.ZipFile(p).read(sorted(n for n in zipfile.ZipFile(p).namelist() if n.endswith(".npy"))[0])
          for p in sys.argv[1:3])
assert len(xa) == len(xb)
diff = sum(1 for i, j in zip(xa, xb) if i != j)
assert diff <= len(xa) // 100, diff
PY
# Post-hoc EMA of a LoRA run: the snapshots hold the adapters, so the reconstructed profile is
# an adapters-only folder with the run's "lora" and "init_from" record, which opens as base +
# adapters like the run itself.
"$bin/ddpm-train" --init-from "$lbase" --lora-rank 2 "${ft_flags[@]}" --steps 4 --save-every 4 \
  --posthoc-ema 0.05,0.10 --posthoc-snapshot-every 2 --out "$work/lora_ph" >"$work/out.txt" 2>"$work/err.txt" ||
  fail "a LoRA run with --posthoc-ema"
"$bin/ddpm-export" --checkpoint "$work/lora_ph" --posthoc-ema 0.08 --out "$work/lora_ph_export" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "post-hoc EMA export of the LoRA run"
grep -q '"lora"' "$work/lora_ph_export/config.json" || fail "the post-hoc export lost the LoRA record"
python3 - "$work/lora_ph_export/ema.safetensors" <<'PY' || fail "the post-hoc export is not adapters only"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    names = [k for k in json.loads(f.read(n)) if k != "__metadata__"]
assert names and all(".lora_A." in k or ".lora_B." in k for k in names), names[:3]
PY
"$bin/ddpm-sample" --checkpoint "$work/lora_ph_export" --num-samples 2 --sampling-steps 3 --device cpu \
  --out "$work/lora_ph_samples" >"$work/out.txt" 2>"$work/err.txt" || fail "sampling the post-hoc LoRA export"
test -f "$work/lora_ph_samples/samples.npz" || fail "no samples from the post-hoc LoRA export"

# A changed base is refused: the adapters were trained for the recorded weights.
cp "$lbase/checkpoints/step_2/model.safetensors" "$lbase/checkpoints/step_2/ema.safetensors"
rc=0
"$bin/ddpm-sample" --checkpoint "$lora" --num-samples 2 --device cpu --out "$work/stale" >"$work/out.txt" \
  2>"$work/err.txt" || rc=$?
[ "$rc" != 0 ] && grep -q "has changed since the run started" "$work/err.txt" || fail "a changed LoRA base was not refused"
[ ! -e "$work/stale" ] || fail "a refused sampling left $work/stale behind"

# Refusals: exit 2, one error line, no output folder.
refuse() {  # refuse PATTERN FLAGS...
  local pattern=$1
  shift
  refused "$pattern" "$bin/ddpm-train" "${ft_flags[@]}" --steps 1 --out "$work/refused" "$@"
  [ ! -e "$work/refused" ] || fail "a refused fine-tune left $work/refused behind"
}
refuse "--num-channels does not apply with --init-from" --init-from "$base" --num-channels 16
refuse "--noise-schedule does not apply with --init-from" --init-from "$base" --noise-schedule cosine
refuse "has 32x32x1 images, but the --init-from model takes 16x16x1" --init-from "$base" --pad-to-32
refuse "--init-from $work/missing does not exist" --init-from "$work/missing"
refuse "--init-weights ema applies to our run and checkpoint folders" --init-from "$work/diffusers" --init-weights ema
refuse "--init-weights raw needs --init-from" --init-weights raw
refuse "--lora-rank 2 needs --init-from" --lora-rank 2
echo "finetune_test: OK"
