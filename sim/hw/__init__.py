"""Hardware cost models the SimPy driver uses: PCIe copies and GPU compute.

`load_hardware` builds them from a scenario's `hardware:` section: a measured profile YAML
when `profile` is set (its tables replace the analytic formulas), else an analytic preset.
Explicit HardwareCfg keys override either.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from sim.config import HardwareCfg
from sim.core.model import ModelShape
from sim.errors import ConfigError
from sim.hw.compute import ComputeModel, ProfileCompute, RooflineCompute
from sim.hw.noise import RunNoise
from sim.hw.pcie import CopyModel, LoadCost, PinTail
from sim.hw.presets import PRESETS, GpuSpec, preset
from sim.hw.profile import HardwareProfile

__all__ = [
    "PRESETS",
    "ComputeModel",
    "CopyModel",
    "GpuSpec",
    "Hardware",
    "HardwareProfile",
    "LoadCost",
    "PinTail",
    "ProfileCompute",
    "RooflineCompute",
    "RunNoise",
    "load_hardware",
    "preset",
]


@dataclass(frozen=True)
class Hardware:
    copy: CopyModel
    compute: ComputeModel
    contention: float = 0.0  # fractional compute slowdown while a side-stream copy runs
    # disk reads and pinning hold the scheduler's thread ("scheduler") or not ("background")
    host_work: str = "scheduler"
    # an idle scheduler reacts this long after what woke it (an arrival, a finished load):
    # near-simultaneous arrivals land in one batch, as with a real serving loop
    wake_s: float = 250e-6
    # CPU launch time of a forward / its GPU time (profile.compute.launch_fraction)
    launch_fraction: float = 0.0
    # host time the scheduler spends preparing and launching each forward before the GPU can
    # start it (profile.compute.forward_overhead_us): the gap between back-to-back forwards
    forward_overhead_s: float = 0.0
    # slow pin-per-load pins, added by the SimPy driver (profile.pcie.pin_tail_*)
    pin_tail: PinTail | None = None
    # run-to-run variation (profile.compute.run_speed_sd, profile.pcie.issue_sd), applied by
    # the SimPy driver once a seed is set (sim.runner.simulate(noise_seed=...)); off otherwise
    noise: RunNoise = RunNoise()


def _spec(cfg: HardwareCfg) -> GpuSpec:
    return preset(
        cfg.preset,
        pinned_gbps=cfg.pinned_gbps,
        pageable_gbps=cfg.pageable_gbps,
        copy_overhead_us=cfg.copy_overhead_us,
        disk_gbps=cfg.disk_gbps,
        hbm_eff=cfg.hbm_eff,
    )


def load_hardware(cfg: HardwareCfg, shape: ModelShape) -> Hardware:
    if not cfg.profile:
        spec = _spec(cfg)
        copy = CopyModel.from_spec(spec, cfg.pin_cache)
        return _assemble(
            cfg, copy, RooflineCompute(shape, spec, cfg.lora_compute_scale, cfg.lora_prefill_scale), cfg.contention,
            cfg.launch_fraction or 0.0,
            cfg.forward_overhead_us or 0.0,
        )
    return _from_profile(cfg, shape)


DEFAULT_WAKE_US = 250.0  # without a measured profile value or a scenario setting


def _assemble(
    cfg: HardwareCfg, copy: CopyModel, compute: ComputeModel, contention: float, launch: float,
    overhead_us: float, profile_wake_us: float = 0.0,
) -> Hardware:
    """The cost models plus the serving loop's host-side settings, taken from the scenario
    (the wake-up latency: the scenario's, else the profile's measured one, else the default)."""
    wake_us = cfg.wake_us if cfg.wake_us is not None else (profile_wake_us or DEFAULT_WAKE_US)
    return Hardware(
        copy=copy,
        compute=compute,
        contention=contention,
        host_work=cfg.host_work,
        wake_s=wake_us * 1e-6,
        launch_fraction=launch,
        forward_overhead_s=overhead_us * 1e-6,
    )


def _from_profile(cfg: HardwareCfg, shape: ModelShape) -> Hardware:
    path = Path(cfg.profile)
    if cfg.hbm_eff is not None:
        raise ConfigError(str(path), "hardware.hbm_eff", "applies to the analytic model only; a measured "
                                                         "profile's compute tables replace it (drop one of them)")
    if not path.is_file():
        raise ConfigError(str(path), "hardware.profile", "file not found; expected a profile YAML written by `lorasim calibrate`")
    try:
        prof = HardwareProfile.from_yaml(path)
    except OSError as e:
        raise ConfigError(str(path), "hardware.profile", f"cannot read hardware profile: {e}") from None
    if prof.model != shape.name:
        raise ConfigError(
            str(path), "model",
            f"profile was measured for model {prof.model!r} but the scenario's model is {shape.name!r}; "
            "calibrate for this model or drop hardware.profile",
        )
    p = prof.pcie
    copy = CopyModel(
        pinned_gbps=p.pinned.x[-1] / p.pinned.y[-1] / 1e9,
        pageable_gbps=p.pageable.x[-1] / p.pageable.y[-1] / 1e9,
        copy_overhead_us=p.copy_overhead_us,
        pin_warm_gbps=p.pin_warm_gbps,
        pin_cold_gbps=p.pin_cold_gbps,
        disk_gbps=cfg.disk_gbps or p.disk_gbps,
        pin_cache=cfg.pin_cache,
        pinned_table=p.pinned,
        pageable_table=p.pageable,
        pin_per_tensor_us=p.pin_per_tensor_us,
        copy_gap_us=p.copy_gap_us,
        issue_us=p.issue_us,
        unpin_per_tensor_us=p.unpin_per_tensor_us,
    )
    # Explicit bandwidth/overhead keys mean "what if": switch to the analytic formula,
    # keeping the profile's values for whatever was not overridden.
    if cfg.pinned_gbps or cfg.pageable_gbps or cfg.copy_overhead_us is not None:
        copy = replace(
            copy,
            pinned_gbps=cfg.pinned_gbps or copy.pinned_gbps,
            pageable_gbps=cfg.pageable_gbps or copy.pageable_gbps,
            copy_overhead_us=p.copy_overhead_us if cfg.copy_overhead_us is None else cfg.copy_overhead_us,
            pinned_table=None,
            pageable_table=None,
        )
    contention = cfg.contention if "contention" in cfg.model_fields_set else p.contention
    launch = prof.compute.launch_fraction if cfg.launch_fraction is None else cfg.launch_fraction
    overhead = (
        prof.compute.forward_overhead_us if cfg.forward_overhead_us is None else cfg.forward_overhead_us
    )
    comp = prof.compute
    if cfg.attention_ms_per_mcell is not None:
        comp = replace(comp, attention_ms_per_mcell=cfg.attention_ms_per_mcell)
    compute = ProfileCompute(comp, cfg.lora_compute_scale, cfg.lora_prefill_scale)
    hw = _assemble(cfg, copy, compute, contention, launch, overhead, comp.wake_us)
    frac = p.pin_tail_fraction if cfg.pin_tail_fraction is None else cfg.pin_tail_fraction
    if frac > 0 and p.pin_tail_ms > 0:
        hw = replace(hw, pin_tail=PinTail(frac, p.pin_tail_ms * 1e-3))
    if comp.run_speed_sd or p.issue_sd:
        hw = replace(hw, noise=RunNoise(comp.run_speed_sd, p.issue_sd))
    return hw
