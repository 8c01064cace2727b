#!/usr/bin/env bash
# Runs the main job end to end on the bundled example:
#   1. builds `symphony` if needed (or uses $SYMPHONY_BIN),
#   2. creates a FRESH git repository (default target/example/x0x; $EXAMPLE_DIR overrides)
#      from this directory: the x0x-symphony backlog, WORKFLOW.md, the scripted agent,
#   3. runs `symphony run --once WORKFLOW.md` there,
#   4. shows what changed: states before/after, the git log, and a byte-for-byte check that
#      every line of the issues file other than the dispatched issues' is untouched.
# Exit status: symphony's (0: every dispatched issue ended as designed), or 1 when the
# byte-identity check fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
repo=${EXAMPLE_DIR:-$root/target/example/x0x}

if [[ -n ${SYMPHONY_BIN:-} ]]; then
  bin=$SYMPHONY_BIN
else
  echo "== building symphony"
  cargo build --quiet --manifest-path "$root/Cargo.toml" -p symphony-cli
  bin=$root/target/debug/symphony
fi

echo "== creating a fresh repository in $repo"
rm -rf "$repo"
mkdir -p "$repo"
cp -R "$here/issues" "$here/WORKFLOW.md" "$here/agent.sh" "$here/.gitignore" "$repo/"
cd "$repo"
git init --quiet -b main
git config user.name "Symphony Example"
git config user.email "symphony@example.invalid"
git add -A
git commit --quiet -m "x0x example: backlog, workflow and scripted agent"
before=$(mktemp)
trap 'rm -f "$before"' EXIT
cp issues/issues.jsonl "$before"

echo "== symphony run --once WORKFLOW.md"
set +e
"$bin" run --once WORKFLOW.md --log-level "${SYMPHONY_LOG:-warn}"
status=$?
set -e

# The record's own state follows its priority (key order of the file); proofs_dir is unique.
state_of() { sed -n 's/.*"priority":[^,]*,"state":"\([^"]*\)".*/\1/p' <<<"$1"; }
proofs_of() { sed -n 's/.*"proofs_dir":"\([^"]*\)".*/\1/p' <<<"$1"; }
echo
echo "== issues whose line changed (state before -> after)"
mapfile -t old < "$before"
mapfile -t new < issues/issues.jsonl
changed=0
untouched=0
for i in "${!old[@]}"; do
  if [[ "${old[$i]}" == "${new[$i]:-}" ]]; then
    untouched=$((untouched + 1))
    continue
  fi
  changed=$((changed + 1))
  id=$(sed -n 's/^{"id":"\([^"]*\)".*/\1/p' <<<"${old[$i]}")
  printf '  %-9s %-12s -> %-12s proofs %s\n' "$id" \
    "$(state_of "${old[$i]}")" "$(state_of "${new[$i]}")" "$(proofs_of "${new[$i]}")"
done
if (( ${#new[@]} != ${#old[@]} )); then
  echo "line count changed: ${#old[@]} -> ${#new[@]}"
  status=1
fi
echo "== $untouched of ${#old[@]} lines byte-identical, $changed changed"
ready="XSY-0003 XSY-0004 XSY-0005 XSY-0011 XSY-0012 XSY-0027 XSY-0030"
for i in "${!old[@]}"; do
  if [[ "${old[$i]}" != "${new[$i]:-}" ]]; then
    id=$(sed -n 's/^{"id":"\([^"]*\)".*/\1/p' <<<"${old[$i]}")
    if [[ " $ready " != *" $id "* ]]; then
      echo "UNEXPECTED: line $((i + 1)) ($id) changed"
      status=1
    fi
  fi
done

echo
echo "== git log --oneline"
git log --oneline
echo
echo "== git status --short (empty: everything the run recorded is committed)"
git status --short
exit "$status"
