# tests/storage/lib.sh — helpers for the storage test-bed scripts (boot.sh, bench.sh). Source it after
# tests/testbed/lib.sh. The guest: the Debian kernel, the test guest's initrd (busybox, modules) with
# tests/storage/stage1-init appended, and the system on the erofs store disk or the 9p share.

ST=${ST_DIR:-/tmp/storage}           # L1-local (tmpfs): the combined initrd, and with ST_COPY=1 copies of
                                     # store.erofs, tree/, secret-outside (else the assets are used in place)
ST_PORT=${ST_PORT:-17022}
ST_METRICS=${ST_METRICS:-127.0.0.1:17191} # hlsvmm's --metrics: /metrics, /debug/virtio, /debug/pprof/
ST_OUT=${HLSVMM_OUT:-/tmp}
# What a NixOS guest passes: hlsvmm must hand it to the kernel untouched.
ST_NIXOS_PARAMS="init=/sbin/init regInfo=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-closure-info/registration root=fstab"
ST_CMDLINE_BASE=${ST_CMDLINE_BASE:-"console=ttyS0 panic=1 i8042.noaux i8042.nomux i8042.dumbkbd nomodeset quiet"} # without quiet (and with ignore_loglevel) a stall report shows its NMI backtraces

# st_prepare: the assets (tests/storage/assets, built on the host by the make targets; rebuilt here
# if stale), copied to L1's tmpfs with ST_COPY=1 (benchmarks: no outer 9p under the figures; tests
# use them in place, where L1 reads them over its own 9p root), and the combined initrd. Sets ST_IMG,
# ST_TREE, ST_SECRET (the planted file's content), ST_BIG_SHA.
st_prepare() {
	local assets=${STORAGE_ASSETS:-$HLSVMM_REPO/.cache/testbed/storage} src
	"$HLSVMM_REPO/tests/storage/assets" "$assets" || return 1
	rm -rf "$ST" && mkdir -p "$ST" || return 1
	src=$assets
	if [ "${ST_COPY:-0}" = 1 ]; then
		cp -a "$assets/tree" "$assets/secret-outside" "$assets/store.erofs" "$assets/store.sha256" "$ST/" || return 1
		src=$ST
	fi
	ST_IMG=$src/store.erofs ST_TREE=$src/tree ST_IMG_SHA=$(cat "$src/store.sha256")
	cat "$HLSVMM_INITRD" "$assets/stage1.cpio.gz" >"$ST/initrd" || return 1
	ST_SECRET=$(cat "$src/secret-outside")
	ST_BIG_SHA=$(cut -d' ' -f1 "$ST_TREE/data/big.sha256")
}

# st_start NAME CMDLINE-EXTRA HLSVMM-ARGS...: start hlsvmm with the storage guest, console on TCP
# ST_PORT (client output in $ST_OUT/NAME.client, console log NAME.console, stderr NAME.err); waits for
# HLSVMM-GUEST-READY (ST_BOOT_TIMEOUT, 600 s). Sets ST_PID and fd 3 (the console connection).
# Metrics and debug pages on ST_METRICS, for st_hang_report.
# --net none: the storage guest needs no network (the reference QEMU has none either), and hlsvmm's
# default --net bridge would set up and tear down the host network around every boot.
st_start() {
	local name=$1 extra=$2
	shift 2
	ST_NAME=$name
	ST_CLIENT=$ST_OUT/$name.client ST_CONSOLE=$ST_OUT/$name.console ST_ERR=$ST_OUT/$name.err
	hlsvmm run --kernel "$HLSVMM_KERNEL" --initrd "$ST/initrd" --mem "${ST_MEM:-1024}" --vcpus "${ST_VCPUS:-2}" \
		--cmdline "$ST_CMDLINE_BASE $extra" --serial "tcp:127.0.0.1:$ST_PORT" --serial-log "$ST_CONSOLE" \
		--net none --metrics "$ST_METRICS" "$@" >"$ST_OUT/$name.out" 2>"$ST_ERR" &
	ST_PID=$!
	st_connect
}

# st_connect: connect fd 3 to the console, collect into ST_CLIENT, wait for the marker.
st_connect() {
	: >"$ST_CLIENT"
	local i
	for i in $(seq 200); do
		{ exec 3<>"/dev/tcp/127.0.0.1/$ST_PORT"; } 2>/dev/null && break
		kill -0 "$ST_PID" 2>/dev/null || break
		sleep 0.1
	done
	{ true >&3; } 2>/dev/null || { echo "st_connect: no console on 127.0.0.1:$ST_PORT" >&2; return 1; }
	cat <&3 >"$ST_CLIENT" &
	ST_READER=$!
	ST_N=0
	wait_marker "$ST_CLIENT" HLSVMM-GUEST-READY "${ST_BOOT_TIMEOUT:-600}" "$ST_PID" >"$ST_OUT/$ST_NAME.boot-secs" || return 1
	sleep 1 # let the shell print its prompt
}

# st_stop: end the VMM (if still running) and the console reader.
st_stop() {
	exec 3>&- 2>/dev/null
	[ -z "${ST_READER:-}" ] || kill "$ST_READER" 2>/dev/null
	[ -z "${ST_PID:-}" ] || { kill "$ST_PID" 2>/dev/null; wait "$ST_PID" 2>/dev/null; }
	ST_PID= ST_READER=
}

