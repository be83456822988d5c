# courier — build, test and maintenance targets. Run `make help` for a list.

GO        ?= go
FUZZTIME  ?= 30s
# A count such as FUZZTIME=5000x avoids a Go 1.26 fuzzing flake: with a
# duration, a loaded machine can see "context deadline exceeded" reported
# as a failure at the deadline (golang/go#75804).
FUZZTIMEOUT ?= 10m
BENCHTIME ?= 1s

# Code generators and tools, pinned. `make proto` installs the plugins into
# .bin so that they never depend on what happens to be on PATH.
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PROTOC_GEN_VTPROTO := github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@v0.6.1-0.20240319094008-0393e58bdf10
STATICCHECK        := honnef.co/go/tools/cmd/staticcheck@v0.8.2

BIN := $(CURDIR)/.bin
PROTO_DIR := proto/courier/v1
PROTO_PKG := github.com/courier-go/courier/$(PROTO_DIR)
# vtproto features: the hot path needs marshal, size and the aliasing
# unmarshal; pooling is enabled for the messages a decoder reuses per frame.
VTPROTO_OPTS := features=marshal+unmarshal+unmarshal_unsafe+size+equal+clone+pool,pool=$(PROTO_PKG).Batch,pool=$(PROTO_PKG).Envelope,pool=$(PROTO_PKG).Header

.PHONY: help test bench bench-ring fuzz proto check-proto lint cover demo compare examples

help:
	@echo "make demo         the loopback benchmark: two nodes in two processes"
	@echo "make compare      courier against protoactor-go, gRPC and TCP (bench/compare)"
	@echo "make test         gofmt check, go vet, go test -race ./... (and in each module under contrib/)"
	@echo "make examples     build and run every program in examples/, each bounded in time"
	@echo "make bench        every benchmark for BENCHTIME=$(BENCHTIME)"
	@echo "make bench-ring   the ring against a buffered channel, compared by benchstat"
	@echo "make fuzz         every fuzz target for FUZZTIME=$(FUZZTIME)"
	@echo "make proto        regenerate proto/ code"
	@echo "make check-proto  regenerate, then fail if anything changed"
	@echo "make lint         staticcheck"
	@echo "make cover        coverage profile and summary"

# vet takes -race so that it compiles dependencies exactly as go test -race
# does: one build of the dependency tree serves both, which matters on a
# small CI machine.
# The integrations are Go modules of their own (so that the library's
# go.mod never depends on an actor runtime); their tests run here too.
CONTRIB := contrib/protoactor

test:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -race ./...
	$(GO) test -race -count=1 ./...
	@set -e; for m in $(CONTRIB); do echo "== $$m"; (cd $$m && $(GO) vet -race ./... && $(GO) test -race -count=1 ./...); done

# One build for all examples (with -race: it shares the build cache of
# make test, and catches races), then each runs to completion or fails; none
# may take more than EXAMPLE_TIMEOUT.
EXAMPLE_TIMEOUT ?= 120s
examples:
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	$(GO) build -race -o "$$dir/" ./examples/...; \
	for ex in examples/*/; do n=$$(basename $$ex); echo "== examples/$$n"; timeout $(EXAMPLE_TIMEOUT) "$$dir/$$n"; done; \
	for m in $(CONTRIB); do \
	  (cd $$m && $(GO) build -race -o "$$dir/contrib/" ./examples/...); \
	  for ex in $$m/examples/*/; do n=$$(basename $$ex); echo "== $$m/examples/$$n"; timeout $(EXAMPLE_TIMEOUT) "$$dir/contrib/$$n"; done; \
	done

demo:
	$(GO) run ./bench/cmd/courier-bench

# bench/compare is its own module, so that courier never depends on what it
# is compared with.
compare:
	cd bench/compare && $(GO) run .

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=$(BENCHTIME) ./...

# The ring against a buffered channel, in one run, compared by benchstat.
# Each sample moves RING_BENCHTIME values: long samples average over a shared
# machine's fast and slow spells, which short ones fall into whole. The
# RING_COUNT samples are interleaved (ring, chan, ring, chan, ...), not taken
# five in a row per side, so that a slow spell lasting minutes weighs on both
# sides alike.
RING_BENCHTIME ?= 30000000x
RING_COUNT ?= 5
BENCHSTAT := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
bench-ring:
	@set -e; out=$$(mktemp); trap 'rm -f "$$out" "$$out.test"' EXIT; \
	$(GO) test -c -o "$$out.test" ./ring; \
	for i in $$(seq $(RING_COUNT)); do \
		"$$out.test" -test.run '^$$' -test.bench MPSC -test.count 1 -test.benchtime=$(RING_BENCHTIME) -test.benchmem | tee -a "$$out"; \
	done; \
	$(GO) run $(BENCHSTAT) -col /impl "$$out"

# Each fuzz target runs on its own: go test accepts one -fuzz pattern per
# package and run.
fuzz:
	@set -e; for pkg in $$($(GO) list ./fuzz/... 2>/dev/null); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime=$(FUZZTIME) -timeout=$(FUZZTIMEOUT) $$pkg; \
	  done; \
	done

$(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-go-vtproto:
	GOBIN=$(BIN) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(BIN) $(GO) install $(PROTOC_GEN_GO_GRPC)
	GOBIN=$(BIN) $(GO) install $(PROTOC_GEN_VTPROTO)

proto: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-go-vtproto
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler"; exit 1; }
	PATH="$(BIN):$$PATH" protoc -I proto \
	  --go_out=. --go_opt=module=github.com/courier-go/courier \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/courier-go/courier \
	  --go-vtproto_out=. --go-vtproto_opt=module=github.com/courier-go/courier,$(VTPROTO_OPTS) \
	  $(PROTO_DIR)/courier.proto $(PROTO_DIR)/transport.proto
	PATH="$(BIN):$$PATH" protoc -I batch/internal/refpb \
	  --go_out=. --go_opt=module=github.com/courier-go/courier \
	  batch/internal/refpb/ref.proto
	PATH="$(BIN):$$PATH" protoc -I bench/compare/pb \
	  --go_out=bench/compare --go_opt=module=github.com/courier-go/courier/bench/compare \
	  --go-grpc_out=bench/compare --go-grpc_opt=module=github.com/courier-go/courier/bench/compare \
	  --go-vtproto_out=bench/compare --go-vtproto_opt=module=github.com/courier-go/courier/bench/compare,features=marshal+unmarshal+unmarshal_unsafe+size \
	  bench/compare/pb/compare.proto

check-proto: proto
	@git diff --exit-code -- proto batch/internal/refpb bench/compare/pb || { echo "generated code is stale: run make proto and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto batch/internal/refpb bench/compare/pb)" || { git status --porcelain -- proto batch/internal/refpb bench/compare/pb; echo "untracked generated files"; exit 1; }

lint:
	$(GO) run $(STATICCHECK) ./...

cover:
	$(GO) test -count=1 -coverprofile=cover.out ./...
	$(GO) tool cover -func=cover.out | tail -1
