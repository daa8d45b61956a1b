"""calibrate --quick on CPU writes a complete, readable profile."""

import pytest

torch = pytest.importorskip("torch")

import time  # noqa: E402

import yaml  # noqa: E402

from gpu.calibrate import GRIDS, calibrate, lora_passes, with_eager_edge  # noqa: E402
from gpu.decode_graphs import batch_buckets  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.hw.profile import HardwareProfile, Table  # noqa: E402


@pytest.fixture(scope="module")
def quick() -> tuple[HardwareProfile, list[str]]:
    """One quick CPU calibration of the tiny model and its log lines, shared by the tests that
    read them (a calibration runs the serving loop twice: seconds alone, a minute or more on a
    busy two-core host). Tests change copies, never these."""
    lines: list[str] = []
    prof = calibrate(MODEL_PRESETS["tiny"], quick=True, device="cpu", progress=lines.append)
    return prof, lines


def test_quick_calibration_writes_all_sections(tmp_path, quick):
    prof = quick[0]
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
        "copy_gap_us",
        "issue_us",
    ):
        assert key in data["pcie"]
    assert {"prefill", "decode", "lora_decode", "lora_prefill"} <= set(data["compute"])
    for kind in ("pinned", "pageable"):
        secs = data["pcie"][kind]["seconds"]
        assert secs == sorted(secs) and all(s > 0 for s in secs)
    dec = data["compute"]["decode"]
    assert len(dec["seconds"]) == len(dec["batch"]) and all(
        len(r) == len(dec["context"]) for r in dec["seconds"]
    )
    again = HardwareProfile.from_yaml(out)  # the simulator can read it back
    assert again.model == "tiny"


def test_monotone_grid_never_decreases_in_either_axis():
    from gpu.calibrate import monotone_grid

    g = monotone_grid([[3.0, 2.0, 4.0], [1.0, 5.0, 2.0]])
    assert g == [[1.0, 2.0, 2.0], [1.0, 2.0, 2.0]]


def test_monotone_fit_drops_a_slow_first_reading_instead_of_spreading_it():
    """Round 2's running maximum turned one 32 ms warm-up reading into a 32 ms floor for the
    whole decode table; the lower envelope keeps the steady readings."""
    from gpu.calibrate.fit import lower_envelope

    assert lower_envelope([0.032, 0.026, 0.024, 0.0235, 0.043]) == [0.0235, 0.0235, 0.0235, 0.0235, 0.043]


