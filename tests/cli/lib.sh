# tests/cli/lib.sh: what the CLI tests share. Sourced after `bin=... work=...` are set:
#   source "$(dirname "$0")/lib.sh" NAME        (NAME prefixes every failure message)
# It empties $work and defines:
#   fail MESSAGE...                  print "NAME: FAILED: ..." and the last stderr, exit 1
#   tiny_model                       ddpm-train flags of a network that trains in a second on the
#                                    toy data (scripts add their own steps, sampling and save flags)
#   expect_refusal WHAT PATTERN CMD...
#                                    CMD must exit 2 with exactly ONE error line on stderr of the
#                                    form "ddpm-...: error: ..." (CLI11's "Run with --help" hint
#                                    aside) containing PATTERN (empty: any)
#   refused PATTERN CMD...           expect_refusal with the command as its description
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
