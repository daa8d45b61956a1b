"""Trace generation, save/load round-trips and the errors a bad trace file gives."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim.config import AdaptersCfg, ArrivalCfg, ChoiceCfg, LengthCfg, Phase, WorkloadCfg
from sim.core.model import AdapterSpec, Request, Trace
from sim.errors import ConfigError, TraceError
from sim.workload import build_population, generate_trace, load_trace, save_trace

from .scenarios import make_scenario

RICH = WorkloadCfg(
    num_requests=300,
    arrival=ArrivalCfg(process="gamma", rate=20.0, cv=2.0),
    adapter_choice=ChoiceCfg(dist="zipf", s=1.1, base_fraction=0.2),
    input_len=LengthCfg(dist="random", len=1024, range_ratio=0.25),
    output_len=LengthCfg(dist="random", len=256, range_ratio=0.5),
)


def rich_trace(seed: int = 3) -> Trace:
    return generate_trace(make_scenario(AdaptersCfg(count=12, rank=8), RICH, seed=seed))


def population(n: int = 3) -> tuple[AdapterSpec, ...]:
    return build_population(AdaptersCfg(count=n, rank=8), make_scenario().model.shape())


# ---------------------------------------------------------------- generation


def test_generated_trace_is_sorted_numbered_and_uses_the_population():
    tr = rich_trace()
    assert len(tr.requests) == 300
    assert [r.rid for r in tr.requests] == list(range(300))
    assert all(a.arrival <= b.arrival for a, b in zip(tr.requests, tr.requests[1:], strict=False))
    assert tr.requests[0].arrival == 0.0
    names = {a.name for a in tr.adapters}
    assert {r.adapter for r in tr.requests} - {None} <= names
    assert sum(r.adapter is None for r in tr.requests) == 60
    assert all(256 <= r.input_len <= 1024 and 128 <= r.output_len <= 256 for r in tr.requests)
    assert (
        tr.meta["seed"] == 3 and tr.meta["num_requests"] == 300 and tr.meta["base_requests"] == 60
    )
    assert tr.meta["adapter_choice"]["dist"] == "zipf"
    r = tr.requests[1]
    assert (type(r.arrival), type(r.input_len), type(r.output_len)) == (
        float,
        int,
        int,
    )  # not numpy


def test_same_seed_same_trace_other_seed_other_trace():
    assert rich_trace(5) == rich_trace(5)
    a, b = rich_trace(5).requests, rich_trace(6).requests
    assert [r.arrival for r in a] != [r.arrival for r in b]
    assert [r.adapter for r in a] != [r.adapter for r in b]
    assert [r.input_len for r in a] != [r.input_len for r in b]


def test_streams_are_independent_changing_output_length_keeps_arrivals_and_adapters():
    wl2 = RICH.model_copy(update={"output_len": LengthCfg(dist="fixed", len=64)})
    a = rich_trace(5)
    b = generate_trace(make_scenario(AdaptersCfg(count=12, rank=8), wl2, seed=5))
    strip = [(r.arrival, r.adapter, r.input_len) for r in a.requests]
    assert strip == [(r.arrival, r.adapter, r.input_len) for r in b.requests]
    assert {r.output_len for r in b.requests} == {64}


def test_phase_beyond_population_is_a_config_error_from_generate_trace():
    wl = WorkloadCfg(
        num_requests=10,
        adapter_choice=ChoiceCfg(dist="phased", phases=[Phase(requests=5, adapters=(1, 9))]),
    )
    with pytest.raises(ConfigError, match=r"workload\.adapter_choice\.phases\[0\]\.adapters"):
        generate_trace(make_scenario(AdaptersCfg(count=4), wl))


def test_burst_puts_every_arrival_at_zero():
    wl = WorkloadCfg(num_requests=20, arrival=ArrivalCfg(process="poisson", rate=math.inf))
    tr = generate_trace(make_scenario(workload=wl))
    assert {r.arrival for r in tr.requests} == {0.0}


# ---------------------------------------------------------------- round-trips


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_save_then_load_round_trips_exactly(tmp_path, suffix):
    tr = rich_trace()
    path = save_trace(tr, tmp_path / f"t{suffix}")
    back = load_trace(path, tr.adapters)
    assert back == tr  # adapters and requests; meta is not compared
    assert back.requests == tr.requests
    assert back.meta["source"] == str(path) and back.meta["resorted"] is False
    assert [p.name for p in tmp_path.iterdir()] == [f"t{suffix}"]  # no temp file left


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_awkward_values_round_trip(tmp_path, suffix):
    pop = (AdapterSpec('a,b "q"', 8, ("q_proj",), 1, 2), AdapterSpec("123", 8, ("q_proj",), 1, 2))
    reqs = (
        Request(0, 0.1 + 0.2, 'a,b "q"', 1, 1),
        Request(1, 1e-300 + 1.0, "123", 2**40, 3),
        Request(2, 12345.678901234567, None, 7, 9),
    )
    tr = Trace(pop, reqs)
    assert load_trace(save_trace(tr, tmp_path / f"t{suffix}"), pop).requests == reqs


def test_save_overwrites_and_rejects_unknown_suffix(tmp_path):
    tr = rich_trace()
    p = tmp_path / "t.csv"
    p.write_text("old")
    save_trace(tr, p)
    assert load_trace(p, tr.adapters).requests == tr.requests
    with pytest.raises(TraceError, match="expected one of"):
        save_trace(tr, tmp_path / "t.json")


def test_replay_via_arrival_process_trace(tmp_path):
    tr = rich_trace()
    path = save_trace(tr, tmp_path / "t.parquet")
    wl = WorkloadCfg(num_requests=5, arrival=ArrivalCfg(process="trace", path=str(path)))
    replay = generate_trace(make_scenario(AdaptersCfg(count=12, rank=8), wl, seed=99))
    assert replay.requests == tr.requests  # the whole file, num_requests ignored
    assert replay.meta["seed"] == 99 and replay.meta["source"] == str(path)


def test_unsorted_file_is_sorted_stably_and_renumbered(tmp_path):
    p = tmp_path / "u.csv"
    p.write_text(
        "timestamp,adapter,input_len,output_len\n2.0,lora-0001,5,5\n1.0,,6,6\n1.0,lora-0002,7,7\n"
    )
    tr = load_trace(p, population())
    assert [(r.rid, r.arrival, r.adapter, r.input_len) for r in tr.requests] == [
        (0, 1.0, None, 6),
        (1, 1.0, "lora-0002", 7),
        (2, 2.0, "lora-0001", 5),
    ]
    assert tr.meta["resorted"] is True


def test_extra_columns_and_column_order_do_not_matter(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("output_len,note,adapter,timestamp,input_len\n4,hi,lora-0003,0.5,8\n")
    (r,) = load_trace(p, population()).requests
    assert r == Request(0, 0.5, "lora-0003", 8, 4)


# ---------------------------------------------------------------- bad traces

HEADER = "timestamp,adapter,input_len,output_len\n"


def write_csv(tmp_path, body: str, header: str = HEADER):
    p = tmp_path / "bad.csv"
    p.write_text(header + body)
    return p


@pytest.mark.parametrize(
    ("body", "where", "what"),
    [
        ("0.0,lora-0001,5,5\n1.0,lora-0001,-3,5\n", "row 2 (line 3), column input_len", "positive"),
        ("0.0,lora-0001,5,0\n", "row 1 (line 2), column output_len", "positive"),
        ("0.0,lora-0001,5.5,3\n", "row 1 (line 2), column input_len", "integer"),
        ("0.0,lora-0001,,3\n", "row 1 (line 2), column input_len", "empty cell"),
        ("0.0,lora-0001,3\n", "row 1 (line 2)", "expected 4 fields"),
        ("0.0,lora-0001,1,2,3,4\n", "row 1 (line 2)", "expected 4 fields"),
        (
            "0.0,lora-0001,5,5\n\n0.5,lora-0002,5,x\n",
            "row 2 (line 4), column output_len",
            "got 'x'",
        ),
        ("0.0,lora-0001,5,5\nsoon,lora-0001,5,5\n", "row 2 (line 3), column timestamp", "number"),
        ("-1.0,lora-0001,5,5\n", "row 1 (line 2), column timestamp", "non-negative"),
        ("nan,lora-0001,5,5\n", "row 1 (line 2), column timestamp", "finite"),
        (
            "0.0,lora-0001,5,5\n0.1,lora-0009,5,5\n",
            "row 2 (line 3), column adapter",
            "unknown adapter 'lora-0009'",
        ),
    ],
)
def test_bad_csv_rows_name_file_row_and_column(tmp_path, body, where, what):
    p = write_csv(tmp_path, body)
    with pytest.raises(TraceError) as e:
        load_trace(p, population())
    assert e.value.source == str(p)
    assert e.value.where == where
    assert what in e.value.message
    assert "\n" not in str(e.value)


def test_missing_column_is_named(tmp_path):
    p = write_csv(tmp_path, "0.0,5,5\n", header="timestamp,input_len,output_len\n")
    with pytest.raises(TraceError, match=r"bad\.csv: column adapter: missing"):
        load_trace(p, population())


def test_missing_column_in_parquet_is_named(tmp_path):
    p = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"timestamp": [0.0], "adapter": ["lora-0001"], "input_len": [3]}), p)
    with pytest.raises(TraceError, match=r"column output_len: missing"):
        load_trace(p, population())


def test_wrong_parquet_types_are_named(tmp_path):
    p = tmp_path / "bad.parquet"
    pq.write_table(
        pa.table(
            {"timestamp": ["x"], "adapter": ["lora-0001"], "input_len": [3], "output_len": [3]}
        ),
        p,
    )
    with pytest.raises(TraceError, match=r"column timestamp: expected numbers"):
        load_trace(p, population())
    pq.write_table(
        pa.table({"timestamp": [0.0], "adapter": [1], "input_len": [3], "output_len": [3]}), p
    )
    with pytest.raises(TraceError, match=r"column adapter: expected adapter names"):
        load_trace(p, population())


def test_bad_parquet_row_is_named(tmp_path):
    p = tmp_path / "bad.parquet"
    df = pd.DataFrame(
        {
            "timestamp": [0.0, 1.0],
            "adapter": [None, "ghost"],
            "input_len": [1, 2],
            "output_len": [1, 2],
        }
    )
    df.to_parquet(p)
    with pytest.raises(TraceError) as e:
        load_trace(p, population())
    assert (e.value.source, e.value.where) == (str(p), "row 2, column adapter")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_empty_file_is_a_trace_error(tmp_path, suffix):
    p = tmp_path / f"empty{suffix}"
    p.write_bytes(b"")
    with pytest.raises(TraceError, match="empty file") as e:
        load_trace(p, population())
    assert e.value.source == str(p)


def test_header_only_csv_and_zero_row_parquet_have_no_requests(tmp_path):
    p = write_csv(tmp_path, "")
    with pytest.raises(TraceError, match="no requests"):
        load_trace(p, population())
    empty = Trace(population(), ())
    q = save_trace(empty, tmp_path / "e.parquet")
    with pytest.raises(TraceError, match="no requests"):
        load_trace(q, population())


def test_truncated_parquet_is_a_clear_trace_error(tmp_path):
    tr = rich_trace()
    p = save_trace(tr, tmp_path / "t.parquet")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match="not a readable parquet file") as e:
        load_trace(p, tr.adapters)
    assert e.value.source == str(p)
    assert "\n" not in str(e.value)


def test_garbage_csv_and_missing_file_and_unknown_suffix(tmp_path):
    p = tmp_path / "g.csv"
    p.write_bytes(b"\xff\xfe\x00garbage\x00\n\x01")
    with pytest.raises(TraceError):
        load_trace(p, population())
    with pytest.raises(TraceError, match="file not found"):
        load_trace(tmp_path / "nope.csv", population())
    with pytest.raises(TraceError, match="unknown trace format"):
        load_trace(tmp_path / "x.txt", population())


def test_trace_equality_ignores_meta():
    tr = rich_trace()
    assert dataclasses.replace(tr, meta={"other": 1}) == tr


def test_null_length_in_parquet_is_named(tmp_path):
    p = tmp_path / "bad.parquet"
    t = pa.table(
        {
            "timestamp": [0.0, 1.0, 2.0],
            "adapter": [None, None, None],
            "input_len": pa.array([1, 2, None], pa.int64()),
            "output_len": [1, 2, 3],
        }
    )
    pq.write_table(t, p)
    with pytest.raises(TraceError, match=r"bad\.parquet: row 3, column input_len: null"):
        load_trace(p, population())


def test_all_base_model_parquet_with_null_typed_adapter_column_loads(tmp_path):
    p = tmp_path / "base.parquet"
    t = pa.table(
        {
            "timestamp": [0.5, 0.0],
            "adapter": [None, None],
            "input_len": [4, 5],
            "output_len": [6, 7],
        }
    )
    pq.write_table(t, p)
    tr = load_trace(p, population())
    assert tr.requests == (Request(0, 0.0, None, 5, 7), Request(1, 0.5, None, 4, 6))
