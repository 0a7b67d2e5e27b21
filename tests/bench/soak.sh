#!/bin/bash
# tests/bench/soak.sh — does the test guest survive heavy traffic? For each kernel-parameter set in
# SOAK_APPENDS (";"-separated; "-" for none) and each VMM variant in SOAK_VARIANTS, SOAK_ROUNDS times:
# boot, move SOAK_BYTES each way with `hlsvmm bench datapath`, and report whether the guest was still
# alive afterwards (and how the VMM ended if not). A diagnostic for the guest triple faults and
# freezes seen under network load in the nested test bed.
#   HLSVMM_TESTBED_ENV="SOAK_APPENDS SOAK_VARIANTS SOAK_ROUNDS SOAK_BYTES" tests/testbed/run tests/bench/soak.sh
set -uo pipefail
. "$HLSVMM_REPO/tests/bench/lib.sh"
trap bench_stop EXIT
IFS=';' read -r -a appends <<<"${SOAK_APPENDS:--}"
variants=${SOAK_VARIANTS:-hlsvmm-vhost-on} rounds=${SOAK_ROUNDS:-2} bytes=${SOAK_BYTES:-128MiB}
bench_net_up || tb_fail "bridge/TAP set-up"
for app in "${appends[@]}"; do
	[ "$app" != - ] || app=
	for v in $variants; do
		for r in $(seq "$rounds"); do
			BENCH_APPEND=$app bench_boot "$v" || { echo "SOAK: $v [$app] round $r: did not boot"; continue; }
			t0=$(tb_now)
			hlsvmm bench datapath --json --label "$v" --vmm-pid "$BENCH_VMM_PID" \
				--url "http://$TB_GUEST_IP:$TB_ORIGIN_PORT" --bytes "$bytes" --latency-samples 200 --timeout 3m \
				>"$BENCH_OUT/soak.json" 2>"$BENCH_OUT/soak.err"; rc=$?
			secs=$(awk -v a="$t0" -v b="$(tb_now)" 'BEGIN{printf "%.0f", b-a}')
			if kill -0 "$BENCH_VMM_PID" 2>/dev/null; then
				if curl -fsS --max-time 10 "http://$TB_GUEST_IP:$TB_ORIGIN_PORT/health" >/dev/null; then how="alive"; else how="FROZEN (VMM runs, guest does not answer)"; fi
			else
				how="DIED: $(grep -ao 'reason="[^"]*"' "$BENCH_LOG.vmm" 2>/dev/null | tail -n 1)"
				[ -s "$BENCH_LOG.qemu" ] && how="$how $(tail -n 2 "$BENCH_LOG.qemu")"
			fi
			echo "SOAK: $v [${app:-no extra params}] round $r: bench exit $rc after ${secs}s; guest $how"
			bench_stop
		done
	done
done
