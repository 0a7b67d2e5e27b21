#!/bin/sh
# Test bed check: a SCRIPT that runs longer than HLSVMM_TESTBED_HEARTBEAT while L1 is fine must not be
# taken for a wedged L1: the heartbeat keeps coming.
sleep 45
echo "slept 45 s"
