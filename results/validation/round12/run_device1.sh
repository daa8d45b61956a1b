#!/usr/bin/env bash
# Round 12, first device command. (1) tests/gpu on the current code (session 11's last CUDA
# test run predates the shared copy loop and the `issue` rows). (2) The per-module copy issue
# time through the driver's own loop (gpu.lora.LoraSlots.copy_modules), 8B rank 64, against the
# profile's issue_us 5.81. (3) Saturated zipf and bursty, `overlap` and `lru`, under
# prefill_probe.py: where each prefill row's time goes (driver work before/after what
# calibration times, and the host's launch lag), plus the runs' `issue` rows.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=400 bash results/validation/round12/run_device1.sh
source results/validation/device_env.sh
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
timeout 40 python3 - > "$OUT/issue.log" 2>&1 <<'PY'
import torch
from gpu.calibrate import measure_adapter_copy
from sim.config import MODEL_PRESETS
r = measure_adapter_copy(MODEL_PRESETS["llama-3.1-8b"], torch.device("cuda"), 64, reps=7)
print(r)
print(f"copies {int(r['copies'])}: issue {r['issue_s'] * 1e3:.2f} ms = {r['issue_s'] / r['copies'] * 1e6:.2f} us/copy;"
      f" per-module copy {r['per_module_s'] * 1e3:.2f} ms, flat {r['flat_s'] * 1e3:.2f} ms")
PY
echo "issue rc=$? after $(since)" >> "$OUT/issue.log"
L=$(left)
PROBE_CSV=$OUT/probe.csv timeout -s INT "$L" python3 results/validation/round12/prefill_probe.py validate \
  --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml \
  --profile configs/hardware/h200-measured.yaml --policies overlap,lru --out $OUT/probe-runs > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/probe-runs.tgz" -C "$OUT" probe-runs && rm -rf "$OUT/probe-runs"
