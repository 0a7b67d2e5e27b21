# tests/e2e/sizing.sh — size the test origin's live stream to what the guest can serve. Source it.
# Under nested emulation the guest moves 2-10 MiB/s and answers a few dozen requests a second
# with many connections open, so 300 players of the real stream (2 Mbit/s, 2 s segments: 75 MB/s
# and 300 requests/s) are far out of reach whatever the VMM. The load keeps its shape (every client
# follows the live playlist and fetches every segment in real time); the stream is scaled down,
# and the output says so.
#
# SIZE_MEASURE is the `hlsvmm bench datapath` arguments that measure both figures: 16 MiB
# guest→host and 320 GET /ping over 32 kept-alive connections at once. Both overstate what the
# guest serves to 300 players: segments cost the guest more than /ping, 300 connections more than
# 32, and the players' own checking competes with the guest for L1's CPUs. With 50 % of each, 300
# clients saw 284 timeouts (6 s segments; the guest served ≈ 33 requests/s against 221 /ping/s),
# so HLS_LINK_SHARE defaults to 15 %.
SIZE_CONNECTIONS=32
SIZE_MEASURE=(--bytes 16MiB --latency-samples -1 --echo none --rate-connections "$SIZE_CONNECTIONS" --rate-requests $((10 * SIZE_CONNECTIONS)))
#
#   size_stream LINK_MIBS REQUESTS_PER_S CLIENTS   sets
#     BITRATE  (bits/s): CLIENTS x BITRATE = HLS_LINK_SHARE (15) % of the guest→host MiB/s,
#              rounded down to 10 kbit/s, at most HLS_MAX_BITRATE (2000000, the real stream);
#     SEGMENT  (whole seconds): long enough that CLIENTS x 2 requests (playlist and segment) per
#              segment are HLS_LINK_SHARE % of REQUESTS_PER_S, at least 2 (the real stream's);
#     STREAM_NOTE: the sentence to print when either was scaled (empty otherwise).
#   REQUESTS_PER_S empty or 0 leaves SEGMENT at 2.
size_stream() {
	local mibs=$1 rps=${2:-0} clients=$3 share=${HLS_LINK_SHARE:-15} max=${HLS_MAX_BITRATE:-2000000} b s
	b=$(awk -v m="$mibs" -v c="$clients" -v s="$share" 'BEGIN{b = m * 1048576 * 8 * s / 100 / c; b = int(b / 10000) * 10000; print (b < 10000 ? 10000 : b)}')
	[ "$b" -lt "$max" ] || b=$max
	s=$(awk -v r="$rps" -v c="$clients" -v sh="$share" 'BEGIN{if (r <= 0) {print 2; exit}; s = c * 2 / (r * sh / 100); s = (s == int(s)) ? s : int(s) + 1; print (s < 2 ? 2 : s)}')
	BITRATE=$b SEGMENT=$s STREAM_NOTE=
	if [ "$b" -lt "$max" ] || [ "$s" -gt 2 ]; then
		STREAM_NOTE="the guest moves ≈ $mibs MiB/s guest→host and serves ≈ $rps requests/s over $SIZE_CONNECTIONS connections here: stream scaled to $((b / 1000)) kbit/s with ${s} s segments so that $clients clients need ${share} % of each; on a KVM host it is $((max / 1000000)) Mbit/s with 2 s segments"
	fi
}

# stream_duration DURATION: DURATION (Go syntax, e.g. 30s), or three of size_stream's SEGMENTs if
# that is longer, so that every player follows the live edge for a few segments.
stream_duration() {
	local d=${1%s}
	if [[ $d =~ ^[0-9]+$ ]] && [ "$d" -lt $((3 * SEGMENT)) ]; then echo "$((3 * SEGMENT))s"; else echo "$1"; fi
}

# size_from_json FILE CLIENTS: size_stream from a `bench datapath --json` result of SIZE_MEASURE.
size_from_json() {
	size_stream "$(jq -r '.guest_to_host.mib_per_s*10|round/10' "$1")" "$(jq -r '.http_rate.requests_per_s // 0 | floor' "$1")" "$2"
}

# origin_restart CONSOLE_PORT BITRATE SEGMENT [METRICS_URL]: restart the guest's origin with this
# stream from its console shell (the origin reads hls.bitrate= and hls.segment_duration= only at
# boot), then wait up to 30 s until its metrics (METRICS_URL, default the port forward
# http://127.0.0.1:17100/metrics) report both, and one more segment so the playlist has two.
origin_restart() {
	local port=$1 bitrate=$2 seg=$3 url=${4:-http://127.0.0.1:17100/metrics} m
	{ exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || { echo "origin_restart: console 127.0.0.1:$port: no connection" >&2; return 1; }
	printf 'killall hls-origin; sleep 1; /bin/hls-origin -bitrate %s -segment-duration %ss >/dev/console 2>&1 &\n' "$bitrate" "$seg" >&3
	sleep 1; exec 3>&-
	for _ in $(seq 60); do
		m=$(curl -s --max-time 2 "$url")
		if grep -qx "hls_origin_bitrate_bits_per_second $bitrate" <<<"$m" && grep -qx "hls_origin_segment_duration_seconds $seg" <<<"$m"; then
			sleep "$seg"
			return 0
		fi
		sleep 0.5
	done
	echo "origin_restart: the origin did not come back with bitrate $bitrate and ${seg} s segments ($url)" >&2
	return 1
}
