#!/usr/bin/env bash
# The body of `make test`: the tools it needs (infra/deps.sh installs what is missing),
# gofmt check, go vet, cfn-lint, then ONE DynamoDB Local for the whole
# run (exported as WEBHOOK_RELAY_TEST_DYNAMODB), then go test. DynamoDB Local is
# always stopped afterwards, also when a step fails or the run is interrupted.
#
#   infra/test.sh                 # go test -count=1 -timeout 15m ./...
#   infra/test.sh -run Foo ./internal/store/...   # arguments replace "./..."
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

started=$SECONDS
tmp=""
finish() {
	local rc=$?
	if [[ -n "$tmp" ]]; then
		DYNAMODB_LOCAL_STATE="$tmp/dynamodb-local" bash infra/dynamodb-local.sh stop || true
		rm -rf "$tmp"
	fi
	if [[ $rc -eq 0 ]]; then
		printf 'make test: PASS in %ds\n' $((SECONDS - started)) >&2
	else
		printf 'make test: FAIL (exit %d) in %ds\n' "$rc" $((SECONDS - started)) >&2
	fi
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export AWS_EC2_METADATA_DISABLED=true
# DynamoDB Local keeps one database per access key and region: use the environment's
# values when given, else dummies. Never real AWS traffic from tests.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-dummy}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-dummy}"
if [[ -z "${AWS_REGION:-}" ]]; then
	export AWS_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
fi

echo '--- tools (infra/deps.sh)' >&2
bash infra/deps.sh

echo '--- gofmt -l' >&2
unformatted="$(find . -name '*.go' -not -path './.git/*' -not -path '*/node_modules/*' -not -path './infra/.cache/*' -print0 | xargs -0 -r gofmt -l)"
if [[ -n "$unformatted" ]]; then
	printf 'gofmt: these files need formatting (run gofmt -w):\n%s\n' "$unformatted" >&2
	exit 1
fi

echo '--- go vet ./...' >&2
go vet ./...

# The SAM template against CloudFormation's specs (a missing cfn-lint fails with CI=true).
echo '--- cfn-lint template.yaml' >&2
make --no-print-directory lint-template

echo '--- starting DynamoDB Local' >&2
tmp="$(mktemp -d "${TMPDIR:-/tmp}/webhook-relay-test.XXXXXX")"
WEBHOOK_RELAY_TEST_DYNAMODB="$(DYNAMODB_LOCAL_STATE="$tmp/dynamodb-local" bash infra/dynamodb-local.sh start --watch-pid $$)"
export WEBHOOK_RELAY_TEST_DYNAMODB
echo "--- WEBHOOK_RELAY_TEST_DYNAMODB=$WEBHOOK_RELAY_TEST_DYNAMODB" >&2

if [[ $# -eq 0 ]]; then
	set -- ./...
fi
# Verbose into a log; on the terminal the package results and each test and
# first-level subtest by name, so the run shows which backends (Memory,
# DynamoDBLocal, real binaries, Chromium) it exercised.
mkdir -p test-output
log=test-output/go-test.log
echo "--- go test -count=1 -timeout 15m -v $* (full log: $log)" >&2
set +e
go test -count=1 -timeout 15m -v "$@" >"$log" 2>&1
rc=$?
set -e
grep -E '^(ok|FAIL|panic:|---|    ---) ' "$log" | grep -vE '^ {8}' || true
if [[ $rc -ne 0 ]]; then
	echo '--- failures (from the full log):' >&2
	grep -nE -B 40 '^\s*--- FAIL' "$log" | tail -200 >&2 || true
	grep -E '^(FAIL|panic:)' "$log" >&2 || true
fi
for backend in Memory DynamoDBLocal; do
	n=$(grep -cE -- "^ *--- PASS: .*${backend}" "$log" || true)
	echo "backend ${backend}: ${n} tests and subtests passed" >&2
done
exit $rc
