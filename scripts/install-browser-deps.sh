#!/usr/bin/env bash
# Test dependencies outside PyPI: Debian's Chromium, and the npm packages pinned by
# tests/browser/package-lock.json (the unmodified @reactor-team/js-sdk@2.9.0, esbuild,
# playwright-core driving /usr/bin/chromium). Without them the browser tests skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
# The seed's shell scripts (end-to-end tests) also need curl and jq.
missing=()
for tool in chromium curl jq; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "not installed: ${missing[*]} (apt-get install as root); tests needing them skip" >&2
  fi
fi
if command -v npm >/dev/null 2>&1; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "npm is not installed; browser tests will skip" >&2
fi
