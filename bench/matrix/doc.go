// Package matrix is `hlsvmm bench --matrix`: it runs the datapath benchmark (bench/datapath)
// once per combination of `hlsvmm run` knob values and reports one row per combination.
//
// # The command
//
//	hlsvmm bench --matrix "vhost=on|off queues=1|4 offload=none|csum,tso4" --kernel K [--initrd I]
//	    [--vcpus N] [--mem MiB] [--run-flag=--append=quiet ...] [--url http://10.177.0.10:17080]
//	    [--bytes 64MiB] [--streams 1] [--latency-samples 1000] [--echo auto|HOST:PORT|none]
//	    [--ready-timeout 5m] [--stop-timeout 1m] [--timeout 10m] [--log-dir DIR] [--json]
//
// # The spec
//
// Knobs are separated by spaces or semicolons; each is NAME=V1|V2|..., NAME a flag of `hlsvmm
// run` without its dashes, the values separated by '|' (so that a value may hold commas, as
// --offload csum,tso4 does, or '='). The rows are the cartesian product in the order given: the
// first knob varies slowest, each knob's values in their order. At most MaxRows rows.
//
// # A row
//
// A Launcher starts the VMM with the row's flags (--NAME=VALUE, after the base flags, so a knob
// overrides a base flag of the same name); the runner waits until the guest's /health answers,
// runs the datapath benchmark with the VMM's PID (its CPU per GiB), then stops the VMM and waits
// for it to exit (hlsvmm run tears down the host network it set up), one row after the other.
// A row whose VM does not boot, whose benchmark fails or whose VMM had to be killed is a failed
// row with its reasons and the VMM's last output lines; the matrix goes on with the next row.
package matrix
