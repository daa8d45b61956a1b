"""calibrate's no-measuring modes (--refit-from, --attention-from-diag and the --*-from
options over validation run folders): each refits the profile at --out in place and adds
itself to the profile's `command`. Torch only for --refit-from (the bucket sizes of the
graph modules); the run-folder options need pandas alone."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from gpu.cli.common import need_torch

if TYPE_CHECKING:
    import pandas as pd

    from gpu.run_health import NoiseStats

T = TypeVar("T")


def refit_profile(
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
        need_torch()
        from gpu.calibrate.refit import UnknownRefitPart, refit_from_log

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
        from gpu.attention_fit import cells_from_log, coefficient_from_log

        if not attention_log.is_file():
            raise ConfigError(str(attention_log), "--attention-from-diag", "file not found; expected a gpu.diag_prefill log")
        try:
            coef = coefficient_from_log(attention_log.read_text())
        except ValueError as e:
            raise ConfigError(str(attention_log), "--attention-from-diag", str(e)) from None
        cells = cells_from_log(attention_log.read_text())
        prof = replace(prof, compute=replace(prof.compute, attention_ms_per_mcell=max(0.0, coef),
                                             attention_cells=cells))
        typer.echo(f"prefill attention {coef:.2f} ms per million {cells} query-key cells")
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


def _health(dirs: list[Path], option: str, expected: str) -> pd.DataFrame:
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


def _from_health(
    dirs: list[Path], option: str, expected: str, measure: Callable[[pd.DataFrame], T]
) -> T:
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


def _noise(dirs: list[Path]) -> NoiseStats:
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


def _timelines(dirs: list[Path], option: str) -> list[pd.DataFrame]:
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
