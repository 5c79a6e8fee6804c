#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The man pages help2man generated in the build tree (man/CMakeLists.txt):
# each renders with `MANWIDTH=80 man --warnings -l` and `groff -ww` without
# a warning, lexgrog (what mandb and lintian read) finds its NAME line, it
# has the sections of its include file, every --FLAG of the binary's --help
# is on it, and physpoolctl(1)'s COMMANDS section names every command of
# `physpoolctl --help`. The .gz that is installed is the same page.
# Usage: man_test.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: man_test.sh BUILD_DIR}
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in man groff lexgrog zcmp; do
  command -v "$tool" > /dev/null ||
    fail "$tool not found: apt-get install man-db groff-base gzip (make deps)"
done

declare -A binary=(
  [physpoolctl.1]=cli/physpoolctl [physpoold.8]=server/physpoold
  [physpool-keeper.8]=server/physpool-keeper [physpool-dra.8]=dra/physpool-dra)
checked=0
for page in "${!binary[@]}"; do
  file=$build/man/$page
  name=${page%.*}
  [[ -s $file ]] || fail "$file missing: is PHYSPOOL_BUILD_MAN on and the build done?"
  [[ -s $file.gz ]] && zcmp -s "$file" "$file.gz" || fail "$file.gz is not $file"

  out=$(MANWIDTH=80 man --warnings -l "$file" 2> "$build/man/$page.err") ||
    fail "man -l $file failed: $(cat "$build/man/$page.err")"
  [[ ! -s $build/man/$page.err ]] || fail "man --warnings -l $file: $(cat "$build/man/$page.err")"
  warn=$(groff -ww -z -man "$file" 2>&1) || fail "groff -man $file failed: $warn"
  [[ -z $warn ]] || fail "groff -ww $file: $warn"
  whatis=$(lexgrog "$file.gz") || fail "lexgrog cannot parse $file.gz: $whatis"
  [[ $whatis == *"\"$name - "* ]] || fail "$file: whatis line is $whatis"

  for section in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
    grep -qx "$section" <<< "$out" || fail "$file has no $section section:
$out"
  done
  [[ $page == physpool-keeper.8 ]] || grep -qx ENVIRONMENT <<< "$out" ||
    fail "$file has no ENVIRONMENT section"
  grep -qx FILES <<< "$out" || fail "$file has no FILES section"
  [[ $out == *"${name^^}(${page##*.})"* ]] || fail "$file: header is not ${name^^}(${page##*.})"

  # Every flag the binary's --help names is on the page (help2man's part).
  help=$("$build/${binary[$page]}" --help) || fail "$name --help exited non-zero"
  plain=$(MANWIDTH=1000 man -l "$file" 2> /dev/null | sed 's/‐/-/g')
  for flag in $(grep -oE -- '--[a-z][a-z0-9-]+' <<< "$help" | sort -u); do
    grep -qF -- "$flag" <<< "$plain" || fail "$file: $flag of --help is missing"
  done
  checked=$((checked + 1))
done
[[ $checked == 4 ]] || fail "checked $checked pages, not 4"

# physpoolctl(1)'s hand-written COMMANDS section against the CLI.
commands=$(MANWIDTH=1000 man -l "$build/man/physpoolctl.1" 2> /dev/null |
  sed -n '/^COMMANDS$/,/^[A-Z]/p')
listed=$("$build/cli/physpoolctl" --help |
  sed -n '/^Commands/,/^[^ ]/{/^  /p}' | awk '{print $1, ($2 ~ /^[a-z-]+$/ ? $2 : "")}')
[[ -n $listed ]] || fail "no commands read from physpoolctl --help"
while read -r noun verb; do
  grep -qE -- "(^|, )\s*$noun${verb:+ $verb}( |,|$)" <<< "$commands" ||
    fail "physpoolctl(1) COMMANDS does not list '$noun $verb' (man/physpoolctl.h2m)"
done <<< "$listed"
echo "OK: 4 man pages render without warnings; physpoolctl(1) lists $(wc -l <<< "$listed") commands"
