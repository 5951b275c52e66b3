#!/usr/bin/env bash
# `make run-dynamodb`: the local adapter on DynamoDB Local instead of the
# embedded store. DynamoDB Local runs in memory for the life of this command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export AWS_EC2_METADATA_DISABLED=true
state="$(mktemp -d "${TMPDIR:-/tmp}/webhook-relay-run.XXXXXX")"
stop() {
	DYNAMODB_LOCAL_STATE="$state" bash infra/dynamodb-local.sh stop >/dev/null 2>&1 || true
	rm -rf "$state"
}
trap stop EXIT
endpoint="$(DYNAMODB_LOCAL_STATE="$state" bash infra/dynamodb-local.sh start --watch-pid $$)"
echo "DynamoDB Local at $endpoint" >&2
DYNAMODB_ENDPOINT="$endpoint" go run ./local
