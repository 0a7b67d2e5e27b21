#!/bin/sh
# Test bed check: L1 resets at once, printing nothing (what a triple fault looks like from outside).
# run must call it a nested-emulation fault (126), not an L1 that stopped for a reason (125).
echo "resetting L1"
echo b >/proc/sysrq-trigger
sleep 60