def test_isotonic_fit_averages_violators_instead_of_taking_the_minimum():
    """Round 6: LoRA prefill extras 1 adapter 6.15 ms, 2 adapters 4.92 ms; the lower envelope
    charged 4.92 for both, pooling charges their mean. Monotone rows are left as they are."""
    from gpu.calibrate import isotonic

    assert isotonic([6.15, 4.92, 5.48, 7.04]) == pytest.approx([5.5167, 5.5167, 5.5167, 7.04], abs=1e-4)
    assert isotonic([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    assert isotonic([3.0, 1.0]) == [2.0, 2.0]


def test_lora_prefill_fit_is_monotone_in_tokens_only():
    """Round 7: one adapter really costs more than two at every token count; the fit keeps
    that and only pools readings that fall with more tokens."""
    from gpu.calibrate import isotonic_columns

    rows = [[6.02, 4.55, 5.11], [6.34, 4.87, 5.48], [6.20, 5.18, 5.91]]
    g = isotonic_columns(rows)
    assert [r[1] for r in g] == [4.55, 4.87, 5.18]  # already monotone: as measured
    assert g[0][0] > g[0][1]  # not forced monotone across adapters
    assert [r[0] for r in g] == pytest.approx([6.02, 6.27, 6.27])


def test_refit_from_log_reproduces_the_tables_calibration_wrote(tmp_path, quick):
    from dataclasses import replace

    from gpu.calibrate import refit_from_log

    prof, lines = quick
    again = refit_from_log(prof, "\n".join(lines))
    c, r = prof.compute, again.compute
    # the log has 2 decimals of ms: equal to 10 us
    assert r.prefill.y == pytest.approx(c.prefill.y, abs=1e-5)
    for a, b in zip(r.decode.seconds, c.decode.seconds, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert r.lora_decode.ranks == c.lora_decode.ranks and r.lora_decode.tokens == c.lora_decode.tokens
    for pa, pb in zip(r.lora_decode.seconds, c.lora_decode.seconds, strict=True):
        for a, b in zip(pa, pb, strict=True):
            assert a == pytest.approx(b, abs=1e-5)
    assert r.lora_prefill.tokens == c.lora_prefill.tokens
    # the back-to-back copy gap from the adapter copy line: 2 decimals of ms over the tiny
    # model's 28 - 1 copies
    assert again.pcie.copy_gap_us == pytest.approx(prof.pcie.copy_gap_us, abs=10 / 27 + 1e-3)
    assert r.launch_fraction == pytest.approx(c.launch_fraction, abs=1e-3)
    assert r.prefill_buckets == c.prefill_buckets != ()  # from the "prefill path" line
    assert r.attention_ms_per_mcell == pytest.approx(c.attention_ms_per_mcell, abs=0.01)
    # the host gap, measured by a short resident run through the CUDA driver (on CPU here)
    assert any(ln.startswith("  host gap ") for ln in lines)
    assert r.forward_overhead_us == pytest.approx(c.forward_overhead_us, abs=0.1)
    assert c.wake_us > 0 and r.wake_us == pytest.approx(c.wake_us, abs=0.1)  # "wake-up" line
    # the host time to issue a copy, timed around the per-module adapter copy's issue loop
    assert prof.pcie.issue_us > 0
    assert again.pcie.issue_us == pytest.approx(prof.pcie.issue_us, abs=0.01)
    old_log = "\n".join(ln for ln in lines if not ln.startswith("  copy issue "))
    kept = refit_from_log(replace(prof, pcie=replace(prof.pcie, issue_us=9.5)), old_log)
    assert kept.pcie.issue_us == 9.5  # a log from before round 9 keeps the profile's

    bare = replace(prof, compute=replace(c, prefill_buckets=()))
    eager_log = [ln.replace("gpu.prefill_graphs up to 2048 tokens, eager above", "eager")
                 for ln in lines]
    assert any("prefill path: eager" in ln for ln in eager_log)
    assert refit_from_log(prof, "\n".join(eager_log)).compute.prefill_buckets == ()
    # a GPU whose config pads past some buckets says so on the line; the refit drops them
    skip_log = [ln.replace("tokens, eager above", "tokens, eager above, padded past 448,832 tokens")
                for ln in lines]
    assert skip_log != lines
    skipped = refit_from_log(prof, "\n".join(skip_log)).compute.prefill_buckets
    assert set(c.prefill_buckets) - set(skipped) == {448, 832} and skipped[-1] == 2048
    # SGMV LoRA pads no adapter counts: none written, none refitted from the paged harness's log
    assert r.adapter_buckets == c.adapter_buckets == ()
    padded_prof = replace(prof, compute=replace(c, adapter_buckets=(1, 2)))
    assert refit_from_log(padded_prof, "\n".join(lines)).compute.adapter_buckets == ()
    eager_dec = [ln.replace("decode path: gpu.decode_graphs (whole step, paged KV)",
                            "decode path: eager (one model.forward a step, paged KV)") for ln in lines]
    assert eager_dec != lines
    # decode batch buckets: the harness's graph batches up to the grid's largest; none eager
    assert r.batch_buckets == c.batch_buckets and c.batch_buckets[:3] == (1, 2, 4)
    assert c.batch_buckets[-1] == int(c.decode.batch[-1])
    assert refit_from_log(prof, "\n".join(eager_dec)).compute.batch_buckets == ()
    # paged decode attention reads each request's own context: priced at the mean; so is a
    # refit of this log, and prefill attention cells are causal in both
    assert c.decode_context == r.decode_context == "mean"
    max_prof = replace(prof, compute=replace(c, decode_context="max", attention_cells="padded"))
    again_max = refit_from_log(max_prof, "\n".join(lines)).compute
    assert again_max.decode_context == "mean" and again_max.attention_cells == "causal"
    assert c.attention_cells == r.attention_cells == "causal"
    no_line = [ln for ln in lines if "prefill path" not in ln]
    assert refit_from_log(bare, "\n".join(no_line)).compute.prefill_buckets == ()
    with pytest.raises(ValueError):
        refit_from_log(prof, "not a log")


def test_quick_profile_has_multi_rank_and_prefill_lora(quick):
    prof = quick[0]
    c = prof.compute
    assert c.lora_decode is not None and len(c.lora_decode.ranks) == 2
    assert len(c.lora_decode.seconds[0]) == len(c.lora_decode.tokens)  # one row per batch
    assert c.lora_prefill is not None and len(c.lora_prefill.seconds) == len(c.lora_prefill.ranks)
    for row in c.decode.seconds:
        assert list(row) == sorted(row)


def test_copy_gap_is_what_each_further_copy_adds():
    from gpu.calibrate import copy_gap_us

    # round 6 on the H200: 336 MB flat 6.13 ms, as 448 copies 7.28 ms
    assert copy_gap_us(6.13e-3, 7.28e-3, 448) == pytest.approx(1.15e3 / 447)
    assert copy_gap_us(6.13e-3, 6.0e-3, 448) == 0.0  # noise never makes copies free
    assert copy_gap_us(1e-3, 2e-3, 1) == pytest.approx(1e3)


def test_paired_extra_is_the_median_of_per_pair_differences():
    from gpu.calibrate import Timer

    timer = Timer(torch.device("cpu"))
    t = iter([0.0, 1.0, 1.0, 2.5, 10.0, 11.0, 20.0, 21.5, 30.0, 31.0, 40.0, 41.0])
    timer.once = lambda fn: next(t)  # a, b, a, b, ...: differences 1, 1.5, 1, 1.5, 1, 1
    # the medians of a and b alone are 15 and 16.25: 1.25 apart
    assert timer.paired_extra(lambda: None, lambda: None, 6, warmup=0) == 1.0


def test_launch_fraction_is_one_when_forward_returns_only_when_done(quick):
    """On CPU a forward returns when its work is done, so the scheduler is held for all of it."""
    from gpu.calibrate import measure_launch_fraction

    prof = quick[0]
    assert prof.compute.launch_fraction > 0.9
    # an asynchronous device: a forward returns at once, its work runs until the next sync
    frac = measure_launch_fraction(_AsyncDevice(), _AsyncDevice.launch, [1, 2], reps=3)
    assert frac < 0.2


class _AsyncDevice:
    queued = 0

    def sync(self) -> None:
        time.sleep(0.002 * _AsyncDevice.queued)
        _AsyncDevice.queued = 0

    @staticmethod
    def launch(inp) -> None:
        _AsyncDevice.queued += 1


def test_work_between_reps_runs_before_each_rep_and_is_not_timed():
    import torch

    from gpu.calibrate import Timer

    calls: list[str] = []

    def between():
        calls.append("between")
        time.sleep(0.03)

    def fn():
        calls.append("fn")
        time.sleep(0.001)

    timer = Timer(torch.device("cpu"))
    assert timer.median(fn, 3, warmup=1, between=between) < 0.02
    assert calls == ["fn"] + ["between", "fn"] * 3
    calls.clear()
    extra = timer.paired_extra(fn, fn, 2, warmup=0, between=between)
    assert abs(extra) < 0.02 and calls == ["between", "fn"] * 4


def test_a_steps_prepare_runs_untimed_before_every_call_warmups_included():
    """A decode step's `prepare` (the batch's inputs and SGMV table, which the driver builds
    once per run of steps) is not priced into the step."""
    import torch

    from gpu.calibrate import Timer

    calls: list[str] = []

    def step():
        calls.append("step")
        time.sleep(0.001)

    def slow_prepare():
        calls.append("prepare")
        time.sleep(0.03)

    step.prepare = slow_prepare  # type: ignore[attr-defined]
    timer = Timer(torch.device("cpu"))
    assert timer.median(step, 3, warmup=1) < 0.02
    assert calls == ["prepare", "step"] * 4
    calls.clear()
    assert abs(timer.paired_extra(step, step, 2, warmup=1)) < 0.02
    assert calls == ["prepare", "step"] * 6


def test_despike_lifts_a_lone_low_difference_and_keeps_real_readings():
    from gpu.calibrate import despike, monotone_grid

    assert despike([19.54, 3.95, 20.35, 28.58]) == [19.54, 19.54, 20.35, 28.58]
    assert despike([19.0, 20.0, 21.0, 3.0]) == [19.0, 20.0, 21.0, 21.0]
    assert despike([5.0, 10.0, 20.0]) == [5.0, 10.0, 20.0]  # steep but real growth
    assert despike([1.0, 1.2, 0.9, 1.5]) == [1.0, 1.2, 0.9, 1.5]  # noise, not a spike
    # without despiking, the lower envelope spreads the spike to the smaller size
    assert monotone_grid([[19.54, 3.95, 20.35, 28.58]])[0][0] == 3.95
    assert monotone_grid([despike([19.54, 3.95, 20.35, 28.58])])[0][0] == 19.54


def test_eager_edge_is_added_only_where_the_grid_spans_the_graph_limit():
    assert with_eager_edge([512, 1024, 2048, 4096], 2048) == [512, 1024, 2048, 2049, 4096]
    assert with_eager_edge([512, 1024, 2048], 2048) == [512, 1024, 2048]  # nothing above it
    assert with_eager_edge([512, 2049, 4096], 2048) == [512, 2049, 4096]  # already there
    assert with_eager_edge([512, 4096], 0) == [512, 4096]  # eager everywhere


def test_prefill_tables_measure_the_first_eager_size():
    """The prefill and LoRA-prefill tables get a point just above the graph limit, so the
    simulator does not interpolate an eager prefill from a graphed one."""
    prof = calibrate(
        MODEL_PRESETS["tiny"], quick=True, device="cpu", progress=lambda s: None,
        prefill_graph_tokens=8,
    )
    assert list(prof.compute.prefill.x) == [4, 8, 9, 16] and len(prof.compute.prefill.y) == 4
    assert list(prof.compute.lora_prefill.tokens) == [8, 9, 16]
    assert prof.compute.adapter_buckets == ()  # SGMV: no adapter counts padded
    assert prof.compute.attention_ms_per_mcell >= 0  # measured on the eager sizes (9, 16)
    assert prof.compute.attention_cells == "causal"
    lines: list[str] = []
    eager = calibrate(
        MODEL_PRESETS["tiny"], quick=True, device="cpu", progress=lines.append, eager_decode=True,
    )
    assert eager.compute.adapter_buckets == () and eager.compute.batch_buckets == ()
    assert eager.compute.decode_context == "mean"  # eager decode reads the paged KV too
    assert "  decode path: eager (one model.forward a step, paged KV)" in lines


def test_host_gap_is_measured_only_for_a_preset_shape():
    """The host gap comes from a scenario run, which needs a model preset; a custom shape gets
    none (0: the simulator adds no gap) rather than a run on some other model."""
    from dataclasses import replace

    from gpu.calibrate import measure_host_gap

    custom = replace(MODEL_PRESETS["tiny"], layers=3, name="tiny*")
    assert measure_host_gap(custom, torch.device("cpu"), 8, quick=True)[:2] == (0.0, 0)
    ht = measure_host_gap(MODEL_PRESETS["tiny"], torch.device("cpu"), 8, quick=True)
    assert ht.requests == 6 and ht.gap_s >= 0 and (ht.gaps > 0) == (ht.gap_s > 0)
    assert 0 < ht.wakes <= 6 and 0 < ht.wake_s <= 0.002  # idle arrivals of the light trace
    assert ht.issues > 0 and ht.issue_s > 0  # overlap, sixteen adapters in two slots: loads
    only = measure_host_gap(MODEL_PRESETS["tiny"], torch.device("cpu"), 8, quick=True, gap_and_wake=False)
    assert only.gaps == only.wakes == 0 and only.issues > 0


def test_full_grid_measures_decode_lora_at_every_graph_batch_it_spans():
    """The simulator looks the decode LoRA extra up at the step's padded batch: every graph
    bucket up to the grid's largest batch must be a measured row, not an interpolation."""
    lb = GRIDS["full"]["lora_batch"]
    assert set(batch_buckets(max(lb))) <= set(lb)
    assert max(lb) >= 64


def test_lora_plane_passes_take_the_median_so_one_slow_spell_does_not_set_a_row():
    """A slow spell of the host during one pass lowers a whole row; the median of three
    passes (measured in alternating batch order) keeps the other two passes' value."""
    calls: list[tuple[int, int]] = []

    def cell(b: int, n: int) -> float:
        calls.append((b, n))
        k = sum(1 for c in calls if c == (b, n))  # which pass this is
        if n == 0:
            return 0.0
        return 0.004 if (b == 1 and k == 2) else 0.006 + 0.001 * n

    plane, spread = lora_passes(cell, [1, 4], [0, 1, 2], passes=3)
    assert plane == [[0.0, 0.007, 0.008], [0.0, 0.007, 0.008]]
    assert spread is not None and spread[1:] == (1, 2) and abs(spread[0] - 0.004) < 1e-12
    assert [b for b, _ in calls[::3]] == [1, 4, 4, 1, 1, 4]  # ascending, descending, ascending
    one, none = lora_passes(cell, [1], [1], passes=1)
    assert none is None and len(one) == 1


def test_a_cell_with_more_adapters_than_requests_is_measured_once_a_pass():
    """n adapters need n requests, so (batch 1, 4 adapters) and (batch 2, 4 adapters) are the
    same measurement at 4 requests: one call a pass, the same value in both cells."""
    calls: list[tuple[int, int]] = []

    def cell(b: int, n: int) -> float:
        calls.append((b, n))
        return 0.001 * max(b, n) + 0.01 * n

    plane, _ = lora_passes(cell, [1, 2, 4, 8], [1, 4], passes=2)
    assert plane[0][1] == plane[1][1] == plane[2][1] == pytest.approx(0.044)
    assert len(calls) == 2 * 6  # a pass: 4 cells of 1 adapter, (<= 4, 4) once, (8, 4)
    assert {(max(b, n), n) for b, n in calls[:6]} == {(1, 1), (2, 1), (4, 1), (8, 1), (4, 4), (8, 4)}


def test_adapter_counts_past_a_ranks_cap_are_extrapolated_and_said_so(monkeypatch):
    """The full grid prices up to 64 distinct adapters a batch (unified memory has no slot
    limit); rank 256's slots for 64 do not fit beside the model, so its column past the cap is
    the line through the last two measured ones, and the log says which."""
    from gpu.calibrate.compute import extend_linearly

    assert max(GRIDS["full"]["adapters"]) == 64 and GRIDS["full"]["lora_max_adapters"] == {256: 32}
    assert extend_linearly([1, 2, 4], [1.0, 2.0, 3.0], [1, 2, 4, 8, 16]) == [1.0, 2.0, 3.0, 5.0, 9.0]
    quick = {**GRIDS["quick"], "adapters": [0, 1, 2, 4], "lora_max_adapters": {8: 2}}
    monkeypatch.setitem(GRIDS, "quick", quick)
    lines: list[str] = []
    prof = calibrate(MODEL_PRESETS["tiny"], quick=True, device="cpu", progress=lines.append)
    assert any("lora decode rank   8: 4 adapters not measured" in ln and "from 1 and 2" in ln for ln in lines)
    ld = prof.compute.lora_decode
    assert ld.adapters == (0.0, 1.0, 2.0, 4.0)
    for row in ld.seconds[list(ld.ranks).index(8.0)]:
        assert row[3] == pytest.approx(max(0.0, row[2] + 2 * (row[2] - row[1])), abs=1e-5)


def test_refit_only_takes_the_named_part_and_keeps_the_rest(quick):
    """Round 10: the decode LoRA plane, re-measured on the graph-batch grid by another
    calibration, joins a profile whose base tables came from the one that matched the runs."""
    from dataclasses import replace

    from gpu.calibrate import REFIT_PARTS, refit_from_log

    prof, lines = quick
    c = prof.compute
    other = replace(
        prof,
        pcie=replace(prof.pcie, issue_us=123.0),
        compute=replace(
            c,
            prefill=Table(c.prefill.x, tuple(2 * y for y in c.prefill.y)),
            lora_decode=replace(c.lora_decode, seconds=tuple(
                tuple(tuple(9.0 for _ in row) for row in plane) for plane in c.lora_decode.seconds
            )),
            forward_overhead_us=777.0,
            decode_context="max",
        ),
    )
    got = refit_from_log(other, "\n".join(lines), only=["lora_decode"])
    g = got.compute
    for pa, pb in zip(g.lora_decode.seconds, c.lora_decode.seconds, strict=True):  # from the log
        for a, b in zip(pa, pb, strict=True):
            assert a == pytest.approx(b, abs=1e-5)
    assert g.prefill == other.compute.prefill  # kept, though the log has its own
    assert g.forward_overhead_us == 777.0 and g.decode_context == "max"
    assert got.pcie == other.pcie  # PCIe too (a full refit would take the issue time)
    both = refit_from_log(other, "\n".join(lines), only=["lora_decode", "decode"]).compute
    assert both.decode_context == "mean" and both.prefill == other.compute.prefill  # the log's
    assert set(REFIT_PARTS) >= {"prefill", "decode", "lora_decode", "host_gap"}
    with pytest.raises(ValueError, match="unknown part"):
        refit_from_log(prof, "\n".join(lines), only=["decoder"])


def test_cli_refit_only_records_itself_and_needs_a_log(tmp_path, quick):
    from typer.testing import CliRunner

    from sim.cli import app

    prof, lines = quick
    out, log = tmp_path / "p.yaml", tmp_path / "calibrate.log"
    prof.to_yaml(out)
    log.write_text("\n".join(lines))
    r = CliRunner().invoke(app, ["calibrate", "--out", str(out), "--refit-from", str(log),
                                 "--refit-only", "lora_decode"])
    assert r.exit_code == 0, r.output
    assert "(lora_decode only)" in r.output
    assert HardwareProfile.from_yaml(out).command.endswith(
        f"--refit-from {log} --refit-only lora_decode"
    )
    r = CliRunner().invoke(app, ["calibrate", "--out", str(out), "--refit-only", "decode"])
    assert r.exit_code != 0 and "--refit-from" in str(r.exception)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(out), "--refit-from", str(log),
                                 "--refit-only", "decoder"])
    assert r.exit_code != 0 and "--refit-only" in str(r.exception) and "lora_decode" in str(r.exception)


def test_refit_only_copy_issue_takes_the_serving_loop_issue_time_of_diag_copy(tmp_path, capsys, quick):
    """Round 12: a host's copy issuing, re-measured by gpu.diag_copy (calibrate's own copy
    lines, no compute tables), replaces just the profile's copy gap and issue time, and the
    issue time is the serving loop's (the last issue line), not the isolated loop's."""
    from dataclasses import replace

    from typer.testing import CliRunner

    from gpu import diag_copy
    from gpu.calibrate import refit_from_log
    from sim.cli import app

    diag_copy.main(["--model", "tiny", "--rank", "8", "--reps", "2", "--repeats", "3", "--device", "cpu",
                    "--quick"])
    log = capsys.readouterr().out
    issues = [float(x.split("issue ")[1].split()[0]) for x in log.splitlines() if x.startswith("# repeat")]
    assert len(issues) == 3
    iso, loop = [x for x in log.splitlines() if x.startswith("  copy issue ")]
    assert float(iso.split()[2]) == round(sorted(issues)[1], 2)  # the median repeat's lines
    assert "serving loop" in loop and "serving loop" not in iso
    served = float(loop.split()[2])
    assert served > 0

    prof = quick[0]
    other = replace(prof, pcie=replace(prof.pcie, issue_us=123.0, copy_gap_us=456.0, contention=0.5))
    got = refit_from_log(other, log, only=["copy_issue"])
    assert got.pcie.issue_us == pytest.approx(served)
    assert got.pcie.copy_gap_us == 456.0 and got.pcie.contention == 0.5  # the rest kept
    assert got.compute == other.compute
    gap = refit_from_log(other, log, only=["copy_gap"]).pcie
    assert gap.copy_gap_us != 456.0 and gap.issue_us == 123.0
    with pytest.raises(ValueError, match="copy_issue"):
        refit_from_log(other, log, only=["copy"])  # the message lists the PCIe part too

    out, path = tmp_path / "p.yaml", tmp_path / "copy.log"
    other.to_yaml(out)
    before = HardwareProfile.from_yaml(out)  # as the file rounds it
    path.write_text(log)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(out), "--refit-from", str(path),
                                 "--refit-only", "copy_issue"])
    assert r.exit_code == 0, r.output
    back = HardwareProfile.from_yaml(out)
    assert back.pcie.issue_us == pytest.approx(served) and back.compute == before.compute
    assert back.command.endswith(f"--refit-from {path} --refit-only copy_issue")


