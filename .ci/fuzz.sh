#!/usr/bin/env bash
# Runs every fuzz target in the repository for a short, bounded time.
# Usage: .ci/fuzz.sh [FUZZTIME]   (default 4s per target)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-4s}
go_cmd=${GO:-go}
git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort | while read -r file; do
	pkg=./$(dirname "$file")
	for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
		echo "fuzz $pkg $name for $fuzztime"
		# Go's fuzz coordinator (before Go 1.27: go.dev/issue/75804) can
		# report its own -fuzztime deadline as "context deadline exceeded",
		# with no failing input, when a worker is mid-call on a loaded
		# machine. Such a run is retried, up to twice; a real failure names
		# its input and is never retried.
		for try in 1 2 3; do
			if out=$("$go_cmd" test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" 2>&1); then
				echo "$out"
				break
			fi
			echo "$out"
			if [ "$try" = 3 ] || ! grep -q 'context deadline exceeded' <<<"$out" || grep -q 'Failing input' <<<"$out"; then
				exit 1
			fi
			echo "fuzz $pkg $name: the fuzzing engine stopped at its deadline without a failing input; again"
		done
	done
done
