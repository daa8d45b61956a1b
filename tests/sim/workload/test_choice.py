"""Adapter choice distributions: exact formulas, large-sample frequencies, phases, base share."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config import ChoiceCfg, Phase
from sim.errors import ConfigError
from sim.workload.choice import choose_adapters, probabilities

PHASES = [
    Phase(requests=100, adapters=(1, 10)),
    Phase(requests=100, adapters=(11, 30)),
    Phase(requests=100, adapters=(31, 50)),
]


def draw(cfg: ChoiceCfg, n: int, n_adapters: int, seed: int = 0) -> np.ndarray:
    return choose_adapters(cfg, n, n_adapters, np.random.default_rng(seed))


def test_distinct_is_exact_round_robin():
    x = draw(ChoiceCfg(dist="distinct"), 25, 10)
    assert x.tolist() == list(range(1, 11)) * 2 + list(range(1, 6))


def test_skewed_and_zipf_probabilities_follow_the_formulas():
    np.testing.assert_allclose(
        probabilities(ChoiceCfg(dist="skewed", alpha=2.0), 3), [4 / 7, 2 / 7, 1 / 7]
    )
    np.testing.assert_allclose(
        probabilities(ChoiceCfg(dist="zipf", s=1.0), 3), [6 / 11, 3 / 11, 2 / 11]
    )
    np.testing.assert_allclose(probabilities(ChoiceCfg(dist="uniform"), 4), [0.25] * 4)


def test_skewed_over_many_adapters_does_not_underflow_to_nan():
    p = probabilities(ChoiceCfg(dist="skewed", alpha=1.5), 5000)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    assert p[0] == pytest.approx(1 / 3)  # 1.5^-1 / sum 1.5^-i = (2/3) / 2


@pytest.mark.parametrize(
    "cfg", [ChoiceCfg(dist="skewed", alpha=1.5), ChoiceCfg(dist="zipf", s=1.1)]
)
def test_weighted_frequencies_decrease_and_match_the_formula(cfg):
    n_adapters, n = 8, 50_000
    x = draw(cfg, n, n_adapters, seed=4)
    freq = np.bincount(x, minlength=n_adapters + 1)[1:] / n
    p = probabilities(cfg, n_adapters)
    assert np.all(np.diff(p) < 0)
    assert np.all(np.diff(freq) < 0)
    np.testing.assert_allclose(freq, p, atol=0.008)  # binomial std <= 0.0023


def test_uniform_is_flat():
    x = draw(ChoiceCfg(dist="uniform"), 40_000, 20, seed=9)
    counts = np.bincount(x, minlength=21)[1:]
    assert x.min() == 1 and x.max() == 20
    np.testing.assert_allclose(counts / 2000, 1.0, atol=0.1)


def test_phased_uses_exactly_the_ranges_in_order():
    x = draw(ChoiceCfg(dist="phased", phases=PHASES), 300, 50)
    for k, (lo, hi) in enumerate([(1, 10), (11, 30), (31, 50)]):
        part = x[100 * k : 100 * (k + 1)]
        assert part.min() >= lo and part.max() <= hi
    assert set(x[:100].tolist()) == set(range(1, 11))


def test_phases_cycle_when_requests_exceed_their_sum():
    x = draw(ChoiceCfg(dist="phased", phases=PHASES), 450, 50)
    assert x[300:400].min() >= 1 and x[300:400].max() <= 10
    assert x[400:].min() >= 11 and x[400:].max() <= 30


def test_phase_beyond_population_names_the_key():
    cfg = ChoiceCfg(dist="phased", phases=PHASES)
    with pytest.raises(ConfigError) as e:
        choose_adapters(cfg, 300, 40, np.random.default_rng(0), source="exp.yaml")
    msg = str(e.value)
    assert msg.startswith("exp.yaml: workload.adapter_choice.phases[2].adapters:")
    assert "40 adapters" in msg


def test_base_fraction_is_an_exact_share_and_distinct_stays_round_robin():
    x = draw(ChoiceCfg(dist="distinct", base_fraction=0.25), 1000, 7)
    assert (x == 0).sum() == 250
    rest = x[x != 0]
    assert rest.tolist() == [i % 7 + 1 for i in range(750)]


def test_choice_is_deterministic_per_seed():
    cfg = ChoiceCfg(dist="zipf", s=1.2, base_fraction=0.1)
    np.testing.assert_array_equal(draw(cfg, 500, 30, 1), draw(cfg, 500, 30, 1))
    assert not np.array_equal(draw(cfg, 500, 30, 1), draw(cfg, 500, 30, 2))


@st.composite
def choice_and_population(draw_):
    n_adapters = draw_(st.integers(1, 60))
    dist = draw_(st.sampled_from(["uniform", "distinct", "skewed", "zipf", "phased"]))
    phases = None
    if dist == "phased":
        phases = []
        for _ in range(draw_(st.integers(1, 4))):
            lo = draw_(st.integers(1, n_adapters))
            hi = draw_(st.integers(lo, n_adapters))
            phases.append(Phase(requests=draw_(st.integers(1, 50)), adapters=(lo, hi)))
    cfg = ChoiceCfg(
        dist=dist,
        alpha=draw_(st.floats(1.01, 5.0)),
        s=draw_(st.floats(0.1, 3.0)),
        phases=phases,
        base_fraction=draw_(st.floats(0.0, 0.9)),
    )
    return cfg, n_adapters


@settings(max_examples=150, deadline=None)
@given(choice_and_population(), st.integers(1, 400), st.integers(0, 2**32 - 1))
def test_any_valid_choice_yields_indices_in_1_to_n_and_the_base_share(cp, n, seed):
    cfg, n_adapters = cp
    x = draw(cfg, n, n_adapters, seed)
    assert x.shape == (n,) and x.dtype == np.int64
    assert (x == 0).sum() == round(n * cfg.base_fraction)
    rest = x[x != 0]
    assert rest.size == 0 or (rest.min() >= 1 and rest.max() <= n_adapters)
    if cfg.dist == "phased":
        lo = min(p.adapters[0] for p in cfg.phases)
        hi = max(p.adapters[1] for p in cfg.phases)
        assert rest.size == 0 or (rest.min() >= lo and rest.max() <= hi)
