#!/usr/bin/env bash
# tests/vmm/bench-boot.sh — boot time and memory overhead of hlsvmm beside QEMU, in the test bed:
#   tests/testbed/run tests/vmm/bench-boot.sh          (or: make bench-boot)
# Prints figures; it is not a pass/fail test (it fails only if a boot does not reach the marker).
# For each of BENCH_BOOTS rounds, QEMU (-M $BENCH_QEMU_MACHINE -enable-kvm -cpu host) and hlsvmm boot
# the same Debian bzImage and test guest initrd with the same kernel command line, vCPUs and memory,
# one after the other; the time is from starting the VMM to HLSVMM-GUEST-READY in its console log.
# At the marker, each VMM's RSS is split into guest RAM touched (the Rss of its guest-RAM mappings,
# read from /proc/PID/smaps) and the rest: the VMM's own overhead.
# Absolute times under nested emulation mean nothing; the ratio hlsvmm/QEMU, measured in the same
# run, does. Targets: median boot ratio <= 1, hlsvmm overhead <= 20 MiB. Both VMMs get no NIC and
# no other device beyond their defaults (hlsvmm: --net none --rng=false).
set -uo pipefail
. "$HLSVMM_REPO/tests/testbed/lib.sh"

BOOTS=${BENCH_BOOTS:-5}
VCPUS=${BENCH_VCPUS:-2}
MEM=${BENCH_MEM:-1024}
MACHINE=${BENCH_QEMU_MACHINE:-q35}
CMDLINE=${BENCH_CMDLINE:-console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd nomodeset quiet}
TIMEOUT=${BENCH_TIMEOUT:-600}
OUT=${HLSVMM_OUT:-/tmp}
RUNDIR=$(mktemp -d /tmp/bench-boot.XXXXXX) # L1-local: console logs on tmpfs, not on the shared 9p dir

