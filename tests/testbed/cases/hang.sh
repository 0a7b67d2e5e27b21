# Test bed acceptance: a SCRIPT that never ends is killed at HLSVMM_TESTBED_TIMEOUT (tests/testbed/check).
echo "sleeping"
sleep 3600
