#!/usr/bin/env bash
# The docs' commands against the programs (ctest `cli.docs_flags`): usage
#   docs_flags.sh BIN_DIR SRC_DIR WORK_DIR
# scripts/check_doc_flags.py must find every ddpm-* command in README.md and docs/*.md valid
# (program, subcommand and every --flag known to the program's --help), and must catch a
# planted mistake of each kind: an unknown flag, an unknown subcommand, an unknown program.
set -euo pipefail
bin=$1 src=$2 work=$3
source "$(dirname "$0")/lib.sh" docs_flags

python3 "$src/scripts/check_doc_flags.py" "$bin" "$src" >"$work/out.txt" 2>"$work/err.txt" ||
  { cat "$work/out.txt" >&2; fail "the docs name flags or programs that do not exist (above)"; }
grep -q '^[1-9][0-9]* flags checked' "$work/out.txt" || fail "no flags were checked: $(cat "$work/out.txt")"

planted="$work/planted"
mkdir -p "$planted/docs"
cat >"$planted/README.md" <<'MD'
```
ddpm-sample --checkpoint runs/fm --no-such-flag 3 --out s/   # --also-not-checked in a comment
ddpm-eval no-such-mode --samples s.npz
ddpm-nonexistent --out x
ddpm-eval fid --classifier c/ --samples s.npz --data fashion-mnist --split test
```
MD
rc=0
python3 "$src/scripts/check_doc_flags.py" "$bin" "$planted" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "planted mistakes: exit status $rc, expected 1"
grep -q 'has no flag --no-such-flag' "$work/out.txt" || fail "the unknown flag was not reported"
grep -q 'no-such-mode.*names none of its subcommands' "$work/out.txt" || fail "the unknown subcommand was not reported"
grep -q 'ddpm-nonexistent: no such program' "$work/out.txt" || fail "the unknown program was not reported"
grep -q 'also-not-checked' "$work/out.txt" && fail "a flag in a shell comment was checked"
grep -q '3 problems' "$work/out.txt" || fail "expected exactly 3 problems: $(cat "$work/out.txt")"
echo "docs_flags: OK"
