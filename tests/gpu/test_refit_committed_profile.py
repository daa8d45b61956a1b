"""The committed measured profiles re-derive from their calibration logs (issue #25): the
fitting rules applied to the raw medians in results/validation/<gpu>/calibration/calibrate.log
give back each profile's tables exactly. Refitting measures nothing, so this runs on CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("torch")  # --refit-from reads bucket sizes from the graph modules

import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from sim.hw.profile import HardwareProfile, LoraPrefillTable, Table  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GPUS = ("h200", "h100")


def _profile(gpu: str) -> Path:
    return ROOT / f"configs/hardware/{gpu}-measured.yaml"


def _logs(gpu: str) -> Path:
    return ROOT / f"results/validation/{gpu}/calibration"


# the log steps of the profile's `command`, in its order (the steps from validation run
# folders, pin tail, wake, noise and unpin, set fields these do not touch)
REFIT_STEPS: tuple[tuple[str, ...], ...] = (("--refit-from", "calibrate.log"),)


def _scaled(t: LoraPrefillTable) -> LoraPrefillTable:
    return dataclasses.replace(t, seconds=tuple(tuple(tuple(2 * v for v in r) for r in p) for p in t.seconds))


def _blanked(prof: HardwareProfile) -> HardwareProfile:
    """`prof` with every figure the log steps derive changed, the rest kept."""
    c, p = prof.compute, prof.pcie
    compute = dataclasses.replace(
        c,
        prefill=Table(c.prefill.x, tuple(2 * y for y in c.prefill.y)),
        decode=dataclasses.replace(c.decode, seconds=tuple(tuple(2 * v for v in r) for r in c.decode.seconds)),
        lora_decode=_scaled(c.lora_decode),
        lora_prefill=_scaled(c.lora_prefill),
        launch_fraction=0.0,
        attention_ms_per_mcell=0.0,
        forward_overhead_us=0.0,
        prefill_buckets=(),
        adapter_buckets=(),
        batch_buckets=(),
        decode_context="mean",
    )
    return dataclasses.replace(prof, compute=compute, pcie=dataclasses.replace(p, copy_gap_us=None, issue_us=0.0))


def _step_args(step: tuple[str, ...], logs: Path) -> list[str]:
    return [a if not a.endswith(".log") else str(logs / a) for a in step]


@pytest.mark.parametrize("gpu", GPUS)
def test_committed_profile_re_derives_from_its_logs(tmp_path, gpu):
    from sim.cli import app

    PROFILE, LOGS = _profile(gpu), _logs(gpu)
    committed = HardwareProfile.from_yaml(PROFILE)
    out = tmp_path / "p.yaml"
    _blanked(committed).to_yaml(out)
    assert HardwareProfile.from_yaml(out) != committed
    for step in REFIT_STEPS:
        r = CliRunner().invoke(app, ["calibrate", "--out", str(out), *_step_args(step, LOGS)])
        assert r.exit_code == 0, r.output
    want = yaml.safe_load(PROFILE.read_text())
    got = yaml.safe_load(out.read_text())
    want.pop("command")
    got_command = got.pop("command")
    assert got == want
    assert got_command.startswith(committed.command)


@pytest.mark.parametrize("gpu", GPUS)
def test_committed_profile_command_names_the_logs_it_was_refitted_from(gpu):
    """The profile's `command` records these steps with the logs' paths in the tree."""
    PROFILE, LOGS = _profile(gpu), _logs(gpu)
    command = " ".join(HardwareProfile.from_yaml(PROFILE).command.split())
    for step in REFIT_STEPS:
        args = _step_args(step, LOGS.relative_to(ROOT))
        assert " ".join([f"lorasim calibrate --out configs/hardware/{gpu}-measured.yaml", *args]) in command
