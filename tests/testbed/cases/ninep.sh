#!/bin/sh
# Test bed check: L1's heartbeat over 9p stops while its serial heartbeat goes on (as when L1's 9p
# shares to the outer machine stop answering); run must kill L1 and exit 126 saying so, and L1 must
# have dumped its blocked tasks to the console after 60 s.
kill -STOP "$(cat /run/hlsvmm-heartbeat.pid)"
echo "9p heartbeat stopped"
sleep 600
