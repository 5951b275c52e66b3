# GNU make. `make run` starts the local adapter; `make test` runs everything.
SHELL := bash
.DEFAULT_GOAL := help

# The local adapter reads PORT/HOST itself (defaults 3000 / 127.0.0.1); an exported
# PORT is never overridden here.

.PHONY: help
help:
	@echo 'make run                   local adapter (go run ./local) on $${PORT:-3000}'
	@echo 'make test                  installs missing tools (make deps), gofmt check, go vet, cfn-lint, go test ./... against one DynamoDB Local'
	@echo 'make deps                  Java 17, npm, chromium, curl, python3 + requests, cfn-lint: installed if missing'
	@echo 'make build                 both Lambda bootstraps for arm64 into build/{webhook,stream}/bootstrap'
	@echo 'make deploy                sam build && sam deploy --guided (see docs/deploy.md)'
	@echo 'make emulate               the real Lambda binaries behind one local port, streaming (DynamoDB Local; STREAM_ENDPOINT=RestApi for that shape)'
	@echo 'make lint-template         cfn-lint template.yaml (part of make test)'
	@echo 'make run-dynamodb          local adapter on DynamoDB Local instead of the memory store'
	@echo 'make fuzz                  every fuzz target for FUZZTIME (default 20s) each'
	@echo 'make bench                 T1-T5: relay vs the floor and Centrifugo (pinned), DynamoDB reads per poll -> docs/benchmarks.md (~15 min; BENCH_QUICK=1: ~3 min)'
	@echo 'make soak                  1000 streams, 100 msg/s, 10 min, random resumes (SOAK_DURATION=1m: smoke)'
	@echo 'make reliability           lost/duplicated/misrouted/503-but-delivered/500s under soak, AWS faults, memory -> docs/reliability.md (~13 min)'
	@echo 'make cost                  billed Lambda s and DynamoDB requests per visible chat window, before/after close and pause -> docs/cost.md (~3.5 min; COST_SMOKE=1: smoke)'
	@echo 'make screenshots           refresh docs/chat-{light,dark}.png from the browser test'
	@echo 'make fmt-check             gofmt -l must list nothing'
	@echo 'make dynamodb-local-start  start DynamoDB Local (prints its endpoint)'
	@echo 'make dynamodb-local-stop   stop it'

.PHONY: run
run: export AWS_EC2_METADATA_DISABLED := true
run:
	go run ./local

# ---- Lambda builds -----------------------------------------------------------------
# Both functions are Go custom-runtime bootstraps for provided.al2023 on arm64.
# lambda-build,<package>,<output>[,<GOOS>,<GOARCH>]: default linux/arm64.
LAMBDA_GOFLAGS := -tags lambda.norpc -trimpath -ldflags="-s -w"
define lambda-build
CGO_ENABLED=0 GOOS=$(or $(3),linux) GOARCH=$(or $(4),arm64) go build $(LAMBDA_GOFLAGS) -o $(2) $(1)
endef

.PHONY: run-dynamodb
run-dynamodb:
	bash infra/run-dynamodb.sh

.PHONY: fuzz
fuzz:
	bash infra/fuzz.sh

.PHONY: bench
bench:
	bash infra/bench.sh

.PHONY: soak
soak:
	bash infra/soak.sh

.PHONY: reliability
reliability:
	bash infra/reliability.sh

.PHONY: cost
cost:
	bash infra/cost.sh

.PHONY: screenshots
screenshots:
	UPDATE_SCREENSHOTS=1 go test -count=1 -run TestChatWindowInBrowser ./local/

.PHONY: build
build:
	$(call lambda-build,./functions/webhook,build/webhook/bootstrap)
	$(call lambda-build,./functions/stream,build/stream/bootstrap)

# `sam build` runs these (Metadata: BuildMethod: makefile) with ARTIFACTS_DIR set.
.PHONY: build-WebhookFunction build-StreamFunction check-artifacts-dir
build-WebhookFunction: check-artifacts-dir
	$(call lambda-build,./functions/webhook,$(ARTIFACTS_DIR)/bootstrap)

build-StreamFunction: check-artifacts-dir
	$(call lambda-build,./functions/stream,$(ARTIFACTS_DIR)/bootstrap)

check-artifacts-dir:
	@if [ -z "$(ARTIFACTS_DIR)" ]; then echo 'ARTIFACTS_DIR is not set (sam build sets it; try make build)' >&2; exit 1; fi

# Needs the AWS SAM CLI and AWS credentials; see docs/deploy.md.
.PHONY: deploy
deploy:
	sam build && sam deploy --guided

# The real bootstraps, built for this machine, behind one local port
# ($${HOST:-127.0.0.1}:$${PORT:-3000}) with the Lambda Runtime API emulator of
# tools/lambdaemu: the stream streams, unlike under SAM local. STREAM_ENDPOINT=RestApi
# serves the template's one-REST-API shape instead of HTTP API + function URL. Without
# DYNAMODB_ENDPOINT it uses (and if needed starts) the DynamoDB Local of
# `make dynamodb-local-start`; the table is created if missing.
HOST_GOOS = $(shell go env GOOS)
HOST_GOARCH = $(shell go env GOARCH)
.PHONY: emulate
emulate: export AWS_EC2_METADATA_DISABLED := true
emulate:
	$(call lambda-build,./functions/webhook,build/host/webhook/bootstrap,$(HOST_GOOS),$(HOST_GOARCH))
	$(call lambda-build,./functions/stream,build/host/stream/bootstrap,$(HOST_GOOS),$(HOST_GOARCH))
	@ep="$${DYNAMODB_ENDPOINT:-}"; \
	if [ -z "$$ep" ]; then \
		ep="$$(bash infra/dynamodb-local.sh status 2>/dev/null || bash infra/dynamodb-local.sh start)" || exit 1; \
		echo "emulate: DynamoDB Local $$ep (stop it with: make dynamodb-local-stop)" >&2; \
	fi; \
	DYNAMODB_ENDPOINT="$$ep" go run ./tools/emulate \
		-webhook build/host/webhook/bootstrap -stream build/host/stream/bootstrap \
		-addr "$${HOST:-127.0.0.1}:$${PORT:-3000}" -stream-endpoint "$${STREAM_ENDPOINT:-FunctionUrl}"

# cfn-lint is preinstalled on these machines; elsewhere: pip install cfn-lint.
# Missing, it is skipped with a warning, except with CI=true, where that fails.
# It checks every combination of the template's conditions, so both StreamEndpoint
# shapes (infra/transform_test.go's TestLintPerShape also lints each on its own).
.PHONY: lint-template
lint-template:
	@if command -v cfn-lint >/dev/null 2>&1; then \
		cfn-lint template.yaml && echo 'cfn-lint template.yaml: clean'; \
	elif [[ "$${CI:-}" =~ ^(1|t|T|true|TRUE|True)$$ ]]; then \
		echo 'cfn-lint not found (CI=true: failing; pip install cfn-lint)' >&2; exit 1; \
	else \
		echo 'WARNING: cfn-lint not found: SKIPPING the template lint (pip install cfn-lint)' >&2; \
	fi

# fmt-check and go vet are part of infra/test.sh as well, so `make test` alone covers them;
# it first runs infra/deps.sh, which installs the tools it needs when they are missing.
.PHONY: test
test:
	bash infra/test.sh

# Java 17, npm, chromium, curl, python3 + requests, cfn-lint: installed if missing (as root).
.PHONY: deps
deps:
	bash infra/deps.sh

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
