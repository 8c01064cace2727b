#!/usr/bin/env bash
# Watch a real Codex turn end to end on this machine, without an API key:
#   1. installs the targeted codex from the npm registry (.ci/install-codex.sh, cached),
#   2. builds `symphony` and the scripted model endpoint (symphony-scripted-model),
#   3. starts the scripted model on 127.0.0.1 (script.json: exec_command, symphony_issue,
#      symphony_handoff, a final message),
#   4. creates a FRESH git repository (default target/example/codex; $EXAMPLE_DIR overrides)
#      with one issue and WORKFLOW.md (runner.kind: codex, CODEX_HOME in that repository),
#   5. runs `symphony run --once WORKFLOW.md` and shows the result: HELLO.md in the
#      workspace, the issue in review with its handoff, the commit, the session log.
# Exit status: symphony's, or 2 when codex cannot be installed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
repo=${EXAMPLE_DIR:-$root/target/example/codex}

echo "== installing codex (npm registry, cached)"
codex=$("$root/.ci/install-codex.sh")
if [[ -z $codex ]]; then
  echo "run.sh: codex could not be installed (is npm available and the registry reachable?)" >&2
  exit 2
fi
echo "== building symphony and symphony-scripted-model"
cargo build --quiet --manifest-path "$root/Cargo.toml" -p symphony-cli -p symphony-tests \
  --bin symphony --bin symphony-scripted-model
bin=$root/target/debug/symphony

echo "== creating a fresh repository in $repo"
rm -rf "$repo"
mkdir -p "$repo/.codex-home"
cp -R "$here/issues" "$here/.gitignore" "$repo/"
echo ".codex-home/" >> "$repo/.gitignore"

model_out=$(mktemp)
"$root/target/debug/symphony-scripted-model" "$here/script.json" "$repo/.symphony/model" >"$model_out" &
model_pid=$!
trap 'kill "$model_pid" 2>/dev/null || true; rm -f "$model_out"' EXIT
for _ in $(seq 100); do [[ -s $model_out ]] && break; sleep 0.05; done
url=$(head -n1 "$model_out")
echo "== scripted model at $url"

sed -e "s|@CODEX_BIN@|$codex|" -e "s|@CODEX_HOME@|$repo/.codex-home|" -e "s|@MODEL_URL@|$url|" \
  "$here/WORKFLOW.md" > "$repo/WORKFLOW.md"
cd "$repo"
git init --quiet -b main
git config user.name "Symphony Example"
git config user.email "symphony@example.invalid"
git add -A
git commit --quiet -m "codex example: one issue and a codex workflow"

echo "== symphony run --once WORKFLOW.md"
set +e
"$bin" run --once WORKFLOW.md --log-level "${SYMPHONY_LOG:-warn}"
status=$?
set -e

echo
echo "== workspaces/DEMO-1/HELLO.md"
cat workspaces/DEMO-1/HELLO.md || true
echo "== the issue now"
"$bin" issues show DEMO-1 || true
echo "== git log"
git log --oneline
proofs=$(ls -d proofs/DEMO-1/* 2>/dev/null | tail -n1)
if [[ -n $proofs ]]; then
  echo "== session log: $proofs/agent.stdout.log ($(wc -l < "$proofs/agent.stdout.log") protocol lines), methods seen:"
  sed -n 's/.*"method":"\([^"]*\)".*/\1/p' "$proofs/agent.stdout.log" | sort | uniq -c | sort -rn | head -n 12
fi
exit "$status"
