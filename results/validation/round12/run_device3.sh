#!/usr/bin/env bash
# Round 12, third device command. (1) tests/gpu with the serving-loop issue measurement in
# calibration's host-gap run. (2) `python -m gpu.diag_copy`: the isolated copy loop (three
# repeats) and the serving loop's issue time (calibration's light trace, `overlap` in two
# slots) on this host, in calibrate's log format, for
#   lorasim calibrate --out configs/hardware/h200-measured.yaml \
#     --refit-from results/validation/round12/dev3/copy.log --refit-only copy_issue
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=200 bash results/validation/round12/run_device3.sh
source results/validation/device_env.sh
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
timeout "$(left)" python3 -m gpu.diag_copy --repeats 3 > "$OUT/copy.log" 2> "$OUT/copy.err"
echo "diag_copy rc=$? after $(since)" >> "$OUT/copy.err"
