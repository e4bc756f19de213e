"""``results.jsonl``: one record per line, merged over the runs into one output folder, never losing one.

The rule, per input: a run that explains an input replaces that input's earlier records; a
run in which it fails never replaces good records (the failure is still reported on stderr,
with ``--json`` and in the exit code), and is written only where there are none.

Durability: while a run goes on, each image's records are appended to a journal beside the
manifest (``.results.jsonl.journal``) and flushed as the image finishes; the manifest itself
is rewritten atomically (temporary file and rename) from time to time and at the end, after
which the journal is emptied. A run that is killed leaves its finished images in the journal;
the next run into the folder, and ``gradcam report``, fold them in. One run at a time writes
a folder's manifest: a lock (``.results.jsonl.lock``, held while the run goes on and released
by the system however the process ends) refuses a second run into the same folder with a
clear message.

Lines are split on ``\\n`` only: JSON escapes a newline inside a string, but writes other
Unicode line separators (U+2028, U+2029, ...) as they are, and those must not split a record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import UsageError
from ..output.store import LOCAL

Record = dict


def journal_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.journal")


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def json_lines(text: str) -> list[dict]:
    """The JSON objects of a JSON-lines text, split on ``\\n`` only; a line cut short by a crash is skipped."""
    found = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def record_line(record: Record) -> str:
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def _groups(records: list[Record]) -> list[list[Record]]:
    """Consecutive records of one input, as one group each (one image's records of one run)."""
    groups: list[list[Record]] = []
    for rec in records:
        if not isinstance(rec.get("input"), str):
            continue
        if groups and groups[-1][0]["input"] == rec["input"]:
            groups[-1].append(rec)
        else:
            groups.append([rec])
    return groups


def merge(into: dict[str, list[Record]], groups: Iterable[list[Record]]) -> dict[str, list[Record]]:
    """``into`` (records by input) with a newer run's image groups merged in under the module's rule."""
    for group in groups:
        source = group[0]["input"]
        failed = any("error" in r for r in group)
        had_good = any("error" not in r for r in into.get(source, ()))
        if not (failed and had_good):
            into[source] = group
    return into


def read_records(path: Path, files=LOCAL) -> list[Record]:
    """The records a folder's manifest holds, a killed run's journal folded in (without writing anything)."""
    by_input: dict[str, list[Record]] = {}
    text = files.read_text(path)
    for group in _groups(json_lines(text or "")):
        by_input.setdefault(group[0]["input"], []).extend(group)
    if files is LOCAL:
        merge(by_input, _groups(json_lines(files.read_text(journal_path(path)) or "")))
    return [r for recs in by_input.values() for r in recs]


class Manifest:
    """The records of this run, merged over those of earlier runs into the same folder."""

    def __init__(self, path: Path, files=LOCAL) -> None:
        self.path = Path(path) if files is LOCAL else path
        self.files = files  # where it is (``output.store``): this machine, or a pyarrow filesystem
        self.previous: dict[str, list[Record]] = {}
        self.current: dict[str, list[Record]] = {}
        self._journal = None
        self._lock = None

    def open(self) -> Manifest:
        """Take the folder's lock, read what earlier runs left (their journal folded in) and start this run's
        journal; a manifest that cannot be read or written is a usage error, before any work."""
        local = self.files is LOCAL
        if local:
            _refuse_link(self.path)
            self._lock = _take_lock(self.path)
        for rec in read_records(self.path, self.files):
            self.previous.setdefault(rec["input"], []).append(rec)
        if local:
            try:
                if os.path.exists(journal_path(self.path)):
                    self.write()  # a killed run's records, now in the manifest: the journal can start empty
                self._journal = open(journal_path(self.path), "w", encoding="utf-8")
            except OSError as err:
                self.close()
                raise UsageError(f"{self.path}: cannot write the manifest ({err.strerror or err})") from None
        return self

    def add(self, records: list[Record]) -> None:
        """One image's records: kept for the manifest, and appended to the journal at once."""
        if not records:
            return
        self.current[records[0]["input"]] = list(records)
        if self._journal is not None:
            self._journal.write("".join(record_line(r) + "\n" for r in records))
            self._journal.flush()

    def merged(self) -> dict[str, list[Record]]:
        """The records to keep, by input (see the module's rule)."""
        return merge(dict(self.previous), self.current.values())

    def write(self) -> None:
        """Rewrite the manifest atomically with every record so far; the journal then starts over."""
        lines = [record_line(r) for recs in self.merged().values() for r in recs]
        self.files.write_all({self.path: ("\n".join(lines) + "\n" if lines else "").encode("utf-8")})
        if self._journal is not None:
            self._journal.seek(0)
            self._journal.truncate()
        elif self.files is LOCAL and os.path.exists(journal_path(self.path)):
            os.truncate(journal_path(self.path), 0)

    def close(self) -> None:
        """Release the journal and the lock (after the last `write`, the journal is empty: removed)."""
        if self._journal is not None:
            empty = self._journal.tell() == 0
            self._journal.close()
            self._journal = None
            if empty:
                _remove(journal_path(self.path))
        if self._lock is not None:
            _release_lock(self._lock)
            self._lock = None


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise UsageError(f"{path}: is a symbolic link; the manifest must be a plain file in the output folder")
    if path.exists() and not path.is_file():
        raise UsageError(f"{path}: is not a file; the manifest cannot be written there")


def _take_lock(path: Path):
    """The folder's write lock for this manifest: an open lock file holding an exclusive ``flock``.

    The file is removed when the lock is released (`_release_lock`); a run that opened it just before
    then finds, once it holds the lock, that the name points elsewhere (or nowhere) and tries again.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the rule is documented
        return None
    name = lock_path(path)
    while True:
        try:
            handle = open(name, "a+", encoding="utf-8")
        except OSError as err:
            raise UsageError(f"{path.parent}: cannot write into the output folder ({err.strerror or err})") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UsageError(
                f"{path.parent}: another gradcam run ({holder}) is writing {path.name} there; wait "
                "for it to finish, or give another --output-dir (--shard I/N runs may share a folder)"
            ) from None
        if _same_file(handle, name):
            break
        handle.close()  # released and removed by its holder meanwhile: take the new one
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def _same_file(handle, name: Path) -> bool:
    try:
        return os.stat(name).st_ino == os.fstat(handle.fileno()).st_ino
    except OSError:
        return False


def _release_lock(handle) -> None:
    """Remove the lock file, then release the lock (a run waiting on the old file sees it gone and retries)."""
    _remove(Path(handle.name))
    handle.close()


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
