#!/bin/bash
# Datapath comparison in the test bed (make bench; tests/testbed/run tests/bench/datapath.sh):
# boots the test guest under QEMU vhost=on, QEMU vhost=off, hlsvmm --vhost=on and --vhost=off,
# one after the other, runs `hlsvmm bench datapath --json --vmm-pid PID` against each and prints
# `hlsvmm bench combine` of the results, ratios against QEMU vhost=on.
# Settings (env; pass them in with HLSVMM_TESTBED_ENV, as make bench does):
#   DATAPATH_BYTES (64MiB per direction: the emulated link moves ~10 MiB/s)  DATAPATH_STREAMS (1)
#   DATAPATH_SAMPLES (500 latency samples)  DATAPATH_VARIANTS (all four, in the order above)
#   DATAPATH_BASELINE ("qemu vhost=on")  DATAPATH_TIMEOUT (5m per phase of bench datapath)
# Results: $HLSVMM_OUT/bench/VARIANT.json, comparison.md. Exit 1 if any variant could not be
# measured or failed verification; the table of the others is printed anyway.
set -uo pipefail
. "$HLSVMM_REPO/tests/bench/lib.sh"
trap bench_stop EXIT

bytes=${DATAPATH_BYTES:-64MiB}
streams=${DATAPATH_STREAMS:-1}
samples=${DATAPATH_SAMPLES:-500}
variants=${DATAPATH_VARIANTS:-$BENCH_VARIANTS_ALL}
baseline=${DATAPATH_BASELINE:-qemu vhost=on}
timeout=${DATAPATH_TIMEOUT:-5m}
for v in $variants; do bench_label "$v" >/dev/null || exit 2; done

mkdir -p "$BENCH_OUT"
bench_net_up || tb_fail "bridge/TAP set-up"
files=() problems=()
for v in $variants; do
	label=$(bench_label "$v")
	if [[ $v == hlsvmm-* ]]; then
		missing=$(bench_hlsvmm_net_missing)
		if [ -n "$missing" ]; then
			echo "datapath: NOT MEASURED $label: 'hlsvmm run' has no $missing flag(s) yet (virtio-net not wired)" >&2
			problems+=("$label: hlsvmm run lacks $missing")
			continue
		fi
	fi
	tb_phase "$v boot"
	if ! bench_boot "$v"; then
		problems+=("$label: the guest did not boot and serve")
		continue
	fi
	tb_phase "$v datapath"
	rc=0
	hlsvmm bench datapath --json --progress lines --label "$label" --vmm-pid "$BENCH_VMM_PID" \
		--url "http://$TB_GUEST_IP:$TB_ORIGIN_PORT" --bytes "$bytes" --streams "$streams" \
		--latency-samples "$samples" --timeout "$timeout" >"$BENCH_OUT/$v.json" || rc=$?
	[ "$rc" = 0 ] || bench_diagnose "$v"
	case $rc in
	0) files+=("$BENCH_OUT/$v.json") ;;
	1) files+=("$BENCH_OUT/$v.json"); problems+=("$label: verification or transfer failed") ;;
	*) problems+=("$label: bench datapath could not measure (exit $rc)") ;;
	esac
	bench_stop
done
tb_phase_end

if [ ${#files[@]} -gt 0 ]; then
	have_base=
	for f in "${files[@]}"; do grep -q "^  \"label\": \"$baseline\",\$" "$f" && have_base=1; done
	[ -n "$have_base" ] || { echo "datapath: baseline '$baseline' was not measured; ratios against the first run" >&2; baseline=; }
	echo
	hlsvmm bench combine ${baseline:+--baseline "$baseline"} "${files[@]}" | tee "$BENCH_OUT/comparison.md"
	echo "(${bytes} per direction, ${streams} stream(s), ${samples} latency samples; test bed: nested TCG, compare ratios, not absolute figures)"
fi
if [ ${#problems[@]} -gt 0 ]; then
	printf 'datapath: FAIL: %s\n' "${problems[@]}" >&2
	exit 1
fi
echo "datapath: OK"
