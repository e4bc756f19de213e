"""``results.jsonl``: one record per line, rewritten atomically, merged with an earlier run's.

The rule, per input: a run that explains an input replaces that input's earlier
records; a run in which it fails never replaces good records (the failure is still
reported on stderr, with ``--json`` and in the exit code), and is written only where
there are none. So re-running into the same folder never loses a good record.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..output.store import LOCAL

Record = dict


class Manifest:
    """The records of this run, merged over those of earlier runs into the same folder."""

    def __init__(self, path: Path, files=LOCAL) -> None:
        self.path = path
        self.files = files  # where it is (``output.store``): this machine, or a pyarrow filesystem
        self.previous: dict[str, list[Record]] = {}
        self.current: dict[str, list[Record]] = {}
        text = files.read_text(path)
        if text is not None:
            for line in text.splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "input" in rec:
                    self.previous.setdefault(rec["input"], []).append(rec)

    def add(self, record: Record) -> None:
        self.current.setdefault(record["input"], []).append(record)

    def merged(self) -> dict[str, list[Record]]:
        """The records to keep, by input (see the module's rule)."""
        merged = dict(self.previous)
        for source, records in self.current.items():
            failed = any("error" in r for r in records)
            had_good = any("error" not in r for r in merged.get(source, ()))
            if not (failed and had_good):
                merged[source] = records
        return merged

    def write(self) -> None:
        merged = self.merged()
        lines = [json.dumps(r, ensure_ascii=False, allow_nan=False) for recs in merged.values() for r in recs]
        self.files.write_all({self.path: ("\n".join(lines) + "\n" if lines else "").encode("utf-8")})
