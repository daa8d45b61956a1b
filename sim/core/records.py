"""Finished requests' metrics fields, by column, so that a long run keeps no per-request objects.

A RequestState with its float objects costs ~500 bytes; a million-request trace would hold
half a gigabyte of them until the run ends. The scheduler hands each request here when it
finishes (and the engine adds the unfinished ones when the run stops) and drops the object:
a row then costs ~100 bytes of flat arrays. `sim.metrics` builds the records frame and the
inter-token gaps from these columns, in arrival order (`seq`), as they were built from the
states.
"""

from __future__ import annotations

from array import array

from sim.core.model import RequestState

NAN = float("nan")

# column -> array typecode ("q" int64, "d" float64, "b" int8)
FIELDS: dict[str, str] = {
    "seq": "q",  # position in arrival order: rows are sorted by it at the end
    "rid": "q",
    "adapter": "q",  # index into RecordColumns.adapters
    "arrival": "d",
    "admitted": "d",
    "first_token": "d",
    "finish": "d",
    "input_len": "q",
    "output_len": "q",
    "adapter_hit": "b",  # 1 / 0, -1 when never looked at
    "adapter_wait": "d",
    "skipped": "q",
    "first_decode_step": "q",
    "decode_steps": "q",
}


def _t(x: float | None) -> float:
    return NAN if x is None else x


class RecordColumns:
    """Append-only columns of request outcomes (see FIELDS)."""

    def __init__(self):
        self.cols = {name: array(code) for name, code in FIELDS.items()}
        self.adapters: list[str | None] = []
        self._adapter_code: dict[str | None, int] = {}

    def __len__(self) -> int:
        return len(self.cols["rid"])

    def add(self, st: RequestState, seq: int) -> None:
        r = st.req
        code = self._adapter_code.get(r.adapter)
        if code is None:
            code = self._adapter_code[r.adapter] = len(self.adapters)
            self.adapters.append(r.adapter)
        c = self.cols
        c["seq"].append(seq)
        c["rid"].append(r.rid)
        c["adapter"].append(code)
        c["arrival"].append(r.arrival)
        c["admitted"].append(_t(st.admitted_at))
        c["first_token"].append(_t(st.first_token_at))
        c["finish"].append(_t(st.finished_at))
        c["input_len"].append(r.input_len)
        c["output_len"].append(r.output_len)
        c["adapter_hit"].append(-1 if st.adapter_hit is None else int(st.adapter_hit))
        c["adapter_wait"].append(st.waited_on_adapter)
        c["skipped"].append(st.skipped)
        c["first_decode_step"].append(st.first_decode_step)
        c["decode_steps"].append(st.decode_steps)
