#!/usr/bin/env bash
# Prints the root of the tool cache: WEBHOOK_RELAY_CACHE, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/webhook-relay. DynamoDB Local
# (infra/dynamodb-local.sh) and the Lambda RIE of the functions tests
# (internal/testutil.CacheRoot) are installed under it; this is the one place
# that decides it.
set -euo pipefail
printf '%s\n' "${WEBHOOK_RELAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webhook-relay}"
