#!/usr/bin/env bash
# ddpm-toy end to end (ctest `cli.toy`): usage
#   toy_test.sh BIN_DIR WORK_DIR
# Draws the forward process of the moons, trains a tiny model on them for a few hundred steps,
# samples it with DDIM and Heun (checking the files, the npz's arrays, the PNGs' sizes and
# the printed score against its floor), and checks the refusals (exit 2, one "error:" line):
# an existing --out without --overwrite, an unknown dataset, sampler or subcommand, a bad
# --diffusion-steps, more sampling steps than T, and a checkpoint that is not a toy model.
# Then guidance: a class-conditional model (train --class-cond), sampled per class and for
# every class with classifier-free guidance, the guidance strip, and the refusals of
# conditioning a model cannot take. Then classifier guidance: a noisy classifier for the
# unconditional model, a guided sample and a classifier-scale strip, and its refusals. Then
# autoguidance by a shorter-trained guide and the guidance interval, and their refusals.
# Then progressive distillation, and post-hoc EMA (train --posthoc-ema, posthoc).
set -euo pipefail
bin=$1 work=$2
source "$(dirname "$0")/lib.sh" toy_test
toy="$bin/ddpm-toy"

"$toy" forward --data moons --out "$work/fwd" >"$work/out.txt" 2>"$work/err.txt" || fail "forward"
[ -s "$work/fwd/forward.png" ] || fail "forward wrote no forward.png"
grep -q 'alpha_bar_t' "$work/out.txt" || fail "forward printed no alpha_bar_t table"

"$toy" train --data moons --steps 300 --hidden 32 --diffusion-steps 100 --log-every 50 --out "$work/run" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "train"
for f in config.json model.safetensors ema.safetensors loss.png; do
  [ -s "$work/run/$f" ] || fail "train wrote no $f"
done

for sampler in ddim heun; do
  "$toy" sample --checkpoint "$work/run" --sampler $sampler --sampling-steps 10 --num-samples 300 \
    --out "$work/$sampler" >"$work/out.txt" 2>"$work/err.txt" || fail "sample with $sampler"
  for f in samples.npz scatter.png trajectory.png; do
    [ -s "$work/$sampler/$f" ] || fail "sample ($sampler) wrote no $f"
  done
  python3 - "$work/$sampler" "$work/out.txt" <<'PY' || fail "sample ($sampler): bad outputs"
import re, struct, sys, zipfile
folder, out = sys.argv[1], open(sys.argv[2]).read()
with zipfile.ZipFile(folder + "/samples.npz") as z:
    names = sorted(z.namelist())
    assert names == ["data.npy", "samples.npy"], names
    header = z.read("samples.npy")[:128].decode("latin1")
    assert "'<f4'" in header and "(300, 2)" in header, header
def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])  # width, height
w, h = png_size(folder + "/trajectory.png")
assert w > 3 * h, (w, h)  # a strip of panels
m = re.search(r"energy distance to fresh data: ([0-9.]+)  \(data vs data floor ([0-9.]+)\)", out)
assert m, out
score, floor = float(m.group(1)), float(m.group(2))
assert 0 < floor < score < 1, (score, floor)
PY
done

refused "exists; pass --overwrite" "$toy" sample --checkpoint "$work/run" --out "$work/ddim"
refused "exists; pass --overwrite" "$toy" train --data moons --steps 1 --out "$work/run"
refused "the choices are" "$toy" train --data spiral --out "$work/x"
refused "--diffusion-steps must be in" "$toy" train --diffusion-steps 10 --out "$work/x"
refused "--sampler" "$toy" sample --checkpoint "$work/run" --sampler lms --out "$work/x"
refused "--sampling-steps must be in" "$toy" sample --checkpoint "$work/run" --sampling-steps 101 --out "$work/x"
refused "unknown subcommand" "$toy" trian

# Guidance: a class-conditional model of the moons (2 classes).
"$toy" train --data moons --class-cond --class-dropout 0.2 --steps 300 --hidden 32 --diffusion-steps 100 \
  --log-every 100 --out "$work/cond" >"$work/out.txt" 2>"$work/err.txt" || fail "train --class-cond"
grep -q '"num_classes": 2' "$work/cond/config.json" || fail "train --class-cond: no num_classes 2 in config.json"
grep -q '"class_dropout": 0.2' "$work/cond/config.json" || fail "train --class-cond: no class_dropout in config.json"
grep -q '"num_classes": 0' "$work/run/config.json" || fail "an unconditional config.json lacks num_classes 0"
"$toy" sample --checkpoint "$work/cond" --class all --guidance-scale 2 --sampler ddim --sampling-steps 10 \
  --num-samples 200 --out "$work/cond_all" >"$work/out.txt" 2>"$work/err.txt" || fail "sample --class all"
