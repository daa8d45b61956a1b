#!/usr/bin/env bash
# Round 13, second device command, on the same machine as the first (its pass 1 found pins at
# 42-51 ms median, against 16-22 ms on the hosts of rounds 10-12): pin_probe.py, which failed in
# the first command (os.sched_getcpu is Python 3.13+; now through libc).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=200 bash results/validation/round13/run_device2.sh
source results/validation/device_env.sh
timeout 200 python3 results/validation/round13/pin_probe.py "$OUT/probe" > "$OUT/probe.log" 2>&1
echo "probe rc=$? after $(since)" >> "$OUT/probe.log"
