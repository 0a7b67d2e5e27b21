#!/usr/bin/env bash
# tests/net/mq.sh — multiqueue virtio-net and the datapath knobs (issue 8), in the test bed:
#   make testbed-mq    (tests/testbed/run tests/net/mq.sh)
# 1. Every knob's invalid value is refused: one line, exit 2, and the host as it was.
# 2. `hlsvmm run --vcpus 4 --queues 4 --vhost on` (default --net bridge) boots the test guest:
#    - the guest has 4 rx and 4 tx queues (/sys/class/net/eth0/queues) and ethq (ethtool -l) says
#      4 of 4 combined channels;
#    - L1 has 4 vhost-net workers for the VM (one per queue pair);
#    - 8 parallel flows each way arrive byte-exact (bench datapath) and are spread over at least 2
#      queues (the guest's per-queue MSI-X interrupt counts, /proc/interrupts);
#    - `ethq eth0 1` (ethtool -L eth0 combined 1) in the guest: 1 rx and 1 tx queue, traffic still
#      flows byte-exact on the one pair; `ethq eth0 4` again: 4 queues, traffic flows;
#    - poweroff ends hlsvmm with 0.
# Prints PASS/FAIL per check. Settings: MQ_BYTES (16MiB per direction), MQ_VCPUS (4), MQ_QUEUES (4).
set -uo pipefail
. "$HLSVMM_REPO/tests/testbed/lib.sh"

OUT=${HLSVMM_OUT:-/tmp}/mq
BYTES=${MQ_BYTES:-16MiB} VCPUS=${MQ_VCPUS:-4} QUEUES=${MQ_QUEUES:-4}
PORT=17022 URL=http://$TB_GUEST_IP:17080
mkdir -p "$OUT"
failed=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
indent() { sed 's/^/  | /'; }
pid= log=$OUT/console.log
stop_vm() {
	[ -n "$pid" ] || return 0
	tb_stop "$pid"
	pid=
}
trap stop_vm EXIT

# guest TAG CMD: run CMD in the guest's console shell and wait (60 s) for its end; its output is
# then in $OUT/TAG.txt. (The end marker must not start with the begin marker: wait_marker matches
# line prefixes.)
guest() {
	console_send "$PORT" "echo $1-BEGIN; $2; echo $1-END" && wait_marker "$log" "$1-END" 60 "$pid" >/dev/null &&
		sed -n "/^$1-BEGIN/,/^$1-END/p" "$log" | tr -d '\r' | sed '1d;$d' >"$OUT/$1.txt"
}

# queues_in_guest TAG: "RX TX", the guest's rx-N and tx-N queue counts.
queues_in_guest() {
	guest "Q-$1" "ls -1 /sys/class/net/eth0/queues" || return 1
	echo "$(grep -c '^rx-' "$OUT/Q-$1.txt") $(grep -c '^tx-' "$OUT/Q-$1.txt")"
}

# irqs TAG: the guest's per-queue interrupt counts, "virtio0-input.N COUNT" per line.
irqs() {
	guest "IRQ-$1" "grep virtio /proc/interrupts" || return 1
	awk '{n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print $NF, n}' "$OUT/IRQ-$1.txt" | grep -E 'put\.[0-9]+ ' | sort
}

# detached: how many of the TAP's queues are detached (TUNSETQUEUE), from `ip -d link`.
detached() { ip -d link show hlstap0 | grep -o 'numdisabled [0-9]*' | cut -d' ' -f2; }

# transfer TAG STREAMS: bench datapath, byte-exact both ways.
transfer() {
	if hlsvmm bench datapath --url "$URL" --bytes "$BYTES" --streams "$2" --latency-samples -1 --echo none --json --progress none \
		>"$OUT/$1.json" 2>"$OUT/$1.err" && [ "$(jq -r '.guest_to_host.verified and .host_to_guest.verified' "$OUT/$1.json")" = true ]; then
		pass "$1: $BYTES each way over $2 flows byte-exact: guest→host $(jq -r '.guest_to_host.mib_per_s*100|round/100' "$OUT/$1.json") MiB/s, host→guest $(jq -r '.host_to_guest.mib_per_s*100|round/100' "$OUT/$1.json") MiB/s"
	else fail "$1: $BYTES over $2 flows"; jq -c .failures "$OUT/$1.json" 2>/dev/null | indent; tail -n 5 "$OUT/$1.err" | indent; return 1; fi
}

tb_phase "invalid knobs"
snapshot() { { ip -br link | awk '{print $1}' | sort; nft list ruleset; } 2>&1; }
before=$(snapshot)
while read -r flag value; do
	out=$(hlsvmm run --kernel "$HLSVMM_KERNEL" --initrd "$HLSVMM_INITRD" --vcpus "$VCPUS" --serial none "$flag" "$value" 2>&1 </dev/null)
	st=$?
	if [ $st -ne 0 ] && [ "$(wc -l <<<"$out")" -eq 1 ] && grep -q -- "${flag}" <<<"$out" && ! grep -q "not defined" <<<"$out" && [ "$(snapshot)" = "$before" ]; then
		pass "$flag $value refused, exit $st: $out"
	else fail "$flag $value: exit $st, host changed: $([ "$(snapshot)" = "$before" ] && echo no || echo yes)"; indent <<<"$out"; fi
