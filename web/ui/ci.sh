#!/usr/bin/env bash
# The dashboard's part of `make test`: type check and component tests, a
# check that the committed bundle (dist/) is exactly what the source builds,
# and the browser test against real batchpilot processes.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi

echo "== dashboard: type check and component tests"
npm run typecheck
npm test

echo "== dashboard: the committed bundle is what the source builds"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx vite build --outDir "$tmp/dist" --emptyOutDir --logLevel warn
if ! diff -r dist "$tmp/dist"; then
	echo "web/ui/dist differs from a fresh build of web/ui: run 'make ui' and commit web/ui/dist" >&2
	exit 1
fi

echo "== dashboard: end-to-end in headless Chromium"
go build -o "$tmp/batchpilot" ../../cmd/batchpilot
BATCHPILOT_BIN="$tmp/batchpilot" node --test e2e/dashboard.e2e.mjs
