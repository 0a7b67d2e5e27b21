#!/bin/sh
# Test bed check: L1's kernel log says what a wedged L1 says, and SCRIPT fails. run must call it a
# nested-emulation fault (126) and, with HLSVMM_TESTBED_RETRIES=1, run it once more.
echo "<0>BUG: soft lockup - CPU#0 stuck for 22s! [tests/testbed/cases/wedged.sh]" >/dev/kmsg
echo "failing after a fake soft lockup"
exit 1
