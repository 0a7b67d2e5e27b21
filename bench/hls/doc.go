// Package hls is the HLS load half of `hlsvmm bench`: N concurrent clients that each behave
// like a live player against an HLS origin, and a Result with what they measured.
//
// # The command
//
//	hlsvmm bench hls [--url http://127.0.0.1:17080] [--clients 300] [--duration 30s]
//	    [--ramp 5s] [--timeout 0] [--start-segments 3] [--verify origin|sha256|none]
//	    [--json] [--progress auto|bar|lines|none]
//	    [--max-errors 0] [--max-timeouts 0] [--max-mismatches 0] [--max-behind -1]
//
// prints a markdown report on stdout (or JSON with --json, schema "hlsvmm.bench.hls/v1", see
// Result), progress on stderr, and exits 1 when a --max-* gate is exceeded, the run was
// interrupted or no segment was verified (negative --max-* disables that gate). --url is the
// origin (the playlist is /stream.m3u8) or a playlist URL; 127.0.0.1:17080 is hlsvmm's port
// forward, 10.177.0.10:17080 the VM itself.
//
// # What a client does
//
// Each client has its own kept-alive HTTP connection. It fetches the playlist and starts
// --start-segments segments behind the live edge (3, like hls.js and Apple's players; 1 = the
// newest segment only), fetching those back to back; from then on it fetches every segment
// newer than the last one it fetched, once, in order, as soon as a playlist lists it, and
// reloads the playlist one segment duration (the newest #EXTINF) after the previous reload
// began, or half of that when the playlist brought nothing new (RFC 8216 section 6.3.4). A
// failed segment is not retried. Clients start evenly spread over --ramp. No request starts
// after --duration; each is bounded by --timeout (default twice the segment duration), and
// everything is cut at duration + timeout + 1 s at the latest.
//
// # What is measured
//
//   - Segment fetch latency: request start to last body byte, for every 200 response read in
//     full; nearest-rank p50/p95/p99/max, compared with the segment duration.
//   - Errors: HTTP (status other than 200), transport (no response, body cut off), timeouts,
//     content mismatches (see Verify; a playlist that does not parse counts too).
//   - Falling behind real time: a segment is late when its fetch took longer than its
//     duration; it is skipped when it left the window before the client got to it (the next
//     playlist starts after it, or it was answered 404 and the next playlist no longer lists
//     it; that 404 is also an HTTP error). A client with any late or skipped segment fell behind.
//   - Throughput: body bytes per second while all clients run (ramp end to duration end),
//     against the offered load, clients × the stream bitrate implied by the segments fetched
//     (bytes × 8 / duration). The test guest's bitrate is its hls.bitrate= kernel parameter; if
//     clients fall behind or time out, the link is saturated and the measured per-client share is
//     about the highest bitrate it carries for that many clients.
package hls
