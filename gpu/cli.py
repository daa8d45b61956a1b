"""`lorasim calibrate` and `lorasim validate`. torch is imported inside the commands only,
so `lorasim --help` works without it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from gpu import DEGRADED_ABOVE, PREFILL_GRAPH_TOKENS
from sim.errors import LorasimError

MEASURE_PARTS = ("pins",)  # what `calibrate --measure-only` can re-measure alone

# --prefill-graph-tokens of calibrate and validate: both sides of a validation must agree
PrefillGraphTokens = Annotated[
    int,
    typer.Option(
        min=0,
        help="largest prefill (packed tokens) replayed as piecewise CUDA graphs; longer ones "
        "run eagerly. 0: every prefill eager (validation rounds 1-5). Calibrate and validate "
        "with the same value",
    ),
]


class TorchMissing(LorasimError):
    def __init__(self) -> None:
        super().__init__(
            "torch is not installed; install the GPU extra: pip install 'lorasim[gpu]'"
        )


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise TorchMissing() from None


# weights above this are not built on the CPU unless --device says so (bytes)
CPU_WEIGHT_LIMIT = 2 * 2**30


def _refuse_big_model_on_cpu(shape, device: str | None, source: str, key: str) -> None:
    """Without CUDA the harness builds its model on the CPU, where an 8B model's weights
    alone take ~16 GB (fp32: ~32): the process is killed for memory with no message. Refuse
    a large model there unless --device asked for it."""
    import torch

    from sim.errors import ConfigError

    if device is not None or torch.cuda.is_available():
        return
    nbytes = shape.params() * shape.dtype_bytes
    if nbytes > CPU_WEIGHT_LIMIT:
        raise ConfigError(
            source, key,
            f"{shape.name} has {nbytes / 2**30:.0f} GiB of weights and this machine has no CUDA "
            "device; run this on a GPU, re-simulate recorded GPU runs with --gpu-runs DIR "
            "(validate), or pass --device cpu to build it on the CPU anyway",
        )


def _shape(model: str):
    from sim.config import MODEL_PRESETS
    from sim.errors import ConfigError

    if model not in MODEL_PRESETS:
        raise ConfigError(
            "--model",
            "",
            f"unknown model preset {model!r}; expected one of {sorted(MODEL_PRESETS)}",
        )
    return MODEL_PRESETS[model]


def _parse_traces(traces: str) -> range:
    """`--traces 4` (traces 0..3) or `--traces 1..3`, as a range of trace numbers."""
    from sim.errors import ConfigError

    first, sep, last = traces.partition("..")
    try:
        r = range(int(first), int(last) + 1) if sep else range(int(traces))
    except ValueError:
        r = range(0)
    if not r or r.start < 0:
        raise ConfigError("command line", "--traces",
                          f"got {traces!r}; expected a count N >= 1 (traces 0..N-1) or FIRST..LAST with "
                          "0 <= FIRST <= LAST, e.g. 4 or 1..3")
    return r


def register(app: typer.Typer) -> None:
    @app.command()
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
                help="time decode as one eager model.forward a step (validation rounds 1-4) "
                "instead of the CUDA-graph decode the harness now runs"
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
                "launch_fraction, attention, host_gap, wake; copy_issue, copy_gap, unpin (PCIe: the "
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
                help="no measuring: set compute.attention_ms_per_mcell of the profile at --out "
                "from a `python -m gpu.diag_prefill` log (one batch vs calibration's layout)"
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
        """Measure copies, pinning, disk and forward times and the host gap between forwards;
        write a hardware profile YAML.

        Example: lorasim calibrate --out configs/hardware/h200-measured.yaml (on the GPU);
        lorasim calibrate --refit-from results/validation/calibrate.log
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
            _refit(
                out, refit_from, host_gap_from or [], pin_tail_from or [], attention_from_diag,
                wake_from or [], refit_only or None, noise_from or [], unpin_dirs=unpin_from or [],
                pin_speed_dirs=pin_speed_from or [],
            )
            return
        _need_torch()
        _refuse_big_model_on_cpu(_shape(model), device, f"--model {model}", "")
        from gpu.calibrate import calibrate as run

        cmd = "lorasim " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        prof = run(
            _shape(model),
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
        _need_torch()
        import torch

        from gpu.calibrate import GRIDS, device_name, measure_pin_cost
        from sim.core.model import ALL_TARGETS, AdapterSpec

        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        shape = _shape(prof.model)
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

    def _refit(
        out: Path, refit_from: Path | None, gap_dirs: list[Path], pin_dirs: list[Path],
        attention_log: Path | None = None, wake_dirs: list[Path] | None = None,
        only: list[str] | None = None, noise_dirs: list[Path] | None = None,
        unpin_dirs: list[Path] | None = None, pin_speed_dirs: list[Path] | None = None,
    ) -> None:
        """calibrate's no-measuring modes: refit the profile at `out` in place."""
        from dataclasses import replace

        from sim.errors import ConfigError
        from sim.hw.profile import HardwareProfile

        if not out.is_file():
            raise ConfigError(str(out), "--out", "file not found; expected the profile to refit")
        prof = HardwareProfile.from_yaml(out)
        if refit_from is not None:
            _need_torch()
            from gpu.calibrate import UnknownRefitPart, refit_from_log

            if not refit_from.is_file():
                raise ConfigError(str(refit_from), "--refit-from", "file not found; expected a calibrate log")
            try:
                prof = refit_from_log(prof, refit_from.read_text(), only)
            except UnknownRefitPart as e:
                raise ConfigError(str(refit_from), "--refit-only", str(e)) from None
            except ValueError as e:
                raise ConfigError(str(refit_from), "--refit-from", str(e)) from None
            typer.echo(f"refitted {out} from {refit_from}" + (f" ({', '.join(only)} only)" if only else ""))
        if gap_dirs:
            gap = _median_host_gap(gap_dirs)
            prof = replace(prof, compute=replace(prof.compute, forward_overhead_us=gap * 1e6))
            typer.echo(f"forward overhead {gap * 1e6:.0f} us (median host gap between forwards)")
        wake_dirs = wake_dirs or []
        if wake_dirs:
            wake, n = _median_wake(wake_dirs)
            prof = replace(prof, compute=replace(prof.compute, wake_us=wake * 1e6))
            typer.echo(f"wake-up {wake * 1e6:.1f} us from an idle arrival to its admission (median of {n})")
        if attention_log is not None:
            from gpu.attention_fit import coefficient_from_log

            if not attention_log.is_file():
                raise ConfigError(str(attention_log), "--attention-from-diag", "file not found; expected a gpu.diag_prefill log")
            try:
                coef = coefficient_from_log(attention_log.read_text())
            except ValueError as e:
                raise ConfigError(str(attention_log), "--attention-from-diag", str(e)) from None
            prof = replace(prof, compute=replace(prof.compute, attention_ms_per_mcell=max(0.0, coef)))
            typer.echo(f"prefill attention {coef:.2f} ms per million query-key cells")
        pin_speed_dirs = pin_speed_dirs or []
        if pin_speed_dirs:
            scale, n = _pin_speed(pin_speed_dirs)
            pc = prof.pcie
            prof = replace(prof, pcie=replace(pc, pin_warm_gbps=pc.pin_warm_gbps / scale,
                                              pin_cold_gbps=pc.pin_cold_gbps / scale,
                                              pin_per_tensor_us=pc.pin_per_tensor_us * scale))
            typer.echo(f"pin cost x {scale:.3f}: the host's median pin over the profile's, median over {n} runs")
        if pin_dirs:
            frac, extra, n = _pin_tail(pin_dirs)
            prof = replace(
                prof, pcie=replace(prof.pcie, pin_tail_fraction=frac, pin_tail_ms=extra * 1e3)
            )
            typer.echo(f"pin tail: {frac:.1%} of {n} pins slow by {extra * 1e3:.1f} ms on average")
        unpin_dirs = unpin_dirs or []
        if unpin_dirs:
            per_load, tensors, n = _post_load_excess(unpin_dirs, prof.model)
            prof = replace(prof, pcie=replace(prof.pcie, unpin_per_tensor_us=per_load / tensors * 1e6))
            typer.echo(f"unpin {per_load / tensors * 1e6:.2f} us/tensor: {per_load * 1e3:.2f} ms a load after"
                       f" its prefill (median over {n} folders) over {tensors} tensors")
        noise_dirs = noise_dirs or []
        if noise_dirs:
            ns = _noise(noise_dirs)
            prof = replace(
                prof,
                compute=replace(prof.compute, run_speed_sd=ns.speed_sd),
                pcie=replace(prof.pcie, issue_sd=ns.issue_sd),
            )
            typer.echo(f"run-to-run noise: speed sd {100 * ns.speed_sd:.2f} % over {ns.runs} runs, "
                       f"issue log-sd {ns.issue_sd:.3f} over {ns.loads} loads")
        # the refit as its options say (not sys.argv: under a test runner or a wrapper that is
        # some other program's command line)
        args = ["calibrate", "--out", str(out)]
        if refit_from is not None:
            args += ["--refit-from", str(refit_from)]
            args += [a for part in only or [] for a in ("--refit-only", part)]
        args += [a for d in gap_dirs for a in ("--host-gap-from", str(d))]
        args += [a for d in pin_speed_dirs for a in ("--pin-speed-from", str(d))]
        args += [a for d in pin_dirs for a in ("--pin-tail-from", str(d))]
        args += [a for d in wake_dirs for a in ("--wake-from", str(d))]
        if attention_log is not None:
            args += ["--attention-from-diag", str(attention_log)]
        args += [a for d in noise_dirs for a in ("--noise-from", str(d))]
        args += [a for d in unpin_dirs for a in ("--unpin-from", str(d))]
        cmd = "lorasim " + " ".join(shlex.quote(a) for a in args)
        prof = replace(prof, command=f"{prof.command}; then {cmd}")
        prof.to_yaml(out)

    def _health(dirs: list[Path], option: str, expected: str):
        """The health.csv rows of these validate folders, pooled (ConfigError naming a folder
        without one)."""
        import pandas as pd

        from sim.errors import ConfigError

        frames = []
        for d in dirs:
            f = d / "health.csv"
            if not f.is_file():
                raise ConfigError(str(d), option, f"no health.csv here; expected {expected}")
            frames.append(pd.read_csv(f))
        return pd.concat(frames, ignore_index=True)

    def _from_health(dirs: list[Path], option: str, expected: str, measure):
        """`measure` of these folders' health.csv rows, its ValueError named under `option`."""
        from sim.errors import ConfigError

        health = _health(dirs, option, expected)
        try:
            return measure(health)
        except ValueError as e:
            raise ConfigError(str(dirs[0]), option, str(e)) from None

    def _pin_speed(dirs: list[Path]) -> tuple[float, int]:
        from gpu.run_health import pin_speed

        return _from_health(dirs, "--pin-speed-from",
                            "the --out folder of a `lorasim validate` run made with this profile", pin_speed)

    def _noise(dirs: list[Path]):
        from gpu.run_health import measure_noise

        return _from_health(dirs, "--noise-from",
                            "the --out folder of `lorasim validate` (with --gpu-runs: every pass's runs)",
                            measure_noise)

    def _timeline_files(dirs: list[Path], option: str) -> list[Path]:
        from sim.errors import ConfigError

        out = []
        for d in dirs:
            files = sorted(d.glob("*.gpu.timeline.csv"))
            if not files:
                raise ConfigError(str(d), option, "no *.gpu.timeline.csv here; expected a `lorasim validate` output folder")
            out += files
        return out

    def _timelines(dirs: list[Path], option: str) -> list:
        import pandas as pd

        return [pd.read_csv(f) for f in _timeline_files(dirs, option)]

    def _pin_tail(dirs: list[Path]) -> tuple[float, float, int]:
        import numpy as np

        from sim.errors import ConfigError
        from sim.metrics import pin_tail

        pins = [t[t["kind"] == "pin"] for t in _timelines(dirs, "--pin-tail-from")]
        d = np.concatenate([(p["end"] - p["start"]).to_numpy(float) for p in pins])
        if len(d) == 0:
            raise ConfigError(str(dirs[0]), "--pin-tail-from", "no pin rows in these timelines; expected runs of a pin-per-load policy (lru, slora)")
        frac, extra = pin_tail(d)
        return frac, extra, len(d)

    def _median_wake(dirs: list[Path]) -> tuple[float, int]:
        import numpy as np
        import pandas as pd

        from sim.errors import ConfigError
        from sim.metrics import wake_latencies

        w = []
        for t in _timeline_files(dirs, "--wake-from"):
            rec = t.with_name(t.name.replace(".gpu.timeline.csv", ".gpu.csv"))
            if rec.is_file():
                w.append(wake_latencies(pd.read_csv(rec), pd.read_csv(t)))
        allw = np.concatenate(w) if w else np.array([])
        if len(allw) == 0:
            raise ConfigError(str(dirs[0]), "--wake-from", "no arrival found the GPU idle in these runs (or no *.gpu.csv records)")
        return float(np.median(allw)), len(allw)

    def _post_load_excess(dirs: list[Path], model: str) -> tuple[float, int, int]:
        """(seconds a finished pin-per-load costs the scheduler, tensors of an all-module
        adapter of `model`, folders): per folder, the median gap after a prefill that follows
        a blocking load minus the median after other prefills (gpu.run_health.post_load_excess)."""
        import numpy as np

        from gpu.run_health import post_load_excess
        from sim.config import MODEL_PRESETS
        from sim.core.model import ALL_TARGETS
        from sim.errors import ConfigError

        if model not in MODEL_PRESETS:
            raise ConfigError(model, "--unpin-from", f"the profile's model is not one of {', '.join(sorted(MODEL_PRESETS))}")
        excess = []
        for d in dirs:
            try:
                excess.append(post_load_excess(d)[0])
            except ValueError as e:
                raise ConfigError(str(d), "--unpin-from", str(e)) from None
        tensors = 2 * MODEL_PRESETS[model].layers * len(ALL_TARGETS)
        return max(0.0, float(np.median(excess))), tensors, len(excess)

    def _median_host_gap(dirs: list[Path]) -> float:
        import numpy as np

        from sim.errors import ConfigError
        from sim.metrics import host_gaps

        allg = np.concatenate([host_gaps(t) for t in _timelines(dirs, "--host-gap-from")])
        if len(allg) == 0:
            raise ConfigError(str(dirs[0]), "--host-gap-from", "no back-to-back forwards in these timelines")
        return float(np.median(allg))

    @app.command()
    def validate(
        scenario: Annotated[
            list[Path], typer.Option("--scenario", help="scenario YAML (repeat for several)")
        ],
        profile: Annotated[
            Path | None, typer.Option(help="hardware profile for the simulator side")
        ] = None,
        policies: Annotated[
            str | None, typer.Option(help="comma-separated policies (default: each scenario's)")
        ] = None,
        out: Annotated[
            Path, typer.Option(help="folder for errors.csv/errors.md and records")
        ] = Path("results/validate"),
        device: Annotated[
            str | None, typer.Option(help="torch device (default: cuda if present)")
        ] = None,
        adapter_dir: Annotated[
            Path | None, typer.Option(help="where synthetic PEFT adapters are written")
        ] = None,
        gpu_runs: Annotated[
            list[Path] | None,
            typer.Option(
                "--gpu-runs",
                help="re-simulate only, against the GPU side recorded in this earlier --out "
                "folder (repeat to compare with the mean of several runs); no GPU needed",
            ),
        ] = None,
        repeats: Annotated[
            int,
            typer.Option(
                min=1,
                help="GPU passes (every other in reverse policy order); the table then compares "
                "the simulator with their mean and shows their spread. Finished passes are kept.",
            ),
        ] = 1,
        eager_decode: Annotated[
            bool,
            typer.Option(
                help="GPU side decodes with one eager model.forward a step (rounds 1-4) "
                "instead of CUDA graphs; calibrate the profile the same way"
            ),
        ] = False,
        prefill_graph_tokens: PrefillGraphTokens = PREFILL_GRAPH_TOKENS,
        degraded_above: Annotated[
            float,
            typer.Option(
                min=0.0,
                help="leave a GPU run out of the mean when the machine slowed down during it: a "
                "stretch of its forwards ran this many times slower than the run's usual pace "
                "against the profile (healthy runs stay below 1.10; see health.md). 0 keeps "
                "every run",
            ),
        ] = DEGRADED_ABOVE,
        sim_repeats: Annotated[
            int,
            typer.Option(
                min=1,
                help="simulator runs per cell, each drawing the profile's measured run-to-run "
                "noise (compute.run_speed_sd, pcie.issue_sd; `calibrate --noise-from`); the table "
                "compares their mean, as the GPU side's is of its passes. 1: one deterministic run",
            ),
        ] = 1,
        traces: Annotated[
            str,
            typer.Option(
                help="traces of each scenario: N (traces 0..N-1) or FIRST..LAST; trace k has the "
                "scenario's seed + k (cells SCENARIO-sSEED; trace 0 is its own). The table adds "
                "each workload's mean over its traces, so no one trace's race (a request arriving "
                "just before or after another finishes) decides a cell. Run new traces on the GPU "
                "with 1..3, compare all with --gpu-runs and 4",
            ),
        ] = "1",
        resume: Annotated[
            bool,
            typer.Option(
                help="keep the GPU runs --out already records (each run's summary.json is written "
                "last) and run only the missing ones: a validation cut off by a time limit goes on "
                "where it stopped (the passes of --repeats always do). Only with the same GPU options and traces",
            ),
        ] = False,
    ) -> None:
        """Run each scenario's trace on the GPU and in the simulator; print the error table.

        With --gpu-runs, the GPU side is read from earlier runs instead: a change to the
        simulator's model is checked against the hardware in seconds, on any machine.

        Example: lorasim validate --scenario configs/validate/zipf.yaml
        --profile configs/hardware/h200-measured.yaml --gpu-runs results/validation/raw
        --out /tmp/resim
        """
        pols = [p.strip() for p in policies.split(",") if p.strip()] if policies else None
        trace_range = _parse_traces(traces)
        if 0 < degraded_above < 1:
            from sim.errors import ConfigError

            raise ConfigError("command line", "--degraded-above", f"got {degraded_above}; expected 0 (keep "
                              "every run) or at least 1: a run's slowdown, its slowest stretch over its "
                              "usual pace, is never below 1")
        if gpu_runs:
            from gpu.validate import resimulate

            resimulate(scenario, profile, pols, gpu_runs, out, progress=typer.echo,
                       degraded_above=degraded_above, sim_repeats=sim_repeats, traces=trace_range)
            typer.echo((out / "errors.md").read_text())
            return
        _need_torch()
        from sim.config import load_scenario

        for path in scenario:
            _refuse_big_model_on_cpu(load_scenario(path).model.shape(), device, str(path), "model")
        from gpu.validate import GpuOptions, run_validation

        opts = GpuOptions(
            device=device,
            adapter_dir=str(adapter_dir) if adapter_dir else None,
            eager_decode=eager_decode,
            prefill_graph_tokens=prefill_graph_tokens,
        )
        if repeats > 1:
            from gpu.validate import run_validation_repeated

            run_validation_repeated(scenario, profile, pols, out, repeats, opts, progress=typer.echo,
                                    degraded_above=degraded_above, sim_repeats=sim_repeats, traces=trace_range)
        else:
            run_validation(scenario, profile, pols, out, opts, progress=typer.echo, resume=resume,
                           degraded_above=degraded_above, sim_repeats=sim_repeats, traces=trace_range)
        typer.echo((out / "errors.md").read_text())
