#!/usr/bin/env bash
# `make fuzz`: run every fuzz target for a bounded time each (FUZZTIME, default 20s).
# The targets are found, not listed: each `func FuzzXxx(` in a _test.go file, run in
# its file's package. Seed corpora live in each package's testdata/fuzz/<Target>/ and
# in f.Add calls.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime="${FUZZTIME:-20s}"
targets="$(grep -rEo --include='*_test.go' --exclude-dir=.git --exclude-dir=node_modules \
	--exclude-dir=.cache --exclude-dir=build '^func Fuzz[A-Za-z0-9_]*' . | sort)"
if [[ -z "$targets" ]]; then
	echo 'fuzz: no func Fuzz... in any _test.go file' >&2
	exit 1
fi
while IFS= read -r t; do
	file="${t%%:*}"
	name="${t##*func }"
	pkg="$(dirname "$file")"
	echo "--- $name ($pkg) for $fuzztime"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done <<<"$targets"
