#!/usr/bin/env bash
# tests/e2e/run.sh — `hlsvmm run` end to end from a clean host, in the test bed:
#   tests/testbed/run tests/e2e/run.sh        (part of make testbed-test)
# 1. `hlsvmm run` with the default --net bridge on a host without hlsbr0: status lines, guest ready,
#    /health via 127.0.0.1:17080 (the port forward) and via 10.177.0.10; `network check --vm` all ✓
#    (vhost-net too); E2E_CLIENTS (300) HLS clients for E2E_DURATION (at least 3 segments) through
#    127.0.0.1:17080 with zero errors, the stream sized from a measurement of the guest
#    (tests/e2e/sizing.sh: under emulation it serves far less than 300 real players need).
# 2. A second `hlsvmm run` on the same bridge (TAP hlstap1, 10.177.0.11, its own MAC and console)
#    joins: both serve. SIGTERM to the first (which set the network up): the network stays for the
#    second; SIGTERM to the second: links, nft ruleset, ip_forward and route_localnet are as before.
# 3. `hlsvmm run` killed with SIGKILL after setting the network up; `hlsvmm run` again takes the
#    network over and serves; poweroff from its console ends it with 0 and the host is as before.
# Prints PASS/FAIL per check.
set -uo pipefail
. "$HLSVMM_REPO/tests/testbed/lib.sh"
. "$HLSVMM_REPO/tests/e2e/sizing.sh"

OUT=${HLSVMM_OUT:-/tmp}/e2e
CLIENTS=${E2E_CLIENTS:-300}
DURATION=${E2E_DURATION:-30s}
# A low boot bitrate keeps the origin's segment making light; the load restarts it sized.
CMDLINE="console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd nomodeset quiet hls.bitrate=100000"
mkdir -p "$OUT"
failed=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
indent() { sed 's/^/  | /'; }

