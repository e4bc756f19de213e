"""``results.jsonl``: one record per line, rewritten atomically, merged with an earlier run's."""

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

    def write(self) -> None:
        merged = {**self.previous, **self.current}  # this run's records replace the earlier run's
        lines = [json.dumps(r, ensure_ascii=False, allow_nan=False) for recs in merged.values() for r in recs]
        self.files.write_all({self.path: ("\n".join(lines) + "\n" if lines else "").encode("utf-8")})
