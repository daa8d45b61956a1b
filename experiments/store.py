"""Results directory of a sweep: one file per run, written atomically, so nothing is lost.

    out/manifest.json            the sweep (axes, policies, run ids and their parameters)
    out/index/<run_id>.json      one summary row per run: status ok|error, error, summary
    out/runs/<run_id>.parquet    per-request records
    out/timelines/<run_id>.parquet   pcie/compute intervals
    out/summaries.parquet|.jsonl consolidated index rows of the manifest's runs

A run counts as done only when its index row says ok and its records file reads back: the
index row is written last, so an interrupt between files just redoes the run. Unreadable or
half-written files are treated as missing, never as errors of the sweep.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from sim.files import atomic_write, atomic_write_text  # noqa: F401  (experiments write through these names)

SUMMARIES = "summaries.parquet"
SUMMARIES_JSONL = "summaries.jsonl"
MANIFEST = "manifest.json"


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return str(v)


def _finite(v: Any) -> Any:
    """JSON has no inf/nan: keep them as strings that pandas reads back as floats."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def scalar_items(d: dict[str, Any]) -> dict[str, Any]:
    """Only the scalar entries of a summary (lists/arrays do not belong in the table)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
            v = v.item()
        if isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
    return out


class Store:
    """One results directory. Safe to share between a sweep and later `plot`/`report` calls."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.timelines_dir = self.root / "timelines"
        self.index_dir = self.root / "index"

    # --- writing -----------------------------------------------------------------------
    def init(self, manifest: dict[str, Any]) -> None:
        for d in (self.runs_dir, self.timelines_dir, self.index_dir):
            d.mkdir(parents=True, exist_ok=True)
            # temp files of writers killed mid-write (only the sweep's parent writes here)
            for tmp in d.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
        atomic_write_text(self.root / MANIFEST, json.dumps(manifest, indent=1, default=_json_default))

    def save_ok(self, row: dict[str, Any], records: pd.DataFrame, timeline: pd.DataFrame | None,
                summary: dict[str, Any]) -> None:
        rid = row["run_id"]
        atomic_write(self.runs_dir / f"{rid}.parquet", lambda p: records.to_parquet(p, index=False))
        tl = timeline if timeline is not None else pd.DataFrame()
        atomic_write(self.timelines_dir / f"{rid}.parquet", lambda p: tl.to_parquet(p, index=False))
        self._write_row({**row, **scalar_items(summary), "status": "ok", "error": ""})

    def save_error(self, row: dict[str, Any], error: str) -> None:
        self._write_row({**row, "status": "error", "error": error})

    def _write_row(self, row: dict[str, Any]) -> None:
        row = {k: _finite(v) for k, v in row.items()}
        text = json.dumps(row, default=_json_default, allow_nan=False)
        atomic_write_text(self.index_dir / f"{row['run_id']}.json", text)

    # --- reading -----------------------------------------------------------------------
    def manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def index_rows(self) -> dict[str, dict[str, Any]]:
        """Readable index rows by run id; unreadable ones are skipped (their run is redone)."""
        rows: dict[str, dict[str, Any]] = {}
        if not self.index_dir.is_dir():
            return rows
        for f in sorted(self.index_dir.glob("*.json")):
            try:
                row = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(row, dict) and row.get("run_id") == f.stem:
                rows[f.stem] = row
        return rows

    def _readable(self, path: Path) -> bool:
        try:
            pq.read_metadata(path)
            return True
        except Exception:  # noqa: BLE001 - any unreadable file just means "redo"
            return False

    def completed(self) -> set[str]:
        """Run ids stored with status ok and a readable records file."""
        return {
            rid for rid, row in self.index_rows().items()
            if row.get("status") == "ok"
            and self._readable(self.runs_dir / f"{rid}.parquet")
            and self._readable(self.timelines_dir / f"{rid}.parquet")
        }

    def records(self, run_id: str) -> pd.DataFrame | None:
        try:
            return pd.read_parquet(self.runs_dir / f"{run_id}.parquet")
        except Exception:  # noqa: BLE001
            return None

    def timeline(self, run_id: str) -> pd.DataFrame | None:
        try:
            return pd.read_parquet(self.timelines_dir / f"{run_id}.parquet")
        except Exception:  # noqa: BLE001
            return None

    def summaries(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Index rows as a table (of the manifest's runs unless run_ids is given)."""
        if run_ids is None:
            m = self.manifest()
            run_ids = [r["run_id"] for r in m["runs"]] if m else None
        rows = self.index_rows()
        if not rows:
            # a committed results folder keeps only the consolidated table (index/ and runs/
            # stay out of git), and tables over summaries must still work on a fresh clone
            df = self._consolidated()
            if run_ids is not None and "run_id" in df:
                df = df[df.run_id.isin(list(run_ids))].reset_index(drop=True)
            return df
        chosen = list(rows.values()) if run_ids is None else [rows[r] for r in run_ids if r in rows]
        df = pd.DataFrame(chosen)
        if df.empty:
            return pd.DataFrame(columns=["run_id", "policy", "group", "status", "error"])
        for col in df.columns:
            if df[col].dtype == object:
                df[col] = _uniform(df[col])
        return df

    def _consolidated(self) -> pd.DataFrame:
        try:
            return pd.read_parquet(self.root / SUMMARIES)
        except Exception:  # noqa: BLE001 - missing or unreadable: no runs
            return pd.DataFrame(columns=["run_id", "policy", "group", "status", "error"])

    def consolidate(self) -> pd.DataFrame:
        """Rewrite summaries.parquet and summaries.jsonl from the per-run index rows."""
        df = self.summaries()
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / SUMMARIES, lambda p: df.to_parquet(p, index=False))
        atomic_write(self.root / SUMMARIES_JSONL,
                     lambda p: df.to_json(p, orient="records", lines=True, default_handler=str))
        return df


def _uniform(s: pd.Series) -> pd.Series:
    """Object columns must hold one type for parquet: numbers (and "inf" strings from JSON)
    become floats, anything else mixed or nested becomes strings."""
    kinds = {type(v) for v in s.dropna()}
    if not kinds or kinds == {str} or kinds == {bool}:
        return s
    if kinds <= {int, float, str}:
        num = pd.to_numeric(s, errors="coerce")
        if (num.notna() == s.notna()).all():
            return num
    return s.map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v, default=str))
