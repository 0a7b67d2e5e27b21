#!/usr/bin/env bash
# tests/vmm/kvm.sh — the vmm package's tests against the test bed's real /dev/kvm (build tag
# kvmtest): system, CPUID accepted by KVM, GSI routes, irqfd/ioeventfd, MSI, IRQ lines, the run loop
# on a tiny real-mode program (string I/O, unclaimed ports, device stop), kicking a spinning vCPU,
# and the halted-guest detection.   tests/testbed/run tests/vmm/kvm.sh
set -euo pipefail
cd "$HLSVMM_REPO"
export GOFLAGS=${GOFLAGS:-}
go test -count=1 -timeout 600s -tags kvmtest -run KVM -v ./vmm 2>&1 | grep --line-buffered -v "^=== RUN"