python3 - "$work/cond_all" "$work/out.txt" <<'PY' || fail "sample --class all: bad outputs"
import re, sys, zipfile
folder, out = sys.argv[1], open(sys.argv[2]).read()
with zipfile.ZipFile(folder + "/samples.npz") as z:
    assert sorted(z.namelist()) == ["data.npy", "labels.npy", "samples.npy"], z.namelist()
    header = z.read("labels.npy")[:128].decode("latin1")
    assert "'<i8'" in header and "(200,)" in header, header
rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)$", out, re.M)
assert [r[:2] for r in rows] == [("0", "100"), ("1", "100")], out
assert all(0 <= float(r[2]) <= 1 for r in rows), out
PY
"$toy" sample --checkpoint "$work/cond" --class 1 --sampler ddim --sampling-steps 10 --num-samples 100 \
  --out "$work/cond_one" >"$work/out.txt" 2>"$work/err.txt" || fail "sample --class 1"
grep -q 'class 1, guidance scale 1' "$work/out.txt" || fail "sample --class 1 did not say what it drew"
"$toy" guidance --checkpoint "$work/cond" --class 0 --scales 0,1,3 --sampling-steps 10 --num-samples 200 \
  --out "$work/guide" >"$work/out.txt" 2>"$work/err.txt" || fail "guidance"
python3 - "$work/guide" <<'PY' || fail "guidance: bad outputs"
import struct, sys
folder = sys.argv[1]
with open(folder + "/guidance.png", "rb") as f:
    w, h = struct.unpack(">II", f.read(24)[16:24])
assert w == 3 * 270 and h == 300, (w, h)  # one panel per scale
lines = open(folder + "/guidance.csv").read().split()
assert lines[0] == "scale,accuracy,spread,energy,floor" and [l.split(",")[0] for l in lines[1:]] == ["0", "1", "3"], lines
PY
refused "needs a class-conditional model" "$toy" sample --checkpoint "$work/run" --class 0 --out "$work/x"
refused "without --class-cond" "$toy" sample --checkpoint "$work/run" --guidance-scale 2 --out "$work/x"
refused "is out of range" "$toy" sample --checkpoint "$work/cond" --class 2 --out "$work/x"
refused "needs --class" "$toy" sample --checkpoint "$work/cond" --guidance-scale 2 --out "$work/x"
refused "needs --class-cond" "$toy" train --data moons --class-dropout 0.2 --out "$work/x"
refused "--scales must be" "$toy" guidance --checkpoint "$work/cond" --class 0 --scales 1,x --out "$work/x"
refused "needs a class-conditional model" "$toy" guidance --checkpoint "$work/run" --class 0 --out "$work/x"

# Classifier guidance of the unconditional moons model.
"$toy" classifier --checkpoint "$work/run" --steps 200 --hidden 16 --out "$work/cls" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "classifier"
for f in classifier.json classifier.safetensors; do [ -s "$work/cls/$f" ] || fail "classifier wrote no $f"; done
grep -q 'accuracy on 2000 fresh noisy points:  t=0 ' "$work/out.txt" || fail "classifier printed no noisy accuracy"
"$toy" sample --checkpoint "$work/run" --classifier "$work/cls" --classifier-scale 2 --class 0 --sampler ddim \
  --sampling-steps 10 --num-samples 100 --out "$work/cls_sample" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "sample --classifier"
grep -q 'classifier guidance scale 2' "$work/out.txt" || fail "sample --classifier did not say what it drew"
"$toy" guidance --checkpoint "$work/run" --classifier "$work/cls" --class 1 --scales 0,2 --sampling-steps 10 \
  --num-samples 100 --out "$work/cls_guide" >"$work/out.txt" 2>"$work/err.txt" || fail "guidance --classifier"
[ "$(wc -l <"$work/cls_guide/guidance.csv")" = 3 ] || fail "guidance --classifier: not one csv row per scale"
refused "needs --classifier" "$toy" sample --checkpoint "$work/run" --classifier-scale 2 --class 0 --out "$work/x"
refused "needs --class" "$toy" sample --checkpoint "$work/run" --classifier "$work/cls" --out "$work/x"
refused "ddpm and ddim" "$toy" sample --checkpoint "$work/run" --classifier "$work/cls" --class 0 --sampler heun \
  --out "$work/x"

