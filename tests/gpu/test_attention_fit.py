"""gpu.attention_fit: the prefill attention coefficient from a gpu.diag_prefill log."""

import subprocess
import sys
from pathlib import Path

import pytest

from gpu.attention_fit import (
    BURST_LENS,
    attention_coefficient,
    cells_from_log,
    coefficient_from_log,
)

ROOT = Path(__file__).resolve().parents[2]
LOG = """first burst prefill (3095 tokens, 9 requests, 8 adapters): 613.6 ms
burst: median 146.1 ms
burst, no LoRA: median 126.0 ms
calibration input: median 135.9 ms
calibration input, no LoRA: median 115.0 ms
"""


def test_coefficient_is_the_time_difference_over_the_cell_difference():
    # 9 x 494 x 494 cells against calibration's 7 x 512 x 512 for 3095 tokens
    d_cells = 9 * 494 * 494 - 7 * 512 * 512
    assert attention_coefficient(list(BURST_LENS), 0.126, 0.115) == pytest.approx(11.0 / (d_cells * 1e-6))
    assert coefficient_from_log(LOG) == pytest.approx(11.0 / (d_cells * 1e-6), rel=1e-6)
    assert coefficient_from_log("lens: 100,100\n" + LOG) == pytest.approx(
        11.0 / ((2 * 100 * 100 - 200 * 200) * 1e-6))  # its own lens line wins
    with pytest.raises(ValueError):
        coefficient_from_log("not a log")
    with pytest.raises(ValueError):
        attention_coefficient([512, 488], 0.1, 0.1)  # calibration's own layout: nothing to see


def test_paged_harness_log_counts_causal_cells():
    """gpu.diag_prefill of the paged harness says "cells: causal": each request's new tokens
    over its own keys, n (n + 1) / 2 without context; calibration's 3095 tokens are 6 requests
    of 512 and one of 23. A log without the line is the padded harness's."""
    causal_log = "lens: 413,406,494,318,318,327,406,277,136\ncells: causal (paged varlen)\n" + LOG
    assert cells_from_log(causal_log) == "causal" and cells_from_log(LOG) == "padded"
    burst = sum(n * (n + 1) / 2 for n in BURST_LENS)
    calib = 6 * 512 * 513 / 2 + 23 * 24 / 2
    want = 11.0 / ((burst - calib) * 1e-6)
    assert attention_coefficient(list(BURST_LENS), 0.126, 0.115, "causal") == pytest.approx(want)
    assert coefficient_from_log(causal_log) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError):
        attention_coefficient([512, 512, 100], 0.1, 0.1, "causal")  # calibration's own layout


def test_cli_attention_from_diag_sets_the_profile(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from sim.cli import app
    from sim.hw.profile import HardwareProfile

    prof = tmp_path / "p.yaml"
    shutil.copy(ROOT / "configs/hardware/h200-measured.yaml", prof)
    log = tmp_path / "diag.log"
    log.write_text(LOG)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), "--attention-from-diag", str(log)])
    assert r.exit_code == 0, r.output
    assert HardwareProfile.from_yaml(prof).compute.attention_ms_per_mcell == pytest.approx(
        coefficient_from_log(LOG), rel=1e-3)
    assert HardwareProfile.from_yaml(prof).compute.attention_cells == "padded"
    log.write_text("cells: causal (paged varlen attention)\n" + LOG)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), "--attention-from-diag", str(log)])
    assert r.exit_code == 0, r.output
    got = HardwareProfile.from_yaml(prof).compute
    assert got.attention_cells == "causal"
    assert got.attention_ms_per_mcell == pytest.approx(max(0.0, coefficient_from_log(log.read_text())), rel=1e-3)
    log.write_text("nothing here")
    r = subprocess.run(
        [sys.executable, "-c", "from sim.cli import main; main()", "calibrate", "--out", str(prof),
         "--attention-from-diag", str(log)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 2 and "--attention-from-diag" in r.stderr and "Traceback" not in r.stderr
