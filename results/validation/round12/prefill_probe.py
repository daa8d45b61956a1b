"""Where do a prefill row's extra ~0.9 ms go? (round 12 device probe; results script)

Runs `lorasim validate` (arguments passed through) with three read-only wrappers around the
CUDA driver, and writes one CSV row per prefill forward of every run to PROBE_CSV:

- the row's own start/end markers (the timeline's prefill row),
- a compute-stream marker and the host clock at entry to and return from
  `PrefillRunner.run` (what calibration times, tokens already on the device),
- the host clock at entry to and exit from `CudaDriver._launch`,
- the batch (rid, adapter, rank, new tokens, context), to price it offline.

prep = run entry - row start and post = row end - run return (GPU clock) are the driver's
work around what calibration times; host_lag = host return of run - its GPU marker (positive:
the GPU finished the body before the host had issued it all, i.e. launch-bound). Markers are
resolved in `finish`, on the run's own clock. Nothing in the driver's behaviour changes but
two extra CUDA events per prefill.

    PROBE_CSV=$OUT/probe.csv python3 results/validation/round12/prefill_probe.py validate ...
"""

from __future__ import annotations

import csv
import json
import os
import sys

import gpu.driver as drv
import gpu.prefill_graphs as pg
import gpu.validate as val

ROWS: list[dict] = []
LABEL = {"scenario": "", "policy": ""}
_state: dict = {"driver": None, "pending": [], "cur": None, "on": False}

_run_gpu, _launch, _finish, _start = val.run_gpu, drv.CudaDriver._launch, drv.CudaDriver.finish, drv.CudaDriver.start
_prun = pg.PrefillRunner.run


def run_gpu(sc, policy, *a, **k):
    LABEL.update(scenario=sc.name, policy=policy)
    return _run_gpu(sc, policy, *a, **k)


def start(self):
    _start(self)
    _state.update(driver=self, pending=[], on=True)


def launch(self, eff):
    if not _state["on"] or eff.batch.kind != "prefill":
        return _launch(self, eff)
    cur = {"host_enter": self.clock.now(), "clock": self.clock}
    _state["cur"] = cur
    t = _launch(self, eff)
    _state["cur"] = None
    la = self.launches[t]
    cur.update(
        host_exit=self.clock.now(), start=la.start, end=la.steps[-1],
        items=[(it.rid, it.adapter, it.rank, it.new_tokens, it.context) for it in eff.batch.items],
    )
    _state["pending"].append(cur)
    return t


def prun(self, inp, tok_slots):
    cur = _state["cur"]
    if cur is None:
        return _prun(self, inp, tok_slots)
    clock = cur["clock"]
    cur["host_in"], cur["m_in"] = clock.now(), clock.mark("compute")
    out = _prun(self, inp, tok_slots)
    cur["host_out"], cur["m_out"] = clock.now(), clock.mark("compute")
    cur["graphed"] = self.graphed(len(tok_slots)) and self.adapter_key(tok_slots) is not None
    return out


def finish(self):
    _finish(self)
    if _state["driver"] is not self:
        return
    for c in _state["pending"]:
        s, e = c["start"].time(), c["end"].time()
        ri, ro = c["m_in"].time(), c["m_out"].time()
        ROWS.append({
            **LABEL, "start": s, "end": e, "run_in": ri, "run_out": ro,
            "host_enter": c["host_enter"], "host_in": c["host_in"], "host_out": c["host_out"],
            "host_exit": c["host_exit"], "graphed": int(c["graphed"]),
            "tokens": sum(i[3] for i in c["items"]), "n_items": len(c["items"]),
            "items": json.dumps(c["items"]),
        })
    _state.update(driver=None, pending=[], on=False)


val.run_gpu, drv.CudaDriver._launch, drv.CudaDriver.finish, drv.CudaDriver.start = run_gpu, launch, finish, start
pg.PrefillRunner.run = prun


def main() -> None:
    from sim.cli import main as cli

    sys.argv = ["lorasim", *sys.argv[1:]]
    try:
        cli()
    finally:
        path = os.environ.get("PROBE_CSV", "probe.csv")
        if ROWS:
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(ROWS[0]))
                w.writeheader()
                w.writerows(ROWS)
        print(f"probe: {len(ROWS)} prefills -> {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