# Autoguidance: the moons model guided by the same toy trained for fewer steps; the guidance
# interval on the guidance strip; their refusals.
"$toy" train --data moons --steps 60 --hidden 32 --diffusion-steps 100 --log-every 30 --out "$work/weak" \
  >"$work/out.txt" 2>"$work/err.txt" || fail "train the guide"
"$toy" sample --checkpoint "$work/run" --autoguide "$work/weak" --guidance-scale 2 --guidance-interval 0.1,20 \
  --sampler ddim --sampling-steps 10 --num-samples 100 --out "$work/autoguided" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "sample --autoguide"
grep -q "autoguided by $work/weak with w = 2, guidance only at sigma in \[0.1,20\]" "$work/out.txt" \
  || fail "sample --autoguide did not say what it drew"
"$toy" guidance --checkpoint "$work/cond" --class 0 --scales 1,3 --guidance-interval 0.3,5 --sampling-steps 10 \
  --num-samples 100 --out "$work/banded" >"$work/out.txt" 2>"$work/err.txt" || fail "guidance --guidance-interval"
grep -q 'guidance only at sigma in \[0.3,5\]' "$work/out.txt" || fail "guidance --guidance-interval did not say so"
refused "classes (0 = unconditional)" "$toy" sample --checkpoint "$work/run" --autoguide "$work/cond" \
  --guidance-scale 2 --out "$work/x"
refused "must be below HI" "$toy" sample --checkpoint "$work/cond" --class 0 --guidance-scale 2 \
  --guidance-interval 5,1 --out "$work/x"
"$toy" guidance --checkpoint "$work/run" --classifier "$work/cls" --class 1 --scales 0,2 --guidance-interval 0.3,5 \
  --sampling-steps 10 --num-samples 100 --out "$work/cls_banded" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "guidance --classifier --guidance-interval"
grep -q 'guidance only at sigma in \[0.3,5\]' "$work/out.txt" || fail "guidance --classifier --guidance-interval did not say so"
refused "needs an unconditional model" "$toy" guidance --checkpoint "$work/cond" --classifier "$work/cls" --class 1 \
  --scales 0,2 --guidance-interval 0.3,5 --out "$work/x"
refused "needs --guidance-scale != 1" "$toy" sample --checkpoint "$work/cond" --class 0 --guidance-interval 0.3,5 \
  --out "$work/x"
[ ! -e "$work/x" ] || fail "a refused command left $work/x behind"
# A folder that is not a toy model: an I/O error, exit 1.
rc=0
"$toy" sample --checkpoint "$work/fwd" --out "$work/x" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "sampling a folder without config.json: exit $rc, expected 1"
[ ! -e "$work/x" ] || fail "a failed sample left $work/x behind"
echo "toy_test: OK"

# Progressive distillation of the unconditional moons model: two rounds 9 -> 5 -> 3 DDIM steps,
# a round folder that `sample` reads, and distill.csv's student score reproduced by `sample`
# with the same seed and sample count (the two commands score with the same streams).
"$toy" distill --teacher "$work/run" --rounds 2 --teacher-steps 9 --steps 30 --batch-size 64 --eval-samples 200 \
  --out "$work/distill" >"$work/out.txt" 2>"$work/err.txt" || fail "distill"
for f in round1/config.json round1/ema.safetensors round2/config.json round2/ema.safetensors distill.csv; do
  [ -s "$work/distill/$f" ] || fail "distill wrote no $f"
done
[ "$(wc -l <"$work/distill/distill.csv")" = 3 ] || fail "distill.csv: not one row per round"
grep -q '"sampling_steps": 3' "$work/distill/round2/config.json" || fail "round2/config.json does not say 3 steps"
want=$(awk -F, 'NR == 3 { printf "%.5f", $7 }' "$work/distill/distill.csv")
"$toy" sample --checkpoint "$work/distill/round2" --sampler ddim --sampling-steps 3 --num-samples 200 \
  --out "$work/distill_sample" >"$work/out.txt" 2>"$work/err.txt" || fail "sample of a distilled round"
grep -q "energy distance to fresh data: $want " "$work/out.txt" || fail "sample does not reproduce distill.csv's $want"
refused "cannot be halved 2 times" "$toy" distill --teacher "$work/run" --rounds 2 --teacher-steps 10 --out "$work/x"
refused "is class-conditional" "$toy" distill --teacher "$work/cond" --rounds 1 --teacher-steps 9 --out "$work/x"
refused "exists; pass --overwrite" "$toy" distill --teacher "$work/run" --rounds 1 --teacher-steps 9 \
  --out "$work/distill"
