# Test bed acceptance: L1 has KVM, vhost-net, TUN, nftables, curl and hlsvmm on PATH, the guest
# files are set, and stdout and stderr reach the caller separately (tests/testbed/check).
set -euo pipefail
test -c /dev/kvm
test -c /dev/vhost-net
test -c /dev/net/tun
nft list ruleset
curl --version >/dev/null
command -v hlsvmm
hlsvmm --help >/dev/null
test -f "$HLSVMM_KERNEL"
test -f "$HLSVMM_INITRD"
test -d "$HLSVMM_OUT"
test "$(id -u)" = 0
test "$(nproc)" = 2
test "$#" = 2 && test "$1" = "two words" && test "$2" = 'a$b'
echo "hello from L1" >"$HLSVMM_OUT/handed-back"
echo "STDOUT-MARKER"
echo "STDERR-MARKER" >&2
