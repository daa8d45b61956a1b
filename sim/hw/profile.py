"""Measured hardware profile: the YAML `lorasim calibrate` writes and the simulator reads.

A profile replaces the analytic cost models with tables measured on one GPU: copy time
over copy size (pinned and pageable), pin/disk bandwidths, and forward times for one model
shape. The format is documented in docs/hardware_profile.md.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from sim.errors import ConfigError
from sim.files import atomic_write_text  # noqa: F401  (gpu/ writes its files with it from here)


@dataclass(frozen=True)
class Table:
    """y measured at strictly increasing x (one axis of a profile table)."""

    x: tuple[float, ...]
    y: tuple[float, ...]


@dataclass(frozen=True)
class PcieProfile:
    pinned: Table  # x: bytes of ONE H2D copy, y: seconds it took (overhead included)
    pageable: Table
    copy_overhead_us: float
    pin_warm_gbps: float  # re-pinning with torch's caching host allocator warm
    pin_cold_gbps: float  # fresh pinned allocations
    disk_gbps: float
    contention: float = 0.0  # fractional compute slowdown while a side-stream copy runs
    # host time per tensor pinned, beyond the bytes: a per-module pin calls pin_memory() on
    # every A and B (2 x 7 x layers tensors), each an allocator lookup and a small memcpy
    pin_per_tensor_us: float = 0.0
    # host time per temporary pinned tensor to free it once its copy is done: torch's caching
    # host allocator records a CUDA event per freed block that a copy used (round 13: 448
    # per-module tensors took ~1.6 ms, paid by the scheduler at its next look at the loads). 0:
    # not measured (profiles before round 13)
    unpin_per_tensor_us: float = 0.0
    # DMA time each further copy adds when copies run back to back (sim.hw.pcie.CopyModel);
    # None (profiles before it was measured): copies priced as isolated, n * table(size)
    copy_gap_us: float | None = None
    # slow pins (sim.hw.pcie.PinTail): this fraction of pin-per-load pins takes pin_tail_ms
    # longer (H200 harness: ~5 % of pins 25-114 ms instead of ~15 ms; host noise, not
    # allocator misses). 0: no tail
    pin_tail_fraction: float = 0.0
    pin_tail_ms: float = 0.0
    # host CPU time to issue one copy (torch copy_ -> cudaMemcpyAsync): the scheduler issues
    # a per-module load's 448 copies one by one before it can launch anything else (round 9:
    # the H200 harness's next decode step started ~3.5 ms after an async load began, the
    # simulator's 0.3 ms). 0: issuing is free (profiles before it was measured)
    issue_us: float = 0.0
    # sd of the log of a load's issue time over the host's loads (sim.hw.noise; `lorasim
    # calibrate --noise-from RUNS`); used only by simulator ensembles. 0: not measured
    issue_sd: float = 0.0


@dataclass(frozen=True)
class Grid:
    """seconds[i][j] measured at (batch[i], context[j])."""

    batch: tuple[float, ...]
    context: tuple[float, ...]
    seconds: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class LoraTable:
    """Extra seconds of a decode step with LoRA: seconds[i][j] at (ranks[i], adapters[j])."""

    ranks: tuple[float, ...]  # one or more, strictly increasing
    adapters: tuple[float, ...]  # distinct adapters in the batch
    seconds: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class LoraPrefillTable:
    """Extra seconds of a forward with LoRA: seconds[i][j][k] at (ranks[i], tokens[j],
    adapters[k]). For prefills `tokens` is the forward's new tokens; the decode table
    (`compute.lora_decode`) has the same form with its batch size there (a decode step has
    one new token per request)."""

    ranks: tuple[float, ...]
    tokens: tuple[float, ...]  # total new tokens of the forward (decode: batch size)
    adapters: tuple[float, ...]
    seconds: tuple[tuple[tuple[float, ...], ...], ...]


# how a decode step's context is summarised for the decode table (ComputeProfile.decode_context)
DecodeContext = Literal["mean", "max"]
DECODE_CONTEXTS: tuple[str, ...] = get_args(DecodeContext)
# how a prefill's attention work is counted for `attention_ms_per_mcell`
# (ComputeProfile.attention_cells, sim.hw.compute.attention_cells)
AttentionCells = Literal["padded", "causal"]
ATTENTION_CELLS: tuple[str, ...] = get_args(AttentionCells)


@dataclass(frozen=True)
class ComputeProfile:
    prefill: Table  # x: total new tokens of one prefill forward
    decode: Grid  # one decode step over batch size x mean context
    # Single-rank LoRA table (format v1): x distinct adapters, y extra seconds per forward,
    # measured at `lora_rank`; cost elsewhere is scaled by rank / lora_rank.
    lora: Table | None = None
    lora_rank: int = 64
    # Multi-rank LoRA table (format v2): replaces `lora` when set; rank is interpolated.
    lora_ranks: LoraTable | None = None
    # LoRA extra of prefill forwards over tokens x adapters (optional; without it prefill
    # uses the decode LoRA table, as format v1 did).
    lora_prefill: LoraPrefillTable | None = None
    # LoRA extra of a decode step over batch size x adapters (optional; replaces `lora` for
    # decode: the harness's segment LoRA costs ~1 ms less a step at batch 1 than at 32)
    lora_decode: LoraPrefillTable | None = None
    # CPU time to launch a forward as a fraction of its GPU time: while launching, the
    # scheduler issues nothing else, so a prefill "launched ahead" (overlap) holds it this
    # long. ~1 for an eager, launch-bound server; small when the GPU is the bottleneck.
    launch_fraction: float = 0.0
    # Host time between one forward ending and the next starting when the scheduler was
    # waiting for it (preparing inputs, launching): `lorasim calibrate --host-gap-from`
    # takes the median over a GPU validation pass's timelines.
    forward_overhead_us: float = 0.0
    # Token counts a prefill is padded up to before it runs (CUDA-graph capture sizes, as
    # vLLM's piecewise graphs and the GPU harness's gpu.prefill_graphs pad); a prefill above
    # the last one runs unpadded. Prefill tables are looked up at the padded count. Empty:
    # no padding (an eager server).
    prefill_buckets: tuple[int, ...] = ()
    # Counts of distinct adapters a graphed forward (every decode step; a prefill up to the
    # last prefill bucket) is padded up to: the harness before issue #26 captured its graphs
    # for 1, 2, 4, 8, ... adapters and computed the padding blocks too, so 9 adapters cost what
    # 16 did (round 8: bursty `resident` decode with 9-15 adapters a batch ran 7 % above the
    # interpolated table). LoRA tables are looked up at the padded count. Empty: no padding
    # (SGMV LoRA, the harness since issue #26).
    adapter_buckets: tuple[int, ...] = ()
    # Batch sizes a graphed decode step is padded up to (SGLang's cuda_graph_bs; the harness's
    # gpu.decode_graphs.batch_buckets: 1, 2, 4, 8, 16, 24, ...): 9 requests cost what 16 do
    # (round 9: bursty `resident` steps of 9-12 requests ran 21.4 ms, the interpolated table
    # said ~19). Decode tables are looked up at the padded size. Empty: no padding.
    batch_buckets: tuple[int, ...] = ()
    # Prefill attention per million query-key cells, all layers (ms): a prefill's attention
    # depends on how its tokens split into requests and on their context, not only on its
    # tokens (round 8, padded harness: 9 requests of ~350 tokens 126 ms, calibration's 6 of 512
    # 115 ms at the same 3095 tokens). The prefill table is for calibration's layout (requests
    # of 512 tokens, no context); the simulator adds the coefficient x the difference in cells.
    # 0: none
    attention_ms_per_mcell: float = 0.0
    # How those cells are counted, i.e. the attention the coefficient was measured on:
    # "padded" (the harness before issue #26: every request padded to the longest new part and
    # the longest context + new part, requests x longest new x longest keys) or "causal" (a
    # paged varlen kernel, as vLLM's and SGLang's: each request's new tokens over its own keys,
    # sum of new x context + new x (new + 1) / 2)
    attention_cells: AttentionCells = "padded"
    # How long the harness's idle scheduler takes from an arrival to forming its batch
    # (median; it polls every 50 us): arrivals within it share a batch. Measured by `lorasim
    # calibrate` (idle arrivals of its host-gap run) or `--wake-from RUNS`. 0: not measured
    # (the simulator's default applies)
    wake_us: float = 0.0
    # The context a decode step's table is read at: "mean" of the batch's requests (paged
    # attention reads each request's own keys: vLLM, SGLang, the harness since issue #26) or
    # "max" (the harness before it: its decode attention read every row up to the longest
    # context, so a step of 12 requests averaging 380 tokens cost what 12 at the longest one's
    # 650 do: round 10, steps of 9-64 requests ran 3-10 % above the mean-context price; at the
    # longest context every (batch, adapters) group is within -0.1..+2.6 %).
    decode_context: DecodeContext = "mean"
    # sd of a run's compute speed around the tables, between runs (sim.hw.noise; `lorasim
    # calibrate --noise-from RUNS`); used only by simulator ensembles. 0: not measured
    run_speed_sd: float = 0.0
    # The device's roofline rates, measured by `lorasim calibrate` on CUDA
    # (gpu.calibrate.rates): HBM read bandwidth (GB/s = 1e9 bytes/s) and dense bf16 matmul
    # throughput (TFLOP/s = 1e12 FLOP/s). Informational: the floors a decode step (weight + KV
    # bytes / bandwidth) and a long prefill (2 x parameters x tokens / matmul rate) are judged
    # against; the simulator prices nothing with them. 0: not measured
    hbm_read_gbps: float = 0.0
    matmul_tflops: float = 0.0

    def padded_tokens(self, tokens: int) -> int:
        """The token count a prefill of `tokens` is computed at."""
        b = self.prefill_buckets
        if not b or tokens > b[-1]:
            return tokens
        return b[bisect.bisect_left(b, tokens)]

    def graphed_prefill(self, tokens: int) -> bool:
        """Does a prefill of `tokens` run as a graph (at most the last prefill bucket)?"""
        return bool(self.prefill_buckets) and tokens <= self.prefill_buckets[-1]

    def padded_adapters(self, n: int, kind: str, tokens: int) -> int:
        """The adapter count a forward of `n` distinct adapters is computed at: padded when
        it runs as a graph (decode; a graphed prefill)."""
        b = self.adapter_buckets
        graphed = kind == "decode" or self.graphed_prefill(tokens)
        if not b or not graphed or n > b[-1]:
            return n
        return b[bisect.bisect_left(b, n)]

    def padded_batch(self, n: int) -> int:
        """The batch size a decode step of `n` requests is computed at (its graph's)."""
        b = self.batch_buckets
        if not b or n > b[-1]:
            return n
        return b[bisect.bisect_left(b, n)]

    def decode_lora(self) -> LoraTable | None:
        """The decode LoRA table in the multi-rank form, whichever form the profile has."""
        if self.lora_ranks is not None:
            return self.lora_ranks
        if self.lora is None:
            return None
        return LoraTable((float(self.lora_rank),), self.lora.x, (self.lora.y,))


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    device: str
    model: str  # model shape name the compute tables were measured for
    command: str  # provenance: how the profile was produced
    pcie: PcieProfile
    compute: ComputeProfile

    def to_dict(self) -> dict[str, Any]:
        p, c = self.pcie, self.compute
        compute: dict[str, Any] = {
            "prefill": {"tokens": _ints(c.prefill.x), "seconds": _floats(c.prefill.y)},
            "decode": {
                "batch": _ints(c.decode.batch),
                "context": _ints(c.decode.context),
                "seconds": [_floats(row) for row in c.decode.seconds],
            },
        }
        if c.lora_ranks is not None:
            compute["lora"] = {
                "adapters": _ints(c.lora_ranks.adapters),
                "ranks": _ints(c.lora_ranks.ranks),
                "seconds": [_floats(row) for row in c.lora_ranks.seconds],
            }
        elif c.lora is not None:
            compute["lora"] = {
                "adapters": _ints(c.lora.x),
                "seconds": _floats(c.lora.y),
                "rank": int(c.lora_rank),
            }
        for key, axis, lp in (
            ("lora_prefill", "tokens", c.lora_prefill), ("lora_decode", "batch", c.lora_decode)
        ):
            if lp is not None:
                compute[key] = {
                    "ranks": _ints(lp.ranks),
                    axis: _ints(lp.tokens),
                    "adapters": _ints(lp.adapters),
                    "seconds": [[_floats(row) for row in plane] for plane in lp.seconds],
                }
        if c.launch_fraction:
            compute["launch_fraction"] = float(f"{c.launch_fraction:.4g}")
        if c.prefill_buckets:
            compute["prefill_buckets"] = _ints(c.prefill_buckets)
        if c.adapter_buckets:
            compute["adapter_buckets"] = _ints(c.adapter_buckets)
        if c.batch_buckets:
            compute["batch_buckets"] = _ints(c.batch_buckets)
        if c.attention_ms_per_mcell:
            compute["attention_ms_per_mcell"] = float(f"{c.attention_ms_per_mcell:.4g}")
        if c.forward_overhead_us:
            compute["forward_overhead_us"] = float(f"{c.forward_overhead_us:.4g}")
        if c.wake_us:
            compute["wake_us"] = float(f"{c.wake_us:.4g}")
        if c.decode_context != "mean":
            compute["decode_context"] = c.decode_context
        if c.run_speed_sd:
            compute["run_speed_sd"] = float(f"{c.run_speed_sd:.4g}")
        if c.attention_cells != "padded":
            compute["attention_cells"] = c.attention_cells
        if c.hbm_read_gbps:
            compute["hbm_read_gbps"] = float(f"{c.hbm_read_gbps:.4g}")
        if c.matmul_tflops:
            compute["matmul_tflops"] = float(f"{c.matmul_tflops:.4g}")
        return {
            "name": self.name,
            "device": self.device,
            "model": self.model,
            "command": self.command,
            "pcie": {
                "pinned": {"sizes_bytes": _ints(p.pinned.x), "seconds": _floats(p.pinned.y)},
                "pageable": {"sizes_bytes": _ints(p.pageable.x), "seconds": _floats(p.pageable.y)},
                "copy_overhead_us": float(p.copy_overhead_us),
                "pin_warm_gbps": float(p.pin_warm_gbps),
                "pin_cold_gbps": float(p.pin_cold_gbps),
                "disk_gbps": float(p.disk_gbps),
                "contention": float(p.contention),
                "pin_per_tensor_us": float(p.pin_per_tensor_us),
                **({} if not p.unpin_per_tensor_us else {"unpin_per_tensor_us": float(f"{p.unpin_per_tensor_us:.4g}")}),
                **({} if p.copy_gap_us is None else {"copy_gap_us": float(p.copy_gap_us)}),
                **({} if not p.issue_us else {"issue_us": float(f"{p.issue_us:.4g}")}),
                **({} if not p.issue_sd else {"issue_sd": float(f"{p.issue_sd:.4g}")}),
                **({} if not p.pin_tail_fraction else {
                    "pin_tail_fraction": float(f"{p.pin_tail_fraction:.4g}"),
                    "pin_tail_ms": float(f"{p.pin_tail_ms:.4g}"),
                }),
            },
            "compute": compute,
        }

    def to_yaml(self, path: str | Path) -> None:
        """Write atomically (temp file in the same folder, then rename)."""
        text = "# lorasim hardware profile (format: docs/hardware_profile.md)\n"
        text += yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)
        atomic_write_text(Path(path), text)

    @staticmethod
    def from_yaml(path: str | Path) -> HardwareProfile:
        p = Path(path)
        if not p.exists():
            raise ConfigError(str(p), "", "hardware profile file not found")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else ""
            raise ConfigError(str(p), where, f"not valid YAML: {getattr(e, 'problem', e)}") from None
        return HardwareProfile.from_dict(data, str(p))

    @staticmethod
    def from_dict(data: Any, source: str = "<profile>") -> HardwareProfile:
        r = _Reader(source)
        top = r.mapping(data, "")
        pcie = r.mapping(r.get(top, "", "pcie"), "pcie")
        comp = r.mapping(r.get(top, "", "compute"), "compute")
        lora = None
        lora_rank = 64
        lora_ranks = None
        lora_prefill = lora_decode = None
        if comp.get("lora") is not None:
            lora_m = r.mapping(comp["lora"], "compute.lora")
            if lora_m.get("ranks") is not None:
                lora_ranks = r.lora_table(lora_m, "compute.lora")
            else:
                lora = r.table(comp, "compute.lora", "adapters")
                lora_rank = int(r.number(lora_m.get("rank", 64), "compute.lora.rank", positive=True))
        if comp.get("lora_prefill") is not None:
            lora_prefill = r.lora_prefill(r.mapping(comp["lora_prefill"], "compute.lora_prefill"), "compute.lora_prefill")
        if comp.get("lora_decode") is not None:
            lora_decode = r.lora_prefill(
                r.mapping(comp["lora_decode"], "compute.lora_decode"), "compute.lora_decode", axis="batch"
            )
        return HardwareProfile(
            name=r.string(top, "", "name"),
            device=r.string(top, "", "device"),
            model=r.string(top, "", "model"),
            command=str(top.get("command") or ""),
            pcie=PcieProfile(
                pinned=r.table(pcie, "pcie.pinned", "sizes_bytes", positive_x=True),
                pageable=r.table(pcie, "pcie.pageable", "sizes_bytes", positive_x=True),
                copy_overhead_us=r.number(r.get(pcie, "pcie", "copy_overhead_us"), "pcie.copy_overhead_us"),
                pin_warm_gbps=r.number(r.get(pcie, "pcie", "pin_warm_gbps"), "pcie.pin_warm_gbps", positive=True),
                pin_cold_gbps=r.number(r.get(pcie, "pcie", "pin_cold_gbps"), "pcie.pin_cold_gbps", positive=True),
                disk_gbps=r.number(r.get(pcie, "pcie", "disk_gbps"), "pcie.disk_gbps", positive=True),
                contention=r.fraction(pcie.get("contention", 0.0), "pcie.contention"),
                pin_per_tensor_us=r.number(pcie.get("pin_per_tensor_us", 0.0), "pcie.pin_per_tensor_us"),
                unpin_per_tensor_us=r.number(pcie.get("unpin_per_tensor_us", 0.0), "pcie.unpin_per_tensor_us"),
                copy_gap_us=(
                    None if pcie.get("copy_gap_us") is None
                    else r.number(pcie["copy_gap_us"], "pcie.copy_gap_us")
                ),
                pin_tail_fraction=r.fraction(pcie.get("pin_tail_fraction", 0.0), "pcie.pin_tail_fraction"),
                pin_tail_ms=r.number(pcie.get("pin_tail_ms", 0.0), "pcie.pin_tail_ms"),
                issue_us=r.number(pcie.get("issue_us", 0.0), "pcie.issue_us"),
                issue_sd=r.number(pcie.get("issue_sd", 0.0), "pcie.issue_sd"),
            ),
            compute=ComputeProfile(
                prefill=r.table(comp, "compute.prefill", "tokens", positive_x=True),
                decode=r.grid(comp, "compute.decode"),
                lora=lora,
                lora_rank=lora_rank,
                lora_ranks=lora_ranks,
                lora_prefill=lora_prefill,
                lora_decode=lora_decode,
                launch_fraction=r.fraction(comp.get("launch_fraction", 0.0), "compute.launch_fraction"),
                forward_overhead_us=r.number(
                    comp.get("forward_overhead_us", 0.0), "compute.forward_overhead_us"
                ),
                prefill_buckets=tuple(
                    int(x) for x in r.axis(comp, "compute", "prefill_buckets", True, min_len=1)
                ) if comp.get("prefill_buckets") is not None else (),
                adapter_buckets=tuple(
                    int(x) for x in r.axis(comp, "compute", "adapter_buckets", True, min_len=1)
                ) if comp.get("adapter_buckets") is not None else (),
                batch_buckets=tuple(
                    int(x) for x in r.axis(comp, "compute", "batch_buckets", True, min_len=1)
                ) if comp.get("batch_buckets") is not None else (),
                wake_us=r.number(comp.get("wake_us", 0.0), "compute.wake_us"),
                run_speed_sd=r.number(comp.get("run_speed_sd", 0.0), "compute.run_speed_sd"),
                attention_ms_per_mcell=r.number(
                    comp.get("attention_ms_per_mcell", 0.0), "compute.attention_ms_per_mcell"
                ),
                decode_context=r.choice(
                    comp.get("decode_context", "mean"), "compute.decode_context", DECODE_CONTEXTS
                ),
                attention_cells=r.choice(
                    comp.get("attention_cells", "padded"), "compute.attention_cells", ATTENTION_CELLS
                ),
                hbm_read_gbps=r.number(comp.get("hbm_read_gbps", 0.0), "compute.hbm_read_gbps"),
                matmul_tflops=r.number(comp.get("matmul_tflops", 0.0), "compute.matmul_tflops"),
            ),
        )


