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
		# Go's fuzz coordinator can lose a worker on a loaded machine and stop
		# with "context deadline exceeded" and no failing input: that run is
		# retried once. A real failure names its input and is never retried.
		if ! out=$("$go_cmd" test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" 2>&1); then
			echo "$out"
			if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input' <<<"$out"; then
				echo "fuzz $pkg $name: the fuzzing engine timed out without a failing input; once more"
				"$go_cmd" test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"
			else
				exit 1
			fi
		else
			echo "$out"
		fi
	done
done
