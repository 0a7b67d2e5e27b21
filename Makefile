# hlsvmm — see README.md. Targets are documented in `make help`.
GO      ?= go
BIN     := bin/hlsvmm
GOFLAGS := -trimpath
export CGO_ENABLED := 0

.PHONY: all build test check-fmt vet unit testbed-test demo help

all: build

build: ## static hlsvmm binary in bin/
	$(GO) build $(GOFLAGS) -ldflags '-s -w' -o $(BIN) ./cmd/hlsvmm

check-fmt: ## fail if gofmt would change anything
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit: ## unit tests (root-only tests need root; under CI=true they never skip)
	$(GO) test -count=1 ./...

test: check-fmt vet unit testbed-test ## everything CI runs

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'
