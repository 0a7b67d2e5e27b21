# tests/bench/lib.sh — boot the test guest under each VMM variant the benchmarks compare, inside
# the test bed (tests/testbed/run; root in L1). Source it after nothing else:
#   . "$HLSVMM_REPO/tests/bench/lib.sh"
# Every variant boots the same guest (HLSVMM_KERNEL + HLSVMM_INITRD, 1 vCPU, 512 MiB, MAC
# BENCH_MAC) at TB_GUEST_IP on TAP BENCH_TAP in bridge hlsbr0, with its console on 127.0.0.1:17022:
#   qemu-vhost-on  qemu-vhost-off   the reference QEMU of tests/testbed/lib.sh, vhost=on|off
#   hlsvmm-vhost-on hlsvmm-vhost-off  hlsvmm run --tap BENCH_TAP --mac BENCH_MAC --vhost on|off
. "$HLSVMM_REPO/tests/testbed/lib.sh"

BENCH_VARIANTS_ALL="qemu-vhost-on qemu-vhost-off hlsvmm-vhost-on hlsvmm-vhost-off"
BENCH_TAP=${BENCH_TAP:-hlstap0}
BENCH_MAC=${BENCH_MAC:-52:54:00:17:70:10}
BENCH_MEM=${BENCH_MEM:-512}
BENCH_CPUS=${BENCH_CPUS:-1}
BENCH_READY_TIMEOUT=${BENCH_READY_TIMEOUT:-300}
BENCH_OUT=${BENCH_OUT:-${HLSVMM_OUT:-/tmp}/bench}
# BENCH_APPEND: extra guest kernel parameters for every variant (e.g. hls.bitrate=200000)
# BENCH_QUEUES: virtio-net queue pairs (QEMU queues=N,mq=on,vectors=2N+2; hlsvmm --queues N); unset:
# each VMM's default. More than 1 needs a multi_queue BENCH_TAP (BENCH_TAP_MQ=1 makes one).
BENCH_VMM_PID= BENCH_LOG=

# bench_label VARIANT: the label results carry, e.g. "qemu vhost=on".
bench_label() {
	case $1 in
	qemu-vhost-on | qemu-vhost-off | hlsvmm-vhost-on | hlsvmm-vhost-off)
		local vmm=${1%%-*} mode=${1##*-}
		echo "$vmm vhost=$mode" ;;
	*) echo "bench_label: unknown variant '$1' (want one of: $BENCH_VARIANTS_ALL)" >&2; return 1 ;;
	esac
}

# bench_net_up: bridge hlsbr0 and TAP BENCH_TAP, unless they exist.
bench_net_up() {
	ip link show "$TB_BRIDGE" >/dev/null 2>&1 || tb_bridge_up || { echo "bench: bridge $TB_BRIDGE failed" >&2; return 1; }
	ip link show "$BENCH_TAP" >/dev/null 2>&1 || tb_tap_add "$BENCH_TAP" ${BENCH_TAP_MQ:+multi_queue} || { echo "bench: TAP $BENCH_TAP failed" >&2; return 1; }
}

# bench_hlsvmm_net_missing: print the virtio-net flags `hlsvmm run` lacks (none: it has them all).
bench_hlsvmm_net_missing() {
	local help f missing=
	help=$(hlsvmm run --help 2>&1) || true
	for f in --tap --mac --vhost; do
		grep -q -- "$f[ =]" <<<"$help" || missing="$missing $f"
	done
	echo "${missing# }"
}