def test_refit_only_unpin_takes_the_logged_time_to_free_pinned_copies(tmp_path, quick):
    """Round 13: `--refit-only unpin` sets pcie.unpin_per_tensor_us from calibrate's (or
    gpu.diag_copy's) unpin line, the last one winning, and keeps everything else; a log without
    the line keeps the profile's value."""
    from dataclasses import replace

    from gpu.calibrate import refit_from_log, report_unpin

    lines: list[str] = []
    assert report_unpin(MODEL_PRESETS["tiny"], torch.device("cpu"), 8, lines.append) == 0.0  # nothing pinned
    assert lines and lines[0].startswith("  unpin 0.00 us/tensor")
    prof = quick[0]
    other = replace(prof, pcie=replace(prof.pcie, unpin_per_tensor_us=9.0, issue_us=123.0))
    log = "  unpin 2.50 us/tensor freeing ...\n  copy issue 7.00 us/copy on the host\n  unpin 3.75 us/tensor x\n"
    got = refit_from_log(other, log, only=["unpin"])
    assert got.pcie.unpin_per_tensor_us == 3.75 and got.pcie.issue_us == 123.0
    assert got.compute == other.compute
    assert refit_from_log(other, "  copy issue 7.00 us/copy on the host\n", only=["unpin"]).pcie.unpin_per_tensor_us == 9.0