def _ints(xs) -> list[int]:
    return [int(round(x)) for x in xs]


def _floats(xs) -> list[float]:
    """Six significant digits: beyond measurement precision, and keeps the YAML readable."""
    return [float(f"{x:.6g}") for x in xs]


class _Reader:
    """Validates raw YAML data, raising ConfigError(file, dotted key, expectation)."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(self.source, key or "(top level)", msg)

    def mapping(self, v: Any, key: str) -> dict:
        if not isinstance(v, dict):
            raise self.fail(key, f"expected a mapping, got {type(v).__name__}")
        return v

    def get(self, m: dict, prefix: str, name: str) -> Any:
        key = f"{prefix}.{name}" if prefix else name
        if name not in m or m[name] is None:
            raise self.fail(key, "missing; see docs/hardware_profile.md")
        return m[name]

    def string(self, m: dict, prefix: str, name: str) -> str:
        v = self.get(m, prefix, name)
        if not isinstance(v, str) or not v:
            raise self.fail(f"{prefix}.{name}" if prefix else name, f"expected a non-empty string, got {v!r}")
        return v

    def number(self, v: Any, key: str, positive: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(key, f"expected a number, got {v!r}")
        if v < 0 or (positive and v == 0):
            raise self.fail(key, f"expected a {'positive' if positive else 'non-negative'} number, got {v!r}")
        return float(v)

    def choice(self, v: Any, key: str, options: tuple[str, ...]) -> str:
        if v not in options:
            raise self.fail(key, f"expected one of {', '.join(options)}, got {v!r}")
        return v

    def fraction(self, v: Any, key: str) -> float:
        x = self.number(v, key)
        if x > 1:
            raise self.fail(key, f"expected a fraction in [0, 1], got {v!r}")
        return x

    def numbers(self, v: Any, key: str, positive: bool = False) -> tuple[float, ...]:
        if not isinstance(v, list) or not v:
            raise self.fail(key, f"expected a non-empty list of numbers, got {v!r}")
        return tuple(self.number(x, f"{key}[{i}]", positive) for i, x in enumerate(v))

    def axis(self, m: dict, prefix: str, name: str, positive: bool, min_len: int = 2) -> tuple[float, ...]:
        xs = self.numbers(self.get(m, prefix, name), f"{prefix}.{name}", positive)
        if len(xs) < min_len or any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
            what = "at least 2 strictly increasing values" if min_len > 1 else "strictly increasing values"
            raise self.fail(f"{prefix}.{name}", f"expected {what}, got {list(xs)}")
        return xs

    def rows(self, v: Any, key: str, n_rows: int, n_cols: int, what: str) -> tuple[tuple[float, ...], ...]:
        if not isinstance(v, list) or len(v) != n_rows:
            raise self.fail(key, f"expected {n_rows} rows ({what}), each of {n_cols} numbers")
        out = []
        for i, row in enumerate(v):
            vals = self.numbers(row, f"{key}[{i}]")
            if len(vals) != n_cols:
                raise self.fail(f"{key}[{i}]", f"expected {n_cols} values, got {len(vals)}")
            out.append(vals)
        return tuple(out)

    def lora_table(self, m: dict, key: str) -> LoraTable:
        ranks = self.axis(m, key, "ranks", True, min_len=1)
        ads = self.axis(m, key, "adapters", False)
        secs = self.rows(self.get(m, key, "seconds"), f"{key}.seconds", len(ranks), len(ads), "one per rank")
        return LoraTable(ranks, ads, secs)

    def lora_prefill(self, m: dict, key: str, axis: str = "tokens") -> LoraPrefillTable:
        ranks = self.axis(m, key, "ranks", True, min_len=1)
        toks = self.axis(m, key, axis, True)
        ads = self.axis(m, key, "adapters", False)
        planes = self.get(m, key, "seconds")
        if not isinstance(planes, list) or len(planes) != len(ranks):
            raise self.fail(f"{key}.seconds", f"expected {len(ranks)} planes (one per rank) of {len(toks)} x {len(ads)}")
        secs = tuple(
            self.rows(p, f"{key}.seconds[{i}]", len(toks), len(ads), f"one per {axis} value")
            for i, p in enumerate(planes)
        )
        return LoraPrefillTable(ranks, toks, ads, secs)

    def table(self, parent: dict, key: str, xname: str, positive_x: bool = False) -> Table:
        m = self.mapping(self.get(parent, *key.rsplit(".", 1)), key)
        xs = self.axis(m, key, xname, positive_x)
        ys = self.numbers(self.get(m, key, "seconds"), f"{key}.seconds")
        if len(ys) != len(xs):
            raise self.fail(f"{key}.seconds", f"expected {len(xs)} values (one per {xname}), got {len(ys)}")
        return Table(xs, ys)

    def grid(self, parent: dict, key: str) -> Grid:
        m = self.mapping(self.get(parent, *key.rsplit(".", 1)), key)
        bs = self.axis(m, key, "batch", True)
        cs = self.axis(m, key, "context", False)
        rows = self.get(m, key, "seconds")
        if not isinstance(rows, list) or len(rows) != len(bs):
            raise self.fail(f"{key}.seconds", f"expected {len(bs)} rows (one per batch), each of {len(cs)} numbers (one per context)")
        grid = []
        for i, row in enumerate(rows):
            vals = self.numbers(row, f"{key}.seconds[{i}]")
            if len(vals) != len(cs):
                raise self.fail(f"{key}.seconds[{i}]", f"expected {len(cs)} values (one per context), got {len(vals)}")
            grid.append(vals)
        return Grid(bs, cs, tuple(grid))
