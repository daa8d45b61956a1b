"""notebooks/analysis.ipynb runs top to bottom against a fake-run sweep's results."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from _exp_fakes import fake_run

from experiments.runner import run_sweep
from experiments.sweep import build_sweep

ROOT = Path(__file__).resolve().parents[2]


def test_analysis_notebook_executes(tmp_path: Path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    out = tmp_path / "res"
    sw = build_sweep({"name": "nb", "base": {"adapters": {"count": 4}, "workload": {"num_requests": 20}},
                      "policies": ["lru", "overlap", "resident"],
                      "axes": {"workload.arrival.rate": [1, 2]}}, source="nb.yaml")
    run_sweep(sw, out, run_fn=fake_run, workers=1, progress=False)

    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    monkeypatch.setenv("LORASIM_RESULTS", str(out))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute(env=dict(os.environ))

    # stream outputs concatenated as written: a busy kernel can split one print() across
    # two stream messages ("lines per axis:" | " [3, 3]")
    text = "".join(
        o.get("text", "") + "\n" + str(o.get("data", {}).get("text/plain", "")) + "\n"
        if "data" in o else o.get("text", "")
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "nb: 6 ok runs, 0 failed" in text
    assert "lines per axis: [3, 3]" in text
    for p in ("lru", "overlap", "resident"):
        assert p in text  # the ranking table shows each policy
    assert "Δ P50 TTFT vs lru" in text
