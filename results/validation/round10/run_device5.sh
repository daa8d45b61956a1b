#!/usr/bin/env bash
# Round 10, fifth device command: the rest of the third saturated pass (run_device4.sh ended
# after val-uniform's first four policies), resumed from the passes committed under
# round10/saturated.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round10/run_device5.sh
source results/validation/device_env.sh
SAT_REPEATS=3
source results/validation/round10/saturated_passes.sh
