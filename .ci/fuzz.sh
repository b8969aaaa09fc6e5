#!/usr/bin/env bash
# Runs every fuzz target in the repository for a short, bounded time.
# Usage: .ci/fuzz.sh [FUZZTIME]   (default 10s per target)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
go_cmd=${GO:-go}
git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort | while read -r file; do
	pkg=./$(dirname "$file")
	for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
		echo "fuzz $pkg $name for $fuzztime"
		"$go_cmd" test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"
	done
done