# rss_split PID: "VMRSS_KIB GUEST_KIB FILE_KIB": the process's VmRSS, the Rss of its mappings of at
# least a quarter of the guest's memory (guest RAM; nothing else a VMM maps is that large and
# resident), and its file-backed RSS (its executable and libraries: page cache shared between VMs).
rss_split() {
	local pid=$1 vmrss guest file
	vmrss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")
	file=$(awk '/^RssFile:/{print $2}' "/proc/$pid/status")
	guest=$(awk -v min=$((MEM * 1024 / 4)) '
		/^[0-9a-f]+-[0-9a-f]+ /{ big = 0 }
		/^Size:/{ big = ($2 >= min) }
		/^Rss:/{ if (big) sum += $2 }
		END{ print sum + 0 }' "/proc/$pid/smaps")
	echo "$vmrss $guest $file"
}

# boot NAME CMD...: start CMD (which logs the guest console to $RUNDIR/NAME.log), wait for the
# marker, record seconds and RSS, stop it. Sets SECS, VMRSS, GUEST.
boot() {
	local name=$1 t0 pid
	shift
	: >"$RUNDIR/$name.log"
	t0=$(tb_now)
	"$@" </dev/null >"$RUNDIR/$name.out" 2>&1 &
	pid=$!
	if ! wait_marker "$RUNDIR/$name.log" HLSVMM-GUEST-READY "$TIMEOUT" $pid >/dev/null; then
		echo "FAIL: $name did not boot to the marker" >&2
		tail -n 20 "$RUNDIR/$name.log" "$RUNDIR/$name.out" >&2
		kill $pid 2>/dev/null; wait $pid 2>/dev/null
		exit 1
	fi
	SECS=$(awk -v a="$t0" -v b="$(tb_now)" 'BEGIN{printf "%.2f", b-a}')
	read -r VMRSS GUEST FILE < <(rss_split $pid)
	# where the rest of the RSS lives, for the report: mappings with more than 512 KiB resident
	awk '/^[0-9a-f]+-[0-9a-f]+ /{name = ($6 == "" ? "[anon]" : $6); size = 0}
		/^Size:/{size = $2} /^Rss:/{ if ($2 > 512) printf "    %7d KiB of %9d KiB  %s\n", $2, size, name }' \
		"/proc/$pid/smaps" >"$RUNDIR/$name.maps"
	kill $pid; wait $pid 2>/dev/null
	cp "$RUNDIR/$name.log" "$OUT/$name.console.log" 2>/dev/null
}

qemu_cmd=(qemu-system-x86_64 -M "$MACHINE" -enable-kvm -cpu host -smp "$VCPUS" -m "$MEM"
	-nodefaults -no-user-config -display none -no-reboot
	-kernel "$HLSVMM_KERNEL" -initrd "$HLSVMM_INITRD" -append "$CMDLINE"
	-chardev "file,id=con,path=$RUNDIR/qemu.log" -serial chardev:con)
hlsvmm_cmd=(hlsvmm run --kernel "$HLSVMM_KERNEL" --initrd "$HLSVMM_INITRD" --vcpus "$VCPUS" --mem "$MEM"
	--cmdline "$CMDLINE" --serial none --serial-log "$RUNDIR/hlsvmm.log" --net none --rng=false)

echo "bench-boot: $BOOTS boots each, $VCPUS vCPUs, $MEM MiB, QEMU -M $MACHINE, cmdline: $CMDLINE"
printf '%-6s %10s %10s %8s %14s %14s\n' boot qemu_s hlsvmm_s ratio qemu_ovh_MiB hlsvmm_ovh_MiB
q_times=() h_times=() ratios=() q_ovh=() h_ovh=() h_guest=() h_rss=()
for i in $(seq "$BOOTS"); do
	# alternate who goes first, so neither always gets the warmer (or the busier) slot
	if ((i % 2)); then
		boot qemu "${qemu_cmd[@]}"
		qs=$SECS qo=$(((VMRSS - GUEST) / 1024))
	fi
	boot hlsvmm "${hlsvmm_cmd[@]}"
	hs=$SECS ho=$(((VMRSS - GUEST) / 1024)) hf=$((FILE / 1024)) hg=$((GUEST / 1024)) hr=$((VMRSS / 1024))
	if ! ((i % 2)); then
		boot qemu "${qemu_cmd[@]}"
		qs=$SECS qo=$(((VMRSS - GUEST) / 1024))
	fi
	r=$(awk -v h="$hs" -v q="$qs" 'BEGIN{printf "%.2f", h/q}')
	q_times+=("$qs") h_times+=("$hs") ratios+=("$r") q_ovh+=("$qo") h_ovh+=("$ho")
	h_guest+=("$hg") h_rss+=("$hr")
	printf '%-6s %10s %10s %8s %14s %14s\n' "$i" "$qs" "$hs" "$r" "$qo" "$ho"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '%-6s %10s %10s %8s %14s %14s\n' median "$(median "${q_times[@]}")" "$(median "${h_times[@]}")" \
	"$(median "${ratios[@]}")" "$(median "${q_ovh[@]}")" "$(median "${h_ovh[@]}")"
echo
echo "hlsvmm at the marker (last boot): VmRSS ${h_rss[-1]} MiB = guest RAM touched ${h_guest[-1]} MiB + VMM ${h_ovh[-1]} MiB" \
	"(of which ${hf} MiB file-backed: the executable's pages, shared with other hlsvmm processes); resident mappings:"
cat "$RUNDIR/hlsvmm.maps"
mr=$(median "${ratios[@]}") mo=$(median "${h_ovh[@]}")
echo "median hlsvmm time / median QEMU time: $(awk -v h="$(median "${h_times[@]}")" -v q="$(median "${q_times[@]}")" 'BEGIN{printf "%.2f", h/q}')"
awk -v r="$mr" 'BEGIN{exit !(r <= 1)}' && echo "target median boot ratio <= 1.00: met ($mr, median of the per-round ratios)" ||
	echo "target median boot ratio <= 1.00: NOT met ($mr, median of the per-round ratios)"
[ "$mo" -le 20 ] && echo "target hlsvmm overhead <= 20 MiB: met (${mo} MiB)" || echo "target hlsvmm overhead <= 20 MiB: NOT met (${mo} MiB)"
rm -rf "$RUNDIR"
