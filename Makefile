# hlsvmm — see README.md. Targets are documented in `make help`.
GO      ?= go
BIN     := bin/hlsvmm
GOFLAGS := -trimpath
export CGO_ENABLED := 0
# A test-bed run that fails through a fault of the nested emulation (exit 126: L1 wedged, or an L2
# guest reset before its first console byte) is run again, up to twice; see tests/testbed/run.
export HLSVMM_TESTBED_RETRIES ?= 2

.PHONY: all build test check-fmt check-nix vet unit testbed-test testbed-net testbed-storage testbed-storage-boots testbed-storage-sum demo help

all: build

build: ## static hlsvmm binary in bin/
	$(GO) build $(GOFLAGS) -ldflags '-s -w' -o $(BIN) ./cmd/hlsvmm

check-fmt: ## fail if gofmt would change anything
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

check-nix: ## parse nix/*.nix and evaluate the runner test (Debian package nix-bin)
	@command -v nix-instantiate >/dev/null || { echo "check-nix: nix-instantiate missing: apt-get install nix-bin"; exit 1; }
	nix-instantiate --parse nix/*.nix >/dev/null
	nix-instantiate --eval --strict nix/runner-test.nix >/dev/null

vet:
	$(GO) vet ./...

unit: ## unit tests (root-only tests need root; under CI=true they never skip)
	$(GO) test -count=1 ./...

test: check-fmt vet check-nix unit testbed-test testbed-storage ## everything CI runs

testbed-test: ## nested KVM test bed: its own checks and the QEMU self-test, boot, KVM, vhost-net, hlsvmm run end to end with 300 clients, both datapaths, multiqueue
	tests/testbed/check
	tests/testbed/run tests/vmm/boot.sh
	tests/testbed/run tests/vmm/kvm.sh
	tests/vhost/real.sh
	# 300 clients with the stream sized to what the nested guest serves (tests/e2e/sizing.sh).
	E2E_CLIENTS=$${E2E_CLIENTS:-300} HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} E2E_CLIENTS" \
		HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-1800} tests/testbed/run tests/e2e/run.sh
	# Both datapaths (issue 4) with 64 MiB each way instead of make testbed-net's 256 MiB.
	NET_BYTES=$${NET_BYTES:-64MiB} HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} NET_BYTES" \
		HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-1800} tests/testbed/run tests/net/net.sh
	HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-1800} tests/testbed/run tests/net/mq.sh

testbed-storage: ## issue 7's store-disk and 9p boots in the test bed: erofs disk, 9p share and its escapes, a read-through of each, reboot=t and reboot=k, virtio-rng, bad input
	# The read-through uses 48 MiB here; STORAGE_BIG_MIB=200 gives the issue's figure (about 4 min
	# over 9p). A read that hangs prints a hang report (tests/storage/lib.sh, st_hang_report).
	STORAGE_BIG_MIB=$${STORAGE_BIG_MIB:-48} HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-2400} \
		HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} STORAGE_BIG_MIB" tests/storage/assets .cache/testbed/storage
	STORAGE_BIG_MIB=$${STORAGE_BIG_MIB:-48} HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-2400} \
		HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} STORAGE_BIG_MIB STORAGE_9P_READ" tests/testbed/run tests/storage/boot.sh

testbed-storage-boots: ## make testbed-storage without the 9p read-through (quicker, for work on the boots)
	STORAGE_9P_READ=0 $(MAKE) --no-print-directory testbed-storage

testbed-storage-sum: ## issue 7's 9p read-through (sha256sum of STORAGE_BIG_MIB MiB) under QEMU and hlsvmm side by side, SUM_REPEAT times per guest, with thread and metric samples
	STORAGE_BIG_MIB=$${STORAGE_BIG_MIB:-48} HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-2400} \
		HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} STORAGE_BIG_MIB" tests/storage/assets .cache/testbed/storage
	STORAGE_BIG_MIB=$${STORAGE_BIG_MIB:-48} HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-2400} \
		HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} STORAGE_BIG_MIB SUM_VMMS SUM_REPEAT SUM_TIMEOUT SUM_SAMPLE SUM_TRACE ST_VCPUS ST_CMDLINE_BASE" tests/testbed/run tests/storage/sum.sh

testbed-net: ## issue 4's datapath checks in the test bed (both datapaths: ping, /health, 256 MiB each way, 50 clients, driver reload, own-CPU ratio; make test runs them with 64 MiB)
	NET_BYTES=$${NET_BYTES:-256MiB} HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} NET_BYTES" \
		HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-2400} tests/testbed/run tests/net/net.sh

testbed-mq: ## issue 8's multiqueue checks in the test bed: --vcpus 4 --queues 4 (4 rx/tx queues in the guest, 4 vhost workers, 8 flows spread and byte-exact, ethtool -L 1 and back), every knob's invalid value refused
	HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-1800} HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} MQ_BYTES MQ_VCPUS MQ_QUEUES" \
		tests/testbed/run tests/net/mq.sh

bench-mq: ## in the test bed: QEMU queues=4,mq=on,vectors=10 vs hlsvmm --queues 4 vs --queues 1, 4 vCPUs, 8 flows each way (MQ_BYTES MQ_STREAMS MQ_SAMPLES MQ_QUEUES MQ_VCPUS)
	HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-2400} HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} MQ_BYTES MQ_STREAMS MQ_SAMPLES MQ_QUEUES MQ_VCPUS MQ_MEM MQ_TIMEOUT" \
		tests/testbed/run tests/bench/mq.sh

.PHONY: testbed-mq bench-mq

testbed-run: ## run one script as root in the test bed: make testbed-run SCRIPT=path [ARGS="..."]
	tests/testbed/run $(SCRIPT) $(ARGS)

.PHONY: testbed-run

bench: ## in the test bed: datapath table (QEMU and hlsvmm, vhost on/off; DATAPATH_BYTES=64MiB ...) and the HLS load side by side (HLS_CLIENTS=300 HLS_DURATION=30s HLS_LINK_MIBS HLS_RPS HLS_LINK_SHARE=15; the stream is sized to the guest, see tests/e2e/sizing.sh)
	HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-2400} \
	HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} DATAPATH_BYTES DATAPATH_STREAMS DATAPATH_SAMPLES DATAPATH_VARIANTS DATAPATH_BASELINE DATAPATH_TIMEOUT HLS_CLIENTS HLS_DURATION HLS_VARIANTS HLS_LINK_MIBS HLS_RPS HLS_LINK_SHARE" \
		tests/testbed/run tests/bench/all.sh

bench-hls: ## only the HLS load comparison of make bench (HLS_LINK_MIBS=N skips measuring the link)
	HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} HLS_CLIENTS HLS_DURATION HLS_VARIANTS HLS_LINK_MIBS HLS_RPS HLS_LINK_SHARE" \
		tests/testbed/run tests/bench/hls.sh

bench-matrix: ## in the test bed: hlsvmm bench --matrix, the datapath figures per combination of run flags (MATRIX_SPEC="vhost=on|off queues=1|2" MATRIX_BYTES=16MiB MATRIX_VCPUS=2 ...)
	HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-2400} \
	HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} MATRIX_SPEC MATRIX_BYTES MATRIX_STREAMS MATRIX_SAMPLES MATRIX_VCPUS MATRIX_MEM MATRIX_APPEND MATRIX_READY_TIMEOUT MATRIX_TIMEOUT" \
		tests/testbed/run tests/bench/matrix.sh

.PHONY: bench bench-matrix

bench-storage: ## storage figures in the test bed: store disk and 9p share, seq MiB/s and 4 KiB IOPS, hlsvmm vs QEMU (BENCH_READS BENCH_SAMPLES BENCH_MSIZE)
	tests/storage/assets .cache/testbed/storage
	HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-1800} \
	HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} BENCH_READS BENCH_SAMPLES BENCH_MSIZE STORAGE_BIG_MIB" \
		tests/testbed/run tests/storage/bench.sh

.PHONY: bench-storage

bench-boot: ## boot time and VMM memory overhead, hlsvmm vs QEMU in the test bed (BENCH_BOOTS BENCH_VCPUS BENCH_MEM BENCH_QEMU_MACHINE)
	HLSVMM_TESTBED_TIMEOUT=$${HLSVMM_TESTBED_TIMEOUT:-3600} \
	HLSVMM_TESTBED_ENV="$${HLSVMM_TESTBED_ENV:-} BENCH_BOOTS BENCH_VCPUS BENCH_MEM BENCH_QEMU_MACHINE BENCH_CMDLINE" \
		tests/testbed/run tests/vmm/bench-boot.sh

demo: build ## from nothing to a serving origin: hlsvmm run (network included), /health via 127.0.0.1:17080, a 30 s 300-client HLS load (directly with /dev/kvm as root, else in the test bed)
	tests/e2e/demo

demo-console: build ## boot the test guest with hlsvmm and type on its console (directly with a usable /dev/kvm, else in the test bed)
	tests/vmm/demo

microvm-start: build ## the seed's VM: hlsvmm run, 4 vCPUs, 4096 MiB, console on 127.0.0.1:17022, network set up and torn down (HLSVMM_KERNEL, HLSVMM_INITRD, RUNFLAGS)
	@[ -n "$${HLSVMM_KERNEL:-}" ] || { echo "microvm-start: set HLSVMM_KERNEL=bzImage (and HLSVMM_INITRD=initrd), e.g. make microvm-start HLSVMM_KERNEL=/boot/vmlinuz-$$(uname -r)"; exit 2; }
	$(SUDO) $(BIN) run --kernel "$$HLSVMM_KERNEL" $${HLSVMM_INITRD:+--initrd "$$HLSVMM_INITRD"} --vcpus 4 --mem 4096 --serial tcp:127.0.0.1:17022 $(RUNFLAGS)

.PHONY: bench-hls demo-console microvm-start

.PHONY: bench-boot

NETFLAGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
network-setup: build ## host network: bridge hlsbr0, TAP hlstap0, NAT, port forwards (NETFLAGS="--forward 17080:17080 ...")
	$(SUDO) $(BIN) network setup $(NETFLAGS)

network-teardown: build ## remove what network-setup made, restore sysctls
	$(SUDO) $(BIN) network teardown $(NETFLAGS)

network-check: build ## verify the host network (NETFLAGS="--vm" to require a running VM)
	$(SUDO) $(BIN) network check $(NETFLAGS)

.PHONY: network-setup network-teardown network-check

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'
