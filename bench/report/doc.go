// Package report holds what every `hlsvmm bench` subcommand shares: latency summaries with
// nearest-rank percentiles, bandwidth units, markdown tables, indented JSON, pass/fail limits
// for CI gating, and a progress display for stderr. It knows nothing about what was measured.
package report
