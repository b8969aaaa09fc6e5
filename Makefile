# The documented way in: make run, make test, make bench, make lint.
GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 4s

.PHONY: run build test unit fuzz soak bench bench-cluster bench-budget bench-scale lint ui clean

## run: a local cluster with a demo load and the dashboard
run:
	$(GO) run ./cmd/batchpilot dev

## build: the batchpilot binary in bin/
build:
	$(GO) build -o bin/batchpilot ./cmd/batchpilot

## test: vet, every Go test under the race detector, and short fuzz runs
test: lint unit fuzz
	./web/ui/ci.sh

unit:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

## fuzz: each fuzz target for FUZZTIME (the seed corpus also runs in unit)
fuzz:
	GO=$(GO) ./.ci/fuzz.sh $(FUZZTIME)

## soak: a three-node cluster under SOAK_RATE records/s for SOAK (default 10m): memory must
## stay flat and verify must find every acknowledged record (docs/reliability.md)
SOAK      ?= 10m
SOAK_RATE ?= 20000
soak:
	BATCHPILOT_SOAK=$(SOAK) BATCHPILOT_SOAK_RATE=$(SOAK_RATE) $(GO) test -run='^TestSoak$$' -count=1 -timeout 60m -v ./cmd/batchpilot

## bench: throughput benchmarks of the node and its parts
bench:
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

## bench-cluster: five agent processes share one downstream that slows past an aggregate knee; arms
## uncoordinated, arc, a hand-set budget sweep and the learned budget (about 15 minutes;
## BENCH_CLUSTER_FLAGS=--quick: under 5; report to docs/bench/cluster.json, one SVG per arm in
## docs/bench/cluster/, read in docs/cluster.md)
BENCH_CLUSTER_OUT ?= $(CURDIR)/docs/bench/cluster.json
BENCH_CLUSTER_FLAGS ?=
bench-cluster: build
	mkdir -p $(CURDIR)/docs/bench/cluster
	./bin/batchpilot bench --nodes 5 $(BENCH_CLUSTER_FLAGS) --out $(BENCH_CLUSTER_OUT) --svg $(CURDIR)/docs/bench/cluster/

## bench-budget: five in-process nodes under a load step, each node's in-flight bytes sampled every
## 2 ms against its grant, coordination on and off (minutes; figures to docs/bench/budget.json)
BENCH_BUDGET_OUT ?= $(CURDIR)/docs/bench/budget.json
bench-budget:
	BATCHPILOT_BENCH_CLUSTER=$(BENCH_BUDGET_OUT) $(GO) test -run='^TestClusterBenchCoordination$$' -count=1 -timeout 30m -v ./cmd/batchpilot

## bench-scale: three real servers and 100, 300 and 1,000 workers (each a memberlist member and a
## lease client over loopback): time to all alive, lease RPC latency, leader CPU, memory per worker
## (minutes; figures to docs/bench/scale.json, read in docs/cluster.md; the settings there, e.g.
## BENCH_SCALE_JOIN_RATE=20 BENCH_SCALE_GOGC=400, and the simulated workers' gossip profile)
BENCH_SCALE_OUT ?= $(CURDIR)/docs/bench/scale.json
bench-scale:
	BATCHPILOT_BENCH_SCALE=$(BENCH_SCALE_OUT) $(GO) test -run='^TestClusterBenchScale$$' -count=1 -timeout 30m -v ./cmd/batchpilot

## lint: gofmt, go vet, and staticcheck when it is installed
lint:
	@fmt=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$fmt" ]; then echo "gofmt needed:"; echo "$$fmt"; exit 1; fi
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); else echo "staticcheck not installed; skipped"; fi

## ui: rebuild the dashboard bundle web/ui/dist (committed; embedded by go:embed)
ui:
	cd web/ui && npm ci && npm run build

clean:
	rm -rf bin data
