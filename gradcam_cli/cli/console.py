"""The terminal side of a job, for every command that runs one: records on stdout, messages, progress and
the summary on stderr, signals, exit codes.

Part of the CLI layer: it prints and maps outcomes to exit codes; the work is the job's.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Off a terminal, a long job says how far it is at most this often (a CI log shows it is alive).
PROGRESS_LINE_S = 30.0


class Stdout:
    """Record lines to stdout, flushed; a closed pipe (``| head``) stops the job quietly."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.closed = False

    def write_line(self, text: str) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            self.closed = True
            self.stop.set()
            # Python would complain again when flushing at exit: point stdout at /dev/null.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass


def install_stop_handlers(stop: threading.Event) -> dict:
    """SIGINT/SIGTERM ask the job to stop after the batch in flight; a second SIGINT aborts."""
    previous = {}

    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    return previous


def restore_handlers(previous: dict) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)


@dataclass
class Console:
    """One job's terminal: what is printed as the job goes, and the exit code at its end."""

    verb: str  # "explaining", "evaluating"
    total: int
    as_json: bool = False
    quiet: bool = False
    rows: list[dict] = field(default_factory=list)  # records kept for the table at the end
    stop: threading.Event = field(default_factory=threading.Event)
    said: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.out = Stdout(self.stop)
        self.progress, self._update = start_progress(self.total, self.verb, self.quiet)

    def message(self, text: str) -> None:
        """One line on stderr (``gradcam: text``), each distinct line once; none with ``--quiet``."""
        if self.quiet or text in self.said:
            return
        self.said.add(text)
        line = f"gradcam: {text}"
        if self.progress:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def record(self, record: dict) -> None:
        """A record as the job makes it: streamed with ``--json``, else kept for the table; its error and
        warnings said once on stderr."""
        if self.as_json:
            self.out.write_line(json.dumps(record, ensure_ascii=False, allow_nan=False))
        elif "error" not in record:
            self.rows.append(record)
        if "error" in record:
            self.message(str(record["error"]))
        for warning in record.get("warnings") or ():
            self.message(f"warning: {record['input']}: {warning}")

    def on_progress(self, summary) -> None:
        self._update(summary)

    def run(self, job: Callable[[Console], object]):
        """``job(self)`` with the stop handlers installed; returns its result, or an exit code when it was
        aborted (a second Ctrl-C) or refused mid-run (a usage error)."""
        from ..errors import UsageError

        previous = install_stop_handlers(self.stop)
        try:
            return job(self)
        except KeyboardInterrupt:
            self.close()
            if not self.quiet:
                print("gradcam: aborted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except UsageError as err:
            self.close()
            print(f"gradcam: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        finally:
            restore_handlers(previous)
            self.close()

    def close(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None

    def finish(self, summary) -> int:
        """The summary line (and a manifest error) on stderr; returns the exit code."""
        if not self.quiet:
            for line in summary_lines(summary, self.out.closed):
                print(line, file=sys.stderr, flush=True)
        if summary.manifest_error:
            print(f"gradcam: error: {summary.manifest_error}", file=sys.stderr, flush=True)
        return exit_code(summary, self.out.closed)


def start_progress(total: int, verb: str, quiet: bool):
    """``(progress bar or None, update)``: a bar on a terminal; off one, a line every
    `PROGRESS_LINE_S` seconds once a job runs that long; nothing with ``--quiet``."""
    if quiet:
        return None, lambda summary: None
    start = time.perf_counter()
    if not sys.stderr.isatty():
        return None, _progress_lines(total, verb, start)
    from rich.console import Console as RichConsole
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn(f"[bold]{verb}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=RichConsole(stderr=True),
        transient=True,
    )
    task = progress.add_task(verb, total=total, rate="")
    progress.start()

    def update(summary) -> None:
        rate = f"{summary.done / max(1e-9, time.perf_counter() - start):.2f} img/s" if summary.done else ""
        finished = summary.done + summary.failed + summary.skipped
        progress.update(task, total=summary.total or total, completed=finished, rate=rate)

    return progress, update


def _progress_lines(total: int, verb: str, start: float) -> Callable:
    last = [start]

    def update(summary) -> None:
        now = time.perf_counter()
        if now - last[0] < PROGRESS_LINE_S:
            return
        count = summary.total or total  # the job's count once its inputs are listed (commands start with 0)
        if not count:
            return
        last[0] = now
        finished = summary.done + summary.failed + summary.skipped
        rate = summary.done / max(1e-9, now - start)
        left = f"; about {_duration((count - finished) / rate)} left" if rate > 0 and finished < count else ""
        print(f"gradcam: {verb} {finished} of {count} images, {rate:.2f} images/s{left}", file=sys.stderr, flush=True)

    return update


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def exit_code(summary, closed: bool = False) -> int:
    """0 all done, 1 some image failed, 130 interrupted (a closed stdout pipe is not an interruption)."""
    failed = summary.failed or summary.manifest_error
    if closed:
        return EXIT_FAILED if failed else EXIT_OK
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


def summary_lines(summary, stdout_closed: bool = False) -> list[str]:
    """The run's last lines: with ``--fail-fast``, what stopped it and what was in flight; then the summary."""
    lines = []
    if summary.stopped_on_failure:
        flight = summary.finished_in_flight
        lines.append(
            f"gradcam: --fail-fast: stopped at the first failure ({summary.first_failure}); "
            f"{len(flight)} image{'s' if len(flight) != 1 else ''} already under way finished"
            f"{': ' + ', '.join(flight[:5]) + (' ...' if len(flight) > 5 else '') if flight else ''}; "
            f"{summary.not_started} not started"
        )
    return lines + [summary_line(summary, stdout_closed)]


def summary_line(summary, stdout_closed: bool = False) -> str:
    """The run's last line: counts, the explain phase's time and rate, and the wall time since the process began."""
    state = (
        " (interrupted)"
        if summary.interrupted and not stdout_closed
        else " (stopped at first failure)"
        if summary.stopped_on_failure
        else ""
    )
    if getattr(summary, "retried", 0):
        state += f" ({summary.retried} retried after a worker died)"
    return (
        f"gradcam: {summary.done} done, {summary.skipped} skipped, {summary.failed} failed of {summary.total}"
        f"{state}; explain phase {summary.seconds:.2f} s ({summary.images_per_s:.2f} images/s); "
        f"wall time {seconds_since_start():.2f} s since the process started"
    )


def seconds_since_start() -> float:
    """Wall time since this process started (Linux: from the kernel's record), start-up and imports included."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            after_name = fh.read().rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - int(after_name[19]) / os.sysconf("SC_CLK_TCK"))  # field 22, starttime
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED  # elsewhere: since the CLI's first import, a close floor


_IMPORTED = time.perf_counter()


def print_rows(
    rows: list[dict],
    out: Stdout,
    columns: list[tuple[str, Callable[[dict], object]]],
    title: str = "",
    footer: str = "",
) -> None:
    """Result rows: on a terminal, one table; off one, one tab-separated line per row with no header and no
    wrapping, so that grep, cut and awk see whole rows. A cell is text (shown as it is, never as markup) or a
    styled ``rich.text.Text``."""
    if not rows or out.closed:
        return
    if not sys.stdout.isatty():
        for row in rows:
            out.write_line("\t".join(getattr(cell, "plain", cell) for cell in (render(row) for _, render in columns)))
        return
    from rich.console import Console as RichConsole
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title or None, title_justify="left", box=None, pad_edge=False)
    for heading, _ in columns:
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(
            *(escape(cell) if isinstance(cell, str) else cell for cell in (render(row) for _, render in columns))
        )
    try:
        console = RichConsole(soft_wrap=False)
        console.print(table)
        if footer:
            console.print(footer, highlight=False, markup=False)
    except BrokenPipeError:
        pass
