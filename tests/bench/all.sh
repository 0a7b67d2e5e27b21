#!/bin/bash
# make bench, in one test-bed run: the datapath comparison (datapath.sh: QEMU and hlsvmm, vhost
# on/off) and then the HLS load comparison (hls.sh: QEMU vhost=on and hlsvmm vhost=on through the
# port forward, bitrate picked from datapath.sh's guest→host figure). Exit 1 if either failed;
# both run regardless.
set -uo pipefail
dir=$(dirname "${BASH_SOURCE[0]}")
rc=0
echo "== datapath (bench datapath) =="
bash "$dir/datapath.sh" || rc=1
echo
echo "== HLS load (bench hls) =="
bash "$dir/hls.sh" || rc=1
exit $rc