def test_calibration_prices_the_serving_loop_issue_time(quick):
    """The profile's issue_us is the serving loop's (its log line), which a refit of the
    same log reproduces."""
    from gpu.calibrate import refit_from_log

    prof, lines = quick
    loop = [x for x in lines if x.startswith("  copy issue ") and "serving loop" in x]
    assert len(loop) == 1
    assert prof.pcie.issue_us == pytest.approx(float(loop[0].split()[2]), abs=0.006)
    assert refit_from_log(prof, "\n".join(lines)).pcie.issue_us == pytest.approx(prof.pcie.issue_us, abs=0.006)


def _old_harness_log(lines: list[str]) -> list[str]:
    """A calibration log as the padded harness (before issue #26) printed it."""
    out = []
    for ln in lines:
        if ln.startswith("  decode path: "):
            ln = "  decode path: gpu.decode_graphs" + (", no graphs on CPU" if "CPU" in ln else "")
        ln = ln.replace("per million causal query-key cells", "per million query-key cells")
        out.append(ln)
    return out


def test_refit_tells_the_padded_harness_log_from_the_paged_one(quick):
    """A log whose decode path line says "paged KV" gets the paged harness's pricing rules
    (mean context, no adapter buckets, causal attention cells); any other log the padded
    harness's, as the committed H200 profile was made (tests/gpu/test_refit_committed_profile.py)."""
    from dataclasses import replace

    from gpu.calibrate import refit_from_log

    prof, lines = quick
    assert any(ln.startswith("  decode path: gpu.decode_graphs (whole step, paged KV)") for ln in lines)
    assert any("ms per million causal query-key cells" in ln for ln in lines)
    new = refit_from_log(prof, "\n".join(lines)).compute
    assert (new.decode_context, new.adapter_buckets, new.attention_cells) == ("mean", (), "causal")

    old_log = "\n".join(_old_harness_log(lines))
    old = refit_from_log(prof, old_log).compute
    assert old.decode_context == "max" and old.attention_cells == "padded"
    assert old.adapter_buckets == (1, 2)  # the LoRA grid's counts, both paths graphed
    assert old.batch_buckets == new.batch_buckets and old.prefill == new.prefill
    eager_dec = old_log.replace("decode path: gpu.decode_graphs", "decode path: eager (one model.forward a step)")
    assert refit_from_log(prof, eager_dec).compute.adapter_buckets == ()
    assert refit_from_log(prof, eager_dec).compute.decode_context == "max"
    eager_pre = old_log.replace("gpu.prefill_graphs up to 2048 tokens, eager above", "eager")
    assert refit_from_log(prof, eager_pre).compute.adapter_buckets == ()
    # no decode path line at all (logs before it was printed): the padded harness's rules
    bare = "\n".join(ln for ln in old_log.splitlines() if "decode path" not in ln)
    kept = refit_from_log(replace(prof, compute=replace(prof.compute, adapter_buckets=(1, 2))), bare).compute
    assert kept.decode_context == "max" and kept.adapter_buckets == (1, 2)
    # --refit-only attention takes the coefficient with the layout its line states
    padded = replace(prof, compute=replace(prof.compute, attention_cells="padded"))
    assert refit_from_log(padded, "\n".join(lines), only=["attention"]).compute.attention_cells == "causal"
    assert refit_from_log(prof, old_log, only=["attention"]).compute.attention_cells == "padded"


