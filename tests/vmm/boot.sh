#!/usr/bin/env bash
# tests/vmm/boot.sh — hlsvmm boots Debian's distro kernel with the test guest, in the test bed:
#   tests/testbed/run tests/vmm/boot.sh        (part of make testbed-test)
# Checks: probe sees a usable KVM; `hlsvmm run --vcpus 4 --mem 4096` with the console on TCP;
# HLSVMM-GUEST-READY arrives through a TCP client; commands typed through it run in the guest and
# their output comes back: 4 CPUs online, MemTotal within 5% of 4 GiB, clocksource kvm-clock;
# a second hlsvmm on the same console port fails cleanly; `poweroff` in the guest ends hlsvmm with
# status 0; bad input fails with one line and a non-zero status. Prints PASS/FAIL per check.
set -uo pipefail
. "$HLSVMM_REPO/tests/testbed/lib.sh"

PORT=${BOOT_PORT:-17022}
OUT=${HLSVMM_OUT:-/tmp}
failed=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# --- probe -----------------------------------------------------------------------------------------
if hlsvmm probe >"$OUT/probe.txt" 2>&1; then pass "probe: KVM usable"; else fail "probe exited non-zero"; fi
sed 's/^/  | /' "$OUT/probe.txt"

# --- boot ------------------------------------------------------------------------------------------
tb_phase boot
t0=$(tb_now)
hlsvmm run --kernel "$HLSVMM_KERNEL" --initrd "$HLSVMM_INITRD" --vcpus 4 --mem 4096 \
	--serial "tcp:127.0.0.1:$PORT" --serial-log "$OUT/console.log" >"$OUT/hlsvmm.out" 2>"$OUT/hlsvmm.err" &
pid=$!

