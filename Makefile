# parley's developer entry points. The README starts with `make run` and
# `make test`; .ci/run calls `make test`.
SHELL := /bin/bash
GO    ?= go

DAPR_VERSION := 1.18.2
DAPRD        := sidecar/bin/daprd

.PHONY: run run-memory test test-ts test-short fuzz fuzz-long bench sidecar cluster proto vet

# run: daprd with components/local, then parley with the chat page on
# http://localhost:8080. Ctrl-C stops both.
# The binary is built, not `go run`, so that Ctrl-C reaches parley alone and
# its clean exit is make's too.
run: $(DAPRD) parley
	./bin/parley -backend dapr -sidecar launch -profile local -settings deploy/local/settings.yaml

# units: two units of parley on this machine, onprem on postgres-rabbitmq
# and cloud on redis, each with its own daprd, sharing the route table of
# components/units; prints each unit's page. Needs PostgreSQL, RabbitMQ
# and Redis running. Ctrl-C stops both.
.PHONY: units
units: $(DAPRD) parley
	deploy/units/run.sh

# run-memory: parley alone, with the in-memory adapter and no sidecar.
run-memory: parley
	./bin/parley -backend memory -settings deploy/local/settings.yaml

.PHONY: parley cli
parley:
	$(GO) build -o bin/parley ./app/cmd/parley

# cli: the terminal client, bin/parley-cli.
cli:
	$(GO) build -o bin/parley-cli ./app/cmd/parley-cli

# test: every test, race detector on, against a real daprd per profile, then
# the TypeScript client's tests against a parley built from this tree.
# Profiles whose servers are not running skip with a reason (fail in CI).
test: $(DAPRD)
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 25m ./...
	$(MAKE) test-ts

# test-ts: the TypeScript client (clients/ts): npm ci, build, and its tests
# against a parley built from this tree. Needs Node 20+ and npm.
test-ts:
	clients/ts/test.sh

# web: the browser build of the TypeScript client (clients/ts) that the chat
# page imports, in app/gateway/web/sdk, which is committed; run it after
# changing clients/ts/src (make test-ts fails while the two differ).
.PHONY: web
web:
	cd clients/ts && npm ci --no-audit --no-fund && rm -rf ../../app/gateway/web/sdk && npm run build:web

# test-short: the unit tests only: no sidecar, no server, no parley process.
# -short makes every end-to-end test in app/cmd/parley skip
# (testkit.SkipShort); infrastructure/dapr, whose tests need daprd, is left
# out.
test-short:
	$(GO) test -race -count=1 -short ./domain/... ./app/... ./client/... ./tools/... ./infrastructure/memory/... ./deploy/...

# fuzz: a short run of every fuzz target; fuzz-long: two minutes each (what
# they find is kept in each package's testdata/fuzz as seeds of the corpus).
FUZZ_TARGETS := \
	./domain/:FuzzParseConversationID ./domain/:FuzzDraftValidate \
	./domain/:FuzzParseExt ./domain/:FuzzParseMentions ./domain/:FuzzParseGroupProfile \
	./domain/:FuzzParseSystemEvent ./domain/:FuzzMemberWindow \
	./app/gateway/:FuzzDecodeFrame ./app/gateway/:FuzzHTTPBody ./app/gateway/wsconn/:FuzzParseFrame \
	./proto/parley/v1/:FuzzAppendJSON ./app/auth/:FuzzVerify ./app/abuse/:FuzzParseSubject
FUZZTIME ?= 15s
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}) for $(FUZZTIME)"; \
		$(GO) test -run XXX -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

fuzz-long:
	$(MAKE) fuzz FUZZTIME=2m

# sidecar: the real daprd, built from github.com/dapr/dapr v$(DAPR_VERSION)
# by the module in sidecar/. Rebuilt only when that module changes.
sidecar: $(DAPRD)

$(DAPRD): sidecar/go.mod sidecar/go.sum sidecar/main.go
	cd sidecar && $(GO) build -tags stablecomponents \
		-ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$(DAPR_VERSION)" \
		-o bin/daprd .

# proto: regenerate proto/ (needs protoc and protoc-gen-go; the output is committed).
proto:
	$(GO) generate ./proto

# cluster: N nodes (N=3 by default), each with its own daprd, on a shared
# profile (PROFILE=redis by default). Ctrl-C stops all.
N       ?= 3
PROFILE ?= redis
cluster: $(DAPRD)
	$(GO) run ./app/cmd/cluster -n $(N) -profile $(PROFILE)

# centrifugo: Centrifugo v$(CENTRIFUGO_VERSION), the reference server of
# `make bench`, installed once from the Go module proxy into .build/
# (git-ignored). A few minutes the first time.
CENTRIFUGO_VERSION := 6.9.1
CENTRIFUGO         := .build/centrifugo-v$(CENTRIFUGO_VERSION)/centrifugo

.PHONY: centrifugo
centrifugo: $(CENTRIFUGO)

# The version is set as Centrifugo's release builds set it, so that
# `centrifugo version` (which the suite prints) names it.
$(CENTRIFUGO):
	GOBIN=$(CURDIR)/$(dir $(CENTRIFUGO)) $(GO) install \
		-ldflags "-X github.com/centrifugal/centrifugo/v6/internal/build.Version=$(CENTRIFUGO_VERSION)" \
		github.com/centrifugal/centrifugo/v6@v$(CENTRIFUGO_VERSION)

# bench: the load generator's suite (tools/loadgen) against parley in three
# modes (memory, daprd with components/local, daprd with components/redis),
# measured in the same run, printed as one table, with Centrifugo (memory and
# redis engines) as a reference column beside parley memory and daprd+redis:
# its direct runs alternate with parley's. A group of 2,000 members all
# online, 10 of them sending, runs in memory and daprd+redis mode on a parley
# of its own. About 10 minutes; loopback only.
bench: $(DAPRD) $(CENTRIFUGO)
	$(GO) run ./tools/loadgen suite -centrifugo $(CENTRIFUGO)
