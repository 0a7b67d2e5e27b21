#!/usr/bin/env bash
# tests/vmm/demo.sh — the demo: hlsvmm boots Debian's kernel with the test guest, its console is
# shown live up to HLSVMM-GUEST-READY, a few commands are typed on the console (TCP, as a user
# would with `nc 127.0.0.1 17022`), then the guest powers off and hlsvmm exits 0.
# Needs a usable /dev/kvm, hlsvmm on PATH, HLSVMM_KERNEL and HLSVMM_INITRD: `make demo` (or
# tests/vmm/demo) provides them, directly or inside the test bed.
set -uo pipefail
: "${HLSVMM_KERNEL:?set HLSVMM_KERNEL to a bzImage}" "${HLSVMM_INITRD:?set HLSVMM_INITRD to the test guest initrd}"
PORT=${DEMO_PORT:-17022}
VCPUS=${DEMO_VCPUS:-2}
MEM=${DEMO_MEM:-1024}
dir=$(mktemp -d /tmp/hlsvmm-demo.XXXXXX)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "hlsvmm run --kernel $(basename "$HLSVMM_KERNEL") --initrd $(basename "$HLSVMM_INITRD") --vcpus $VCPUS --mem $MEM --serial tcp:127.0.0.1:$PORT"
start=$(date +%s.%N)
hlsvmm run --kernel "$HLSVMM_KERNEL" --initrd "$HLSVMM_INITRD" --vcpus "$VCPUS" --mem "$MEM" \
	--serial "tcp:127.0.0.1:$PORT" 2>"$dir/hlsvmm.err" &
pid=$!
for _ in $(seq 100); do
	{ exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
{ true >&3; } 2>/dev/null || { echo "demo: hlsvmm did not start:"; cat "$dir/hlsvmm.err"; exit 1; }
cat <&3 >"$dir/console" &
reader=$!
# the console, live, until hlsvmm exits (unbuffered: every line shows as it arrives)
tail -n +1 -s 0.2 -f --pid=$pid "$dir/console" 2>/dev/null | sed -u 's/\r$//' &
shower=$!
trap 'kill $reader 2>/dev/null; kill $pid 2>/dev/null; wait $shower 2>/dev/null; rm -rf "$dir"' EXIT

until grep -aq '^HLSVMM-GUEST-READY' "$dir/console"; do
	kill -0 $pid 2>/dev/null || { echo "demo: hlsvmm exited before the guest was ready:"; cat "$dir/hlsvmm.err"; exit 1; }
	sleep 0.2
done
ready=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
sleep 1
say "guest ready after ${ready}s; typing commands on the console"
for cmd in 'uname -a' 'nproc; cat /sys/devices/system/clocksource/clocksource0/current_clocksource' \
	'grep MemTotal /proc/meminfo' 'wget -qO- http://127.0.0.1:17080/health'; do
	printf '%s\n' "$cmd" >&3
	sleep 3
done
say "poweroff"
printf 'poweroff\n' >&3
wait $pid
st=$?
wait $shower 2>/dev/null # the rest of the console
say "hlsvmm exited with status $st ($(grep -o 'how=[a-z]*' "$dir/hlsvmm.err" | head -n 1))"
exit $st
