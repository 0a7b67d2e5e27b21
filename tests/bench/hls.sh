#!/bin/bash
# HLS load comparison in the test bed (make bench runs it after datapath.sh, in the same L1):
# boots the test guest under QEMU vhost=on (network from `hlsvmm network setup`) and under hlsvmm
# --vhost on (`hlsvmm run`, default --net bridge, which sets it up itself), runs
# `hlsvmm bench hls --json` with HLS_CLIENTS (300) players for HLS_DURATION (30s) against each
# through the port forward 127.0.0.1:17080, and prints both side by side with ratios.
# The stream (hls.bitrate= and hls.segment_duration= on the guest's kernel command line) is sized
# by tests/e2e/sizing.sh from the guest→host MiB/s and the requests/s over 32 connections:
# HLS_LINK_MIBS and HLS_RPS, else measured here under QEMU vhost=on (the reference), the same for
# both VMMs. The output says what it chose. The load lasts at least three segments.
# Results: $HLSVMM_OUT/bench/hls-VARIANT.json, hls-comparison.md. Exit 1 if a load failed.
set -uo pipefail
. "$HLSVMM_REPO/tests/bench/lib.sh"
. "$HLSVMM_REPO/tests/e2e/sizing.sh"
trap 'bench_stop; hlsvmm network teardown --tap "$BENCH_TAP" >/dev/null 2>&1' EXIT

clients=${HLS_CLIENTS:-300}
duration=${HLS_DURATION:-30s}
variants=${HLS_VARIANTS:-qemu-vhost-on hlsvmm-vhost-on}
mkdir -p "$BENCH_OUT"
bench_net_up || tb_fail "bridge/TAP set-up"

# The guest: what it sends to the host, and how many requests it serves with many connections.
mibs=${HLS_LINK_MIBS:-} rps=${HLS_RPS:-} src="HLS_LINK_MIBS and HLS_RPS"
if [ -z "$mibs" ] || [ -z "$rps" ]; then
	tb_phase "link"
	bench_boot qemu-vhost-on || tb_fail "QEMU guest for the link measurement"
	hlsvmm bench datapath --url "http://$TB_GUEST_IP:$TB_ORIGIN_PORT" "${SIZE_MEASURE[@]}" \
		--json --progress none >"$BENCH_OUT/hls-link.json" || tb_fail "link measurement"
	bench_stop
	mibs=$(jq -r '.guest_to_host.mib_per_s' "$BENCH_OUT/hls-link.json") rps=$(jq -r '.http_rate.requests_per_s' "$BENCH_OUT/hls-link.json")
	src="bench datapath ${SIZE_MEASURE[*]} under QEMU vhost=on"
fi
mibs=$(awk -v m="$mibs" 'BEGIN{printf "%.1f", m}') rps=$(awk -v m="$rps" 'BEGIN{printf "%d", m}')
size_stream "$mibs" "$rps" "$clients"; bitrate=$BITRATE segment=$SEGMENT
if [ -n "$STREAM_NOTE" ]; then echo "hls: test bed: $STREAM_NOTE (from $src)"
else echo "hls: link ≈ $mibs MiB/s, $rps requests/s ($src): $clients × 2 Mbit/s with 2 s segments fits"; fi
d=$(stream_duration "$duration")
[ "$d" = "$duration" ] || { duration=$d; echo "hls: load duration $duration (three segments)"; }

labels=() files=() problems=() # labels[i] names files[i] (labels contain "=")
for v in $variants; do
	label=$(bench_label "$v") || exit 2
	tb_phase "$v boot (hls)"
	if [[ $v == qemu-* ]]; then
		hlsvmm network setup --tap "$BENCH_TAP" >"$BENCH_OUT/hls-$v-network.txt" 2>&1 || { cat "$BENCH_OUT/hls-$v-network.txt" >&2; problems+=("$label: network setup"); continue; }
	fi
	BENCH_APPEND="hls.bitrate=$bitrate hls.segment_duration=${segment}s" bench_boot "$v" || { problems+=("$label: the guest did not boot and serve"); continue; }
	tb_phase "$v hls"
	rc=0
	hlsvmm bench hls --url http://127.0.0.1:17080 --clients "$clients" --duration "$duration" --ramp "${segment}s" --json --progress lines \
		>"$BENCH_OUT/hls-$v.json" || rc=$?
	[ $rc -le 1 ] && [ -s "$BENCH_OUT/hls-$v.json" ] && { labels+=("$label"); files+=("$BENCH_OUT/hls-$v.json"); }
	[ $rc = 0 ] || problems+=("$label: bench hls exit $rc: $(jq -r '.failures|join("; ")' "$BENCH_OUT/hls-$v.json" 2>/dev/null)")
	bench_stop
	[[ $v == qemu-* ]] && hlsvmm network teardown --tap "$BENCH_TAP" >/dev/null 2>&1
done
tb_phase_end

for f in "${files[@]}"; do
	jq -e '.segments.fetched' "$f" >/dev/null || problems+=("$f: not a bench hls result")
done
# Side by side: one column per variant, the ratio of the last to the first.
if [ ${#files[@]} -gt 0 ]; then
	{
		echo
		echo "HLS load: $clients clients, $duration, stream $((bitrate / 1000)) kbit/s in ${segment} s segments, through 127.0.0.1:17080"
		echo
		row() { # row NAME JQ-EXPR [lower|higher]
			local name=$1 expr=$2 better=${3:-} vals=() f first last ratio
			for f in "${files[@]}"; do vals+=("$(jq -r "$expr" "$f")"); done
			first=${vals[0]} last=${vals[${#vals[@]}-1]}
			ratio=$(awk -v a="$first" -v b="$last" 'BEGIN{ if (a+0 == 0) print (b+0 == 0 ? "1.00" : "—"); else printf "%.2f", b/a }')
			printf '| %s | %s | %s |\n' "$name" "$(IFS='|'; echo "${vals[*]}" | sed 's/|/ | /g')" "$ratio${better:+ ($better is better)}"
		}
		hdr="| |" sep="|---|"
		for l in "${labels[@]}"; do hdr="$hdr $l |"; sep="$sep---:|"; done
		[ ${#files[@]} -gt 1 ] && { hdr="$hdr ${labels[-1]} / ${labels[0]} |"; sep="$sep---:|"; } || { hdr="$hdr ratio |"; sep="$sep---:|"; }
		echo "$hdr"; echo "$sep"
		row "segments verified" '.segments.fetched' higher
		row "throughput MiB/s" '.throughput.measured_mib_s*100|round/100' higher
		row "of offered load" '.throughput.ratio_of_offered*100|round/100' higher
		row "segment latency p50 ms" '.segment_latency.p50_ms*10|round/10' lower
		row "segment latency p95 ms" '.segment_latency.p95_ms*10|round/10' lower
		row "segment latency p99 ms" '.segment_latency.p99_ms*10|round/10' lower
		row "playlist latency p99 ms" '.playlist_latency.p99_ms*10|round/10' lower
		row "HTTP + transport errors" '.errors.http + .errors.transport' lower
		row "timeouts" '.errors.timeouts' lower
		row "clients behind real time" '.behind.clients' lower
		echo
		echo "(test bed: nested TCG; compare ratios, not absolute figures; segment duration ${segment} s)"
	} | tee "$BENCH_OUT/hls-comparison.md"
fi
if [ ${#problems[@]} -gt 0 ]; then
	printf 'hls: FAIL: %s\n' "${problems[@]}" >&2
	exit 1
fi
echo "hls: OK"
