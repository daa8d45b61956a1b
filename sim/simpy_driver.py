"""SimPy driver: executes the engine's effects on simulated time.

PCIe is one FIFO copy channel shared by every stream (`Resource(capacity=1)`); the compute
stream and the load stream are FIFO queues too, so a blocking copy delays the forwards queued
behind it while a load-stream copy only competes for PCIe. A pin-per-load copy first spends
host CPU time pinning (outside PCIe); a disk miss first reads the file. Then the scheduler
issues the copies (`pcie.issue_us` each), while the DMA runs behind the first. That host work runs
on the scheduler's thread by default (`hardware.host_work: scheduler`), as in SGLang and the
CUDA driver: the engine issues nothing else meanwhile, though the GPU finishes what it has
queued; with `background` it only delays its own copy. Once a pin-per-load's copy is done, the
scheduler frees its temporary pinned copies where it next looks at the loads, as the CUDA driver
does (`pcie.unpin_per_tensor_us` a tensor, a `release` row). An idle scheduler reacts
`hardware.wake_us` after what woke it, so arrivals microseconds apart (bursts) share a batch
as they do in a real serving loop. A prefill launched ahead (overlap) holds the scheduler for
`launch_fraction` of its GPU time: the CPU cost of launching its kernels. Every forward
first holds the scheduler `forward_overhead_s` (preparing inputs, launching) before the GPU
can start it: the host gap a real loop leaves between back-to-back forwards. Decode runs are
fast-forwarded: one SimPy timeout covers many steps, cut short at `until` or, when asked, at
the first load completion. A decode is slowed by copy contention if a load-stream copy runs when
it starts; one started while it runs (a policy's copy at arrival) does not slow it (the measured
H200 contention is 1.9 %).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from typing import Any

import numpy as np
import simpy

from sim.core.effects import (
    Evict,
    Forward,
    ForwardResult,
    Idle,
    LoadJob,
    Now,
    PollForwards,
    PollLoads,
    ReadHost,
    StartLoad,
    WaitForward,
    WaitLoad,
)
from sim.errors import DeadlockError
from sim.timeline_log import TimelineLog


class SimPyDriver:
    def __init__(self, hardware: Any):
        self.hw = hardware
        self.env = simpy.Environment()
        self.pcie = simpy.Resource(self.env, capacity=1)
        self.compute = simpy.Resource(self.env, capacity=1)
        self.load_stream = simpy.Resource(self.env, capacity=1)
        # per load until the engine has polled it (then only its end time is kept: a day-long
        # run issues hundreds of thousands of loads)
        self.load_done: dict[int, simpy.Event] = {}
        self._load_end: dict[int, float] = {}
        self._loads_pending: dict[int, simpy.Event] = {}
        # per load: its DMA's (start, duration, layers), for forwards that wait layer by layer
        self.dma_started: dict[int, simpy.Event] = {}
        self.unpolled: list[int] = []
        self.fwd_done: dict[int, simpy.Event] = {}
        self.fwd_result: dict[int, ForwardResult] = {}
        self.fwd_unpolled: list[int] = []
        self._ticket = 0
        self._wake = self.env.event()
        self._side_copies = 0  # load-stream copies on PCIe now (for contention)
        self._compute_free_at = 0.0  # when the compute stream last finished its work
        # pin_per_load loads whose temporary pinned copies the scheduler has yet to free:
        # lid -> (seconds, adapter name)
        self._to_release: dict[int, tuple[float, str]] = {}
        self._host_on_scheduler = getattr(hardware, "host_work", "scheduler") == "scheduler"
        self._wake_s = float(getattr(hardware, "wake_s", 0.0))
        self._launch_frac = float(getattr(hardware, "launch_fraction", 0.0))
        self._fwd_overhead = float(getattr(hardware, "forward_overhead_s", 0.0))
        self._noise = getattr(hardware, "noise", None)
        self._speed = self._noise.speed() if self._noise is not None else 1.0
        self.timeline = TimelineLog()
        self.counters: dict[str, float] = {"stall_s": 0.0, "pin_s": 0.0, "disk_s": 0.0, "layer_wait_s": 0.0}
        self.error: BaseException | None = None

    # -- public ------------------------------------------------------------------------------
    def run(self, engine) -> None:
        proc = self.env.process(self._main(engine.run()))
        self.env.run(until=proc)
        if self.error is not None:
            raise self.error

    # -- internals ---------------------------------------------------------------------------
    def _main(self, gen: Generator) -> Generator:
        result: Any = None
        if self._wake_s > 0:  # the scheduler starts idle: it too sees t=0 arrivals late
            yield self.env.timeout(self._wake_s)
        while True:
            try:
                eff = gen.send(result)
            except StopIteration:
                return
            except BaseException as e:  # surface engine errors after SimPy unwinds
                self.error = e
                return
            result = yield from self._handle(eff)

    def _kick(self) -> None:
        if not self._wake.triggered:
            self._wake.succeed()

    def _handle(self, eff: Any) -> Generator:
        env = self.env
        if isinstance(eff, Now):
            return env.now
        if isinstance(eff, PollLoads):
            yield from self._release_done()
            out, self.unpolled = tuple(self.unpolled), []
            for lid in out:  # finished and seen: nothing waits on its events any more
                self.load_done.pop(lid, None)
                self.dma_started.pop(lid, None)
            return out
        if isinstance(eff, PollForwards):
            out, self.fwd_unpolled = tuple(self.fwd_unpolled), []
            return out
        if isinstance(eff, StartLoad):
            job = eff.job
            ev = env.event()
            self.load_done[job.lid] = self._loads_pending[job.lid] = ev
            self.dma_started[job.lid] = env.event()
            cost = self.hw.copy.load_time(job)
            tail = getattr(self.hw, "pin_tail", None)
            if tail is not None and cost.pin_s > 0:
                extra = tail.extra(job.lid)
                cost = replace(cost, pin_s=cost.pin_s + extra)
            if self._noise is not None and self._noise.active and cost.issue_s > 0:
                cost = replace(cost, issue_s=cost.issue_s * self._noise.issue(job.lid))
            t_host = env.now
            if self._host_on_scheduler:
                yield from self._host_work(job, cost)
            env.process(self._load(job, ev, cost, t_host))
            if self._host_on_scheduler and cost.release_s > 0:
                self._to_release[job.lid] = (cost.release_s, str(job.adapter.name))
            if self._host_on_scheduler and cost.issue_s > 0:
                # the scheduler issues the copies one by one (the DMA runs behind the first)
                yield env.timeout(cost.issue_s)
                self.timeline.append(("host", env.now - cost.issue_s, env.now, "issue", str(job.adapter.name)))
            yield from self._release_done()
            return None
        if isinstance(eff, WaitLoad):
            ev = self.load_done.get(eff.lid)
            if ev is not None and not ev.processed:
                yield ev
            yield from self._release_done()
            return self._load_end[eff.lid]
        if isinstance(eff, Forward):
            if self._fwd_overhead > 0:
                yield env.timeout(self._fwd_overhead)
            t = self._ticket
            self._ticket += 1
            ev = env.event()
            self.fwd_done[t] = ev
            env.process(self._forward(eff, t, ev))
            if not eff.wait:
                if self._launch_frac > 0 and eff.batch.kind == "prefill":
                    # the scheduler launches the kernels before it can look at anything else
                    yield env.timeout(self._launch_frac * self.hw.compute.forward_time(eff.batch))
                return t
            yield ev
            self.fwd_unpolled.remove(t)
            del self.fwd_done[t]
            return self.fwd_result.pop(t)
        if isinstance(eff, WaitForward):
            ev = self.fwd_done[eff.ticket]
            if not ev.processed and eff.until is not None and eff.until > env.now:
                yield env.any_of([ev, env.timeout(eff.until - env.now)])
                if not ev.triggered:  # time reached `until` first; the forward goes on
                    if self._wake_s > 0:
                        yield env.timeout(self._wake_s)
                    return None
            elif not ev.triggered and eff.until is not None:
                return None
            if not ev.processed:
                yield ev
            if eff.ticket in self.fwd_unpolled:
                self.fwd_unpolled.remove(eff.ticket)
            del self.fwd_done[eff.ticket]
            return self.fwd_result.pop(eff.ticket)
        if isinstance(eff, Evict):
            return None  # freeing pages takes no modelled time
        if isinstance(eff, ReadHost):
            if eff.adapter is None:
                return env.now  # freeing host memory takes no modelled time
            # the scheduler's thread reads the file; the GPU finishes what it has queued
            dt = self.hw.copy.read_time(eff.adapter.nbytes, eff.pinned)
            yield env.timeout(dt)
            self.timeline.append(("disk", env.now - dt, env.now, "reload", str(eff.adapter.name)))
            self.counters["disk_s"] += dt
            return env.now
        if isinstance(eff, Idle):
            yield from self._release_done()
            if self.unpolled or self.fwd_unpolled:
                return env.now
            self._wake = env.event()  # anything finished earlier is already in unpolled
            events = [self._wake] if self._pending_work() else []
            if eff.until is not None:
                events.append(env.timeout(max(0.0, eff.until - env.now)))
            if not events:
                raise DeadlockError(
                    f"idle at t={env.now:.3f}s with nothing in flight and no arrivals to come"
                )
            yield env.any_of(events)
            if self._wake_s > 0:
                yield env.timeout(self._wake_s)
            yield from self._release_done()
            return env.now
        raise TypeError(f"unknown effect {eff!r}")

    def _release_done(self) -> Generator:
        """Free the temporary pinned copies of the pin_per_load loads that have finished, on the
        scheduler's thread, wherever the CUDA driver collects finished loads (polls, waits,
        idling, after issuing a load): torch records a CUDA event per freed tensor, ~1.6 ms
        for a per-module load's 448 (round 13: the harness's next forward after a blocking
        load's prefill started that much later, and the simulator's did not)."""
        done = [lid for lid in self._to_release if lid in self._load_end]
        for lid in done:
            secs, name = self._to_release.pop(lid)
            yield self.env.timeout(secs)
            self.timeline.append(("host", self.env.now - secs, self.env.now, "release", name))

    def _pending_work(self) -> bool:
        return bool(self._loads_pending) or any(not e.triggered for e in self.fwd_done.values())

    def _host_work(self, job: LoadJob, cost) -> Generator:
        """Disk read (host-tier miss), then pinning a temporary copy (pin_per_load)."""
        env = self.env
        if cost.disk_s > 0:
            yield env.timeout(cost.disk_s)
            self.timeline.append(("disk", env.now - cost.disk_s, env.now, job.kind, str(job.adapter.name)))
            self.counters["disk_s"] += cost.disk_s
        if cost.pin_s > 0:
            yield env.timeout(cost.pin_s)
            self.timeline.append(("host", env.now - cost.pin_s, env.now, "pin", str(job.adapter.name)))
            self.counters["pin_s"] += cost.pin_s

    def _load(self, job: LoadJob, done: simpy.Event, cost, t_host: float) -> Generator:
        env = self.env
        stream = self.compute if job.stream == "compute" else self.load_stream
        with stream.request() as s:
            yield s
            t_stream = env.now
            if self._host_on_scheduler:
                # the compute lane was blocked from the start of the host work, or from when it
                # ran out of queued work if that came later (as the CUDA driver's rows)
                t_stream = min(t_stream, max(t_host, self._compute_free_at))
            else:
                yield from self._host_work(job, cost)
            with self.pcie.request() as p:
                yield p
                t0 = env.now
                # a copy that is not `layered` arrives as a whole: one "layer"
                layers = max(1, job.adapter.n_tensors // max(1, 2 * len(job.adapter.targets))) if job.layered else 1
                self.dma_started[job.lid].succeed((t0, cost.dma_s, layers))
                side = job.stream == "load"
                self._side_copies += side
                yield env.timeout(cost.dma_s)
                self._side_copies -= side
                self.timeline.append(("pcie", t0, env.now, job.kind, str(job.adapter.name)))
            if job.stream == "compute":
                self.counters["stall_s"] += env.now - t_stream
                self.timeline.append(("compute", t_stream, env.now, "blocking", str(job.adapter.name)))
                self._compute_free_at = env.now
        self.unpolled.append(job.lid)
        self._load_end[job.lid] = env.now
        del self._loads_pending[job.lid]
        done.succeed(env.now)
        self._kick()

    def _forward(self, eff: Forward, ticket: int, done: simpy.Event) -> Generator:
        env = self.env
        batch = eff.batch
        with self.compute.request() as c:
            yield c
            start = env.now
            slow = (1.0 + (self.hw.contention if self._side_copies else 0.0)) * self._speed
            if batch.kind == "prefill":
                t = self.hw.compute.forward_time(batch) * slow
                end = start + t
                for lid in eff.layer_waits:
                    end = max(end, (yield from self._layer_ready(lid, t)))
                self.counters["layer_wait_s"] += end - (start + t)  # the GPU idle inside it
                yield env.timeout(end - env.now)
                steps: tuple[float, ...] = ()
            else:
                durs = np.asarray(self.hw.compute.decode_times(batch, max(1, eff.max_steps))) * slow
                ends = start + np.cumsum(durs)
                k = len(ends)
                if eff.until is not None and eff.until > start:
                    # steps that *start* before `until` run; the scheduler looks again after
                    k = min(k, int(np.searchsorted(ends, eff.until, side="left")) + 1)
                elif eff.until is not None:
                    k = 1
                if eff.stop_on_load and k > 1 and self.unpolled:
                    # a copy finished after the scheduler last looked (during the issuing or
                    # the host gap): the CUDA driver checks between steps whether any load is
                    # done, so it stops after the first step, not at the next finishing copy
                    # (round 12: when a slow issue let the copy end before the decode began,
                    # this driver ran all 12 steps and a light-load TTFT went 61 -> 237 ms)
                    k = 1
                if eff.stop_on_load and k > 1:
                    pending = list(self._loads_pending.values())
                    if pending:
                        deadline = env.timeout(float(ends[k - 1] - start))
                        yield env.any_of([deadline, *pending])
                        if not deadline.processed:  # a Timeout is "triggered" at creation
                            k = min(k, int(np.searchsorted(ends, env.now, side="left")) + 1)
                            k = max(k, 1)
                        remaining = float(ends[k - 1]) - env.now
                        if remaining > 0:
                            yield env.timeout(remaining)
                        steps = tuple(ends[:k].tolist())
                        self._finish_fwd(batch.kind, start, steps, ticket, done)
                        return
                yield env.timeout(float(ends[k - 1]) - start)
                steps = tuple(ends[:k].tolist())
            self._finish_fwd(batch.kind, start, steps, ticket, done)

    def _layer_ready(self, lid: int, t: float) -> Generator:
        """Earliest end of a forward of duration `t` whose layer j runs after layer j of load
        `lid` has arrived (layers copied in order, at a steady rate; waits for the DMA to
        start if it has not). With layer j of L ready at c0 + (j+1)d/L and each layer taking
        t/L, the forward ends at max over j of (ready_j + (L-j)t/L): an end point, j = 0 or
        L-1."""
        ev = self.dma_started.get(lid)
        if ev is None:  # finished and polled before this forward began: it cannot hold it up
            return -np.inf
        if not ev.triggered:
            yield ev
        c0, d, layers = ev.value
        return max(c0 + d / layers + t, c0 + d + t / layers)

    def _finish_fwd(self, kind: str, start: float, steps: tuple[float, ...], ticket: int, done) -> None:
        env = self.env
        self.timeline.append(("compute", start, env.now, kind, f"{kind} x{len(steps) or 1}"))
        self._compute_free_at = env.now
        self.fwd_result[ticket] = ForwardResult(start, env.now, steps)
        self.fwd_unpolled.append(ticket)
        done.succeed(env.now)
        self._kick()
