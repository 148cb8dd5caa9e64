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

test: deps tools build lint unit e2e ## Everything CI runs: deps, lint, unit + integration tests, the qemu e2e suite

.PHONY: image bench-boot e2e-smoke
image: build sysimages ## The bootable image in out/image: vmlinuz, vmlinux, initrd, system.sqfs, berth.iso (Debian packages, reproducible)
	platforms/build-image.sh bin/ros

run: ## Boot Berth in qemu: console on this terminal, SSH on 127.0.0.1:2222 (builds what is missing)
	@[ -s out/image/initrd ] || $(MAKE) image
	platforms/run.sh

# The whole suite but the boot benchmark (make bench-boot), which boots
# the EC2 case at several memory sizes.
E2E_FLAGS ?= -count=1 -timeout 70m -v
e2e: image ## Boot the real image in qemu (every case: cmdline, EC2, GCE, config drive, state disk, malformed user-data, install, cloud and Packer images)
	$(GO) test -tags e2e $(E2E_FLAGS) -skip '^TestBenchBoot$$' ./e2e/

E2E_SMOKE ?= ^(TestCmdline|TestEC2)$$
e2e-smoke: image ## Boot the real image in qemu: only the kernel-cmdline and EC2 cases (quick check)
	$(GO) test -tags e2e -count=1 -timeout 25m -v -run '$(E2E_SMOKE)' ./e2e/

bench-boot: image ## Boot timings: qemu start to PID 1, network, datasource, System Docker, services, User Docker
	$(GO) test -tags e2e -count=1 -timeout 30m -v -run 'TestBenchBoot' ./e2e/

.PHONY: fuzz-config bench-config
fuzz-config: ## Fuzz the config parsers (kernel cmdline, cloud-config, user-data), 60 s each
	for f in FuzzCmdline FuzzParse FuzzDecodeUserData; do $(GO) test ./cloudinit -run '^$$' -fuzz "^$$f\$$" -fuzztime 60s || exit 1; done

bench-config: ## Benchmark parse + validate + merge of a 500-line cloud-config
	$(GO) test ./cloudinit -run '^$$' -bench ParseMerge -benchmem

.PHONY: bench-netconf
bench-netconf: ## Benchmark apply -> usable address, static and DHCP against dnsmasq (root; netns)
	$(GO) test -run '^$$' -bench 'Apply' -benchtime 100x ./netconf/

.PHONY: sysimages test-engines bench-engines
sysimages: build ## The OS's images (base, console, docker) into out/images as a tarball and an image store, tagged $(VERSION), no daemon needed
	$(GO) run ./platforms/sysimages/cmd/sysimages -ros bin/ros -version $(VERSION) -out out/images

test-engines: ## The System Docker / services / User Docker tests against real dockerd (root), verbose, with the benchmark lines
	$(GO) test -count=1 -timeout 10m -v -run 'Test(SystemDocker|LoadOS|Reconcile|Supervision|StartEngines|SupervisorAsPID1|DefaultServicesComeUp|Reload)' ./sysinit | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|BENCH|latency|took|after'

bench-engines: build ## Engines with the real bin/ros: start to services running, RSS, restart latency, shutdown (root)
	bash sysinit/bench-engines.sh bin/ros

.PHONY: images cloud-images packer-qemu
IMAGE_DIR ?= out/image
CLOUD_DIR ?= out/cloud
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

images: image ## All four images: berth.iso (out/image) and the cloud images (out/cloud), from this commit, with their sizes
	$(MAKE) cloud-images

cloud-images: build ## Cloud images from out/image: berth-openstack.qcow2, berth-gce.tar.gz, berth-ec2.raw/.vmdk into out/cloud (reproducible, sizes printed)
	@[ -s $(IMAGE_DIR)/vmlinuz ] && [ -s $(IMAGE_DIR)/initrd.small ] && [ -s $(IMAGE_DIR)/system.sqfs ] && [ -s $(IMAGE_DIR)/berth.iso ] || $(MAKE) image
	$(GO) run ./platforms/cloudimage/cmd/cloudimage -kernel $(IMAGE_DIR)/vmlinuz -initrd $(IMAGE_DIR)/initrd.small -system-image $(IMAGE_DIR)/system.sqfs -out $(CLOUD_DIR) \
		-seed "$$(git rev-parse HEAD 2>/dev/null || echo dev)" -epoch $(SOURCE_DATE_EPOCH)
	@stat -c '%n %s' $(IMAGE_DIR)/berth.iso | awk '{printf "%-24s %6.1f MiB\n", "berth.iso", $$2/1048576}'

packer-qemu: ## Packer's qemu build: unattended install from berth.iso to out/packer-qemu/berth.qcow2, console in out/packer-qemu.serial.log (KVM if usable, else TCG)
	@[ -s $(IMAGE_DIR)/berth.iso ] || $(MAKE) image
	rm -rf out/packer-qemu out/packer-qemu.serial.log
	accel=tcg cpu=max,-erms,-fsrm; if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then accel=kvm cpu=host; fi; echo "packer-qemu: accelerator $$accel, cpu $$cpu"; \
	CHECKPOINT_DISABLE=1 packer build -only=qemu -var accelerator=$$accel -var cpu=$$cpu \
		-var iso=$(IMAGE_DIR)/berth.iso -var iso_checksum=sha256:$$(sha256sum $(IMAGE_DIR)/berth.iso | cut -d' ' -f1) \
		-var kernel=$(IMAGE_DIR)/vmlinuz -var initrd=$(IMAGE_DIR)/initrd platforms/packer/berth.json
	@stat -c '%n %s' out/packer-qemu/berth.qcow2 | awk '{printf "%s %.1f MiB\n", $$1, $$2/1048576}'

clean: ## Remove build output
	rm -rf bin out