# snapshot FILE: the host state a run must leave as it found it.
snapshot() {
	{
		echo "# links"; ip -br link | awk '{print $1}' | sort
		echo "# nft"; nft list ruleset
		echo "# sysctls"; echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
		for f in /proc/sys/net/ipv4/conf/*/route_localnet; do echo "$f=$(cat "$f")"; done
	} >"$1" 2>&1
}
# same_as_before WHAT: compare the host with the first snapshot.
same_as_before() {
	snapshot "$OUT/after-$2.txt"
	if diff -u "$OUT/before.txt" "$OUT/after-$2.txt" >"$OUT/diff-$2.txt"; then pass "$1: links, nft ruleset, ip_forward, route_localnet as before"
	else fail "$1: the host changed"; indent <"$OUT/diff-$2.txt"; fi
	if ls /run/hlsvmm/network-*.json /run/hlsvmm/run-*.json >/dev/null 2>&1; then fail "$1: state left: $(ls /run/hlsvmm)"; fi
}

declare -A PID LOG
# start NAME ARGS...: hlsvmm run in the background, console log $OUT/NAME-console.log, stderr NAME.err.
start() {
	local n=$1; shift
	LOG[$n]=$OUT/$n-console.log; : >"${LOG[$n]}"
	hlsvmm run --kernel "$HLSVMM_KERNEL" --initrd "$HLSVMM_INITRD" --mem 512 --vcpus 1 --cmdline "$CMDLINE" \
		--serial-log "${LOG[$n]}" "$@" </dev/null >"$OUT/$n.out" 2>"$OUT/$n.err" &
	PID[$n]=$!
}
ready() {
	local n=$1 secs
	if secs=$(wait_marker "${LOG[$n]}" HLSVMM-GUEST-READY 300 "${PID[$n]}"); then pass "$n: guest ready after ${secs}s"
	else
		l2_reset_early "${PID[$n]}" "${LOG[$n]}" "$OUT/$n.err" && tb_nested_fault "$n: the guest reset while booting: $(tail -n 1 "$OUT/$n.err")"
		fail "$n: no HLSVMM-GUEST-READY"; tail -n 20 "${LOG[$n]}" | indent; indent <"$OUT/$n.err"; return 1; fi
}
# stop NAME SIGNAL WANT: signal hlsvmm, wait up to 30 s, check its exit status.
stop() {
	local n=$1 sig=$2 want=$3 st
	kill "-$sig" "${PID[$n]}" 2>/dev/null
	for _ in $(seq 300); do kill -0 "${PID[$n]}" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "${PID[$n]}" 2>/dev/null; then fail "$n: still running 30 s after SIG$sig"; kill -9 "${PID[$n]}"; fi
	wait "${PID[$n]}"; st=$?
	PID[$n]=
	[ "$st" = "$want" ] && pass "$n: SIG$sig ends hlsvmm with $st" || { fail "$n: SIG$sig: exit $st, want $want"; tail -n 15 "$OUT/$n.err" | indent; }
}
cleanup() { for n in "${!PID[@]}"; do [ -n "${PID[$n]}" ] && kill -9 "${PID[$n]}" 2>/dev/null; done; }
trap cleanup EXIT
health() { # health URL WHAT
	local h; h=$(curl -sS --max-time 10 "$1/health" 2>&1)
	[ "$h" = OK ] && pass "$2: GET $1/health" || fail "$2: GET $1/health: '$h'"
}

tb_phase "clean host"
if ip link show hlsbr0 >/dev/null 2>&1 || nft list table ip hls_nat >/dev/null 2>&1; then fail "the host is not clean"; fi
snapshot "$OUT/before.txt"

tb_phase "first run: boot"
start vm1 --serial tcp:127.0.0.1:17022 --vhost on --metrics 127.0.0.1:17190
ready vm1 || exit 1
for want in "Created bridge hlsbr0" "Created TAP hlstap0" "nftables tables hls_nat and hls_filter" "✓ Network ready: bridge hlsbr0 10.177.0.1/24, TAP hlstap0, VM 10.177.0.10" \
	"✓ console on 127.0.0.1:17022" "vhost-net datapath" "✓ guest listening on 10.177.0.10:17080 (127.0.0.1:17080 on the host)"; do
	grep -qF "$want" "$OUT/vm1.err" || { fail "vm1: no status line '$want'"; indent <"$OUT/vm1.err"; }
done

tb_phase "first run: checks"
health http://127.0.0.1:17080 vm1
health http://10.177.0.10:17080 vm1
if hlsvmm network check --vm >"$OUT/check.txt" 2>&1; then
	if grep -q '✗' "$OUT/check.txt" || ! grep -q '✓.*vhost' "$OUT/check.txt"; then fail "network check --vm: not all ✓"; indent <"$OUT/check.txt"
	else pass "network check --vm: $(grep -c '✓' "$OUT/check.txt") ✓, vhost-net ✓, no ✗"; fi
else fail "network check --vm exited $?"; indent <"$OUT/check.txt"; fi
grep -v '✓' "$OUT/check.txt" | indent
# (Into a file first: under pipefail, grep -q quitting early would fail curl with SIGPIPE.)
curl -sS --max-time 10 http://127.0.0.1:17190/metrics >"$OUT/vm1-metrics.txt" 2>&1 && grep -q 'datapath="vhost-net"' "$OUT/vm1-metrics.txt" &&
	pass "vm1: --metrics names the vhost-net datapath" || fail "vm1: /metrics lacks datapath=\"vhost-net\""

# hls_load: measure the guest, size the stream to it, restart the origin with it, run the load.
hls_load() {
	if ! hlsvmm bench datapath --url http://10.177.0.10:17080 "${SIZE_MEASURE[@]}" --json --progress none \
		>"$OUT/link.json" 2>"$OUT/link.err"; then
		fail "measure the guest for the load"; tail -n 5 "$OUT/link.err" | indent; return
	fi
	size_from_json "$OUT/link.json" "$CLIENTS"
	echo "  ${STREAM_NOTE:-stream 2 Mbit/s, 2 s segments}"
	origin_restart 17022 "$BITRATE" "$SEGMENT" || { fail "restart the origin sized for the load"; return; }
	DURATION=$(stream_duration "$DURATION")
	if hlsvmm bench hls --url http://127.0.0.1:17080 --clients "$CLIENTS" --duration "$DURATION" --ramp "${SEGMENT}s" --json \
		--progress none >"$OUT/hls.json" 2>"$OUT/hls.err"; then
		pass "$CLIENTS HLS clients for $DURATION through 127.0.0.1:17080, zero errors: $(jq -r '"\(.segments.fetched) segments verified, \(.throughput.measured_mib_s*100|round/100) MiB/s, p99 \(.segment_latency.p99_ms|round) ms"' "$OUT/hls.json" 2>/dev/null)"
	else fail "$CLIENTS HLS clients"; head -c 1500 "$OUT/hls.json" | indent; tail -n 5 "$OUT/hls.err" | indent; fi
}

tb_phase "first run: $CLIENTS clients"
if [ "$CLIENTS" -eq 0 ]; then
	echo "NOTE: E2E_CLIENTS=0: no HLS load in this run (make bench and make demo run 300 clients and report them)"
else hls_load; fi

tb_phase "second run: boot"
start vm2 --serial tcp:127.0.0.1:17023 --tap hlstap1 --vm-ip 10.177.0.11 --vhost on
if ready vm2; then
	grep -q "joins it on TAP hlstap1 at 10.177.0.11" "$OUT/vm2.err" && grep -q "TAP hlstap1 on hlsbr0" "$OUT/vm2.err" &&
		pass "vm2: joins hlsbr0 on hlstap1 (MAC $(grep -o '✓ net0 [0-9a-f:]*' "$OUT/vm2.err" | cut -d' ' -f3))" ||
		{ fail "vm2: no join lines"; indent <"$OUT/vm2.err"; }
	health http://10.177.0.11:17080 vm2
	health http://127.0.0.1:17080 "vm1 beside vm2"
	health http://10.177.0.10:17080 "vm1 beside vm2"
fi

tb_phase "SIGTERM first, then second"
stop vm1 TERM 143
grep -q "left to hlsvmm run pid ${PID[vm2]:-x}" "$OUT/vm1.err" 2>/dev/null || grep -q "left to hlsvmm run pid" "$OUT/vm1.err" &&
	pass "vm1: leaves the network to vm2" || { fail "vm1: did not hand the network over"; tail -n 10 "$OUT/vm1.err" | indent; }
ip link show hlsbr0 >/dev/null 2>&1 && nft list table ip hls_nat >/dev/null 2>&1 && pass "hlsbr0 and hls_nat stay while vm2 runs" || fail "network gone under vm2"
health http://10.177.0.11:17080 "vm2 after vm1 ended"
stop vm2 TERM 143
grep -q "Network hlsbr0 torn down" "$OUT/vm2.err" && pass "vm2: tears the network down" || { fail "vm2: no teardown"; tail -n 10 "$OUT/vm2.err" | indent; }
same_as_before "after SIGTERM" sigterm

tb_phase "SIGKILL, then run again"
start vm3 --serial tcp:127.0.0.1:17022
for _ in $(seq 300); do grep -q "Network ready" "$OUT/vm3.err" && break; sleep 0.1; done
sleep 1
kill -9 "${PID[vm3]}"; wait "${PID[vm3]}" 2>/dev/null; PID[vm3]=
ip link show hlsbr0 >/dev/null 2>&1 && pass "SIGKILL leaves the network (state in /run/hlsvmm)" || fail "no network after SIGKILL"
start vm4 --serial tcp:127.0.0.1:17022
if ready vm4; then
	grep -q "Took over the network of hlsvmm run pid" "$OUT/vm4.err" && pass "vm4: takes over the killed run's network" ||
		{ fail "vm4: did not take the network over"; indent <"$OUT/vm4.err"; }
	health http://127.0.0.1:17080 vm4
	console_send 17022 poweroff
	for _ in $(seq 300); do kill -0 "${PID[vm4]}" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "${PID[vm4]}" 2>/dev/null; then fail "vm4: still running 30 s after poweroff"; kill -9 "${PID[vm4]}"
	else wait "${PID[vm4]}"; st=$?; [ $st -eq 0 ] && pass "vm4: poweroff ends hlsvmm with 0" || fail "vm4: exit $st after poweroff"; fi
	PID[vm4]=
	same_as_before "after poweroff" poweroff
fi
tb_phase_end

[ $failed -eq 0 ] || { echo "e2e: $failed failed"; exit 1; }
echo "e2e: all passed"
