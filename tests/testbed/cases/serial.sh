#!/bin/sh
# Test bed check: L1's heartbeat over virtio-serial stops while its 9p heartbeat goes on (as when
# L1's virtio-serial ports to the outer machine stop answering, SCRIPT's output with them); run
# must kill L1 and exit 126 saying so, with the outer QEMU's threads.
kill -STOP "$(cat /run/hlsvmm-beat.pid)"
echo "serial heartbeat stopped"
sleep 600
