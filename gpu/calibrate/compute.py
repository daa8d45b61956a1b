"""Forward times of the harness's own model (gpu.model): the `compute` tables of a profile.

Each forward is timed alone with a synchronize on both sides, as the CudaDriver runs them,
through the driver's own paths on a paged KV cache (gpu.kv_cache): gpu.decode_graphs (a
whole decode step as one CUDA graph per batch bucket) and gpu.prefill_graphs (piecewise
graphs, the paged varlen attention eager between them). Prefill over total tokens (items of
at most 512 tokens, context 0) and decode step over batch x context (median of `reps`;
written non-decreasing in tokens, batch and context as their lower envelope: timing noise
only adds time, see `fit.lower_envelope`). LoRA (SGMV, gpu.lora) extra time at several
ranks: over batch x distinct adapters for a decode step, and over total tokens x distinct
adapters for a prefill; each measured as interleaved pairs (step without LoRA, same step
with LoRA) so drift cancels. Also the launch fraction (how long `forward()` takes to return
over how long the forward takes to finish; near 1 when launch-bound) and the prefill
attention coefficient per causal query-key cell."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gpu.adapters import flat_layout, ordered_targets
from gpu.calibrate.fit import fit_lora_prefill, isotonic, monotone_grid
from gpu.calibrate.timer import Timer
from gpu.decode_graphs import DecodeRunner
from gpu.kernels import LoraMeta
from gpu.kv_cache import PagedKV
from gpu.lora import LoraSlots
from gpu.model import LlamaModel, StepInput, default_dtype
from gpu.prefill_graphs import DEFAULT_MAX_TOKENS, PrefillRunner
from sim.core.model import ALL_TARGETS, ModelShape
from sim.hw.compute import CALIBRATION_ITEM
from sim.hw.profile import LoraPrefillTable


def _prefill_input(
    tokens: int, vocab: int, device: torch.device | str, row0: int = 0, item: int = 512,
    lora: LoraMeta | None = None,
) -> StepInput:
    lens = [item] * (tokens // item) + ([tokens % item] if tokens % item else [])
    toks = torch.randint(0, vocab, (tokens,), device=device)
    return StepInput(toks, list(range(row0, row0 + len(lens))), [0] * len(lens), lens, lora)


@dataclass
class ComputeTables:
    prefill_tokens: list[int]  # the grid's sizes and the first eager one (with_eager_edge)
    prefill: list[float]
    decode: list[list[float]]
    lora: LoraPrefillTable  # decode: (rank, batch, adapters)
    lora_prefill: LoraPrefillTable | None
    raw: dict = field(default_factory=dict)  # before the monotone fit (for the log)
    launch_fraction: float = 0.0
    attention_ms_per_mcell: float = 0.0


def with_eager_edge(tokens: list[int], graph_tokens: int) -> list[int]:
    """`tokens` plus the first eager size (graph_tokens + 1) when the grid spans the graph
    limit: above it a prefill runs eagerly and costs more at the same size, and a table
    interpolated from the last graphed size to the next eager one underrates every prefill
    between them (round 8, H200: 2049 tokens eager 80.1 ms, 2048 graphed 73.6 ms)."""
    edge = graph_tokens + 1
    if graph_tokens <= 0 or edge in tokens or not any(t > edge for t in tokens):
        return list(tokens)
    return sorted([*tokens, edge])


def measure_compute(
    shape: ModelShape,
    device: torch.device,
    grid: dict,
    *,
    progress: Callable[[str], None] = print,
    eager_decode: bool = False,
    prefill_graph_tokens: int = DEFAULT_MAX_TOKENS,
) -> ComputeTables:
    dtype = default_dtype(device)
    timer = Timer(device)
    t_start = time.perf_counter()

    def lap(done: str) -> None:  # where calibration's minutes go (target: 5 for a full run)
        progress(f"  elapsed {time.perf_counter() - t_start:.0f} s into the forwards: {done}")

    reps = grid.get("compute_reps", grid["reps"])
    grid = {  # on CPU too: the same pieces, padded to buckets up to the limit
        **grid,
        "prefill": with_eager_edge(grid["prefill"], prefill_graph_tokens),
        "prefill_lora_tokens": with_eager_edge(grid["prefill_lora_tokens"], prefill_graph_tokens),
    }
    model = LlamaModel(shape, device=device, dtype=dtype, lora=None)
    p_items = max(grid["prefill_lora_adapters"])
    max_ctx = max(
        max(grid["context"]) + 2,
        min(max(grid["prefill"]), 512),
        min(max(grid["prefill_lora_tokens"]), 512),  # LoRA prefill requests: <= 512 tokens
    )
    rows = max(
        max(grid["batch"]), -(-max(grid["prefill"]) // 512), 32, p_items,
        -(-max(grid["prefill_lora_tokens"]) // 512), max(grid["lora_batch"]),
    )
    kv = PagedKV(shape, rows, max_ctx, device, dtype)
    kv.take_all_rows()  # inputs address rows 0.. directly, each with pages for max_ctx tokens

    def decode_input(b: int, c: int, lora=None) -> StepInput:
        return StepInput(
            torch.randint(0, shape.vocab, (b,), device=device),
            list(range(b)),
            [c] * b,
            [1] * b,
            lora,
        )

    max_b = max(max(grid["batch"]), min(32, rows))

    def runners():
        """Decode and prefill runners for the model's current LoRA slots (graphs keep the
        buffers they were captured with), as the CudaDriver's gpu.core builds them. A new
        graph pool each time: a pool whose graphs were all freed cannot be captured into."""
        pool = torch.cuda.graph_pool_handle() if timer.cuda else None
        dec = None if eager_decode else DecodeRunner(model, kv, max_batch=min(max_b, kv.rows), pool=pool)
        # prefill graphs hold as many segments as the prefill plane has adapters, as the
        # driver's hold max_loras_per_batch: the SGMV tile grid (and its split-K) is sized by
        # that capacity, and sized for the 64 slots of the decode plane it priced the H100's
        # 512-token prefill LoRA at 11.3 ms instead of 7.1 (P50 TTFT +13 % in validation)
        seg_cap = max(grid["prefill_lora_adapters"])
        return dec, PrefillRunner(model, kv, max_tokens=prefill_graph_tokens, max_adapters=seg_cap, pool=pool)

    runner, prefiller = runners()

    def run_prefill(inp: StepInput, tok_slots: list[int] | None = None):
        """One prefill the driver's way (PrefillRunner: graphs up to prefill_graph_tokens)."""
        return prefiller.run(inp, tok_slots or [-1] * len(inp.tokens)).argmax(-1)

    def stepping(b: int, c: int, tok_slots: list[int] | None = None):
        """Consecutive decode steps whose context grows by one, as the driver runs them (a
        shape-keyed cache that only ever sees one context would hide per-shape costs). Through
        the driver's decode path: gpu.decode_graphs (prepare + one graph replay), or with
        eager_decode one model.forward with its SGMV table (LoraSlots.meta) built per step.
        `tok_slots`: the slot of each request's adapter in model.lora (None: no LoRA)."""
        k = iter(range(1 << 30))
        slots_of = tok_slots if tok_slots is not None else [-1] * b
        if runner is not None:

            def graph_step():
                runner.step()

            # the driver prepares once per run of steps (a batch change), then steps: the
            # host's table building is not a step's cost (Timer runs `prepare` untimed).
            # Timed with each step, one rank-64 adapter at batch 1 read +1.78 ms on an H200
            # where the steps alone cost +1.07 ms (benchmarks/bench_harness.py), and the
            # simulator priced the validation runs' TPOT 10-17 % over the GPU's
            graph_step.prepare = lambda: runner.prepare(  # type: ignore[attr-defined]
                list(range(b)), [c + next(k) % 2] * b, slots_of
            )
            return graph_step
        return lambda: model.forward(
            decode_input(b, c + next(k) % 2, model.lora.meta(slots_of) if model.lora else None),
            kv,
        ).argmax(-1)

    b_int, c_int = min(8, max_b), min(512, max(grid["context"]))

    def between() -> None:
        """One untimed decode step of a few requests before each timed prefill (Timer.median)."""
        timer.once(stepping(b_int, c_int))

    prefill_raw = []
    for t in grid["prefill"]:
        inp = _prefill_input(t, shape.vocab, device)
        prefill_raw.append(
            timer.median(lambda inp=inp: run_prefill(inp), reps, warmup=2, between=between)
        )
        progress(f"  prefill {t:>6} tokens: {prefill_raw[-1] * 1e3:8.2f} ms")
    prefill = isotonic(prefill_raw)
    # at the sizes prefills usually have (the share falls with size: round 6 read 0.99 over
    # 64-192 tokens); the quick grid has none there and uses its own
    sizes = [t for t in grid["prefill"] if 256 <= t <= 1024] or grid["prefill"][:4]
    launch = measure_launch_fraction(
        timer, run_prefill, [_prefill_input(t, shape.vocab, device) for t in sizes], reps,
    )
    progress(f"  launch fraction {launch:.3f} (CPU launch / GPU time of a prefill)")
    attention = measure_attention(
        timer, run_prefill, grid["prefill"], prefill_graph_tokens, shape.vocab, device, reps, between,
        max_item=kv.max_ctx,
    )
    progress(
        f"  prefill attention {attention:.2f} ms per million causal query-key cells"
        " (eager prefills; each request's new tokens over its own keys)"
    )
    lap("prefill table, launch fraction, attention")

    decode_raw = []
    for b in grid["batch"]:
        row = []
        for c in grid["context"]:
            row.append(timer.median(stepping(b, c), reps, warmup=2))
        decode_raw.append(row)
        progress(f"  decode batch {b:>4}: " + " ".join(f"{x * 1e3:7.2f}" for x in row) + " ms")
    decode = monotone_grid(decode_raw)
    if decode != decode_raw:
        progress("  decode (monotone lower envelope over context and batch):")
        for b, row in zip(grid["batch"], decode, strict=True):
            progress(f"    batch {b:>4}: " + " ".join(f"{x * 1e3:7.2f}" for x in row) + " ms")
    lap("decode grid")

    # LoRA extra, per rank: slots of that rank on the same model, over a KV cache only as
    # large as these forwards need (decode at context c, prefill items of <= 512 tokens), so
    # that up to 64 adapters' slots fit beside the model where the decode grid's cache was
    c = min(256, max(grid["context"]))
    runner = prefiller = None
    del kv
    if timer.cuda:
        torch.cuda.empty_cache()
    max_b = max(max(grid["lora_batch"]), max(grid["adapters"]), p_items, b_int)
    lora_rows = max(max_b, -(-max(grid["prefill_lora_tokens"]) // 512), min(32, rows))
    lora_ctx = max(c, c_int) + 2  # `between`'s untimed decode steps run at c_int
    kv = PagedKV(shape, lora_rows, max(lora_ctx, min(max(grid["prefill_lora_tokens"]), 512)), device, dtype)
    kv.take_all_rows()
    lreps, preps = grid.get("lora_reps", reps), grid.get("prefill_lora_reps", reps)
    dec_planes, pre_planes, raw_lora = [], [], {}
    ranks = sorted(set(grid["lora_ranks"]) | set(grid["prefill_lora_ranks"]))
    caps = grid.get("lora_max_adapters", {})
    for rank in ranks:
        # the last rank's slots and the graphs that read them go before this rank's are sized
        model.lora = slots = runner = prefiller = None
        if timer.cuda:
            torch.cuda.empty_cache()
        most = min(max(grid["adapters"]), caps.get(rank, max(grid["adapters"])),
                   slots_that_fit(shape, rank, device, dtype))
        measured = [n for n in grid["adapters"] if n <= most]
        slots = LoraSlots.random(shape, max(most, p_items, 1), rank, device, dtype)
        model.lora = slots
        runner, prefiller = runners()
        if rank in grid["lora_ranks"]:

            def cell(b: int, n: int) -> float:
                if n == 0:
                    return 0.0
                bb = max(b, n)  # n adapters need n requests: that cell is measured at n
                return max(0.0, timer.paired_extra(
                    stepping(bb, c), stepping(bb, c, [i % n for i in range(bb)]), lreps, warmup=2,
                ))

            dplane, spread = lora_passes(cell, grid["lora_batch"], measured, grid.get("lora_passes", 1))
            if len(measured) < len(grid["adapters"]):
                dplane = [extend_linearly(measured, row, grid["adapters"]) for row in dplane]
                progress(f"  lora decode rank {rank:>3}: {', '.join(str(n) for n in grid['adapters'][len(measured):])}"
                         f" adapters not measured (their slots do not fit beside the model): "
                         f"extrapolated linearly from {measured[-2]} and {measured[-1]}")
            # not forced monotone in adapters: timing noise is not, and the simulator
            # interpolates what was measured
            for b, row in zip(grid["lora_batch"], dplane, strict=True):
                progress(
                    f"  lora decode extra, rank {rank:>3}, batch {b:>3}, vs adapters: "
                    + " ".join(f"{n}:{x * 1e3:.2f}ms" for n, x in zip(grid["adapters"], row, strict=True))
                )
            if spread is not None:
                progress(f"  lora decode rank {rank:>3}: passes differ by up to {spread[0] * 1e3:.2f} ms "
                         f"(batch {spread[1]}, {spread[2]} adapters); the table holds their median")
            raw_lora[rank] = dplane
            dec_planes.append(dplane)
            lap(f"LoRA decode plane, rank {rank}")
        if rank in grid["prefill_lora_ranks"]:
            plane = []
            for t in grid["prefill_lora_tokens"]:
                prow = []
                for n in grid["prefill_lora_adapters"]:
                    # n requests for n adapters (one for one: the light-load prefill), none
                    # longer than 512 tokens, as the base prefill table's inputs
                    item = -(-t // max(n, -(-t // 512)))
                    n_items = -(-t // item)
                    tok_slots = [i % n for i in range(n_items) for _ in range(item)][:t]
                    base_in = _prefill_input(t, shape.vocab, device, item=item)
                    prow.append(max(0.0, timer.paired_extra(
                        lambda base_in=base_in: run_prefill(base_in),
                        lambda base_in=base_in, tok_slots=tok_slots: run_prefill(base_in, tok_slots),
                        preps,
                        between=between,
                    )))
                plane.append(prow)
                progress(
                    f"  lora prefill extra, rank {rank:>3}, {t:>5} tokens, vs adapters: "
                    + " ".join(
                        f"{n}:{x * 1e3:.2f}ms"
                        for n, x in zip(grid["prefill_lora_adapters"], prow, strict=True)
                    )
                )
            pre_planes.append(fit_lora_prefill(plane))
            lap(f"LoRA prefill plane, rank {rank}")
        model.lora = None
        runner = prefiller = None
    if timer.cuda:
        torch.cuda.empty_cache()
    lora = LoraPrefillTable(
        tuple(float(r) for r in grid["lora_ranks"]),
        tuple(float(b) for b in grid["lora_batch"]),
        tuple(float(n) for n in grid["adapters"]),
        tuple(tuple(tuple(r) for r in plane) for plane in dec_planes),
    )
    lora_prefill = LoraPrefillTable(
        tuple(float(r) for r in grid["prefill_lora_ranks"]),
        tuple(grid["prefill_lora_tokens"]),
        tuple(grid["prefill_lora_adapters"]),
        tuple(tuple(tuple(r) for r in plane) for plane in pre_planes),
    )
    raw = {"prefill": prefill_raw, "decode": decode_raw, "lora": raw_lora}
    return ComputeTables(grid["prefill"], prefill, decode, lora, lora_prefill, raw, launch, attention)


def slots_that_fit(shape: ModelShape, rank: int, device: torch.device | str, dtype: torch.dtype,
                   headroom: float = 0.85) -> int:
    """How many all-module slots of `rank` fit in the device memory now free, with room to
    spare for the graphs' activations; unbounded off CUDA. Why: rank 256's 1.34 GB slots
    fit 32 beside the model on an H200's 141 GB but not on an H100's 80 GB."""
    device = torch.device(device)
    if device.type != "cuda":
        return 1 << 30
    free, _ = torch.cuda.mem_get_info(device)
    _, numel = flat_layout(shape, rank, ordered_targets(ALL_TARGETS))
    return int(free * headroom) // (numel * torch.finfo(dtype).bits // 8)


def extend_linearly(xs: list[int], ys: list[float], to: list[int]) -> list[float]:
    """ys over xs, then the values at `to`'s further points on the line through the last two."""
    (x0, y0), (x1, y1) = (xs[-2], ys[-2]), (xs[-1], ys[-1])
    return list(ys) + [max(0.0, y1 + (x - x1) * (y1 - y0) / (x1 - x0)) for x in to[len(xs):]]


def lora_passes(
    cell: Callable[[int, int], float], batches: list[int], adapters: list[int], passes: int
) -> tuple[list[list[float]], tuple[float, int, int] | None]:
    """A (batch x adapters) plane measured `passes` times, batches ascending then descending
    by turns, each cell the median over passes, and the largest spread between passes (value,
    batch, adapters; None for one pass). Why: a LoRA decode step is ~1,100 tiny kernels whose
    extra over the base step hides partly under the host's launches, so a slow spell of the
    host lowers a whole row of cells (round 10: rank 64, batch 1 read 3.8 ms in one
    calibration, 6.1 in another and 5.3-6.0 in gpu.diag_lora; the runs pay ~6.2)."""
    runs: dict[tuple[int, int], list[float]] = {}
    for k in range(passes):
        seen: dict[tuple[int, int], float] = {}  # a cell with more adapters than requests
        for b in batches if k % 2 == 0 else batches[::-1]:  # is measured at n requests:
            for n in adapters:  # once a pass, whatever batch asks for it
                key = (max(b, n), n)
                if key not in seen:
                    seen[key] = cell(b, n)
                runs.setdefault((b, n), []).append(seen[key])
    plane = [[statistics.median(runs[b, n]) for n in adapters] for b in batches]
    if passes < 2:
        return plane, None
    (b, n), v = max(runs.items(), key=lambda kv: max(kv[1]) - min(kv[1]))
    return plane, (max(v) - min(v), b, n)


def measure_attention(
    timer: Timer, run_prefill: Callable[[StepInput], object], sizes: list[int], graph_tokens: int,
    vocab: int, device: torch.device, reps: int, between: Callable[[], object],
    max_item: int = 2 * CALIBRATION_ITEM,
) -> float:
    """ms per million causal query-key cells of a prefill's attention
    (`compute.attention_ms_per_mcell` with `compute.attention_cells: causal`): the paged
    varlen kernel does each request's new tokens over its own keys, so the same tokens as
    fewer, longer requests cost more. Timed on the largest eager size of the grid up to 4096
    tokens (0 when the grid has none) as requests of up to `max_item` tokens (the KV rows'
    length) vs requests of half calibration's 512, as paired differences. Clipped at 0 (noise)."""
    from sim.core.effects import Batch, BatchItem
    from sim.hw.compute import attention_cells

    eager = [t for t in sizes if graph_tokens < t <= 4096] if graph_tokens else []
    if not eager:
        return 0.0
    t = max(eager)
    short = max(1, min(t, CALIBRATION_ITEM) // 2)
    long = min(t, max_item)
    if long <= short:
        return 0.0
    small, big = _prefill_input(t, vocab, device, item=short), _prefill_input(t, vocab, device, item=long)
    d = timer.paired_extra(lambda: run_prefill(small), lambda: run_prefill(big), reps, between=between)

    def cells(inp: StepInput) -> float:
        return attention_cells(Batch("prefill", tuple(
            BatchItem(i, None, -1, 0, n, 0) for i, n in enumerate(inp.new)
        )), "causal")

    return max(0.0, d * 1e3 / ((cells(big) - cells(small)) * 1e-6))


def measure_launch_fraction(
    timer: Timer, fwd: Callable[[StepInput], object], inputs: list[StepInput], reps: int
) -> float:
    """Median over `inputs` x `reps` of (time for `fwd` to return) / (time until the device
    is done), in [0, 1]. On CPU a forward returns when it is done: 1."""
    ratios = []
    for inp in inputs:
        fwd(inp)  # warm-up
        for _ in range(reps):
            timer.sync()
            t0 = time.perf_counter()
            fwd(inp)
            t1 = time.perf_counter()
            timer.sync()
            t2 = time.perf_counter()
            ratios.append((t1 - t0) / (t2 - t0) if t2 > t0 else 1.0)
    return min(1.0, max(0.0, statistics.median(ratios))) if ratios else 0.0
