# Berth. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED := 0
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
TOOLS := $(CURDIR)/bin/tools
STATICCHECK := $(TOOLS)/staticcheck
EC2MOCK := $(TOOLS)/ec2-metadata-mock
# Packages whose tests need nothing but Go; the rest need root, dockerd,
# dnsmasq or qemu and say so when they skip.
GOTEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: help deps tools build test unit lint run e2e clean

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: ## Install the Debian packages the build and tests need (as root; skips what is there)
	@bash .ci/deps

tools: $(STATICCHECK) $(EC2MOCK) ## Install the Go tools (staticcheck, ec2-metadata-mock) into bin/tools

$(STATICCHECK):
	GOBIN=$(TOOLS) GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

$(EC2MOCK):
	GOBIN=$(TOOLS) GOFLAGS= $(GO) install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0

build: ## Build the static bin/ros
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ros ./cmd/ros

lint: $(STATICCHECK) ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

unit: ## Go tests only (unit and integration: real dockerd, dnsmasq, netns where root)
	PATH=$(TOOLS):$$PATH $(GO) test $(GOTEST_FLAGS) ./...

test: deps tools build lint unit ## Everything CI runs: deps, lint, unit + integration tests

run: ## Build the image and boot it in qemu (not yet: the image issue)
	@echo "make run: not yet; the bootable image lands with the image issue" >&2; exit 1

e2e: ## Boot the real image in qemu and test it (not yet: the image issue)
	@echo "make e2e: not yet; the e2e suite lands with the image issue" >&2; exit 1

.PHONY: fuzz-config bench-config
fuzz-config: ## Fuzz the config parsers (kernel cmdline, cloud-config, user-data), 60 s each
	for f in FuzzCmdline FuzzParse FuzzDecodeUserData; do $(GO) test ./cloudinit -run '^$$' -fuzz "^$$f\$$" -fuzztime 60s || exit 1; done

bench-config: ## Benchmark parse + validate + merge of a 500-line cloud-config
	$(GO) test ./cloudinit -run '^$$' -bench ParseMerge -benchmem

.PHONY: bench-netconf
bench-netconf: ## Benchmark apply -> usable address, static and DHCP against dnsmasq (root; netns)
	$(GO) test -run '^$$' -bench 'Apply' -benchtime 100x ./netconf/

.PHONY: images test-engines
images: build ## The OS's image tarballs (base, console, docker) into out/images, tagged $(VERSION), no daemon needed
	$(GO) run ./platforms/sysimages/cmd/sysimages -ros bin/ros -version $(VERSION) -out out/images

test-engines: ## The System Docker / services / User Docker tests against real dockerd (root), verbose, with the benchmark lines
	$(GO) test -count=1 -timeout 10m -v -run 'Test(SystemDocker|LoadOS|Reconcile|Supervision|StartEngines|SupervisorAsPID1)' ./sysinit | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|BENCH|latency|took|after'

clean: ## Remove build output
	rm -rf bin out
