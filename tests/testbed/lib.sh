# tests/testbed/lib.sh — shell helpers for scripts that tests/testbed/run runs in L1. Source it:
#   . "$HLSVMM_REPO/tests/testbed/lib.sh"
# The QEMU invocation here is THE reference every hlsvmm benchmark compares with: change it with care.

TB_GUEST_IP=${TB_GUEST_IP:-10.177.0.10}
TB_BRIDGE=${TB_BRIDGE:-hlsbr0}
TB_BRIDGE_CIDR=${TB_BRIDGE_CIDR:-10.177.0.1/24}
TB_GATEWAY=${TB_BRIDGE_CIDR%/*}
TB_ORIGIN_PORT=17080
TB_METRICS_PORT=9100

# tb_fail MSG: print MSG and exit 1.
tb_fail() { echo "FAIL: $*" >&2; exit 1; }

# tb_nested_fault MSG: print MSG and exit 126, which tests/testbed/run reports as a fault of the
# nested emulation (and retries under HLSVMM_TESTBED_RETRIES). Only after l2_reset_early or
# l2_timer_lost.
tb_nested_fault() { echo "NESTED-EMULATION FAULT: $*" >&2; exit 126; }

# l2_timer_lost PID CONSOLE_LOG: true if the guest of the L2 VMM PID reported a CPU whose timer never
# fired (RCU's "timer wakeup didn't happen") while none of the VMM's vCPU threads waited in the VMM
# itself (a futex): the guest's LAPIC timer is KVM's, in L1's kernel, which no VMM code touches, so
# the emulation lost it. Seen with QEMU's guest in a 9p read-through (2026-11-30).
l2_timer_lost() {
	grep -aq "timer wakeup didn't happen" "$2" || return 1
	! tb_threads "$1" | grep -E '(vcpu[0-9]+|CPU [0-9]+/KVM) .*futex' >/dev/null
}

# l2_reset_early PID CONSOLE_LOG [VMM_LOG]: true if the L2 VMM PID has exited because its guest
# reset before it was ready: the guest printed not one console byte, or hlsvmm's VMM_LOG says the
# guest triple-faulted. Under nested TCG both happen now and then, during early boot or while the
# secondary CPUs come up, to QEMU's guests and hlsvmm's alike. A VMM or guest bug that stops a boot
# this way does it every time, and the retry fails too.
l2_reset_early() {
	! kill -0 "$1" 2>/dev/null || return 1
	[ ! -s "$2" ] || { [ -n "${3:-}" ] && grep -aq 'triple fault (KVM_EXIT_SHUTDOWN)' "$3"; }
}

# Phase timing: tb_phase NAME starts a phase (ending the previous one); tb_phase_end ends it.
# Each prints "phase NAME: S.Ss" (wall clock of L1).
_tb_phase= _tb_phase_t0=
tb_now() { cut -d' ' -f1 /proc/uptime; }
tb_phase_end() {
	[ -n "$_tb_phase" ] || return 0
	awk -v n="$_tb_phase" -v a="$_tb_phase_t0" -v b="$(tb_now)" 'BEGIN{printf "phase %-28s %6.1fs\n", n ":", b-a}'
	_tb_phase=
}
tb_phase() { tb_phase_end; _tb_phase=$1; _tb_phase_t0=$(tb_now); }

# tb_bridge_up: bridge TB_BRIDGE with address TB_BRIDGE_CIDR, up (real iproute2).
tb_bridge_up() {
	ip link add "$TB_BRIDGE" type bridge &&
		ip addr add "$TB_BRIDGE_CIDR" dev "$TB_BRIDGE" &&
		ip link set "$TB_BRIDGE" up
}

# tb_tap_add TAP [multi_queue]: a persistent TAP with a virtio-net header, enslaved to TB_BRIDGE
# and up; multi_queue for VMMs that open it with several queues.
tb_tap_add() {
	ip tuntap add "$1" mode tap vnet_hdr ${2:-} &&
		ip link set "$1" master "$TB_BRIDGE" &&
		ip link set "$1" up
}

# wait_marker LOG MARKER TIMEOUT_SECONDS [PID]: wait until LOG contains the line MARKER; print the
# seconds it took. Fails (status 1) on timeout or if process PID exits first.
wait_marker() {
	local log=$1 marker=$2 timeout=$3 pid=${4:-} t0
	t0=$(tb_now)
	until grep -aq "^$marker" "$log" 2>/dev/null; do
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			echo "wait_marker: process $pid exited before $marker appeared in $log" >&2; return 1
		fi
		if awk -v a="$t0" -v b="$(tb_now)" -v t="$timeout" 'BEGIN{exit !(b-a > t)}'; then
			echo "wait_marker: no $marker in $log after ${timeout}s" >&2; return 1
		fi
		sleep 0.1
	done
	awk -v a="$t0" -v b="$(tb_now)" 'BEGIN{printf "%.1f\n", b-a}'
}

# tb_stop PID: stop process PID (a VMM): SIGTERM, up to 10 s to exit, then SIGKILL; reap it.
tb_stop() {
	kill "$1" 2>/dev/null || return 0
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# tb_threads PID: the threads of process PID, one line per distinct "name state ticks wchan" with
# its count (ticks = utime + stime). vCPU threads asleep in kvm_vcpu_block with a silent guest are a
# halted guest never woken; one always running is a guest spinning.
tb_threads() {
	local t
	for t in /proc/"$1"/task/*; do
		echo "$(cat "$t/comm" 2>/dev/null) $(awk '{sub(/.*\) /, ""); print $1, $12 + $13}' "$t/stat" 2>/dev/null) $(cat "$t/wchan" 2>/dev/null)"
	done | sort | uniq -c
}

# tb_kvm_trace PID [SECS]: what L1's KVM does for process PID's threads over SECS (1) seconds: the
# kvm trace events, counted by event and, for kvm_exit, by vCPU, reason and guest RIP (a vCPU that
# makes no progress shows one exit at one RIP over and over), then each thread's kernel stack when
# it is not empty. Needs tracefs (mounted here if it is not). Turning trace events on and off
# patches L1's kernel text on every CPU: one 200 MiB 9p run that sampled this way wedged L1 during
# a sample, so it is opt-in (SUM_TRACE in tests/storage/sum.sh).
tb_kvm_trace() {
	local pid=$1 secs=${2:-1} t=/sys/kernel/tracing task
	[ -d $t/events/kvm ] || mount -t tracefs nodev $t 2>/dev/null || { echo "tb_kvm_trace: no tracefs"; return 1; }
	[ -d $t/events/kvm ] || { echo "tb_kvm_trace: no kvm trace events"; return 1; }
	: >$t/trace
	ls /proc/"$pid"/task >$t/set_event_pid || return 1
	echo 1 >$t/events/kvm/enable
	sleep "$secs"
	echo 0 >$t/events/kvm/enable
	: >$t/set_event_pid
	awk '/^#/ { next }
		{ for (i = 1; i <= NF; i++) if ($i ~ /^kvm_[a-z_0-9]*:$/) break
		  if (i > NF) next
		  key = $i
		  if (key == "kvm_exit:") { for (j = i; j <= NF; j++) { if ($j == "vcpu") v = $(j+1); if ($j == "reason") r = $(j+1); if ($j == "rip") p = $(j+1) }
		                           key = key " vcpu " v " " r " rip " p }
		  n[key]++; total++ }
		END { printf "    %d kvm events in the trace\n", total; for (k in n) printf "%8d %s\n", n[k], k }' $t/trace | sort -rn | head -n 16
	: >$t/trace
	for task in /proc/"$pid"/task/*; do
		[ -s "$task/stack" ] || continue
		grep -q . "$task/stack" || continue
		echo "    stack of $(cat "$task/comm") ($(basename "$task")):"; sed 's/^/      /' "$task/stack"
	done
}

# vhost_worker PID: print the name of the vhost-net kernel worker serving process PID, if any.
# The worker is named after the thread that issued VHOST_SET_OWNER ("vhost-TID"; on 6.1 a kthread,
# on 6.4+ a task of the process), which need not be the main thread: try every thread.
vhost_worker() {
	local t
	for t in /proc/"$1"/task/*; do
		if grep -qx "vhost-${t##*/}" /proc/[0-9]*/comm /proc/"$1"/task/*/comm 2>/dev/null; then
			echo "vhost-${t##*/}"
			return 0
		fi
	done
	return 1
}