# The client: connects as soon as the port listens, keeps everything it receives in client.log.
client=$OUT/client.log
: >"$client"
for _ in $(seq 100); do
	{ exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
if ! { true >&3; } 2>/dev/null; then
	fail "could not connect to the console on 127.0.0.1:$PORT"
	sed 's/^/  | /' "$OUT/hlsvmm.err"
	exit 1
fi
cat <&3 >"$client" & # cat: unbuffered, so every byte is in the file as it arrives
reader=$!

cleanup() {
	exec 3>&- 2>/dev/null
	kill $reader 2>/dev/null
	tb_stop $pid
}
trap cleanup EXIT

if secs=$(wait_marker "$client" HLSVMM-GUEST-READY 600 $pid); then
	pass "HLSVMM-GUEST-READY through the TCP console client, ${secs}s after connecting ($(awk -v a="$t0" -v b="$(tb_now)" 'BEGIN{printf "%.1f", b-a}')s after start)"
else
	l2_reset_early $pid "$OUT/console.log" "$OUT/hlsvmm.err" && tb_nested_fault "the guest reset while booting: $(tail -n 1 "$OUT/hlsvmm.err")"
	fail "no HLSVMM-GUEST-READY on the TCP console"
	tail -n 40 "$OUT/console.log" | sed 's/^/  | /'
	sed 's/^/  | /' "$OUT/hlsvmm.err"
	echo "  hlsvmm's threads (count, name, state, CPU ticks, wchan):"
	tb_threads $pid | sed 's/^/  | /'
	dmesg | tail -n 20 | sed 's/^/  L1 | /'
	exit 1
fi
tb_phase_end

# guest_cmd CMD: type CMD on the console; its output lines are those starting with a tag the
# command itself prints. Waits for the END tag (the typed line is echoed with the $( ) unexpanded).
n=0
guest_cmd() {
	n=$((n + 1))
	printf '%s; echo "END-%s-$((1+1))"\n' "$1" "$n" >&3
	local i
	for i in $(seq 300); do
		tr -d '\r' <"$client" | grep -q "^END-$n-2$" && return 0
		sleep 0.1
	done
	return 1
}
value() { tr -d '\r' <"$client" | grep -a "^$1=" | tail -n 1 | cut -d= -f2-; }

sleep 1 # let the shell print its prompt
if guest_cmd 'echo "NPROC=$(nproc)"; echo "ONLINE=$(cat /sys/devices/system/cpu/online)"; echo "MEMKB=$(awk "/^MemTotal/{print \$2}" /proc/meminfo)"; echo "CLOCK=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"; echo "UNAME=$(uname -r)"'; then
	pass "a command typed through the TCP client ran in the guest and its output came back"
else
	fail "no output from the typed command"
	tail -n 20 "$client" | sed 's/^/  | /'
fi
nproc=$(value NPROC) online=$(value ONLINE) memkb=$(value MEMKB) clock=$(value CLOCK)
[ "$nproc" = 4 ] && [ "$online" = 0-3 ] && pass "guest sees 4 CPUs online (nproc $nproc, online $online)" ||
	fail "guest CPUs: nproc '$nproc', online '$online', want 4 and 0-3"
if [[ $memkb =~ ^[0-9]+$ ]] && awk -v m="$memkb" 'BEGIN{exit !(m >= 0.95*4*1024*1024 && m <= 4*1024*1024)}'; then
	pass "MemTotal ${memkb} kB is within 5% of 4 GiB"
else
	fail "MemTotal '$memkb' kB not within 5% of 4 GiB"
fi
[ "$clock" = kvm-clock ] && pass "clocksource is kvm-clock" || fail "clocksource '$clock', want kvm-clock"

# A second hlsvmm on the same console port: one clear line, non-zero, nothing left behind.
err=$(hlsvmm run --kernel "$HLSVMM_KERNEL" --initrd "$HLSVMM_INITRD" --serial "tcp:127.0.0.1:$PORT" \
	--serial-log "$OUT/second.log" 2>&1 >/dev/null); st=$?
if [ $st -ne 0 ] && [ "$(wc -l <<<"$err")" = 1 ] && grep -q "address already in use" <<<"$err" && [ ! -e "$OUT/second.log" ]; then
	pass "a second hlsvmm on the busy console port fails cleanly ($st: $err)"
else
	fail "second hlsvmm on a busy port: status $st, output '$err'"
fi

# poweroff: the guest's shutdown ends hlsvmm with status 0.
printf 'poweroff\n' >&3
st=
for _ in $(seq 1200); do
	kill -0 $pid 2>/dev/null || { wait $pid; st=$?; break; }
	sleep 0.1
done
if [ "$st" = 0 ]; then
	pass "poweroff in the guest: hlsvmm exited 0 ($(grep -o 'guest stopped.*' "$OUT/hlsvmm.err" | head -n 1))"
else
	fail "poweroff in the guest: hlsvmm status '${st:-still running}'"
	tail -n 15 "$OUT/console.log" | sed 's/^/  | /'
	tail -n 5 "$OUT/hlsvmm.err" | sed 's/^/  | /'
fi

# --- bad input with a real KVM: one line, non-zero ----------------------------------------------------
bad() { # bad DESCRIPTION EXPECTED-TEXT ARGS...
	local what=$1 want=$2 out st
	shift 2
	out=$(hlsvmm run "$@" 2>&1 >/dev/null); st=$?
	if [ $st -ne 0 ] && [ "$(wc -l <<<"$out")" = 1 ] && grep -q -- "$want" <<<"$out"; then pass "bad input, $what: $out"
	else fail "bad input, $what: status $st, output '$out'"; fi
}
bad "missing kernel" "no such file" --kernel /nonexistent
bad "ELF vmlinux" "ELF" --kernel /bin/bash
bad "not a bzImage" "not a Linux x86 bzImage" --kernel "$HLSVMM_INITRD"
bad "--mem below the floor" "at least 128 MiB" --kernel "$HLSVMM_KERNEL" --mem 64
bad "--vcpus 0" "--vcpus 0" --kernel "$HLSVMM_KERNEL" --vcpus 0
bad "--vcpus too many" "--vcpus 1000" --kernel "$HLSVMM_KERNEL" --vcpus 1000
big=$(mktemp /tmp/big-initrd.XXXXXX) && truncate -s 130M "$big"
bad "initrd too large for --mem" "initrd does not fit" --kernel "$HLSVMM_KERNEL" --initrd "$big" --mem 128
rm -f "$big"

[ $failed -eq 0 ] || { echo "boot.sh: $failed failed"; exit 1; }
echo "boot.sh: all passed"
