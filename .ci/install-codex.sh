#!/usr/bin/env bash
# Installs the Codex CLI that the codex runner's real-binary tests target, from the npm registry,
# into a cache directory (idempotent: a second run with the binary present does nothing).
# Prints the binary's path on stdout; `.ci/run` exports it as SYMPHONY_CODEX_BIN.
# Exit 0 with an empty stdout when npm or the registry is unavailable (the tests then skip loudly).
set -euo pipefail

# The version the runner's typed messages were written against (docs/runners.md, codex/protocol.rs).
version="${SYMPHONY_CODEX_VERSION:-0.171.0}"
cache="${SYMPHONY_CODEX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/symphony/codex-$version}"
bin="$cache/node_modules/.bin/codex"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qF "$version"; then
  echo "$bin"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install-codex: npm is not installed; the real-codex tests will be SKIPPED" >&2
  exit 0
fi
mkdir -p "$cache"
if ! npm install --prefix "$cache" --no-audit --no-fund --loglevel=error "@openai/codex@$version" >&2; then
  echo "install-codex: npm install @openai/codex@$version failed; the real-codex tests will be SKIPPED" >&2
  exit 0
fi
if ! "$bin" --version >&2; then
  echo "install-codex: $bin does not run; the real-codex tests will be SKIPPED" >&2
  exit 0
fi
echo "$bin"
