#!/bin/bash
# Multiqueue comparison in the test bed (make bench-mq; issue 8): the test guest with MQ_VCPUS (4)
# vCPUs, MQ_STREAMS (8) parallel flows each way, under
#   QEMU vhost=on, queues=4,mq=on,vectors=10 (the users' setting)
#   hlsvmm --vhost on --queues 4
#   hlsvmm --vhost on --queues 1
# one after the other in the same L1, on one multi_queue TAP; `hlsvmm bench combine` prints the
# table with ratios against QEMU. Settings: MQ_BYTES (32MiB per direction), MQ_SAMPLES (200
# latency samples), MQ_QUEUES (4), MQ_TIMEOUT (3m per phase: a stalled flow fails the row).
# Results in $HLSVMM_OUT/bench/mq-*.json, mq-comparison.md.
set -uo pipefail
. "$HLSVMM_REPO/tests/bench/lib.sh"
trap bench_stop EXIT

queues=${MQ_QUEUES:-4}
BENCH_CPUS=${MQ_VCPUS:-4} BENCH_MEM=${MQ_MEM:-768} BENCH_TAP_MQ=1
bytes=${MQ_BYTES:-32MiB} streams=${MQ_STREAMS:-8} samples=${MQ_SAMPLES:-200}
mkdir -p "$BENCH_OUT"
bench_net_up || tb_fail "bridge/multi_queue TAP set-up"
files=() problems=()
for row in "qemu-vhost-on $queues" "hlsvmm-vhost-on $queues" "hlsvmm-vhost-on 1"; do
	read -r v q <<<"$row"
	label="$(bench_label "$v") queues=$q"
	tb_phase "$label boot"
	BENCH_QUEUES=$q bench_boot "$v" || { problems+=("$label: the guest did not boot and serve"); continue; }
	tb_phase "$label datapath"
	out=$BENCH_OUT/mq-$v-q$q.json rc=0
	hlsvmm bench datapath --json --progress lines --label "$label" --vmm-pid "$BENCH_VMM_PID" \
		--url "http://$TB_GUEST_IP:$TB_ORIGIN_PORT" --bytes "$bytes" --streams "$streams" \
		--latency-samples "$samples" --timeout "${MQ_TIMEOUT:-3m}" >"$out" || rc=$?
	[ "$rc" = 0 ] || bench_diagnose "$v"
	case $rc in
	0) files+=("$out") ;;
	1) files+=("$out"); problems+=("$label: verification or transfer failed") ;;
	*) problems+=("$label: bench datapath could not measure (exit $rc)") ;;
	esac
	bench_stop
done
tb_phase_end
if [ ${#files[@]} -gt 0 ]; then
	echo
	hlsvmm bench combine --baseline "qemu vhost=on queues=$queues" "${files[@]}" | tee "$BENCH_OUT/mq-comparison.md"
	echo "($bytes per direction over $streams flows, $samples latency samples, $BENCH_CPUS vCPUs; test bed: nested TCG, compare ratios, not absolute figures)"
fi
if [ ${#problems[@]} -gt 0 ]; then
	printf 'mq: FAIL: %s\n' "${problems[@]}" >&2
	exit 1
fi
echo "mq: OK"