def test_rates_are_logged_and_refitted_as_the_profile_holds_them(tmp_path, monkeypatch, quick):
    """calibrate logs the HBM read and matmul rates (CUDA only) as it stores them, so a refit
    of its log gives the profile's figures; a log without the lines (CPU, the padded
    harness) keeps the profile's; `--refit-only rates` takes just those."""
    from dataclasses import replace

    from gpu.calibrate import rates, refit_from_log

    lines: list[str] = []
    assert rates.report_rates(torch.device("cpu"), lines.append) == (0.0, 0.0)
    assert len(lines) == 1 and "not measured" in lines[0]
    prof, cpu_lines = quick
    assert prof.compute.hbm_read_gbps == prof.compute.matmul_tflops == 0.0
    assert any("rates: not measured" in ln for ln in cpu_lines)

    # a CUDA device's lines, from its measuring functions' raw figures
    monkeypatch.setattr(rates, "measure_hbm_read", lambda dev: 4321.37e9)
    monkeypatch.setattr(rates, "measure_matmul_rate", lambda dev: 712.43e12)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    cuda_lines: list[str] = []
    gbps, tflops = rates.report_rates(torch.device("cuda"), cuda_lines.append)
    assert (gbps, tflops) == (4321.0, 712.4)
    assert cuda_lines[0].startswith("  HBM read 4321 GB/s") and cuda_lines[1].startswith("  matmul 712.4 TFLOP/s")
    measured = replace(prof, compute=replace(prof.compute, hbm_read_gbps=gbps, matmul_tflops=tflops))
    log = "\n".join(cpu_lines + cuda_lines)
    got = refit_from_log(replace(prof, compute=replace(prof.compute, hbm_read_gbps=1.0)), log)
    assert (got.compute.hbm_read_gbps, got.compute.matmul_tflops) == (gbps, tflops)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    measured.to_yaml(a)
    replace(measured, compute=got.compute).to_yaml(b)
    assert yaml.safe_load(a.read_text())["compute"]["hbm_read_gbps"] == 4321.0
    assert yaml.safe_load(b.read_text())["compute"]["matmul_tflops"] == 712.4
    assert refit_from_log(measured, "\n".join(cpu_lines)).compute.hbm_read_gbps == gbps  # kept
    only = refit_from_log(prof, log, only=["rates"])
    assert only.compute == replace(prof.compute, hbm_read_gbps=gbps, matmul_tflops=tflops)


