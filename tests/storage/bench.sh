#!/usr/bin/env bash
# tests/storage/bench.sh — storage figures in the test bed (make bench-storage): sequential read MiB/s
# and 4 KiB random-read IOPS of the erofs store disk (virtio-blk) and of the 9p share (virtio-9p),
# under hlsvmm and under the reference QEMU (virtio-blk-pci, virtio-9p-pci) with the same images, in
# the same run, printed as one table with ratios hlsvmm/QEMU. Figures, not pass/fail: it fails only
# when a measurement cannot be made. Inside the guest: tests/storage/randread on /data/big
# (STORAGE_BIG_MIB MiB) with O_DIRECT where the file system takes it, page cache dropped first.
# Settings: BENCH_READS (4 KiB random reads per sample, 2000), BENCH_SAMPLES (3; the median is shown),
# BENCH_MSIZE (9p msize, 262144).
set -uo pipefail
. "$HLSVMM_REPO/tests/testbed/lib.sh"
. "$HLSVMM_REPO/tests/storage/lib.sh"

ST_COPY=1
READS=${BENCH_READS:-2000} SAMPLES=${BENCH_SAMPLES:-3} MSIZE=${BENCH_MSIZE:-262144}
trap st_stop EXIT
RES=$ST_OUT/storage-bench.txt
: >"$RES"

tb_phase assets
st_prepare || tb_fail "storage assets"

# measure VMM STORE FILE: one sample set; appends "VMM STORE seq|rand VALUE direct" lines to RES.
measure() {
	local vmm=$1 store=$2 file=$3 i line
	for i in $(seq "$SAMPLES"); do
		st_cmd "sync; echo 3 >/proc/sys/vm/drop_caches; echo \"SEQ-$i=\$(randread -seq -direct -bs 1048576 $file)\"" 900 ||
			tb_fail "$vmm $store: sequential read did not finish"
		line=$(st_value "SEQ-$i")
		[[ $line == randread:* ]] || tb_fail "$vmm $store: sequential read failed: $(st_out | tail -n 3)"
		echo "$vmm $store seq $(sed 's/.* mibs=\([0-9.]*\).*direct=\([01]\).*/\1 \2/' <<<"$line")" >>"$RES"
		st_cmd "echo 3 >/proc/sys/vm/drop_caches; echo \"RAND-$i=\$(randread -direct -n $READS -seed $i $file)\"" 900 ||
			tb_fail "$vmm $store: random reads did not finish"
		line=$(st_value "RAND-$i")
		[[ $line == randread:* ]] || tb_fail "$vmm $store: random reads failed: $(st_out | tail -n 3)"
		echo "$vmm $store rand $(sed 's/.* iops=\([0-9.]*\).*direct=\([01]\).*/\1 \2/' <<<"$line")" >>"$RES"
		echo "  $vmm $store sample $i: $(grep "^$vmm $store seq" "$RES" | tail -n 1 | cut -d' ' -f4) MiB/s, $(grep "^$vmm $store rand" "$RES" | tail -n 1 | cut -d' ' -f4) IOPS"
	done
}

# bench VMM: boot from the store disk with the share attached too, mount the share, measure both.
bench() {
	local vmm=$1
	tb_phase "$vmm-boot"
	if [ "$vmm" = hlsvmm ]; then
		st_start "bench-$vmm" "stage1.store=disk" --disk "$ST_IMG,ro" --share "$ST_TREE:ro-store,ro"
	else
		st_qemu_start "bench-$vmm" "stage1.store=disk"
	fi || { tail -n 20 "$ST_CONSOLE" >&2; tail -n 5 "$ST_ERR" >&2; tb_fail "$vmm: the guest did not boot"; }
	st_cmd "mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=$MSIZE ro-store /mnt; echo \"MNT=\$?\"" 120
	[ "$(st_value MNT)" = 0 ] || tb_fail "$vmm: mounting the 9p share failed: $(st_out | tail -n 3)"
	tb_phase "$vmm-blk"
	measure "$vmm" blk /data/big
	tb_phase "$vmm-9p"
	measure "$vmm" 9p /mnt/data/big
	tb_phase_end
	st_stop
}

bench hlsvmm
bench qemu

# median VMM STORE KIND
median() { awk -v k="$1 $2 $3" '$1" "$2" "$3 == k {print $4}' "$RES" | sort -g | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'; }
direct() { awk -v k="$1 $2 $3" '$1" "$2" "$3 == k {d = $5} END {print d == 1 ? "O_DIRECT" : "buffered"}' "$RES"; }
echo
echo "storage: $(($(stat -c %s "$ST_TREE/data/big") >> 20)) MiB file, 4 KiB random reads x$READS, median of $SAMPLES, 9p msize $MSIZE, guest ${ST_MEM:-1024} MiB / ${ST_VCPUS:-2} vCPUs"
printf '%-26s %12s %12s %8s  %s\n' metric hlsvmm qemu ratio "mode (hlsvmm/qemu)"
for row in "blk seq MiB/s" "blk rand IOPS" "9p seq MiB/s" "9p rand IOPS"; do
	set -- $row
	h=$(median hlsvmm "$1" "$2") q=$(median qemu "$1" "$2")
	printf '%-26s %12s %12s %8s  %s\n' "$1 $2 read ($3)" "$h" "$q" \
		"$(awk -v h="$h" -v q="$q" 'BEGIN{if (q > 0) printf "%.2f", h / q; else print "-"}')" \
		"$(direct hlsvmm "$1" "$2")/$(direct qemu "$1" "$2")"
done | tee -a "$ST_OUT/storage-bench-table.txt"
