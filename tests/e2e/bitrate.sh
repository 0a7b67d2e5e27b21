# tests/e2e/bitrate.sh — pick the test origin's stream bitrate the link can carry. Source it.
#   pick_bitrate MIB_PER_S CLIENTS  sets BITRATE (bits/s): CLIENTS x bitrate = HLS_LINK_SHARE (60) % of the
#   measured guest→host MiB/s, rounded down to 10 kbit/s, at most HLS_MAX_BITRATE (2000000, the
#   real stream), and BITRATE_NOTE to the sentence to print when it lowered the bitrate.
pick_bitrate() {
	local mibs=$1 clients=$2 share=${HLS_LINK_SHARE:-60} max=${HLS_MAX_BITRATE:-2000000} b
	b=$(awk -v m="$mibs" -v c="$clients" -v s="$share" 'BEGIN{b = m * 1048576 * 8 * s / 100 / c; b = int(b / 10000) * 10000; print (b < 10000 ? 10000 : b)}')
	BITRATE_NOTE=
	if [ "$b" -lt "$max" ]; then
		BITRATE_NOTE="link ≈ $mibs MiB/s guest→host; bitrate lowered to $((b / 1000)) kbit/s so that $clients clients need ${share} % of it; on a KVM host the default is $((max / 1000000)) Mbit/s"
	else b=$max; fi
	BITRATE=$b
}
