"""`lorasim calibrate`: measure this machine into a profile, re-measure one part of it
(--measure-only), or hand a profile to the no-measuring refits (gpu.cli.refit)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from gpu import PREFILL_GRAPH_TOKENS
from gpu.cli.common import PrefillGraphTokens, model_shape, need_torch, refuse_big_model_on_cpu
from gpu.cli.refit import refit_profile

MEASURE_PARTS = ("pins",)  # what `calibrate --measure-only` can re-measure alone


def calibrate(
    model: Annotated[
        str, typer.Option(help="model preset (sim.config.MODEL_PRESETS)")
    ] = "llama-3.1-8b",
    out: Annotated[Path, typer.Option(help="profile YAML to write")] = Path(
        "configs/hardware/measured.yaml"
    ),
    quick: Annotated[bool, typer.Option(help="small grids (seconds; CPU tests)")] = False,
    device: Annotated[
        str | None, typer.Option(help="torch device (default: cuda if present)")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="profile name (default: the file's stem)")
    ] = None,
    rank: Annotated[int, typer.Option(help="LoRA rank of the adapter-copy check (the LoRA compute tables use the grid's ranks)")] = 64,
    eager_decode: Annotated[
        bool,
        typer.Option(
            help="time decode as one eager model.forward a step (as `validate --eager-decode` "
            "runs it; validation rounds 1-4) instead of the harness's CUDA-graph decode"
        ),
    ] = False,
    prefill_graph_tokens: PrefillGraphTokens = PREFILL_GRAPH_TOKENS,
    refit_from: Annotated[
        Path | None,
        typer.Option(
            help="no measuring: re-derive the compute tables of the profile at --out from "
            "this calibration log's raw medians with the current fitting rules"
        ),
    ] = None,
    refit_only: Annotated[
        list[str] | None,
        typer.Option(
            help="with --refit-from: take only this part from the log and keep the rest of "
            "the profile (repeatable): prefill, decode, lora_decode, lora_prefill, "
            "launch_fraction, attention, host_gap, wake, rates (HBM read and matmul); copy_issue, copy_gap, unpin (PCIe: the "
            "copy issue time, the back-to-back copy gap and the time to free a pin-per-load's "
            "pinned copies, from a calibrate log or `python -m gpu.diag_copy`)"
        ),
    ] = None,
    measure_only: Annotated[
        list[str] | None,
        typer.Option(
            help="measure only this part on this machine and keep the rest of the profile at "
            "--out (repeatable): pins (pcie.pin_warm_gbps, pin_cold_gbps, pin_per_tensor_us "
            "for the profile's model at --rank). Pin speed is the host's own (15-51 ms for one "
            "rank-64 Llama-3.1-8B adapter on lent H200s), so run it on the host you validate on"
        ),
    ] = None,
    host_gap_from: Annotated[
        list[Path] | None,
        typer.Option(
            help="no measuring: set compute.forward_overhead_us of the profile at --out to "
            "the median host gap between back-to-back forwards in this folder's GPU "
            "timelines (*.gpu.timeline.csv of a `lorasim validate` pass; repeatable)"
        ),
    ] = None,
    wake_from: Annotated[
        list[Path] | None,
        typer.Option(
            help="no measuring: set compute.wake_us of the profile at --out to the median "
            "time from an arrival that found the GPU idle to its admission in this folder's "
            "GPU runs (*.gpu.csv with their timelines; repeatable)"
        ),
    ] = None,
    attention_from_diag: Annotated[
        Path | None,
        typer.Option(
            help="no measuring: set compute.attention_ms_per_mcell (and attention_cells, the "
            "log's cell count) of the profile at --out from a `python -m gpu.diag_prefill` log "
            "(one batch vs calibration's layout)"
        ),
    ] = None,
    noise_from: Annotated[
        list[Path] | None,
        typer.Option(
            help="no measuring: set compute.run_speed_sd and pcie.issue_sd of the profile at "
            "--out (the run-to-run noise `validate --sim-repeats` draws) from the health.csv "
            "in this folder: a `validate --gpu-runs` output lists every pass's runs "
            "(repeatable: the rows are pooled)"
        ),
    ] = None,
    pin_tail_from: Annotated[
        list[Path] | None,
        typer.Option(
            help="no measuring: set pcie.pin_tail_fraction and pin_tail_ms of the profile at "
            "--out from the pin-per-load pins in this folder's GPU timelines (slow: above "
            "1.5 x the median; repeatable)"
        ),
    ] = None,
    pin_speed_from: Annotated[
        list[Path] | None,
        typer.Option(
            help="no measuring: scale the pin cost (pcie.pin_warm_gbps, pin_cold_gbps, pin_per_tensor_us) of "
            "the profile at --out to the host's: the median, over the pin-per-load runs in this "
            "folder's health.csv (a `lorasim validate` output made with this profile), of each "
            "run's median pin over the simulator's for the same cell (repeatable). Hosts pin at "
            "very different speeds (15-51 ms for one rank-64 Llama-3.1-8B adapter on lent "
            "H200s); with --pin-tail-from on the same folders it gives the host's pins"
        ),
    ] = None,
    unpin_from: Annotated[
        list[Path] | None,
        typer.Option(
            help="no measuring: set pcie.unpin_per_tensor_us of the profile at --out from the "
            "`lru` runs in this folder (a `lorasim validate` pass; repeatable): the extra "
            "gap after a prefill that follows a blocking load, per folder, median over "
            "folders, over the tensors of an all-module adapter of the profile's model"
        ),
    ] = None,
) -> None:
    """Measure copies, pinning, disk, the device's HBM read and matmul rates, forward times and
    the host gap between forwards; write a hardware profile YAML.

    Example: lorasim calibrate --out configs/hardware/h200-measured.yaml (on the GPU);
    lorasim calibrate --refit-from results/validation/h200/calibration/calibrate-base.log
    --out configs/hardware/h200-measured.yaml (anywhere)."""
    if refit_only and refit_from is None:
        from sim.errors import ConfigError

        raise ConfigError(str(out), "--refit-only", "needs --refit-from LOG: the log to take the part from")
    refits = (refit_from is not None or host_gap_from or pin_tail_from or attention_from_diag or wake_from
              or noise_from or unpin_from or pin_speed_from)
    if measure_only:
        if refits:
            from sim.errors import ConfigError

            raise ConfigError(str(out), "--measure-only", "measures; the --*-from options refit from "
                              "records: run them as two commands, measuring first")
        _measure_only(out, measure_only, device, rank, quick)
        return
    if refits:
        refit_profile(
            out, refit_from, host_gap_from or [], pin_tail_from or [], attention_from_diag,
            wake_from or [], refit_only or None, noise_from or [], unpin_dirs=unpin_from or [],
            pin_speed_dirs=pin_speed_from or [],
        )
        return
    need_torch()
    refuse_big_model_on_cpu(model_shape(model), device, f"--model {model}", "")
    from gpu.calibrate.run import calibrate as run

    cmd = "lorasim " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    prof = run(
        model_shape(model),
        quick=quick,
        device=device,
        name=name or out.stem,
        command=cmd,
        rank=rank,
        progress=typer.echo,
        eager_decode=eager_decode,
        prefill_graph_tokens=prefill_graph_tokens,
    )
    prof.to_yaml(out)
    typer.echo(f"wrote {out}")


def _measure_only(out: Path, parts: list[str], device: str | None, rank: int, quick: bool) -> None:
    """calibrate --measure-only: re-measure these parts on this machine into the profile
    at `out`, in place."""
    from dataclasses import replace

    from sim.errors import ConfigError
    from sim.hw.profile import HardwareProfile

    unknown = sorted(set(parts) - set(MEASURE_PARTS))
    if unknown:
        raise ConfigError(str(out), "--measure-only", f"unknown part {', '.join(unknown)}; expected one of {', '.join(MEASURE_PARTS)}")
    if not out.is_file():
        raise ConfigError(str(out), "--out", "file not found; expected the profile to re-measure a part of")
    prof = HardwareProfile.from_yaml(out)
    from sim.config import MODEL_PRESETS

    if prof.model not in MODEL_PRESETS:
        raise ConfigError(str(out), "model", f"{prof.model!r} is not a model preset; expected one of {sorted(MODEL_PRESETS)}")
    need_torch()
    import torch

    from gpu.calibrate.copies import measure_pin_cost
    from gpu.calibrate.grids import GRIDS
    from gpu.calibrate.run import device_name
    from sim.core.model import ALL_TARGETS, AdapterSpec

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = model_shape(prof.model)
    ad = AdapterSpec.from_shape("probe", rank, ALL_TARGETS, shape)

    def one_pin_ms(pc) -> float:  # a warm per-module pin of one all-module adapter
        return (ad.nbytes / (pc.pin_warm_gbps * 1e9) + ad.n_tensors * pc.pin_per_tensor_us * 1e-6) * 1e3

    before = one_pin_ms(prof.pcie)
    cost = measure_pin_cost(shape, dev, rank, GRIDS["quick" if quick else "full"]["pin_bytes"])
    prof = replace(prof, pcie=replace(prof.pcie, pin_warm_gbps=cost.warm_gbps, pin_cold_gbps=cost.cold_gbps,
                                      pin_per_tensor_us=cost.per_tensor_us))
    typer.echo(f"pins on {device_name(dev)}: warm {cost.warm_gbps:.2f} cold {cost.cold_gbps:.2f} GB/s"
               f" + {cost.per_tensor_us:.1f} us/tensor; one rank-{rank} {prof.model} adapter"
               f" {one_pin_ms(prof.pcie):.1f} ms (the profile had {before:.1f} ms)")
    args = ["calibrate", "--out", str(out), "--rank", str(rank)] + [a for p in parts for a in ("--measure-only", p)]
    args += ["--quick"] if quick else []
    args += ["--device", device] if device else []
    cmd = "lorasim " + " ".join(shlex.quote(a) for a in args)
    replace(prof, command=f"{prof.command}; then {cmd} (on {device_name(dev)})").to_yaml(out)
    typer.echo(f"wrote {out}")
