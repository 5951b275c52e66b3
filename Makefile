# GNU make. `make run` starts the local adapter; `make test` runs everything.
SHELL := bash
.DEFAULT_GOAL := help

# The local adapter reads PORT/HOST itself (defaults 3000 / 127.0.0.1); an exported
# PORT is never overridden here.

.PHONY: help
help:
	@echo 'make run                   local adapter (go run ./local) on $${PORT:-3000}'
	@echo 'make test                  gofmt check, go vet, go test ./... against one DynamoDB Local'
	@echo 'make build                 go build ./...'
	@echo 'make fmt-check             gofmt -l must list nothing'
	@echo 'make dynamodb-local-start  start DynamoDB Local (prints its endpoint)'
	@echo 'make dynamodb-local-stop   stop it'

.PHONY: run
run: export AWS_EC2_METADATA_DISABLED := true
run:
	go run ./local

.PHONY: build
build:
	go build ./...

# fmt-check and go vet are part of infra/test.sh as well, so `make test` alone covers them.
.PHONY: test
test:
	bash infra/test.sh

.PHONY: fmt-check
fmt-check:
	@out="$$(find . -name '*.go' -not -path './.git/*' -not -path '*/node_modules/*' -not -path './infra/.cache/*' -print0 | xargs -0 -r gofmt -l)"; \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$out"; exit 1; fi

# State (pid, port, log) in $DYNAMODB_LOCAL_STATE, default under ~/.cache/webhook-relay.
.PHONY: dynamodb-local-start
dynamodb-local-start:
	@ep="$$(bash infra/dynamodb-local.sh start)"; \
	echo "$$ep"; \
	echo "# use it: export DYNAMODB_ENDPOINT=$$ep AWS_EC2_METADATA_DISABLED=true" >&2

.PHONY: dynamodb-local-stop
dynamodb-local-stop:
	bash infra/dynamodb-local.sh stop