def test_host_gap_runs_share_one_gpu_core(monkeypatch):
    """The serving loop's two runs (resident, then overlap) are served by one GPU core, so its
    graphs are captured once in a calibration, not once a run."""
    import gpu.core
    import gpu.validate
    from gpu.calibrate import measure_host_gap

    built = []

    class Counting(gpu.core.GpuCore):
        def __init__(self, spec):
            built.append(spec)
            super().__init__(spec)

    monkeypatch.setattr(gpu.core, "GpuCore", Counting)
    monkeypatch.setattr(gpu.validate, "_CORES", [])
    ht = measure_host_gap(MODEL_PRESETS["tiny"], torch.device("cpu"), 8, quick=True)
    assert ht.gaps > 0 and ht.issues > 0
    assert len(built) == 1


def test_a_ranks_slot_count_is_capped_by_the_device_memory_free(monkeypatch):
    """An H100 has room for fewer rank-256 slots than an H200: the cap is free memory (less
    headroom) over one all-module slot's bytes, taken after the last rank's slots are freed."""
    from gpu.adapters import flat_layout, ordered_targets
    from gpu.calibrate.compute import slots_that_fit
    from sim.core.model import ALL_TARGETS

    shape = MODEL_PRESETS["llama-3.1-8b"]
    assert slots_that_fit(shape, 256, "cpu", torch.bfloat16) >= 1 << 20
    _, numel = flat_layout(shape, 256, ordered_targets(ALL_TARGETS))
    slot = numel * 2
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(40.25 * slot / 0.85), 80 << 30))
    assert slots_that_fit(shape, 256, "cuda", torch.bfloat16) == 40
    assert slots_that_fit(shape, 64, "cuda", torch.float32) == 40 * 4 // 2


