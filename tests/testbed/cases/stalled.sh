#!/bin/sh
# Test bed check: L1's heartbeats stop and then the timeout comes before HLSVMM_TESTBED_HEARTBEAT
# seconds of silence have passed; run must still call it a wedged L1 (126), not a timeout (124).
kill -STOP "$(cat /run/hlsvmm-heartbeat.pid)" "$(cat /run/hlsvmm-beat.pid)"
echo "heartbeat stopped"
sleep 600
