# Test bed acceptance: run exits with SCRIPT's status (tests/testbed/check).
echo "exiting 3"
exit 3
