#!/usr/bin/env bash
# `make fuzz`: run every fuzz target for a bounded time each (FUZZTIME, default 20s).
# Seed corpora live in each package's testdata/fuzz/<Target>/ and in f.Add calls.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime="${FUZZTIME:-20s}"
targets=(
	"./internal/message FuzzValidate"
	"./internal/cursor FuzzParse"
	"./internal/ingest FuzzDecodeJSON"
	"./internal/ingest FuzzDecodeForm"
	"./internal/sse FuzzEncode"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "--- $name ($pkg) for $fuzztime"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done
