#!/usr/bin/env python3
"""Do the docs' commands still exist?  usage: check_doc_flags.py BIN_DIR SRC_DIR

Reads README.md and docs/*.md under SRC_DIR. In every fenced code block it finds each
command of a ddpm-* program (continuation lines joined, a shell comment's text ignored,
pipelines and `&&` chains split) and asks the program itself, through `--help`, whether:
  - the program exists in BIN_DIR,
  - a program with subcommands is given one that exists (global flags may come before it),
  - every `--flag` written after it is one that program (or that subcommand, or the
    program's global options) lists.
Prints one line per problem (file, command, flag) and a count; exits 1 when there is any.
Values are not checked: a flag that exists but is given a wrong value still passes.
The ctest `cli.docs_flags` runs it on the real docs and on a planted mistake.
"""
import pathlib
import re
import subprocess
import sys

bin_dir, src = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
_help = {}


def help_text(argv):
    """The program's --help output (stdout and stderr), once per argv."""
    key = tuple(argv)
    if key not in _help:
        r = subprocess.run([str(bin_dir / argv[0])] + argv[1:] + ["--help"], capture_output=True, text=True)
        _help[key] = r.stdout + r.stderr
    return _help[key]


def subcommands(prog):
    """CLI11 lists subcommands under "Subcommands:", two spaces in, one per line."""
    text = help_text([prog])
    if "Subcommands:" not in text:
        return set()
    return set(re.findall(r"^  ([a-z0-9-]+)", text.split("Subcommands:", 1)[1], re.M))


def commands(markdown):
    """(program, the rest of its command line) for each ddpm-* command in the code blocks."""
    code, in_code = [], False
    for line in markdown.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif in_code:
            code.append(line)
    joined, pending = [], ""
    for line in code:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            joined.append(pending + line)
            pending = ""
    for line in joined:
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]
        for part in re.split(r"\|\||&&|;|\|", line):
            m = re.search(r"(?:^|[\s/])(ddpm-[a-z]+)(?![\w-])(.*)", part)
            if m:
                yield m.group(1), m.group(2)


def main():
    files = [src / "README.md"] + sorted((src / "docs").glob("*.md"))
    checked, problems = 0, set()
    for md in files:
        for prog, rest in commands(md):
            if not (bin_dir / prog).exists():
                problems.add(f"{md.name}: {prog}: no such program in {bin_dir}")
                continue
            argv = [prog]
            subs = subcommands(prog)
            if subs:
                sub = next((w for w in rest.split() if w in subs), None)
                if sub is None:
                    problems.add(f"{md.name}: `{prog}{rest[:60]}` names none of its subcommands")
                    continue
                argv.append(sub)
            text = help_text(argv) + (help_text([prog]) if len(argv) > 1 else "")
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
                checked += 1
                if not re.search(re.escape(flag) + r"(?![a-z0-9-])", text):
                    problems.add(f"{md.name}: `{' '.join(argv)}` has no flag {flag}")
    for p in sorted(problems):
        print(p)
    print(f"{checked} flags checked in {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
