# quotes — build, run, test, benchmark. `make help` lists the targets.
GO       ?= go
BIN      := bin/quotes
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# A fuzz budget is an execution count ("Nx"), not a duration: go1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" when a -fuzztime duration expires while a
# worker is mid-call (golang/go#75804, fixed in go1.27). A count never takes that path.
FUZZTIME ?= 200000x
CHAOS_DURATION ?= 5m
CHAOS_SEED ?= 0
RUNDIR   ?= .run

.PHONY: help build run test test-all test-unit deps lint fuzz bench bench-micro chaos clean web pgo

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/quotes
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/quotes

run: build ## simulator + ingest on embedded storage under .run/
	@bash scripts/run.sh $(BIN) $(RUNDIR)

deps: ## install what the integration tests need (root, apt, network): ClickHouse, versitygw, nats-server, Chromium, npm ci
	@bash scripts/deps.sh

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: deps lint build ## everything: deps, lint, all tests with -race, a short fuzz run; fails if they leave files in their TMPDIR
	@bash scripts/tmpcheck.sh $(MAKE) --no-print-directory test-all

test-all:
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=50000x

test-unit: ## tests in -short mode: no ClickHouse, S3, NATS or browser (unless CI is set), no kill -9 tests
	$(GO) test -short -count=1 ./...

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench: build ## end-to-end benchmark: one table (SPEC §9), also written to bench/results/latest.txt and .json
	$(GO) run ./bench/quotesbench -bin $(BIN) -out bench/results/latest.txt $(BENCHFLAGS)

pgo: build ## re-record cmd/quotes/default.pgo, the CPU profile `go build` optimises quotes with (a spec-load replay and live ingest, ~2 min)
	@bash scripts/pgo.sh $(BIN) cmd/quotes/default.pgo

chaos: build ## soak under random faults (CHAOS_DURATION, default 5m; CHAOS_SEED), then check nothing was lost or doubled
	$(GO) run ./chaos -bin $(BIN) -duration $(CHAOS_DURATION) -seed $(CHAOS_SEED) $(CHAOSFLAGS)

bench-micro: build ## micro-benchmarks (go test -bench) for every package
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The page's chart library, vendored into api/web/vendor (committed, so build needs no Node):
# npm ci installs exactly what web/package-lock.json pins, and the standalone build (one
# file, no bundler needed) is copied with its licences.
WEBVENDOR := api/web/vendor
web: ## rebuild the web page's vendored chart library from web/package-lock.json (needs npm)
	cd web && npm ci --no-audit --no-fund --loglevel=error
	cp web/node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js $(WEBVENDOR)/lightweight-charts.js
	cp web/node_modules/lightweight-charts/LICENSE $(WEBVENDOR)/LICENSE-lightweight-charts
	cp web/LICENSE-fancy-canvas $(WEBVENDOR)/LICENSE-fancy-canvas

clean: ## remove build output and local run data
	rm -rf bin $(RUNDIR)
