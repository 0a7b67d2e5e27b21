// Package datapath is the network half of `hlsvmm bench`: it measures a guest's datapath from
// the host against the test origin's traffic endpoints (tests/guest/origin: /blob, /sink, /ping
// and the TCP echo port), so the same figures can be taken for hlsvmm and QEMU, each with and
// without vhost-net, and compared as ratios in one table.
//
// # The command
//
//	hlsvmm bench datapath [--url http://10.177.0.10:17080] [--bytes 256MiB] [--streams 1]
//	    [--latency-samples 1000] [--echo auto|HOST:PORT|none] [--vmm-pid PID] [--label NAME]
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
//   - VMM CPU per GiB (--vmm-pid): utime+stime of the VMM process (/proc/PID/stat covers all
//     its threads: vCPUs, a userspace datapath, vhost workers on kernels ≥ 6.4) before and
//     after each transfer, divided by the GiB moved; reported apart, the kernel threads named
//     vhost-PID that older kernels (Debian 12's 6.1) run outside the process, summed over all of
//     them. CPU percent is of one CPU over the transfer's wall time.
//
// Any mismatch, short body, missing trailer or transport error is a failure: the result says
// which, Pass is false and the command exits 1; an unreachable guest is an error (exit 2).
package datapath
