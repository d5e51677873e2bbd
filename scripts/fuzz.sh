#!/usr/bin/env bash
# Coverage-guided fuzzing of every reader of outside bytes (tests/fuzz, docs/RELIABILITY.md).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60 s; every fuzz_* target)
#
# Builds the `fuzz` preset (clang, libFuzzer + ASan + UBSan), writes the seed corpora with the
# library's own writers (fuzz-make-seeds), then runs each target for the given time, one after
# the other. The corpus each target grows is kept in build/fuzz/corpus/<target> and reused by
# the next run. A finding (crash, sanitizer report, escaped non-library exception, malloc
# above the limit, input slower than the timeout) makes the script exit 1 after all targets
# ran, with each reproducer's path printed; replay one with  build/fuzz/bin/<target> FILE.
# Environment: FUZZ_JOBS (build parallelism, default: every core); FUZZ_SEED (libFuzzer's
# -seed, default 1, so that a short run such as the test command's explores the same inputs
# first every time; 0 lets libFuzzer pick one).
# Scratch: each target process writes its inputs into a folder of its own, ddpm-fuzz-XXXXXX
# in /dev/shm (else $TMPDIR or /tmp; tests/fuzz/fuzz_support.h), which it never removes. The
# script removes the folders that appeared while a target ran as soon as it ends, and those of
# the target running when the script itself is interrupted or fails (trap on exit). A
# fuzz.sh run started by another checkout at the same moment would make folders that look
# alike: run one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, got '$seconds'" >&2; exit 2;; esac

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "${FUZZ_JOBS:-$(nproc)}"

build=build/fuzz
seeds="$build/seeds"
rm -rf "$seeds"
"$build/bin/fuzz-make-seeds" "$seeds"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

# The folder fuzz_support.h's scratch_dir() picks, and the scratch folders in it now.
scratch_root=/dev/shm
[ -w "$scratch_root" ] || scratch_root="${TMPDIR:-/tmp}"
scratch_folders() { find "$scratch_root" -maxdepth 1 -type d -name 'ddpm-fuzz-??????' 2>/dev/null | LC_ALL=C sort; }
scratch_before="" scratch_active=0
# Removes the scratch folders made since the current target started (none outside a target:
# the folders there before the script are not its own).
remove_new_scratch() {
  [ "$scratch_active" = 1 ] || return 0
  local d
  while IFS= read -r d; do
    if [ -n "$d" ]; then rm -rf -- "$d"; fi
  done < <(LC_ALL=C comm -13 <(printf '%s\n' "$scratch_before") <(scratch_folders))
  scratch_active=0
}
# Interrupted or failing in the middle of a target: its scratch goes too. The statuses are
# a shell's for the signals, so a Ctrl-C still reads as one.
trap remove_new_scratch EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failed=()
for t in "${targets[@]}"; do
  bin="$build/bin/$t"
  [ -x "$bin" ] || { echo "fuzz.sh: no fuzz target $t (expected $bin)" >&2; exit 2; }
  name="${t#fuzz_}"
  corpus="$build/corpus/$name"
  findings="$build/findings/$name"
  mkdir -p "$corpus" "$seeds/$name"
  rm -rf "$findings"
  mkdir -p "$findings"
  echo "fuzz.sh: $t for ${seconds} s"
  scratch_before=$(scratch_folders) scratch_active=1
  # -malloc_limit_mb: one allocation above 1 GiB from a few kB of input is a size field
  # believed blindly. -timeout: 10 s for one input is a hang. UBSan reports abort (the build
  # uses -fno-sanitize-recover), so they are crashes too.
  if ! ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1}" \
       "$bin" -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" \
       "$corpus" "$seeds/$name" >"$findings/log.txt" 2>&1; then
    tail -n 40 "$findings/log.txt" >&2
    for f in "$findings"/*; do
      [ "$(basename "$f")" = log.txt ] || echo "fuzz.sh: FINDING in $t: reproducer $f (replay: $bin $f)" >&2
    done
    failed+=("$t")
  else
    grep -E '^stat::number_of_executed_units|^Done' "$findings/log.txt" | tr '\n' ' '
    echo
  fi
  remove_new_scratch
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz.sh: findings in ${failed[*]} (logs and reproducers under $build/findings/)" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${seconds} s each, no findings"
