#!/usr/bin/env bash
# ddpm-toy end to end (ctest `cli.toy`): usage
#   toy_test.sh BIN_DIR WORK_DIR
# Draws the forward process of the moons, trains a tiny model on them for a few hundred steps,
# samples it with DDIM and Heun (checking the files, the npz's arrays, the PNGs' sizes and
# the printed score against its floor), and checks the refusals (exit 2, one "error:" line):
# an existing --out without --overwrite, an unknown dataset, sampler or subcommand, a bad
# --diffusion-steps, more sampling steps than T, and a checkpoint that is not a toy model.
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
[ ! -e "$work/x" ] || fail "a refused command left $work/x behind"
# A folder that is not a toy model: an I/O error, exit 1.
rc=0
"$toy" sample --checkpoint "$work/fwd" --out "$work/x" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "sampling a folder without config.json: exit $rc, expected 1"
[ ! -e "$work/x" ] || fail "a failed sample left $work/x behind"
echo "toy_test: OK"