# qemu_guest_start: boot the test guest (HLSVMM_KERNEL + HLSVMM_INITRD) under QEMU/KVM with
# virtio-net-pci on TAP QEMU_GUEST_TAP (made by tb_tap_add), in the background. Settings (env):
#   QEMU_GUEST_TAP (hlstap0)   QEMU_GUEST_VHOST (on)   QEMU_GUEST_MEM (512, MiB)   QEMU_GUEST_CPUS (1)
#   QEMU_GUEST_MAC (52:54:00:17:70:10)   QEMU_GUEST_APPEND (extra kernel parameters)
#   QEMU_GUEST_LOG (serial console log; default $HLSVMM_OUT/qemu-guest.log; LOG.qemu has QEMU's
#   output, LOG.resets the vCPU state at each reset: a guest that reset shows where it was)
#   QEMU_GUEST_CONSOLE_PORT (17022: the serial console on 127.0.0.1, like hlsvmm's)
#   QEMU_GUEST_QUEUES (1; N > 1: N queue pairs the way the users run it, queues=N on a multi_queue
#   TAP, mq=on and vectors=2N+2)
# Sets QEMU_GUEST_PID. The guest prints HLSVMM-GUEST-READY on its console when the origin listens.
qemu_guest_start() {
	local tap=${QEMU_GUEST_TAP:-hlstap0} q=${QEMU_GUEST_QUEUES:-1} mq_netdev= mq_device=
	[ "$q" -le 1 ] || mq_netdev=,queues=$q mq_device=,mq=on,vectors=$((2 * q + 2))
	QEMU_GUEST_LOG=${QEMU_GUEST_LOG:-${HLSVMM_OUT:-/tmp}/qemu-guest.log}
	: >"$QEMU_GUEST_LOG"
	qemu-system-x86_64 \
		-name hlsvmm-ref-guest -M q35 -enable-kvm -cpu host \
		-smp "${QEMU_GUEST_CPUS:-1}" -m "${QEMU_GUEST_MEM:-512}" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$HLSVMM_KERNEL" -initrd "$HLSVMM_INITRD" \
		-append "console=ttyS0 quiet panic=-1 ip=$TB_GUEST_IP::$TB_GATEWAY:255.255.255.0::eth0:off ${QEMU_GUEST_APPEND:-}" \
		-chardev socket,id=con,host=127.0.0.1,port="${QEMU_GUEST_CONSOLE_PORT:-17022}",server=on,wait=off,logfile="$QEMU_GUEST_LOG" \
		-serial chardev:con \
		-netdev tap,id=n0,ifname="$tap",script=no,downscript=no,vhost="${QEMU_GUEST_VHOST:-on}"$mq_netdev \
		-device virtio-net-pci,netdev=n0,mac="${QEMU_GUEST_MAC:-52:54:00:17:70:10}"$mq_device \
		-d cpu_reset -D "$QEMU_GUEST_LOG.resets" \
		</dev/null >"$QEMU_GUEST_LOG.qemu" 2>&1 &
	QEMU_GUEST_PID=$!
}

