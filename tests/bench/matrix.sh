#!/bin/bash
# tests/bench/matrix.sh — `hlsvmm bench --matrix` in the test bed (make bench-matrix; issue 8):
# boots the test guest with `hlsvmm run` once per combination of MATRIX_SPEC's knob values (the
# default --net bridge: each run sets up hlsbr0, its TAP, NAT and forwards itself and tears them
# down when bench --matrix stops it), runs the datapath benchmark against each and prints one
# table row per combination. Afterwards the host must have no network or run state left.
# Settings (env; make bench-matrix passes them in with HLSVMM_TESTBED_ENV):
#   MATRIX_SPEC ("vhost=on|off queues=1|2": knobs separated by spaces, values by '|')
#   MATRIX_BYTES (16MiB per direction)  MATRIX_STREAMS (2)  MATRIX_SAMPLES (200 latency samples)
#   MATRIX_VCPUS (2: queues=2 has a CPU per queue)  MATRIX_MEM (512)  MATRIX_APPEND (guest kernel
#   parameters besides quiet)  MATRIX_READY_TIMEOUT (300s per boot)  MATRIX_TIMEOUT (5m per phase)
# Results: $HLSVMM_OUT/bench/matrix.md; matrix/row-N.log (the VMM's output), row-N-console.log.
# Exit status: 1 if a row failed or state was left behind, 2 for a bad spec (hlsvmm's message).
set -uo pipefail
. "$HLSVMM_REPO/tests/bench/lib.sh"

spec=${MATRIX_SPEC:-vhost=on|off queues=1|2}
bytes=${MATRIX_BYTES:-16MiB}
streams=${MATRIX_STREAMS:-2}
samples=${MATRIX_SAMPLES:-200}
vcpus=${MATRIX_VCPUS:-2}
mem=${MATRIX_MEM:-512}
append="quiet${MATRIX_APPEND:+ $MATRIX_APPEND}"
ready=${MATRIX_READY_TIMEOUT:-300s}
timeout=${MATRIX_TIMEOUT:-5m}
logs=$BENCH_OUT/matrix
mkdir -p "$logs"

echo "matrix: $spec; $bytes per direction over $streams stream(s), $samples latency samples; guest $vcpus vCPU(s), $mem MiB, +'$append'"
tb_phase "bench --matrix"
rc=0
hlsvmm bench --matrix "$spec" --kernel "$HLSVMM_KERNEL" --initrd "$HLSVMM_INITRD" --vcpus "$vcpus" --mem "$mem" \
	--run-flag="--append=$append" --url "http://$TB_GUEST_IP:$TB_ORIGIN_PORT" \
	--bytes "$bytes" --streams "$streams" --latency-samples "$samples" --timeout "$timeout" \
	--ready-timeout "$ready" --log-dir "$logs" --progress lines \
	| tee "$BENCH_OUT/matrix.md" || rc=$?
tb_phase_end
[ "$rc" != 2 ] || exit 2
echo "(test bed: nested TCG; compare rows with each other, not absolute figures)"

# Every row's run tore its network down: nothing of it may be left.
left=$( { ip -br link show "$TB_BRIDGE" 2>/dev/null; ls /run/hlsvmm/network-*.json /run/hlsvmm/run-*.json 2>/dev/null; } )
if [ -n "$left" ]; then
	echo "matrix: FAIL: left behind after the last row:" >&2
	echo "$left" >&2
	rc=1
fi
if [ "$rc" != 0 ]; then
	echo "matrix: FAIL (a row failed: see the table's notes and $logs/row-N.log)" >&2
	exit 1
fi
echo "matrix: OK"
