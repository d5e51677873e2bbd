#!/usr/bin/env bash
# ddpm-train under mpiexec stopped by a signal sent to mpiexec (ctest `dist_train_signal`): usage
#   train_signal_test.sh DDPM_TRAIN WORK_DIR SIGNAL MPIEXEC [MPIEXEC FLAGS...]   (2 ranks)
# A scheduler or Ctrl-C signals the launcher, not the ranks. Open MPI's mpiexec passes SIGTERM
# on to every rank (and turns SIGINT into SIGTERM), so each rank's handler
# (models/run/stop_signals.h) sets its flag; the ranks agree on the stop and all end after
# the same step, rank 0 writing a checkpoint of it. Checks that the run says where it
# stopped, that the checkpoint exists, that nothing else was left half-written, and that
# `mpiexec ... --resume latest` continues from exactly that step.
set -euo pipefail
bin=$1 work=$2 sig=$3
shift 3
mpi=("$@")
rm -rf "$work"
mkdir -p "$work"
fail() { echo "dist_train_signal ($sig): FAILED: $*" >&2; cat "$work/err.txt" >&2 || true; exit 1; }

tiny=(--data toy --toy-count 16 --preset none --num-channels 8 --channel-mult 1,2 --num-res-blocks 1
      --attention-resolutions "" --norm-groups 4 --dropout 0 --diffusion-steps 50 --batch-size 4
      --save-every 100000 --sample-every 0 --log-every 1 --num-samples 4 --sample-steps 5 --device cpu)

"${mpi[@]}" "$bin" "${tiny[@]}" --steps 100000 --out "$work/run" >"$work/out.txt" 2>"$work/err.txt" &
pid=$!
for _ in $(seq 600); do  # up to 60 s for the first logged step
  grep -q '^step [0-9]' "$work/err.txt" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "mpiexec ended before the signal"
  sleep 0.1
done
grep -q '^step [0-9]' "$work/err.txt" || { kill -KILL "$pid"; fail "no step logged within 60 s"; }
kill -s "$sig" "$pid"
wait "$pid" || true  # mpiexec's own status for ranks that exited 143 is not ours to define
line=$(grep "stopped by SIGTERM after step" "$work/err.txt") || fail "no 'stopped by SIGTERM' line from rank 0"
[ "$(grep -c 'stopped by' "$work/err.txt")" = 1 ] || fail "expected one stop line (rank 0 alone writes)"
step=$(sed -E 's/.*after step ([0-9]+);.*/\1/' <<<"$line")
[ -d "$work/run/checkpoints/step_$step" ] || fail "no checkpoint step_$step"
[ -z "$(find "$work/run" -name '*.tmp*')" ] || fail "a temporary file was left behind: $(find "$work/run" -name '*.tmp*')"

"${mpi[@]}" "$bin" "${tiny[@]}" --steps $((step + 2)) --resume latest --out "$work/run" >"$work/out2.txt" \
  2>"$work/err2.txt" || { cat "$work/err2.txt"; fail "the resumed run exited with $?"; }
grep -q "resumed from .*step_$step at step $step" "$work/err2.txt" || { cat "$work/err2.txt"; fail "did not resume at step $step"; }
[ -d "$work/run/checkpoints/step_$((step + 2))" ] || fail "the resumed run wrote no step_$((step + 2)) checkpoint"
echo "dist_train_signal ($sig): passed (both ranks stopped after step $step)"
