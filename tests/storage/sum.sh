#!/usr/bin/env bash
# tests/storage/sum.sh — the 9p read-through of issue 7 under QEMU and hlsvmm side by side, with
# diagnostics: each VMM boots the storage guest from the 9p share, the guest runs
# `sha256sum /data/big` (STORAGE_BIG_MIB MiB, buffered reads: what stalled), and while it runs the
# script samples the VMM's threads (state, wchan, CPU ticks) every SUM_SAMPLE (15) s. Prints the time
# each took, whether the guest logged RCU stalls or soft lockups, and hlsvmm's 9p metrics.
#   tests/testbed/run tests/storage/sum.sh        (make testbed-storage-sum)
# Settings: SUM_VMMS ("qemu hlsvmm"), SUM_REPEAT (1: read-throughs per guest, until one fails),
# SUM_TIMEOUT (900 s per read), ST_VCPUS (2), STORAGE_BIG_MIB (assets),
# SUM_TRACE=1 (each sample also traces L1's KVM for the VMM for a second: tb_kvm_trace).
set -uo pipefail
. "$HLSVMM_REPO/tests/testbed/lib.sh"
. "$HLSVMM_REPO/tests/storage/lib.sh"

ST_COPY=1
VMMS=${SUM_VMMS:-qemu hlsvmm} TIMEOUT=${SUM_TIMEOUT:-900} SAMPLE=${SUM_SAMPLE:-15} REPEAT=${SUM_REPEAT:-1}
trap st_stop EXIT
st_prepare || tb_fail "storage assets"
failed=0

# sample VMM ELAPSED: the guest's stall lines so far, the VMM's threads, hlsvmm's 9p metrics and,
# with SUM_TRACE, a second of L1's KVM trace.
sample() {
	echo "  $1 at ${2}s: guest console $(grep -ac 'rcu_.*stall\|soft lockup' "$ST_CONSOLE") stall lines; threads (count name state ticks wchan):"
	tb_threads "$ST_PID" | sed 's/^/    /'
	[ "$1" != hlsvmm ] || curl -fsS --max-time 5 "http://$ST_METRICS/metrics" 2>/dev/null |
		grep -E '^hlsvmm_(9p_|virtio_queue_|vcpu_exits_total)' | grep -v ' 0$' | head -n 20 | sed 's/^/    /'
	[ -z "${SUM_TRACE:-}" ] || tb_kvm_trace "$ST_PID" 1
}

# read_through VMM REP: sha256sum /data/big in the running guest, sampling every SAMPLE seconds;
# prints RESULT or FAIL and returns 1 on a failure.
read_through() {
	local vmm=$1 rep=$2 t0 el next=$SAMPLE done= secs stalls got what
	tb_phase "$vmm sha256sum $rep"
	t0=$(tb_now)
	st_type_bg 'echo "BIGSUM'"$rep"'=$(sha256sum /data/big | cut -d" " -f1)"'
	while :; do
		el=$(awk -v a="$t0" -v b="$(tb_now)" 'BEGIN{printf "%d", b-a}')
		if tr -d '\r' <"$ST_CLIENT" | grep -aq "^END-$ST_N-2$"; then done=1; break; fi
		kill -0 "$ST_PID" 2>/dev/null || break
		((el < TIMEOUT)) || break
		if ((el >= next)); then next=$((next + SAMPLE)); sample "$vmm" "$el"; fi
		sleep 1
	done
	secs=$(awk -v a="$t0" -v b="$(tb_now)" 'BEGIN{printf "%.1f", b-a}')
	stalls=$(grep -ac 'rcu_.*stall\|soft lockup' "$ST_CONSOLE")
	got=$(st_value "BIGSUM$rep")
	if [ -n "$done" ] && [ "$got" = "$ST_BIG_SHA" ]; then
		echo "RESULT: $vmm: read $rep: sha256sum of $(($(stat -c %s "$ST_TREE/data/big") >> 20)) MiB over 9p in ${secs}s, sha256 matches; guest stall lines: $stalls"
		return 0
	fi
	[ -n "$done" ] && what="finished, sha256 '$got' does not match" || what="did not finish"
	echo "FAIL: $vmm: read $rep: sha256sum $what after ${secs}s; guest stall lines: $stalls"
	grep -a -B2 -A12 'rcu_.*stall\|soft lockup' "$ST_CONSOLE" | head -n 60 | sed 's/^/  | /'
	kill -0 "$ST_PID" 2>/dev/null && st_hang_report "$vmm"
	l2_timer_lost "$ST_PID" "$ST_CONSOLE" && tb_nested_fault "$vmm: the guest's read hung with a CPU whose timer never fired"
	return 1
}

for vmm in $VMMS; do
	tb_phase "$vmm boot"
	case $vmm in
	qemu) st_qemu_start "sum-$vmm" "stage1.store=9p reboot=k $ST_NIXOS_PARAMS" ;;
	hlsvmm) st_start "sum-$vmm" "stage1.store=9p reboot=k $ST_NIXOS_PARAMS" --share "$ST_TREE:ro-store,ro" ;;
	*) tb_fail "SUM_VMMS: unknown VMM $vmm" ;;
	esac || { echo "FAIL: $vmm: no HLSVMM-GUEST-READY"; failed=1; st_stop; continue; }
	for rep in $(seq "$REPEAT"); do
		read_through "$vmm" "$rep" || { failed=1; break; }
	done
	st_stop
done
tb_phase_end
exit $failed
