#!/usr/bin/env bash
# Round 11, fifth device command: NOT RUN in session 11 (its device time ran out); for the next
# session. (1) tests/gpu
# on the final code. (2) The per-module copy issue time through the driver's own loop
# (gpu.lora.LoraSlots.copy_modules, now shared with calibration), 8B rank 64. (3) One zipf pass of
# overlap for its in-situ `issue` host rows, to compare with (2) and the profile's issue_us.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=170 bash results/validation/round11/run_device5.sh
source results/validation/device_env.sh
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
timeout 40 python3 - > "$OUT/issue.log" 2>&1 <<'PY'
import torch
from gpu.calibrate import measure_adapter_copy
from sim.config import MODEL_PRESETS
r = measure_adapter_copy(MODEL_PRESETS["llama-3.1-8b"], torch.device("cuda"), 64, reps=7)
print(f"copies {int(r['copies'])}: issue {r['issue_s'] * 1e3:.2f} ms = {r['issue_s'] / r['copies'] * 1e6:.2f} us/copy;"
      f" per-module copy {r['per_module_s'] * 1e3:.2f} ms, flat {r['flat_s'] * 1e3:.2f} ms")
PY
echo "issue rc=$? after $(since)" >> "$OUT/issue.log"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate --scenario configs/validate/zipf.yaml \
  --profile configs/hardware/h200-measured.yaml --policies overlap --out $OUT/zipf-overlap" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/zipf-overlap.tgz" -C "$OUT" zipf-overlap && rm -rf "$OUT/zipf-overlap"
