#!/usr/bin/env bash
# The browser tests' dependencies: Debian's Chromium, and the npm packages pinned by
# tests/browser/package-lock.json (the unmodified @reactor-team/js-sdk@2.9.0, esbuild,
# playwright-core driving /usr/bin/chromium). Without them the browser tests skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed (apt-get install chromium as root); browser tests will skip" >&2
  fi
fi
if command -v npm >/dev/null 2>&1; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "npm is not installed; browser tests will skip" >&2
fi
