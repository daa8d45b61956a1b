"""A fast fake run function for crash tests of real sweep subprocesses.

`LORASIM_RUN_FN=_crash_fake:run` (with this folder on PYTHONPATH). Every execution appends
one line to $CRASH_LOG: `exec <policy> <rate>`, or `RECOMPUTE <policy> <rate>` when the run is
already stored ok in $CRASH_OUT (a finished run computed again: what must never happen).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from _exp_fakes import fake_run


def _key(sc, policy: str) -> str:
    return f"{policy} {sc.workload.arrival.rate:g}"


def _already_done(sc, policy: str) -> bool:
    index = Path(os.environ["CRASH_OUT"]) / "index"
    if not index.is_dir():
        return False
    for f in index.glob("*.json"):
        try:
            row = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if (row.get("status") == "ok" and row.get("policy") == policy
                and float(row.get("workload.arrival.rate", -1)) == sc.workload.arrival.rate):
            return True
    return False


def run(sc, policy: str):
    tag = "RECOMPUTE" if _already_done(sc, policy) else "exec"
    fd = os.open(os.environ["CRASH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{tag} {_key(sc, policy)}\n".encode())
    finally:
        os.close(fd)
    time.sleep(random.uniform(0.02, 0.08))
    return fake_run(sc, policy)
