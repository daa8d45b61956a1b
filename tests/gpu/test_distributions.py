"""Sim-vs-GPU distributions: the Wasserstein distance and what `lorasim validate` writes."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from gpu.distributions import Distributions
from gpu.validate import METRICS, resimulate
from sim.config import load_scenario
from sim.metrics import relative_w1
from sim.runner import simulate
from tests.gpu.tiny_scenario import SCENARIO


def test_relative_w1_is_the_mean_shift_of_the_cdf_over_the_gpu_mean():
    g = np.linspace(10.0, 30.0, 41)  # mean 20
    assert relative_w1([g], g) == pytest.approx(0.0)
    assert relative_w1([g], g + 2.0) == pytest.approx(0.1)  # shifted by 2 = 10 % of the mean
    assert relative_w1([g[:20], g[20:]], g) == pytest.approx(0.0)  # GPU runs are pooled
    # a median on a cliff: moving the middle few values across a gap moves the median a lot
    # but the whole distribution little
    a = np.r_[np.full(19, 100.0), np.full(21, 1000.0)]
    b = np.r_[np.full(21, 100.0), np.full(19, 1000.0)]
    assert abs(np.median(b) / np.median(a) - 1) > 0.8
    assert relative_w1([a], b) < 0.1
    assert np.isnan(relative_w1([], g)) and np.isnan(relative_w1([g], np.array([])))


def test_resimulate_writes_distances_and_cdf_plots_from_the_gpu_records(tmp_path):
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    sim = simulate(load_scenario(path), "lru")
    for k, shift in ((1, 0.0), (2, 0.004)):  # two GPU runs: as simulated, and 4 ms later
        d = tmp_path / f"run{k}"
        d.mkdir()
        (d / "tiny-val.lru.summary.json").write_text(json.dumps({"gpu": {m: 1.0 for m in METRICS}, "sim": {}}))
        rec = sim.records.copy()
        rec["ttft"] += shift
        rec.to_csv(d / "tiny-val.lru.gpu.csv", index=False)
    resimulate([path], None, ["lru"], [tmp_path / "run1", tmp_path / "run2"], tmp_path / "out",
               progress=lambda s: None)
    dist = pd.read_csv(tmp_path / "out" / "distribution.csv")
    row = dist.iloc[0]
    assert row.gpu_runs == 2 and row.e2e_w1_rel == pytest.approx(0.0, abs=1e-12)
    # half the pooled GPU TTFTs are 4 ms later: the simulator is off by 2 ms on average
    mean_gpu = float(sim.records["ttft"].mean()) + 0.002
    assert row.ttft_w1_rel == pytest.approx(0.002 / mean_gpu, rel=0.05)
    assert (tmp_path / "out" / "plots" / "cdf_tiny-val.png").stat().st_size > 0
    assert "TTFT distance" in (tmp_path / "out" / "distribution.md").read_text()


def test_cells_without_gpu_records_are_left_out():
    d = Distributions()
    d.add("s", "lru", [pd.DataFrame()], pd.DataFrame({"ttft": [1.0], "e2e": [2.0]}))
    assert d.table().empty