# console_send PORT LINE: type LINE on the guest's serial console at 127.0.0.1:PORT.
console_send() {
	local fd
	exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf '%s\n' "$2" >&"$fd"
	sleep 0.5 # let QEMU read it before the connection goes
	exec {fd}>&-
}

# qemu_guest_stop: stop the guest started by qemu_guest_start (if any) and wait for it.
qemu_guest_stop() {
	[ -n "${QEMU_GUEST_PID:-}" ] || return 0
	# || true: an EXIT trap under set -e must not turn its caller's status into kill's
	kill "$QEMU_GUEST_PID" 2>/dev/null || true
	wait "$QEMU_GUEST_PID" 2>/dev/null || true
	QEMU_GUEST_PID=
}

# segment_verify URL SEQ SIZE: fetch a segment and check its size, its X-Segment-Sha256 header and
# its content against the origin's formula (tests/guest/origin: 32-byte records
# "seg=%010d rec=%010d..\n" cut to SIZE).
segment_verify() {
	local url=$1 seq=$2 size=$3 f h want got
	f=$(mktemp) h=$(mktemp)
	curl -fsS --max-time 30 -D "$h" -o "$f" "$url" || { rm -f "$f" "$h"; echo "segment_verify: GET $url failed" >&2; return 1; }
	got=$(stat -c %s "$f")
	[ "$got" = "$size" ] || { rm -f "$f" "$h"; echo "segment_verify: $url: $got bytes, want $size" >&2; return 1; }
	want=$(awk 'tolower($1)=="x-segment-sha256:"{print $2}' "$h" | tr -d '\r')
	got=$(sha256sum <"$f" | cut -d' ' -f1)
	[ -n "$want" ] && [ "$got" = "$want" ] || { rm -f "$f" "$h"; echo "segment_verify: $url: sha256 $got, header says '$want'" >&2; return 1; }
	if ! awk -v n="$seq" -v size="$size" 'BEGIN{for (r = 0; r * 32 < size; r++) printf "seg=%010d rec=%010d..\n", n, r}' |
		head -c "$size" | cmp -s - "$f"; then
		rm -f "$f" "$h"; echo "segment_verify: $url: content differs from the formula for segment $seq" >&2; return 1
	fi
	rm -f "$f" "$h"
}
