#!/usr/bin/env bash
# Round 10, second device command: resumes the saturated passes of run_device.sh.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round10/run_device2.sh
source results/validation/device_env.sh
source results/validation/round10/saturated_passes.sh
