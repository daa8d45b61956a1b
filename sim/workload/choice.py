"""Which adapter each request names: 1-based indices into the population, 0 = base model.

`base_fraction` picks exactly round(n * base_fraction) requests at random positions for the
base model; the distribution is drawn only for the other requests, so `distinct` stays an
exact round-robin and `phased` counts only adapter requests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sim.config import ChoiceCfg
from sim.errors import ConfigError

BASE = 0  # index meaning "no adapter" (the base model)

Chooser = Callable[[ChoiceCfg, int, int, np.random.Generator], np.ndarray]
_REGISTRY: dict[str, Chooser] = {}


def register(name: str):
    def deco(fn: Chooser) -> Chooser:
        _REGISTRY[name] = fn
        return fn

    return deco


def names() -> list[str]:
    return sorted(_REGISTRY)


def choose_adapters(
    cfg: ChoiceCfg, n: int, n_adapters: int, rng: np.random.Generator, source: str = "<scenario>"
) -> np.ndarray:
    """int64 array of n indices in 0..n_adapters (0 only for base-model requests)."""
    check_choice(cfg, n_adapters, source)
    n_base = round(n * cfg.base_fraction)
    base_pos = rng.choice(n, size=n_base, replace=False) if n_base else np.zeros(0, dtype=np.int64)
    out = np.full(n, BASE, dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[base_pos] = False
    out[mask] = _REGISTRY[cfg.dist](cfg, n - n_base, n_adapters, rng)
    return out


def check_choice(cfg: ChoiceCfg, n_adapters: int, source: str = "<scenario>") -> None:
    """Errors only the population size can reveal (the schema cannot see N)."""
    if n_adapters <= 0:
        raise ConfigError(source, "adapters", "the population is empty")
    if cfg.dist not in _REGISTRY:
        raise ConfigError(source, "workload.adapter_choice.dist", f"expected one of {names()}")
    for k, ph in enumerate(cfg.phases or []):
        if cfg.dist == "phased" and ph.adapters[1] > n_adapters:
            raise ConfigError(
                source,
                f"workload.adapter_choice.phases[{k}].adapters",
                f"range {list(ph.adapters)} goes beyond the {n_adapters} adapters of the population",
            )


def probabilities(cfg: ChoiceCfg, n_adapters: int) -> np.ndarray:
    """P(i) for i = 1..N of the weighted distributions (skewed, zipf, uniform)."""
    i = np.arange(1, n_adapters + 1, dtype=np.float64)
    if cfg.dist == "skewed":
        # alpha^-i underflows for large N; normalise in log space (shift by the max).
        logw = -i * np.log(cfg.alpha)
    elif cfg.dist == "zipf":
        logw = -cfg.s * np.log(i)
    elif cfg.dist == "uniform":
        logw = np.zeros_like(i)
    else:
        raise ValueError(f"{cfg.dist!r} has no fixed probabilities")
    w = np.exp(logw - logw.max())
    return w / w.sum()


@register("uniform")
def _uniform(cfg: ChoiceCfg, n: int, n_adapters: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(n_adapters, size=n) + 1


@register("distinct")
def _distinct(cfg: ChoiceCfg, n: int, n_adapters: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n, dtype=np.int64) % n_adapters + 1


@register("skewed")
@register("zipf")
def _weighted(cfg: ChoiceCfg, n: int, n_adapters: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(n_adapters, size=n, p=probabilities(cfg, n_adapters)) + 1


@register("phased")
def _phased(cfg: ChoiceCfg, n: int, n_adapters: int, rng: np.random.Generator) -> np.ndarray:
    """Phases in order, each uniform over its [first, last]; cycle when n exceeds their sum."""
    phases = cfg.phases or []
    parts: list[np.ndarray] = []
    done = 0
    while done < n:
        for ph in phases:
            take = min(ph.requests, n - done)
            if take <= 0:
                break
            lo, hi = ph.adapters
            parts.append(rng.integers(lo, hi + 1, size=take))
            done += take
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
