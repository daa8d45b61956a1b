"""Per decode segment: the GPU's time against the profile's price of the same steps.

Each `decode xK` row of a GPU timeline is K steps of one batch. Its batch is rebuilt from the
run's records (requests past their first token and not finished before the row ends), and the
profile prices K steps of it as the simulator would (`ProfileCompute.decode_times`: padded
batch, the context its `decode_context` says, LoRA extra at the padded batch and adapter
count); the steps of one row run back to back, as in the simulator. Grouped by (batch,
distinct adapters): the GPU's ms per step against the prediction's, so a profile's decode
plane is checked against runs, not only calibration.

    python results/validation/round10/decode_steps.py PROFILE RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu.run_health import forward_prices
from sim.hw.compute import ProfileCompute
from sim.hw.profile import HardwareProfile

RANK = 64  # the validation scenarios' adapters


def segments(run: Path, model: ProfileCompute) -> pd.DataFrame:
    """Every `decode xK` row of the run's timelines, priced by gpu.run_health (the check
    `lorasim validate` runs), in ms per step."""
    rows = []
    for tl in sorted(run.glob("*.gpu.timeline.csv")):
        rec = pd.read_csv(tl.with_name(tl.name.replace(".gpu.timeline.csv", ".gpu.csv")))
        ranks = {a: RANK for a in rec.adapter.dropna().unique()}
        f = forward_prices(rec, pd.read_csv(tl), model, ranks)
        f = f[f.kind == "decode"]
        rows.append(f.assign(run=".".join(tl.name.split(".")[:2]), gpu_ms=f.gpu_s * 1e3 / f.steps,
                             pred_ms=f.model_s * 1e3 / f.steps))
    return pd.concat(rows, ignore_index=True)


def main() -> None:
    prof = HardwareProfile.from_yaml(sys.argv[1])
    model = ProfileCompute(prof.compute)
    seg = pd.concat([segments(Path(d), model) for d in sys.argv[2:]], ignore_index=True)
    seg["b"] = pd.cut(seg.batch, [0, 2, 4, 8, 16, 24, 32, 64], labels=["1-2", "3-4", "5-8", "9-16", "17-24", "25-32", "33-64"])
    seg["n"] = pd.cut(seg.adapters, [0, 1, 2, 4, 8, 16], labels=["1", "2", "3-4", "5-8", "9-16"])
    g = seg.groupby(["b", "n"], observed=True)
    out = pd.DataFrame({
        "segments": g.size(), "steps": g.steps.sum(),
        "gpu_ms": g.apply(lambda x: np.average(x.gpu_ms, weights=x.steps), include_groups=False),
        "pred_ms": g.apply(lambda x: np.average(x.pred_ms, weights=x.steps), include_groups=False),
    })
    out["err_%"] = 100 * (out.pred_ms / out.gpu_ms - 1)
    print(out.round(2).to_string())
    w = seg.steps
    tot = 100 * (np.average(seg.pred_ms, weights=w) / np.average(seg.gpu_ms, weights=w) - 1)
    print(f"all steps ({int(w.sum())}): mean GPU {np.average(seg.gpu_ms, weights=w):.2f} ms, "
          f"predicted {np.average(seg.pred_ms, weights=w):.2f} ms, {tot:+.1f} %")


if __name__ == "__main__":
    main()