done <<EOT
--queues 0
--queues 17
--queues many
--queue-size 100
--queue-size 2048
--queue-size 128
--offload tso4
--offload csum,gso
--offload ecn,csum
--event-idx maybe
--indirect-desc 2
--mrg-rxbuf yes
--busy-poll -1
--busy-poll fast
--tap-sndbuf lots
--vcpu-affinity 0,1
--vcpu-affinity 0,1,2,999
EOT

tb_phase "boot"
: >"$log"
hlsvmm run --kernel "$HLSVMM_KERNEL" --initrd "$HLSVMM_INITRD" --mem 768 --vcpus "$VCPUS" --queues "$QUEUES" --vhost on \
	--serial "tcp:127.0.0.1:$PORT" --serial-log "$log" --cmdline "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd nomodeset quiet hls.bitrate=100000" \
	</dev/null >"$OUT/hlsvmm.log" 2>&1 &
pid=$!
if ! secs=$(wait_marker "$log" HLSVMM-GUEST-READY 420 "$pid"); then
	l2_reset_early "$pid" "$log" "$OUT/hlsvmm.log" && tb_nested_fault "the guest reset while booting: $(tail -n 1 "$OUT/hlsvmm.log")"
	fail "no HLSVMM-GUEST-READY"; tail -n 30 "$log" | indent; indent <"$OUT/hlsvmm.log"; exit 1
fi
pass "guest with $VCPUS vCPUs and $QUEUES queue pairs ready after ${secs}s"
grep -a "net0" "$OUT/hlsvmm.log" | indent

tb_phase "queues"
q=$(queues_in_guest boot) && [ "$q" = "$QUEUES $QUEUES" ] && pass "the guest has $QUEUES rx and $QUEUES tx queues" ||
	{ fail "guest queues: '$q' (rx tx), want $QUEUES of each"; indent <"$OUT/Q-boot.txt"; }
guest ETHQ "ethq eth0" && grep -qx "combined $QUEUES max $QUEUES" "$OUT/ETHQ.txt" && pass "ethtool -l: $(cat "$OUT/ETHQ.txt")" ||
	{ fail "ethq eth0: '$(cat "$OUT/ETHQ.txt" 2>/dev/null)'"; }
tids=$(ls /proc/"$pid"/task)
workers=$(for t in $tids; do grep -lx "vhost-$t" /proc/[0-9]*/comm /proc/"$pid"/task/*/comm 2>/dev/null; done | sort -u | wc -l)
[ "$workers" -eq "$QUEUES" ] && pass "L1 has $workers vhost-net workers for hlsvmm $pid" ||
	fail "L1 has $workers vhost-net workers for hlsvmm $pid, want $QUEUES"

tb_phase "8 flows"
irqs before >"$OUT/irq-before.txt"
transfer "$QUEUES-pairs" 8
irqs after >"$OUT/irq-after.txt"
busy=$(join "$OUT/irq-before.txt" "$OUT/irq-after.txt" | awk '$3 - $2 > 50 {print $1}')
for d in input output; do
	n=$(grep -c "$d" <<<"$busy")
	[ "$n" -ge 2 ] && pass "8 flows used $n ${d} queues: $(grep "$d" <<<"$busy" | tr '\n' ' ')" ||
		{ fail "8 flows used $n $d queue(s), want at least 2"; join "$OUT/irq-before.txt" "$OUT/irq-after.txt" | indent; }
done

tb_phase "ethtool -L 1 and back"
if guest SET1 "ethq eth0 1; ethq eth0"; then
	q=$(queues_in_guest one) && [ "$q" = "1 1" ] && pass "ethtool -L eth0 combined 1: the guest has 1 rx and 1 tx queue ($(cat "$OUT/SET1.txt"))" ||
		fail "after ethq eth0 1: queues '$q'"
	d=$(detached) && [ "$d" = $((QUEUES - 1)) ] && pass "hlsvmm detached $d of the TAP's $QUEUES queues" ||
		{ fail "after ethq eth0 1: $d TAP queues detached, want $((QUEUES - 1))"; ip -d link show hlstap0 | indent; }
	transfer "1-pair" 8
else fail "ethq eth0 1"; indent <"$OUT/SET1.txt"; fi
if guest SETN "ethq eth0 $QUEUES; ethq eth0"; then
	q=$(queues_in_guest again) && [ "$q" = "$QUEUES $QUEUES" ] && pass "ethtool -L eth0 combined $QUEUES: $QUEUES queues again" ||
		fail "after ethq eth0 $QUEUES: queues '$q'"
	d=$(detached) && [ "$d" = 0 ] && pass "hlsvmm attached every TAP queue again" ||
		{ fail "after ethq eth0 $QUEUES: $d TAP queues detached, want 0"; ip -d link show hlstap0 | indent; }
	transfer "back-to-$QUEUES-pairs" 8
else fail "ethq eth0 $QUEUES"; indent <"$OUT/SETN.txt"; fi

tb_phase "poweroff"
console_send "$PORT" poweroff
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then fail "hlsvmm still runs 30 s after poweroff"; stop_vm
else wait "$pid"; st=$?; pid=; [ $st -eq 0 ] && pass "poweroff ends hlsvmm with 0" || fail "hlsvmm exited $st after poweroff"; fi
tb_phase_end

[ $failed -eq 0 ] || { echo "mq.sh: $failed failed"; exit 1; }
echo "mq.sh: all passed"
