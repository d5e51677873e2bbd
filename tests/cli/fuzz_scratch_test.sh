#!/usr/bin/env bash
# scripts/fuzz.sh removes its targets' scratch folders (ctest `cli.fuzz_scratch`): usage
#   fuzz_scratch_test.sh SOURCE_DIR WORK_DIR
# Runs the real scripts/fuzz.sh in a copy of the repository layout whose build step is a stub
# `cmake` and whose fuzz targets are shell scripts that make a scratch folder the way
# tests/fuzz/fuzz_support.h scratch_dir() does (ddpm-fuzz-XXXXXX in /dev/shm, else $TMPDIR or
# /tmp) and never remove it, like the real targets. After a clean run, a run with a finding
# and a run stopped by SIGTERM in the middle of a target, no folder a target made is left,
# and a folder that was there before (another process's) is untouched.
set -euo pipefail
src=$1 work=$2
bin=unused
source "$(dirname "$0")/lib.sh" fuzz_scratch_test

repo="$work/repo"
mkdir -p "$repo/scripts" "$repo/tests/fuzz" "$repo/build/fuzz/bin" "$work/stub"
cp "$src/scripts/fuzz.sh" "$repo/scripts/fuzz.sh"
printf '#!/usr/bin/env bash\nexit 0\n' >"$work/stub/cmake"  # no build: the targets are ready
chmod +x "$work/stub/cmake"
printf '#!/usr/bin/env bash\nmkdir -p "$1"\n' >"$repo/build/fuzz/bin/fuzz-make-seeds"
chmod +x "$repo/build/fuzz/bin/fuzz-make-seeds"
# fuzz_MODE: makes its scratch folder, records its path in $work/made, then per MODE: "ok"
# prints libFuzzer's final stats and exits 0, "finding" exits 1, "stop" sends SIGTERM to the
# script (its parent) first, as a scheduler or Ctrl-C would.
for mode in ok finding stop; do
  touch "$repo/tests/fuzz/fuzz_$mode.cpp"
  cat >"$repo/build/fuzz/bin/fuzz_$mode" <<EOF
#!/usr/bin/env bash
root=/dev/shm
[ -w "\$root" ] || root="\${TMPDIR:-/tmp}"
dir=\$(mktemp -d "\$root/ddpm-fuzz-XXXXXX")
echo input >"\$dir/input"
echo "\$dir" >>"$work/made"
case $mode in
  ok) echo "stat::number_of_executed_units: 1"; echo "Done 1 runs in 0 second(s)"; exit 0 ;;
  finding) exit 1 ;;
  stop) kill -TERM \$PPID; exit 0 ;;
esac
EOF
  chmod +x "$repo/build/fuzz/bin/fuzz_$mode"
done

root=/dev/shm
[ -w "$root" ] || root="${TMPDIR:-/tmp}"
other=$(mktemp -d "$root/ddpm-fuzz-XXXXXX")  # a folder of another fuzzing process
trap 'rm -rf "$other"' EXIT
run_fuzz() {  # prints the exit status of fuzz.sh with the given targets
  local rc=0
  PATH="$work/stub:$PATH" FUZZ_JOBS=1 bash "$repo/scripts/fuzz.sh" 1 "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
  echo "$rc"
}
none_left() {
  local d
  while IFS= read -r d; do [ ! -e "$d" ] || fail "$1: the scratch folder $d is left"; done <"$work/made"
  [ -d "$other" ] || fail "$1: removed $other, a folder the script did not make"
  : >"$work/made"
}

: >"$work/made"
[ "$(run_fuzz fuzz_ok fuzz_ok)" = 0 ] || fail "two clean targets: fuzz.sh failed"
[ "$(wc -l <"$work/made")" = 2 ] || fail "the fake targets did not run twice"
grep -q "fuzz.sh: 2 targets, 1 s each, no findings" "$work/out.txt" || fail "the summary line changed"
none_left "clean run"
[ "$(run_fuzz fuzz_finding fuzz_ok)" = 1 ] || fail "a finding: fuzz.sh did not exit 1"
grep -q "fuzz.sh: findings in fuzz_finding" "$work/err.txt" || fail "the finding is not reported"
none_left "run with a finding"
[ "$(run_fuzz fuzz_ok fuzz_stop fuzz_ok)" = 143 ] || fail "SIGTERM during a target: fuzz.sh did not exit 143"
[ "$(wc -l <"$work/made")" = 2 ] || fail "the target after the stopped one ran"
none_left "run stopped by SIGTERM"
echo "fuzz_scratch_test: OK"
