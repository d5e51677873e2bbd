# tests/cli/lib.sh: what the CLI tests share. Sourced after `bin=... work=...` are set:
#   source "$(dirname "$0")/lib.sh" NAME        (NAME prefixes every failure message)
# It empties $work and defines:
#   fail MESSAGE...                  print "NAME: FAILED: ..." and the last stderr, exit 1
#   tiny_model                       ddpm-train flags of a network that trains in a second on the
#                                    toy data (scripts add their own steps, sampling and save flags)
#   expect_refusal WHAT PATTERN CMD...
#                                    CMD must exit 2 with exactly ONE error line on stderr of the
#                                    form "ddpm-...: error: ..." (CLI11's "Run with --help" hint
#                                    aside) matching PATTERN, a grep basic regex: escape [ ] . * (empty: any)
#   refused PATTERN CMD...           expect_refusal with the command as its description
#   term_when PID FILE PATTERN       wait until FILE has a line matching PATTERN (grep -E), then
#                                    send SIGTERM to PID; fail (showing FILE) if PID ends first.
#                                    No time cap: on a loaded machine a run may take long to get
#                                    there, and only its ending first means the test is wrong.
#   start_logged LOG CMD...          run CMD in the background, stdout to LOG and stderr to
#                                    $work/err.txt, and set pid. LOG is removed first: the
#                                    shell truncates it only once the child runs, so a reused
#                                    log would still hold an earlier run's lines and term_when
#                                    could match them and signal the child before it started.
cli_test_name=$1
rm -rf "$work"
mkdir -p "$work"

fail() { echo "$cli_test_name: FAILED: $*" >&2; cat "$work/err.txt" >&2 || true; exit 1; }

tiny_model=(--data toy --toy-count 16 --preset none --num-channels 8 --channel-mult 1,2 --num-res-blocks 1
            --attention-resolutions "" --norm-groups 4 --dropout 0 --batch-size 4 --sample-every 0
            --log-every 1 --device cpu)

expect_refusal() {
  local what=$1 pattern=$2 rc=0
  shift 2
  "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
  [ "$rc" = 2 ] || fail "$what: exit status $rc, expected 2"
  [ "$(grep -vc '^Run with --help' "$work/err.txt")" = 1 ] || fail "$what: expected one error line on stderr"
  grep -q '^ddpm-[a-z]*: error: ' "$work/err.txt" || fail "$what: no 'ddpm-...: error:' line"
  [ -z "$pattern" ] || grep -q -- "$pattern" "$work/err.txt" || fail "$what: no '$pattern' in the error"
}

refused() {
  local pattern=$1
  shift
  expect_refusal "$*" "$pattern" "$@"
}

start_logged() {
  local log=$1
  shift
  rm -f "$log"
  "$@" >"$log" 2>"$work/err.txt" &
  pid=$!
}

term_when() {
  local pid=$1 file=$2 pattern=$3
  until grep -Eq -- "$pattern" "$file" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || fail "the run ended before logging '$pattern', so it was never signalled: $(cat "$file")"
    sleep 0.02
  done
  kill -TERM "$pid" 2>/dev/null || true  # gone in between: the caller's exit-status check says so
}