# bench_boot VARIANT: boot the guest under VARIANT in the background and wait for it to serve.
# Sets BENCH_VMM_PID (the VMM process) and BENCH_LOG (its console log). On failure prints the
# console's tail and the VMM's output, stops it and returns 1.
bench_boot() {
	local v=$1 vhost
	bench_label "$v" >/dev/null || return 1
	vhost=${v##*-}
	mkdir -p "$BENCH_OUT"
	BENCH_LOG=$BENCH_OUT/$v-console.log
	case $v in
	qemu-*)
		QEMU_GUEST_APPEND=${BENCH_APPEND:-} QEMU_GUEST_TAP=$BENCH_TAP QEMU_GUEST_VHOST=$vhost QEMU_GUEST_MAC=$BENCH_MAC QEMU_GUEST_MEM=$BENCH_MEM \
			QEMU_GUEST_CPUS=$BENCH_CPUS QEMU_GUEST_QUEUES=${BENCH_QUEUES:-1} QEMU_GUEST_LOG=$BENCH_LOG qemu_guest_start
		BENCH_VMM_PID=$QEMU_GUEST_PID
		;;
	hlsvmm-*)
		local missing
		missing=$(bench_hlsvmm_net_missing)
		if [ -n "$missing" ]; then
			echo "bench: hlsvmm run has no $missing flag(s) yet (virtio-net not wired): cannot boot $v" >&2
			return 1
		fi
		: >"$BENCH_LOG"
		hlsvmm run --kernel "$HLSVMM_KERNEL" --initrd "$HLSVMM_INITRD" --mem "$BENCH_MEM" --vcpus "$BENCH_CPUS" \
			--cmdline "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd nomodeset quiet ip=$TB_GUEST_IP::$TB_GATEWAY:255.255.255.0::eth0:off ${BENCH_APPEND:-}" \
			--serial tcp:127.0.0.1:17022 --serial-log "$BENCH_LOG" \
			--tap "$BENCH_TAP" --mac "$BENCH_MAC" --vhost "$vhost" ${BENCH_QUEUES:+--queues "$BENCH_QUEUES"} \
			</dev/null >"$BENCH_LOG.vmm" 2>&1 &
		BENCH_VMM_PID=$!
		;;
	esac
	local ready
	if ! ready=$(wait_marker "$BENCH_LOG" HLSVMM-GUEST-READY "$BENCH_READY_TIMEOUT" "$BENCH_VMM_PID"); then
		echo "--- $v console (tail):" >&2; tail -n 30 "$BENCH_LOG" >&2
		echo "--- $v VMM output:" >&2; cat "$BENCH_LOG.vmm" "$BENCH_LOG.qemu" 2>/dev/null | tail -n 30 >&2
		bench_stop
		return 1
	fi
	echo "bench: $v ready after ${ready}s (VMM PID $BENCH_VMM_PID)" >&2
	if [ "$vhost" = on ] && ! vhost_worker "$BENCH_VMM_PID" >/dev/null; then
		echo "bench: $v: no vhost-TID worker for any thread of PID $BENCH_VMM_PID: the VMM is not using vhost-net" >&2
		bench_stop
		return 1
	fi
}

# bench_diagnose VARIANT: after a failed measurement, print the host's and the guest's view of the
# link (the guest's through its console shell) to stderr.
bench_diagnose() {
	echo "--- $1: host side" >&2
	ip -s link show "$BENCH_TAP" >&2
	ss -tinp "dst $TB_GUEST_IP" >&2 2>/dev/null
	grep -q "^vhost-" /proc/[0-9]*/comm 2>/dev/null && grep -l "^vhost-" /proc/[0-9]*/comm | while read -r c; do
		d=${c%/comm}; echo "$(cat "$c") state $(awk '{print $3}' "$d/stat") wchan $(cat "$d/wchan" 2>/dev/null)"
	done >&2
	# The VMM's threads twice, 2 s apart (tb_threads says how to read them).
	local i
	for i in 1 2; do
		echo "VMM threads (sample $i): count name state ticks wchan" >&2
		tb_threads "$BENCH_VMM_PID" >&2
		[ $i = 2 ] || sleep 2
	done
	echo "--- $1: guest side (console)" >&2
	console_send 17022 'echo DIAG-BEGIN; cat /proc/net/dev; cat /proc/net/snmp | grep -A1 Tcp:; netstat -tn 2>/dev/null | grep 17080; dmesg | tail -n 15; echo DIAG-END' &&
		wait_marker "$BENCH_LOG" DIAG-END 30 >/dev/null && sed -n '/^DIAG-BEGIN/,/^DIAG-END/p' "$BENCH_LOG" >&2
}

# bench_stop: stop the VMM bench_boot started (if any) and wait for it.
bench_stop() {
	[ -n "${BENCH_VMM_PID:-}" ] || return 0
	kill "$BENCH_VMM_PID" 2>/dev/null
	local i
	for i in $(seq 100); do kill -0 "$BENCH_VMM_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$BENCH_VMM_PID" 2>/dev/null
	wait "$BENCH_VMM_PID" 2>/dev/null
	BENCH_VMM_PID= QEMU_GUEST_PID=
}
