#!/bin/sh
# Test bed check: both of L1's heartbeats stop (as when L1 wedges) while SCRIPT still runs; run must kill L1
# and exit 126 once HLSVMM_TESTBED_HEARTBEAT seconds pass without one.
kill -STOP "$(cat /run/hlsvmm-heartbeat.pid)" "$(cat /run/hlsvmm-beat.pid)"
echo "heartbeat stopped"
sleep 600