def test_prefill_graphs_hold_the_prefill_planes_adapters_not_every_slot(monkeypatch):
    """The SGMV tile grid of a prefill graph is sized by its segment capacity; the driver's
    graphs hold max_loras_per_batch segments, so calibration's must hold the prefill plane's
    most adapters, not the decode plane's 64 slots (which priced prefill LoRA 1.6x high)."""
    import gpu.calibrate.compute as compute

    seen: list[int | None] = []

    class Recording(compute.PrefillRunner):
        def __init__(self, *a, max_adapters=None, **kw):
            seen.append(max_adapters)
            super().__init__(*a, max_adapters=max_adapters, **kw)

    monkeypatch.setattr(compute, "PrefillRunner", Recording)
    quick = {**GRIDS["quick"], "adapters": [0, 1, 2, 4]}
    monkeypatch.setitem(GRIDS, "quick", quick)
    calibrate(MODEL_PRESETS["tiny"], quick=True, device="cpu", progress=lambda _: None)
    assert seen and set(seen) == {max(quick["prefill_lora_adapters"])}


def test_reload_rate_is_the_drivers_own_read_of_a_peft_folder():
    """A profile prices a host-tier reload at what the CUDA driver's reload (HostPool.get)
    takes per byte, not at a raw file read."""
    from gpu.adapters import HostPool
    from gpu.calibrate import measure_reload

    shape = MODEL_PRESETS["tiny"]
    real, seen = HostPool.get, []

    def slow_get(self, name):  # every reload now takes at least 50 ms
        time.sleep(0.05)
        ad = real(self, name)
        seen.append(ad.nbytes)
        return ad

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HostPool, "get", slow_get)
        gbps = measure_reload(shape, rank=4, reps=2)
    assert len(seen) == 3 and 0 < gbps * 1e9 * 0.05 <= seen[0]  # one untimed read, then two


def test_weight_matmuls_runs_each_weight_of_the_layers_asked_for_and_the_head():
    """The one definition of a step's weight matmuls both benchmarks time."""
    from torch.overrides import TorchFunctionMode

    from gpu.calibrate.rates import weight_matmuls
    from gpu.model import LlamaModel

    model = LlamaModel(MODEL_PRESETS["tiny"], device="cpu")
    n_weights = sum(1 for w in model.layers[0].values() if w.dim() == 2)

    class CountMatmuls(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("matmul", "__matmul__"):
                CountMatmuls.n += 1
            return func(*args, **(kwargs or {}))

    for fn, want in ((weight_matmuls(model, 3, lm_head=True), len(model.layers) * n_weights + 1),
                     (weight_matmuls(model, 3, names=("o",), all_layers=False), 1)):
        CountMatmuls.n = 0
        with CountMatmuls():
            fn()
        assert CountMatmuls.n == want

