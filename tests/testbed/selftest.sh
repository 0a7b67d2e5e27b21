#!/bin/bash
# Test bed self-test, run in L1 by `make testbed-test` (tests/testbed/run tests/testbed/selftest.sh):
# QEMU -enable-kvm boots the test guest with virtio-net-pci over vhost-net on a TAP on hlsbr0, and
# L1 fetches /health, the playlist, a segment (content verified) and the metrics from it, then
# uses the guest's console shell and powers it off from there.
set -euo pipefail
. "$HLSVMM_REPO/tests/testbed/lib.sh"
trap 'qemu_guest_stop' EXIT

tb_phase "L1 devices"
test -c /dev/kvm || tb_fail "/dev/kvm missing"
test -c /dev/vhost-net || tb_fail "/dev/vhost-net missing"
test -c /dev/net/tun || tb_fail "/dev/net/tun missing"
nft list ruleset >/dev/null || tb_fail "nft list ruleset failed"
nft -f - <<'NFT' || tb_fail "nft NAT/masquerade/fib/ct rules refused"
table ip hlsvmm_selftest {
	chain pre { type nat hook prerouting priority -100; fib daddr type local tcp dport 17080 dnat to 10.177.0.10; }
	chain out { type nat hook output priority -100; ip daddr 127.0.0.1 tcp dport 17080 dnat to 10.177.0.10; }
	chain post { type nat hook postrouting priority 100; ip saddr 10.177.0.0/24 oifname != "hlsbr0" masquerade; }
	chain fw { type filter hook forward priority 0; ct state established,related accept; }
}
NFT
nft delete table ip hlsvmm_selftest

tb_phase "bridge + TAP"
tb_bridge_up || tb_fail "bridge $TB_BRIDGE"
tb_tap_add hlstap0 || tb_fail "TAP hlstap0"

tb_phase "QEMU guest boot to READY"
qemu_guest_start
ready=$(wait_marker "$QEMU_GUEST_LOG" HLSVMM-GUEST-READY 300 "$QEMU_GUEST_PID") || {
	if l2_reset_early "$QEMU_GUEST_PID" "$QEMU_GUEST_LOG"; then
		grep -a -A3 'CPU Reset' "$QEMU_GUEST_LOG.resets" | tail -n 4 | sed 's/^/  | /' >&2
		tb_nested_fault "QEMU's guest reset before its console printed anything"
	fi
	echo "--- guest console:"; tail -n 40 "$QEMU_GUEST_LOG"; echo "--- qemu:"; cat "$QEMU_GUEST_LOG.qemu"
	tb_fail "test guest did not become ready"
}
echo "guest ready after ${ready}s"
vhost=$(grep -l "^vhost-$QEMU_GUEST_PID\$" /proc/[0-9]*/comm 2>/dev/null | wc -l)
[ "$vhost" -ge 1 ] || tb_fail "no vhost-$QEMU_GUEST_PID kernel thread: QEMU is not using vhost-net"

tb_phase "HTTP checks"
base=http://$TB_GUEST_IP:$TB_ORIGIN_PORT
health=$(curl -fsS --max-time 20 "$base/health") || tb_fail "GET /health failed"
[ "$health" = OK ] || tb_fail "/health said '$health', want OK"
playlist=$(curl -fsS --max-time 20 "$base/stream.m3u8") || tb_fail "GET /stream.m3u8 failed"
grep -q '^#EXT-X-MEDIA-SEQUENCE:[0-9]' <<<"$playlist" || tb_fail "playlist without media sequence: $playlist"
[ "$(grep -c '^seg[0-9]*\.ts$' <<<"$playlist")" = 10 ] || tb_fail "playlist does not list 10 segments: $playlist"
last=$(grep '^seg[0-9]*\.ts$' <<<"$playlist" | tail -n 1)
seq=$((10#$(tr -dc 0-9 <<<"$last")))
segment_verify "$base/$last" "$seq" 500000 || tb_fail "segment $last"
echo "segment $last: 500000 bytes, content verified"
metrics=$(curl -fsS --max-time 20 "http://$TB_GUEST_IP:$TB_METRICS_PORT/metrics") || tb_fail "GET :9100/metrics failed"
grep -q '^hls_origin_http_requests_total{handler="segment",code="2xx"} 1$' <<<"$metrics" ||
	tb_fail "metrics do not count the segment request"

tb_phase "console shell + poweroff"
console_send 17022 'echo SHELL-$((6 * 7)) $(nproc) $(uname -r)' || tb_fail "cannot reach the guest console on 17022"
wait_marker "$QEMU_GUEST_LOG" "SHELL-42 1 $(uname -r)" 60 "$QEMU_GUEST_PID" >/dev/null ||
	tb_fail "the console shell did not answer"
console_send 17022 poweroff || tb_fail "cannot reach the guest console on 17022"
for _ in $(seq 600); do kill -0 "$QEMU_GUEST_PID" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$QEMU_GUEST_PID" 2>/dev/null || tb_fail "guest did not power off within 60s"
wait "$QEMU_GUEST_PID" || tb_fail "QEMU exited with status $? after the guest's poweroff"
QEMU_GUEST_PID=
tb_phase_end
echo "selftest: OK"
