// Package datapath is the network half of `hlsvmm bench`: it measures a guest's datapath from
// the host against the test origin's traffic endpoints (tests/guest/origin: /blob, /sink, /ping
// and the TCP echo port), so the same figures can be taken for hlsvmm and QEMU, each with and
// without vhost-net, and compared as ratios in one table.
//
// # The command
//
//	hlsvmm bench datapath [--url http://10.177.0.10:17080] [--bytes 256MiB] [--streams 1]
//	    [--latency-samples 1000] [--echo auto|HOST:PORT|none] [--rate-connections 0]
//	    [--rate-requests 20×connections] [--vmm-pid PID] [--label NAME]
//	    [--timeout 10m] [--json] [--progress auto|bar|lines|none]
//	hlsvmm bench combine [--baseline LABEL] [--json] FILE.json...
//
// # What is measured
//
//   - Guest→host throughput: --streams parallel GET /blob?bytes=SHARE (the shares add up to
//     --bytes), each body compared byte for byte with the blob formula (BlobFill) and its SHA-256
//     compared with the X-Blob-Sha256 trailer the guest computed while sending.
//   - Host→guest throughput: --streams parallel PUT /sink of blob bytes; the guest's reply (bytes
//     and SHA-256 of what it read) must match what was sent.
//     Throughput is verified bytes over wall time, first request to last byte (all streams).
//   - Latency: --latency-samples sequential GET /ping on one kept-alive connection (after one
//     warm-up request), and as many 64-byte round trips on one TCP_NODELAY connection to the echo
//     port; nearest-rank p50/p99/max (report.Summary).
//   - Request rate (--rate-connections N; after the latency phase, which --latency-samples -1
//     skips, not this): N kept-alive connections, each opened and warmed up with one GET /ping, then GET /ping back
//     to back on all of them at once until --rate-requests (default 20 per connection, all
//     connections together) have been answered "pong". Requests per second are the answered
//     requests over the wall time from the first counted request to the last answer; the
//     latency of each request under that concurrency is summarized too (http_rate in JSON:
//     .http_rate.requests_per_s, .http_rate.latency.p50_ms, null when not asked). This is the
//     capacity figure for sizing an HLS load: one connection's latency overestimates what the
//     guest serves to hundreds. The host's client shares the figure: on a small host, many
//     connections measure the client too. bench combine shows it as "HTTP rate" (req/s @N), with
//     ratios only between runs of the same N.
//   - VMM CPU per GiB (--vmm-pid): utime+stime of the VMM process (/proc/PID/stat covers all
//     its threads: vCPUs, a userspace datapath, vhost workers on kernels ≥ 6.4) before and
//     after each transfer, divided by the GiB moved; reported apart, the kernel threads named
//     vhost-PID that older kernels (Debian 12's 6.1) run outside the process, summed over all of
//     them. CPU percent is of one CPU over the transfer's wall time.
//
// Any mismatch, short body, missing trailer, wrong /ping answer or transport error is a
// failure: the result says which, Pass is false and the command exits 1 (a rate phase with a
// failed request reports requests_per_s 0); an unreachable guest is an error (exit 2).
package datapath
