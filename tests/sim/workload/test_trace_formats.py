"""Public trace formats (Azure LLM inference, BurstGPT): exact parsing of the committed real
excerpts, time_scale, adapters drawn per adapter_choice, num_requests prefixes, skipped rows,
one-line errors naming file, row and column, and `lorasim run` / `lorasim sweep` end to end."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim import cli
from sim.config import AdaptersCfg, ArrivalCfg, ChoiceCfg, WorkloadCfg, parse_scenario
from sim.errors import ConfigError, TraceError
from sim.workload import generate_trace
from sim.workload.trace import generate_requests
from sim.workload.trace_formats import read_rows

from .scenarios import make_scenario

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
AZURE = DATA / "azure_llm_conv_2023_head50.csv"
BURSTGPT = DATA / "burstgpt_1_head50.csv"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
POP = AdaptersCfg(count=12, rank=8)


def replay(path, fmt, seed=0, choice=None, time_scale=1.0, **wl):
    arrival = ArrivalCfg(process="trace", path=str(path), format=fmt, time_scale=time_scale)
    workload = WorkloadCfg(arrival=arrival, adapter_choice=choice or ChoiceCfg(), **wl)
    return generate_trace(make_scenario(POP, workload, seed=seed))


def file_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def azure_seconds(ts: str) -> Decimal:
    """Exact seconds since midnight of `2023-11-16 HH:MM:SS.fffffff` (one day in the excerpt)."""
    day, clock = ts.split(" ")
    assert day == "2023-11-16"
    h, m, s = clock.split(":")
    return Decimal(h) * 3600 + Decimal(m) * 60 + Decimal(s)


# ---------------------------------------------------------------- the real excerpts


def test_azure_excerpt_arrivals_and_lengths_are_the_files_exactly():
    rows = file_rows(AZURE)
    tr = replay(AZURE, "azure")
    assert len(tr.requests) == len(rows) == 50
    t0 = azure_seconds(rows[0]["TIMESTAMP"])
    # 7-digit fractions kept: each arrival is the double nearest the exact decimal difference
    assert [r.arrival for r in tr.requests] == [float(azure_seconds(r["TIMESTAMP"]) - t0) for r in rows]
    assert [r.input_len for r in tr.requests] == [int(r["ContextTokens"]) for r in rows]
    assert [r.output_len for r in tr.requests] == [int(r["GeneratedTokens"]) for r in rows]
    assert [r.rid for r in tr.requests] == list(range(50))
    assert tr.requests[1].arrival == 4.314579
    assert {r.adapter for r in tr.requests} <= {a.name for a in tr.adapters}
    assert tr.meta["format"] == "azure" and tr.meta["skipped_rows"] == 0 and tr.meta["rows_read"] == 50
    r = tr.requests[3]
    assert (type(r.arrival), type(r.input_len), type(r.output_len)) == (float, int, int)


def test_burstgpt_excerpt_skips_its_four_failed_rows_and_counts_them():
    rows = file_rows(BURSTGPT)
    used = [r for r in rows if int(r["Request tokens"]) > 0 and int(r["Response tokens"]) > 0]
    assert len(rows) - len(used) == 4  # 1106, 4525, 4608, 4725: 0 request and 0 response tokens
    tr = replay(BURSTGPT, "burstgpt")
    assert [r.arrival for r in tr.requests] == [float(r["Timestamp"]) - 5.0 for r in used]
    assert [(r.input_len, r.output_len) for r in tr.requests] == [
        (int(r["Request tokens"]), int(r["Response tokens"])) for r in used
    ]
    m = tr.meta
    assert (m["num_requests"], m["rows_read"], m["skipped_rows"]) == (46, 50, 4)
    assert (m["skipped_zero_input"], m["skipped_zero_output"]) == (4, 4)
    assert m["duration_s"] == 7442 - 5


def test_azure_2024_timestamps_with_offsets_and_100ns_digits(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(
        AZURE_HEADER
        + "2024-05-10 00:00:00.009930+00:00,2162,5\n"
        + "2024-05-10 00:00:01+00:00,10,3\n"
        + "2024-05-10 00:00:01.0000001+00:00,11,4\n"
        + "2024-05-10 02:00:01.5+02:00,12,5\n"  # 00:00:01.5 UTC
    )
    tr = replay(p, "azure")
    assert [r.arrival for r in tr.requests] == [0.0, 0.99007, 0.9900701, 1.49007]


# ---------------------------------------------------------------- time_scale


@pytest.mark.parametrize(("path", "fmt"), [(AZURE, "azure"), (BURSTGPT, "burstgpt")])
@pytest.mark.parametrize("scale", [0.5, 0.001, 3.0])
def test_time_scale_multiplies_arrivals_and_keeps_the_rest(path, fmt, scale):
    base = replay(path, fmt, seed=4)
    scaled = replay(path, fmt, seed=4, time_scale=scale)
    assert [r.arrival for r in scaled.requests] == [r.arrival * scale for r in base.requests]
    strip = [(r.rid, r.adapter, r.input_len, r.output_len) for r in base.requests]
    assert strip == [(r.rid, r.adapter, r.input_len, r.output_len) for r in scaled.requests]
    assert scaled.meta["time_scale"] == scale


def test_time_scale_applies_to_lorasim_traces_too(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("timestamp,adapter,input_len,output_len\n0.0,,5,5\n2.0,lora-0001,6,6\n")
    tr = replay(p, "lorasim", time_scale=0.25)
    assert [(r.arrival, r.adapter) for r in tr.requests] == [(0.0, None), (0.5, "lora-0001")]
    assert tr.meta["time_scale"] == 0.25 and tr.meta["duration_s"] == 0.5


# ---------------------------------------------------------------- adapters


def adapters_of(tr) -> list[str | None]:
    return [r.adapter for r in tr.requests]


def test_adapters_are_drawn_per_choice_deterministically_per_seed():
    zipf = ChoiceCfg(dist="zipf", s=1.1, base_fraction=0.2)
    a, b = replay(AZURE, "azure", seed=3, choice=zipf), replay(AZURE, "azure", seed=3, choice=zipf)
    assert adapters_of(a) == adapters_of(b)
    assert adapters_of(a) != adapters_of(replay(AZURE, "azure", seed=4, choice=zipf))
    assert sum(x is None for x in adapters_of(a)) == 10  # round(50 * 0.2) base-model requests
    assert a.meta["base_requests"] == 10 and a.meta["adapter_choice"]["dist"] == "zipf"


@pytest.mark.parametrize("choice", [ChoiceCfg(dist="zipf", s=1.5), ChoiceCfg(dist="uniform", base_fraction=0.3)])
def test_adapters_are_the_ones_a_generated_workload_of_that_seed_draws(choice):
    tr = replay(BURSTGPT, "burstgpt", seed=11, choice=choice)
    wl = WorkloadCfg(num_requests=len(tr.requests), adapter_choice=choice)
    gen = generate_requests(wl, tr.adapters, seed=11)
    assert adapters_of(tr) == [r.adapter for r in gen]


def test_distinct_choice_goes_round_robin_in_arrival_order_of_an_unsorted_file(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text(BURST_HEADER + "9,m,1,1,2,x\n3,m,2,2,4,x\n3,m,3,3,6,x\n0,m,4,4,8,x\n")
    tr = replay(p, "burstgpt", choice=ChoiceCfg(dist="distinct"))
    assert [(r.arrival, r.input_len, r.adapter) for r in tr.requests] == [
        (0.0, 4, "lora-0001"), (3.0, 2, "lora-0002"), (3.0, 3, "lora-0003"), (9.0, 1, "lora-0004")
    ]
    assert tr.meta["resorted"] is True


# ---------------------------------------------------------------- num_requests, skipped rows


def test_explicit_num_requests_replays_the_first_usable_rows():
    rows = [r for r in file_rows(BURSTGPT) if int(r["Request tokens"]) > 0]
    tr = replay(BURSTGPT, "burstgpt", num_requests=25)
    assert [r.input_len for r in tr.requests] == [int(r["Request tokens"]) for r in rows[:25]]
    assert tr.meta["num_requests_limit"] == 25 and tr.meta["rows_read"] == 26  # row 21 skipped
    assert tr.meta["skipped_rows"] == 1
    whole = replay(BURSTGPT, "burstgpt")  # num_requests unset: the whole file, not 100
    assert len(whole.requests) == 46 and whole.meta["num_requests_limit"] is None
    assert len(replay(BURSTGPT, "burstgpt", num_requests=1000).requests) == 46


def test_rows_after_the_prefix_are_not_checked(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(AZURE_HEADER + "2023-11-16 18:15:46.6805900,5,5\n2023-11-16 18:15:47,6,6\nsoon,x,y\n")
    assert len(replay(p, "azure", num_requests=2).requests) == 2
    with pytest.raises(TraceError, match=r"row 3 \(line 4\), column TIMESTAMP"):
        replay(p, "azure")


def test_zero_output_rows_are_skipped_and_counted(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text(BURST_HEADER + "1,m,10,0,10,API log\n2,m,0,7,7,x\n4,m,10,5,15,x\n")
    tr = replay(p, "burstgpt")
    assert [(r.arrival, r.input_len, r.output_len) for r in tr.requests] == [(0.0, 10, 5)]
    m = tr.meta
    assert (m["skipped_rows"], m["skipped_zero_input"], m["skipped_zero_output"]) == (2, 1, 1)


def test_a_file_of_only_failed_requests_is_an_error(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text(BURST_HEADER + "1,m,10,0,10,API log\n2,m,0,0,0,x\n")
    with pytest.raises(TraceError, match="no usable requests: all 2 rows have 0 input or 0 output"):
        replay(p, "burstgpt")


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 1 << 20])
def test_chunking_changes_nothing(chunk_rows):
    full = read_rows(BURSTGPT, "burstgpt")
    small = read_rows(BURSTGPT, "burstgpt", chunk_rows=chunk_rows)
    assert (small.times.tolist(), small.inp.tolist(), small.out.tolist()) == (
        full.times.tolist(), full.inp.tolist(), full.out.tolist()
    )
    assert (small.rows_read, small.skipped) == (50, 4)
    prefix = read_rows(BURSTGPT, "burstgpt", limit=21, chunk_rows=chunk_rows)  # row 21 is skipped
    assert prefix.inp.tolist() == full.inp[:21].tolist()
    assert (prefix.rows_read, prefix.skipped) == (22, 1)


@pytest.mark.parametrize("chunk_rows", [2, 7, 1 << 20])
def test_bad_row_line_numbers_survive_chunks_and_blank_lines(tmp_path, chunk_rows):
    body = "".join(f"{i},m,{i + 1},3,0,x\n" for i in range(12)) + "\n\n" + "13,m,-4,3,0,x\n"
    p = tmp_path / "b.csv"
    p.write_text(BURST_HEADER + body)
    with pytest.raises(TraceError) as e:
        read_rows(p, "burstgpt", chunk_rows=chunk_rows)
    assert e.value.where == "row 15 (line 16), column Request tokens"
    blank_ok = tmp_path / "ok.csv"
    blank_ok.write_text(BURST_HEADER + "0,m,1,1,2,x\n\n\n5,m,2,2,4,x\n")
    assert read_rows(blank_ok, "burstgpt", chunk_rows=chunk_rows).rows_read == 2


# ---------------------------------------------------------------- bad files

AZ_OK = "2023-11-16 18:15:46.6805900,374,44\n"
BG_OK = "5,ChatGPT,472,18,490,Conversation log\n"


@pytest.mark.parametrize(
    ("fmt", "body", "where", "what"),
    [
        ("azure", AZ_OK + "2023-11-16 18:15:50.9951690,abc,109\n", "row 2 (line 3), column ContextTokens", "got 'abc'"),
        ("azure", AZ_OK + "2023-11-16 18:15:50.9951690,396,-3\n", "row 2 (line 3), column GeneratedTokens", "non-negative integer"),
        ("azure", AZ_OK + "2023-11-16 18:15:50.9951690,39.5,3\n", "row 2 (line 3), column ContextTokens", "got 39.5"),
        ("azure", AZ_OK + "2023-11-16 18:15:50.9951690,,3\n", "row 2 (line 3), column ContextTokens", "empty cell"),
        ("azure", AZ_OK + "2023-11-16 18:15:50.9951690,1e300,3\n", "row 2 (line 3), column ContextTokens", "token count"),
        ("azure", AZ_OK + "yesterday,396,109\n", "row 2 (line 3), column TIMESTAMP", "got 'yesterday'"),
        ("azure", AZ_OK + "2023-13-45 18:15:50.9951690,396,109\n", "row 2 (line 3), column TIMESTAMP", "ISO 8601"),
        ("azure", AZ_OK + ",396,109\n", "row 2 (line 3), column TIMESTAMP", "empty cell"),
        ("azure", AZ_OK + "NaN,396,109\n", "row 2 (line 3), column TIMESTAMP", "got 'NaN'"),
        ("azure", AZ_OK + "2023-11-16 18:15:50.9951690,396\n", "row 2 (line 3), column GeneratedTokens", "empty cell"),
        ("azure", AZ_OK + "2023-11-16 18:15:50.9951690,396,1,2\n", "row 2 (line 3)", "expected 3 fields"),
        ("burstgpt", BG_OK + "45,ChatGPT,1087,many,1317,Conversation log\n", "row 2 (line 3), column Response tokens", "got 'many'"),
        ("burstgpt", BG_OK + "45,ChatGPT,-1087,230,1317,Conversation log\n", "row 2 (line 3), column Request tokens", "got -1087"),
        ("burstgpt", BG_OK + "later,ChatGPT,1087,230,1317,Conversation log\n", "row 2 (line 3), column Timestamp", "number of seconds"),
        ("burstgpt", BG_OK + "inf,ChatGPT,1087,230,1317,Conversation log\n", "row 2 (line 3), column Timestamp", "finite"),
        ("burstgpt", BG_OK + "nan,ChatGPT,1087,230,1317,Conversation log\n", "row 2 (line 3), column Timestamp", "finite"),
        ("burstgpt", BG_OK + "45,ChatGPT,1087,nan,1317,Conversation log\n", "row 2 (line 3), column Response tokens", "token count"),
    ],
)
def test_bad_rows_name_file_row_and_column(tmp_path, fmt, body, where, what):
    p = tmp_path / "bad.csv"
    p.write_text((AZURE_HEADER if fmt == "azure" else BURST_HEADER) + body)
    with pytest.raises(TraceError) as e:
        replay(p, fmt)
    assert e.value.source == str(p)
    assert e.value.where == where
    assert what in e.value.message
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("fmt", "content", "match"),
    [
        ("azure", "TIMESTAMP,ContextTokens\n" + "2023-11-16 18:15:46,3\n",
         r"column GeneratedTokens: missing; the azure format has columns TIMESTAMP,ContextTokens,GeneratedTokens"),
        ("azure", BURST_HEADER + BG_OK, r"column TIMESTAMP: missing.*looks like the burstgpt format: set workload\.arrival\.format: burstgpt"),
        ("burstgpt", AZURE_HEADER + AZ_OK, r"column Timestamp: missing.*the azure format"),
        ("burstgpt", "timestamp,adapter,input_len,output_len\n0,,1,1\n", r"looks like the lorasim format"),
        ("azure", "", "empty file"),
        ("azure", "\n\n", "no header"),
        ("azure", AZURE_HEADER, r"no requests \(the file has a header but no rows\)"),
        ("burstgpt", b"\xff\xfe\x00garbage\x00\n\x01", None),
        ("azure", AZURE_HEADER + "2023-11-16 18:15:46,3,4,5\n" * 2, "more fields than the header"),
    ],
)
def test_bad_files_are_one_line_trace_errors(tmp_path, fmt, content, match):
    p = tmp_path / "bad.csv"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TraceError, match=match) as e:
        replay(p, fmt)
    assert e.value.source == str(p) and "\n" not in str(e.value)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(TraceError, match="file not found"):
        replay(tmp_path / "nope.csv", "azure")
    p = tmp_path / "t.parquet"
    p.write_bytes(b"PAR1")
    with pytest.raises(TraceError, match=r"a burstgpt trace is a CSV file; expected a name ending in \.csv"):
        replay(p, "burstgpt")


def test_gzipped_csv_reads_like_the_plain_one(tmp_path):
    p = tmp_path / "b.csv.gz"
    p.write_bytes(gzip.compress(BURSTGPT.read_bytes()))
    assert replay(p, "burstgpt").requests == replay(BURSTGPT, "burstgpt").requests


@pytest.mark.parametrize(("path", "fmt"), [(AZURE, "azure"), (BURSTGPT, "burstgpt")])
def test_mutated_excerpts_load_or_give_a_one_line_trace_error(tmp_path, path, fmt):
    """Random byte edits of the real files: never an exception other than TraceError."""
    raw = path.read_bytes()
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"0123456789,.-: \nabcxe+\x00\xff\"", dtype=np.uint8)
    p = tmp_path / "m.csv"
    for _ in range(150):
        b = np.frombuffer(raw, dtype=np.uint8).copy()
        pos = rng.integers(0, len(b), size=int(rng.integers(1, 6)))
        b[pos] = rng.choice(alphabet, size=pos.size)
        p.write_bytes(b.tobytes())
        try:
            tr = replay(p, fmt)
        except TraceError as e:
            assert e.source == str(p) and "\n" not in str(e)
        else:
            assert tr.requests and all(r.input_len > 0 and r.output_len > 0 for r in tr.requests)
            assert tr.requests[0].arrival == 0.0


# ---------------------------------------------------------------- config


BASE = {"adapters": {"count": 2}, "workload": {"arrival": {"process": "trace", "path": "x.csv"}}}


@pytest.mark.parametrize(
    ("arrival", "key", "what"),
    [
        ({"format": "mooncake"}, "workload.arrival.format", "'lorasim', 'azure' or 'burstgpt'"),
        ({"time_scale": 0}, "workload.arrival.time_scale", "greater than 0"),
        ({"time_scale": -1.5}, "workload.arrival.time_scale", "greater than 0"),
        ({"time_scale": float("inf")}, "workload.arrival.time_scale", "finite"),
        ({"time_scale": "fast"}, "workload.arrival.time_scale", "number"),
        ({"process": "poisson", "format": "azure"}, "workload.arrival", "process 'trace' only"),
        ({"process": "gamma", "time_scale": 2}, "workload.arrival", "process 'trace' only"),
        ({"path": None}, "workload.arrival", "needs `path`"),
    ],
)
def test_bad_trace_keys_are_config_errors_naming_the_key(arrival, key, what):
    d = yaml.safe_load(yaml.safe_dump(BASE))
    d["workload"]["arrival"].update(arrival)
    with pytest.raises(ConfigError) as e:
        parse_scenario(d, "s.yaml")
    assert e.value.key == key and what in e.value.message


def test_defaults_keep_todays_trace_format():
    arr = ArrivalCfg(process="trace", path="t.csv")
    assert (arr.format, arr.time_scale) == ("lorasim", 1.0)
    assert "twice the request rate" in (ArrivalCfg.model_fields["time_scale"].description or "")


# ---------------------------------------------------------------- CLI end to end


def lorasim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def tiny_scenario(tmp_path: Path, arrival: dict, **workload) -> Path:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "tiny", "seed": 3, "model": {"preset": "llama-3.2-1b"},
        "adapters": {"count": 6, "rank": 8},
        "workload": {"arrival": {"process": "trace", **arrival}, "adapter_choice": {"dist": "zipf"}, **workload},
        "serving": {"max_loras_per_batch": 2, "max_loras_prefetch": 2},
    }))
    return cfg


@pytest.mark.parametrize(("path", "fmt", "n"), [(AZURE, "azure", 50), (BURSTGPT, "burstgpt", 46)])
def test_lorasim_run_on_each_excerpt(tmp_path, path, fmt, n):
    cfg = tiny_scenario(tmp_path, {"format": fmt, "path": str(path), "time_scale": 0.01})
    r = lorasim("run", cfg, "-p", "lru", "-p", "overlap", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert f"tiny: {n} requests, 6 adapters" in r.stdout
    assert ("skipped 4 of 50 rows" in r.stdout) == (fmt == "burstgpt")  # said, not silent
    summ = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [s["policy"] for s in summ] == ["lru", "overlap"]
    saved = file_rows(tmp_path / "out" / "trace.csv")  # lorasim's own format, adapters filled in
    assert len(saved) == n and all(row["adapter"] for row in saved)


@pytest.mark.parametrize("name", ["azure_conv_excerpt", "burstgpt_excerpt"])
def test_the_example_scenarios_run(name):
    r = lorasim("run", f"configs/scenarios/{name}.yaml", "-p", "lru")
    assert r.returncode == 0, r.stderr


def invoke(argv: list[str]) -> tuple[int | None, str]:
    """sim.cli.main in-process: (exit code, stderr); an uncaught exception fails the test."""
    err = io.StringIO()
    old, sys.argv = sys.argv, ["lorasim", *argv]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("fmt", "content", "must"),
    [
        ("azure", AZURE_HEADER + AZ_OK + "2023-11-16 18:15:47,12,x\n", ["row 2 (line 3), column GeneratedTokens", "got 'x'"]),
        ("burstgpt", BURST_HEADER + BG_OK + "oops,m,1,1,2,x\n", ["row 2 (line 3), column Timestamp"]),
        ("burstgpt", AZURE_HEADER + AZ_OK, ["column Timestamp: missing"]),
        ("azure", "", ["empty file"]),
    ],
)
def test_cli_bad_trace_is_one_line_exit_2(tmp_path, fmt, content, must):
    p = tmp_path / "t.csv"
    p.write_text(content)
    code, err = invoke(["run", str(tiny_scenario(tmp_path, {"format": fmt, "path": "t.csv"})), "-p", "lru"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(p) in lines[0] and all(s in lines[0] for s in must), lines[0]


def test_cli_bad_time_scale_is_one_line_exit_2(tmp_path):
    cfg = tiny_scenario(tmp_path, {"format": "azure", "path": str(AZURE), "time_scale": -1})
    code, err = invoke(["run", str(cfg), "-p", "lru"])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(cfg) in err and "workload.arrival.time_scale" in err


def test_lorasim_sweep_over_time_scale_on_a_burstgpt_excerpt(tmp_path):
    (tmp_path / "burst.csv").write_bytes(BURSTGPT.read_bytes())  # relative to the sweep file
    sweep = tmp_path / "w.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "burst",
        "base": {"seed": 1, "model": {"preset": "llama-3.2-1b"}, "adapters": {"count": 6, "rank": 8},
                 "workload": {"num_requests": 30, "adapter_choice": {"dist": "zipf"},
                              "arrival": {"process": "trace", "format": "burstgpt", "path": "burst.csv"}},
                 "serving": {"max_loras_per_batch": 2}},
        "policies": ["lru", "overlap"],
        "axes": {"workload.arrival.time_scale": [0.001, 0.01]},
    }))
    r = lorasim("sweep", sweep, "--out", tmp_path / "out", "--workers", "1", "--no-plots", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "4 runs: 4 ran, 0 already done, 0 failed" in r.stdout
