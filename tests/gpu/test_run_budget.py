"""RunBudget starts a run only if, timed as the slowest run so far, it ends inside the budget,
and once it has refused one it refuses the rest (the next pass of a repeated validation too)."""

from __future__ import annotations

from gpu.run_budget import RunBudget


def test_a_run_starts_only_if_the_slowest_so_far_would_end_in_time():
    now = [100.0]
    b = RunBudget(30.0, clock=lambda: now[0])
    assert b.allows_another()  # nothing timed yet
    now[0] += 12
    b.took(12)
    assert b.allows_another()  # 12 + 12 <= 30
    now[0] += 8
    b.took(8)
    assert b.slowest == 12 and not b.allows_another()  # 20 + 12 > 30
    assert b.stopped
    b.took(0.0)
    assert not b.allows_another()  # stays stopped


def test_no_limit_allows_every_run():
    b = RunBudget(None, clock=lambda: 1e9)
    b.took(1e6)
    assert b.allows_another() and not b.stopped
