#!/usr/bin/env bash
# Round 16: one host for the whole table, priced with its own pins. Each call first measures
# the host's pin cost alone (`lorasim calibrate --measure-only pins`, into a copy of the
# committed profile) and validates against that copy, then measures the pins again, so the
# record shows whether the host stayed the same and whether its pin speed drifted. Traces
# 1..3 of a saturated scenario, all five policies (lookahead now with `split_new`).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 PYTEST=1 SCENARIO=bursty bash results/validation/round16/run_device.sh
#   BUDGET_S=570 SCENARIO=light/uniform POLICIES=overlap,lookahead bash results/validation/round16/run_device.sh
# PYTEST=1 first runs tests/gpu on CUDA (round 15's one-step carry-on was checked on CPU only).
source results/validation/device_env.sh
TAG=${SCENARIO//\//-}
nvidia-smi --query-gpu=uuid,pci.bus_id --format=csv,noheader > "$OUT/host.txt" 2>&1
hostname >> "$OUT/host.txt"
if [ "${PYTEST:-0}" = 1 ]; then
  timeout 170 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
  echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
fi
PROF="$OUT/h200-host-$TAG.yaml"
cp configs/hardware/h200-measured.yaml "$PROF"
lorasim calibrate --measure-only pins --out "$PROF" > "$OUT/pins.log" 2>&1
timeout -s INT $(( $(left) - 25 )) bash -c "lorasim validate --scenario configs/validate/$SCENARIO.yaml \
  --profile $PROF --policies ${POLICIES:-lru,overlap,slora,resident,lookahead} \
  --traces 1..3 --out $OUT/$TAG" > "$OUT/validate-$TAG.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate-$TAG.log"
cp configs/hardware/h200-measured.yaml "$OUT/after.yaml"
lorasim calibrate --measure-only pins --out "$OUT/after.yaml" >> "$OUT/pins.log" 2>&1 && rm "$OUT/after.yaml"
echo "pins rc=$? after $(since)" >> "$OUT/pins.log"
rm -f "$OUT/$TAG"/plots/*.svg
tar -czf "$OUT/$TAG.tgz" -C "$OUT" "$TAG" && rm -rf "$OUT/$TAG"