# st_cmd CMD [TIMEOUT]: type CMD on the console and wait for its END tag; its output is the lines
# between the echoed command and the tag (st_out prints them). Gives up at once if the VMM exits.
st_cmd() {
	ST_N=$((ST_N + 1))
	printf '%s; echo "END-%s-$((1+1))"\n' "$1" "$ST_N" >&3
	st_wait_end "$1" "${2:-60}"
}
# st_cmd_bg CMD [TIMEOUT]: st_cmd with CMD in a background job of the guest's shell, which stays
# free for st_hang_report if CMD never ends.
st_cmd_bg() {
	st_type_bg "$1"
	st_wait_end "$1" "${2:-60}"
}
# st_type_bg CMD: type CMD as a background job whose output, collected until it ends, starts on a
# line of its own (the shell's prompt comes first), followed by the END tag.
st_type_bg() {
	ST_N=$((ST_N + 1))
	printf '( o=$( %s 2>&1 ); printf "\\n%%s\\n" "$o"; echo "END-%s-$((1+1))" ) &\n' "$1" "$ST_N" >&3
}
# st_wait_end CMD TIMEOUT: wait for the END tag of the last command typed.
st_wait_end() {
	local i
	for i in $(seq $(($2 * 10))); do
		tr -d '\r' <"$ST_CLIENT" | grep -aq "^END-$ST_N-2$" && return 0
		if ! kill -0 "$ST_PID" 2>/dev/null; then
			echo "st_cmd: the VMM exited while waiting for END-$ST_N of: $1 ($(grep -a 'guest stopped' "$ST_ERR" | tail -n 1))" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "st_cmd: no END-$ST_N after ${2}s for: $1" >&2
	return 1
}
# st_out: the output of the last st_cmd (lines after its echo up to its END tag).
st_out() {
	tr -d '\r' <"$ST_CLIENT" | awk -v n="$ST_N" '
		index($0, "END-" n "-$((1+1))") {on = 1; next}
		$0 == "END-" n "-2" {exit}
		on {print}'
}
# st_value KEY: the last KEY=VALUE line the guest printed.
st_value() { tr -d '\r' <"$ST_CLIENT" | grep -a "^$1=" | tail -n 1 | cut -d= -f2-; }

# st_hang_report VMM: what a guest stuck in a command shows, for a bug report. The guest's blocked
# tasks (sysrq w, with the console loglevel raised) and its interrupt counts, through shell builtins
# only (an exec could wait on the stuck device too); for hlsvmm also its virtio devices' queues and
# doorbells (/debug/virtio), its 9p and queue counters and where each of its goroutines waits.
st_hang_report() {
	local mark
	mark=$(wc -l <"$ST_CONSOLE")
	echo "  hang report ($1):"
	printf '%s\n' 'echo 8 >/proc/sys/kernel/printk; echo w >/proc/sysrq-trigger; while read -r l; do case $l in *CPU*|*virtio*|*PCI-MSI*) echo "IRQ: $l";; esac; done </proc/interrupts' >&3
	sleep 5
	echo "  | guest console after sysrq w and /proc/interrupts:"
	tr -d '\r' <"$ST_CONSOLE" | tail -n +"$((mark + 1))" | head -n 150 | sed 's/^/  | /'
	[ "$1" = hlsvmm ] && kill -0 "$ST_PID" 2>/dev/null || return 0
	echo "  | hlsvmm /debug/virtio:"
	curl -fsS --max-time 10 "http://$ST_METRICS/debug/virtio" 2>&1 | sed 's/^/  | /'
	echo "  | hlsvmm 9p and queue counters:"
	curl -fsS --max-time 10 "http://$ST_METRICS/metrics" 2>&1 | grep -E '^hlsvmm_(9p_|virtio_|blk_)' | sed 's/^/  | /'
	echo "  | hlsvmm goroutines:"
	curl -fsS --max-time 10 "http://$ST_METRICS/debug/pprof/goroutine?debug=2" 2>&1 | sed 's/^/  | /'
}

# st_wait_exit SECONDS: wait for the VMM to exit; sets ST_STATUS to its status (empty if it still
# runs). Not in a $( ) subshell: only this shell can wait for its child.
st_wait_exit() {
	local i
	ST_STATUS=
	for i in $(seq $(($1 * 10))); do
		kill -0 "$ST_PID" 2>/dev/null || { wait "$ST_PID"; ST_STATUS=$?; ST_PID=; return 0; }
		sleep 0.1
	done
}

# st_qemu_start NAME CMDLINE-EXTRA: the same guest under the reference QEMU (tests/testbed/lib.sh's
# machine: q35, KVM, -cpu host, no network here) with virtio-blk-pci on store.erofs (read-only),
# virtio-9p-pci on tree as ro-store (read-only) and virtio-rng-pci; console like st_start's.
st_qemu_start() {
	local name=$1 extra=$2
	ST_NAME=$name
	ST_CLIENT=$ST_OUT/$name.client ST_CONSOLE=$ST_OUT/$name.console ST_ERR=$ST_OUT/$name.err
	: >"$ST_CONSOLE"
	qemu-system-x86_64 \
		-name hlsvmm-ref-storage -M q35 -enable-kvm -cpu host \
		-smp "${ST_VCPUS:-2}" -m "${ST_MEM:-1024}" \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$HLSVMM_KERNEL" -initrd "$ST/initrd" \
		-append "$ST_CMDLINE_BASE $extra" \
		-chardev socket,id=con,host=127.0.0.1,port="$ST_PORT",server=on,wait=off,logfile="$ST_CONSOLE" \
		-serial chardev:con \
		-drive file="$ST_IMG",if=none,id=store,format=raw,readonly=on \
		-device virtio-blk-pci,drive=store \
		-fsdev local,id=share,path="$ST_TREE",security_model=none,readonly=on \
		-device virtio-9p-pci,fsdev=share,mount_tag=ro-store \
		-device virtio-rng-pci \
		</dev/null >"$ST_OUT/$name.out" 2>"$ST_ERR" &
	ST_PID=$!
	st_connect
}
