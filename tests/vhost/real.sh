#!/usr/bin/env bash
# tests/vhost/real.sh — run the vhost package's tests against the kernel's /dev/vhost-net.
#
# The development and CI machines have no /dev/vhost-net, so there those tests skip. This script
# builds the package's test binary here and runs it as root inside the nested test bed
# (tests/testbed/run), with HLSVMM_REQUIRE_VHOST=1 so a missing /dev/vhost-net is a failure.
# Extra arguments go to the test binary (default: -test.v -test.count=1).
set -euo pipefail

if [ "${1:-}" = --in-testbed ]; then
	# Inside L1 (root, vhost_net and tun loaded by the test bed).
	shift
	bin=$1
	shift
	[ -c /dev/vhost-net ] || modprobe vhost_net 2>/dev/null || true
	export HLSVMM_REQUIRE_VHOST=1
	exec "$bin" "$@"
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${HLSVMM_TESTBED_CACHE:-$REPO/.cache/testbed}/vhost
mkdir -p "$OUT"
(cd "$REPO" && CGO_ENABLED=0 go test -c -o "$OUT/vhost.test" ./vhost) || {
	echo "tests/vhost/real.sh: building the vhost test binary failed" >&2
	exit 123
}
[ $# -gt 0 ] || set -- -test.v -test.count=1
exec "$REPO/tests/testbed/run" "${BASH_SOURCE[0]}" --in-testbed "$OUT/vhost.test" "$@"
