"""calibrate --quick on CPU writes a complete, readable profile."""

import pytest

torch = pytest.importorskip("torch")

import yaml  # noqa: E402

from gpu.calibrate import calibrate  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.hw.profile import HardwareProfile  # noqa: E402


def test_quick_calibration_writes_all_sections(tmp_path):
    prof = calibrate(
        MODEL_PRESETS["tiny"], quick=True, device="cpu", name="cpu-test", progress=lambda s: None
    )
    out = tmp_path / "cpu.yaml"
    prof.to_yaml(out)
    data = yaml.safe_load(out.read_text())
    assert {"name", "device", "model", "command", "pcie", "compute"} <= set(data)
    for key in (
        "pinned",
        "pageable",
        "copy_overhead_us",
        "pin_warm_gbps",
        "pin_cold_gbps",
        "disk_gbps",
        "contention",
    ):
        assert key in data["pcie"]
    assert {"prefill", "decode", "lora"} <= set(data["compute"])
    for kind in ("pinned", "pageable"):
        secs = data["pcie"][kind]["seconds"]
        assert secs == sorted(secs) and all(s > 0 for s in secs)
    dec = data["compute"]["decode"]
    assert len(dec["seconds"]) == len(dec["batch"]) and all(
        len(r) == len(dec["context"]) for r in dec["seconds"]
    )
    again = HardwareProfile.from_yaml(out)  # the simulator can read it back
    assert again.model == "tiny"
