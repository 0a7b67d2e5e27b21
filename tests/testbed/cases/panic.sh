# Test bed acceptance: an L1 kernel panic gives status 125 and says so (tests/testbed/check).
echo "crashing L1"
sync
echo c >/proc/sysrq-trigger
sleep 60
