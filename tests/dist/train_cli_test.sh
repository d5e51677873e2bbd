#!/usr/bin/env bash
# ddpm-train under mpiexec (ctest `dist_train_cli`): usage
#   train_cli_test.sh DDPM_TRAIN WORK_DIR MPIEXEC [MPIEXEC FLAGS...]   (the flags start 2 ranks)
# Checks that two ranks write ONE run folder (rank 0's: one metrics row per log step, one
# "run folder" line, config.json with world_size 2, the checkpoints), that the log names the
# world size, that the ranks resume together, that an error on rank 0 alone ends every rank
# (exit 2, no hang), and that a --batch-size the world size does not divide is a usage error
# (exit 2, the message naming both numbers) that leaves nothing behind.
set -euo pipefail
bin=$1 work=$2
shift 2
mpi=("$@")
rm -rf "$work"
mkdir -p "$work"
fail() { echo "dist_train_cli: FAILED: $*" >&2; exit 1; }

tiny=(--data toy --toy-count 16 --preset none --num-channels 8 --channel-mult 1,2 --num-res-blocks 1
      --attention-resolutions "" --norm-groups 4 --dropout 0 --diffusion-steps 50 --lr 1e-3
      --save-every 2 --sample-every 0 --log-every 2 --num-samples 4 --sample-steps 5 --device cpu)

"${mpi[@]}" "$bin" "${tiny[@]}" --batch-size 4 --steps 4 --out "$work/run" >"$work/out.txt" 2>"$work/err.txt" ||
  { cat "$work/out.txt" "$work/err.txt"; fail "mpiexec ddpm-train exited with $?"; }
[ "$(ls "$work")" = "$(printf 'err.txt\nout.txt\nrun')" ] || fail "expected exactly one run folder, found: $(ls "$work")"
[ "$(grep -c '^run folder:' "$work/out.txt")" = 1 ] || fail "expected one 'run folder' line (rank 0 only)"
grep -q 'data parallel over 2 processes' "$work/err.txt" || fail "the log does not name the world size"
grep -Eq '"world_size": 2' "$work/run/config.json" || fail "config.json does not record world_size 2"
[ -d "$work/run/checkpoints/step_2" ] && [ -d "$work/run/checkpoints/step_4" ] || fail "missing checkpoints"
[ "$(wc -l <"$work/run/metrics.csv")" = 3 ] || fail "metrics.csv should hold a header and 2 rows (rank 0 alone)"

"${mpi[@]}" "$bin" "${tiny[@]}" --batch-size 4 --steps 6 --resume latest --out "$work/run" >"$work/out2.txt" 2>"$work/err2.txt" ||
  { cat "$work/out2.txt" "$work/err2.txt"; fail "the resumed run exited with $?"; }
grep -q 'resumed from .*step_4 at step 4' "$work/err2.txt" || fail "the resumed run did not say where it resumed"
[ -d "$work/run/checkpoints/step_6" ] || fail "the resumed run wrote no step_6 checkpoint"
[ "$(wc -l <"$work/run/metrics.csv")" = 4 ] || fail "metrics.csv should hold 3 rows after the resume"

# An error on rank 0 alone (it prepares the folder; the others wait in a broadcast) must end
# every rank: MPI_Abort with the usage status, not a hang.
rc=0
"${mpi[@]}" "$bin" "${tiny[@]}" --batch-size 4 --steps 2 --out "$work/run" >"$work/out4.txt" 2>"$work/err4.txt" || rc=$?
[ "$rc" = 2 ] || { cat "$work/err4.txt"; fail "a second run into $work/run exited with $rc, expected 2"; }
grep -q 'already holds a run' "$work/err4.txt" || { cat "$work/err4.txt"; fail "no 'already holds a run' message"; }

rc=0
"${mpi[@]}" "$bin" "${tiny[@]}" --steps 2 --batch-size 3 --out "$work/odd" >"$work/out3.txt" 2>"$work/err3.txt" || rc=$?
[ "$rc" = 2 ] || { cat "$work/err3.txt"; fail "an indivisible --batch-size exited with $rc, expected 2"; }
grep -q -- '--batch-size 3 is not divisible by the world size 2' "$work/err3.txt" ||
  { cat "$work/err3.txt"; fail "the message does not name the batch and the world size"; }
[ ! -e "$work/odd" ] || fail "the failed run left $work/odd behind"
echo "dist_train_cli: passed"
