#!/usr/bin/env bash
# Round 9, sixth device command: run_device5.sh again, after calibration's host-timing trace
# went from 8 to 2 req/s (at 8 only one arrival of 24 found the GPU idle, so the wake-up
# reading was a median of 1). Its lines were the same as run_device5.sh's; they are not
# repeated here.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   bash results/validation/round9/run_device6.sh
exec bash results/validation/round9/run_device5.sh
