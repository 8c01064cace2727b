#!/usr/bin/env bash
# A small scripted agent for the bundled example. It does what a coding agent does, without
# a model: reads its prompt, makes a real change in its clone (notes/<identifier>.md, from
# the issue's title, committed on branch symphony/<identifier>), runs real checks on it, and
# hands off — through `symphony issues handoff` for issues with an odd number, through
# .symphony/handoff.json for even ones, so both paths run.
#
# Runs with the workspace as working directory; the orchestrator provides SYMPHONY_* variables
# (docs/runners.md), among them SYMPHONY_BIN, the running `symphony` binary (login shells may
# reset PATH, so the agent does not rely on finding `symphony` there).
set -euo pipefail

symphony=${SYMPHONY_BIN:-symphony}

ident="$SYMPHONY_ISSUE_IDENTIFIER"
id="$SYMPHONY_ISSUE_ID"
prompt_file="$SYMPHONY_PROMPT_FILE"
title=$(sed -n 's/^Title: //p' "$prompt_file" | head -n 1)
echo "agent: working on $ident: $title"

json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/\\r}
  s=${s//$'\n'/\\n}
  printf '"%s"' "$s"
}

cd repo
git checkout --quiet -B "symphony/$ident"
mkdir -p notes
{
  echo "# $ident: $title"
  echo
  echo "Picked up by the scripted example agent (attempt ${SYMPHONY_ATTEMPT:-0})."
  echo
  echo "## The issue, as the prompt stated it"
  echo
  sed -n '/^Title: /,$p' "$prompt_file" | sed 's/[[:space:]]*$//'
} > "notes/$ident.md"
git add "notes/$ident.md"
# A rerun (the orchestrator was killed after this commit, before the handoff) finds its note
# already committed and goes on to the checks and the handoff.
if ! git diff --cached --quiet; then
  git -c user.name="Example Agent" -c user.email="agent@example.invalid" \
    commit --quiet -m "$ident: notes on \"$title\""
fi
commit=$(git rev-parse --short HEAD)
files=$(git diff --name-only HEAD~1 HEAD)

# Real checks: no whitespace errors in the change, and the agent script still parses.
check() { if "$@" >/dev/null 2>&1; then echo passed; else echo failed; fi; }
diff_check=$(check git diff --check HEAD~1 HEAD)
syntax_check=$(check bash -n agent.sh)
echo "agent: git diff --check: $diff_check; bash -n agent.sh: $syntax_check"
cd ..

summary="Wrote notes/$ident.md restating \"$title\" on branch symphony/$ident (commit $commit)."
number=$((10#${ident##*-}))
if (( number % 2 == 1 )); then
  "$symphony" issues handoff "$id" --workflow "$SYMPHONY_WORKFLOW" \
    --summary "$summary" \
    --changed "$files" \
    --validation "$diff_check:git diff --check HEAD~1 HEAD" \
    --validation "$syntax_check:bash -n agent.sh" \
    --follow-up "Implement the issue itself; the note only restates it."
  echo "agent: handed off $ident with symphony issues handoff"
else
  mkdir -p .symphony
  cat > .symphony/handoff.json <<JSON
{
  "summary": $(json_string "$summary"),
  "files_changed": [$(json_string "$files")],
  "validation": [
    {"command": "git diff --check HEAD~1 HEAD", "status": "$diff_check"},
    {"command": "bash -n agent.sh", "status": "$syntax_check"}
  ],
  "follow_up": ["Implement the issue itself; the note only restates it."]
}
JSON
  echo "agent: handed off $ident with .symphony/handoff.json"
fi