[ ! -e "$work/x" ] || fail "a refused distill left $work/x behind"
rc=0
"$toy" distill --teacher "$work/fwd" --rounds 1 --teacher-steps 9 --out "$work/x" >"$work/out.txt" 2>"$work/err.txt" \
  || rc=$?
[ "$rc" = 1 ] || fail "distilling a folder without config.json: exit $rc, expected 1"
[ ! -e "$work/x" ] || fail "a failed distill left $work/x behind"
echo "toy_test: distill OK"

# Post-hoc EMA: a tiny run tracking two power EMAs with a snapshot every 20 of 60 steps, then
# `posthoc` over three widths: posthoc.csv has one row per width plus the raw and ema rows, a
# tracked width reconstructs exactly (residual ~0), and the refusals: a width out of range, a
# snapshot interval without --posthoc-ema, and a folder without snapshots (I/O error, exit 1).
"$toy" train --data moons --steps 60 --hidden 16 --layers 1 --diffusion-steps 100 --log-every 30 \
  --posthoc-ema 0.05,0.10 --posthoc-snapshot-every 20 --out "$work/phema" >"$work/out.txt" 2>"$work/err.txt" \
  || fail "train --posthoc-ema"
for s in 20 40 60; do [ -s "$work/phema/posthoc/step_$s.safetensors" ] || fail "train wrote no posthoc/step_$s"; done
grep -q '"posthoc_ema"' "$work/phema/config.json" || fail "config.json does not record --posthoc-ema"
"$toy" posthoc --checkpoint "$work/phema" --sigma-rels 0.02,0.05,0.1 --sampler ddim --sampling-steps 5 \
  --num-samples 100 --out "$work/ph" >"$work/out.txt" 2>"$work/err.txt" || fail "posthoc"
[ -s "$work/ph/posthoc.png" ] || fail "posthoc wrote no posthoc.png"
[ "$(wc -l <"$work/ph/posthoc.csv")" = 6 ] || fail "posthoc.csv: not a header and 3 + 2 rows"
awk -F, 'NR == 5 && $1 == "posthoc" && $2 == 0.05 && $3 < 1e-6 { ok = 1 } END { exit !ok }' "$work/ph/posthoc.csv" \
  || fail "posthoc.csv: the tracked width 0.05 is not reconstructed exactly"
[ "$(grep -c '<- best' "$work/out.txt")" = 1 ] || fail "posthoc did not mark one best row"
refused "--sigma-rels" "$toy" posthoc --checkpoint "$work/phema" --sigma-rels 0.05,0.5 --out "$work/x"
refused "needs --posthoc-ema" "$toy" train --steps 1 --posthoc-snapshot-every 5 --out "$work/x"
refused "--posthoc-ema" "$toy" train --steps 1 --posthoc-ema 0 --out "$work/x"
rc=0
"$toy" posthoc --checkpoint "$work/run" --out "$work/x" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "posthoc of a folder without snapshots: exit $rc, expected 1"
grep -q 'ddpm-toy train --posthoc-ema' "$work/err.txt" || fail "posthoc without snapshots does not say how to get them"
[ ! -e "$work/x" ] || fail "a refused posthoc left $work/x behind"
echo "toy_test: posthoc OK"

# posthoc --posthoc-step: the reconstructions at an earlier snapshot (step 40 of 20, 40, 60),
# the tracked width exact there; a step past the last snapshot is refused (exit 2).
"$toy" posthoc --checkpoint "$work/phema" --sigma-rels 0.05 --posthoc-step 40 --sampler ddim --sampling-steps 3 \
  --num-samples 50 --out "$work/ph40" >"$work/out.txt" 2>"$work/err.txt" || fail "posthoc --posthoc-step 40"
grep -q "post-hoc EMA at step 40 " "$work/out.txt" || fail "posthoc --posthoc-step 40 did not reconstruct at step 40"
awk -F, 'NR == 4 && $1 == "posthoc" && $3 < 1e-6 { ok = 1 } END { exit !ok }' "$work/ph40/posthoc.csv" \
  || fail "posthoc.csv at step 40: the tracked width 0.05 is not reconstructed exactly"
refused "past the last post-hoc EMA snapshot (step 60)" "$toy" posthoc --checkpoint "$work/phema" --posthoc-step 61 \
  --out "$work/x"
[ ! -e "$work/x" ] || fail "a refused posthoc --posthoc-step left $work/x behind"
echo "toy_test: posthoc --posthoc-step OK"
