"""What happens to every outcome of a job, in input order, whatever the executor.

Counting (done, skipped, failed), the manifest (each image's records journalled as it
finishes, the manifest compacted every ``checkpoint_s`` and at the end), the records handed
to the caller (printed, or gathered by the Python API), progress, and ``--fail-fast``: the
first failure stops the job from taking new work, and what was already in flight is
finished and named.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..io.manifest import Manifest
from .task import Outcome, Record


@dataclass
class JobSummary:
    """Counts for the one-line summary and the exit code."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    retried: int = 0  # images worked on again after the worker on them died (Ray)
    stopped_on_failure: bool = False
    first_failure: str | None = None  # with --fail-fast: the input that stopped the job
    finished_in_flight: list[str] = field(default_factory=list)  # ... and those already under way then
    manifest_error: str | None = None  # the manifest could not be written
    actors: list[dict] = field(default_factory=list)  # Ray: one per actor start (node, pid, GPUs, device)
    startup_s: float = 0.0  # Ray: from the job's start to the first batch an actor began

    @property
    def images_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def not_started(self) -> int:
        """Inputs never worked on: the job stopped (Ctrl-C, --fail-fast) before them."""
        return max(0, self.total - self.done - self.skipped - self.failed)


class Bookkeeper:
    """The driver's side of a job: every outcome goes through `outcome`, in input order."""

    def __init__(
        self,
        total: int,
        manifest: Manifest | None,
        *,
        fail_fast: bool = False,
        checkpoint_s: float = 10.0,
        on_record: Callable[[Record], None] | None = None,
        on_progress: Callable[[JobSummary], None] | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.summary = JobSummary(total=total)
        self.manifest = manifest
        self.fail_fast, self.checkpoint_s = fail_fast, checkpoint_s
        self.emit = on_record or (lambda r: None)
        self.progress = on_progress or (lambda s: None)
        self.collect = on_outcome or (lambda o: None)
        self.stop = stop or threading.Event()
        self.started = time.perf_counter()
        self.last_checkpoint = self.started

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    def outcome(self, outcome: Outcome) -> None:
        """Count one input's outcome, journal and hand on its records, and report progress."""
        summary = self.summary
        if outcome.skipped:
            summary.skipped += 1
        else:
            if summary.stopped_on_failure:
                summary.finished_in_flight.append(outcome.source)
            summary.failed += outcome.failed
            summary.done += not outcome.failed
            self._keep(outcome.records)
            self.collect(outcome)
            if outcome.failed and self.fail_fast and not summary.stopped_on_failure:
                summary.stopped_on_failure, summary.first_failure = True, outcome.source
                self.stop.set()
        self.progress(summary)
        if time.perf_counter() - self.last_checkpoint > self.checkpoint_s:
            self.write_manifest()
            self.last_checkpoint = time.perf_counter()

    def _keep(self, records: list[Record]) -> None:
        if self.manifest is not None and records:
            try:
                self.manifest.add(records)
            except OSError as err:
                self._manifest_failed(err)
        for record in records:
            self.emit(record)

    def write_manifest(self) -> None:
        if self.manifest is None:
            return
        try:
            self.manifest.write()
        except OSError as err:
            self._manifest_failed(err)

    def _manifest_failed(self, err: OSError) -> None:
        self.summary.manifest_error = f"{self.manifest.path}: cannot write the manifest ({err.strerror or err})"

    def close(self) -> JobSummary:
        """The manifest written one last time and released; the summary's time and state filled in."""
        summary = self.summary
        summary.interrupted = self.stop.is_set() and not summary.stopped_on_failure
        summary.seconds = time.perf_counter() - self.started
        self.write_manifest()
        if self.manifest is not None:
            self.manifest.close()
        return summary
