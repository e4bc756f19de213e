"""The terminal side of a job: JSON lines on stdout, progress and summary on stderr, signals, exit codes.

Part of the CLI layer: it prints and maps outcomes to exit codes; the work is ``batch.run_job``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Stdout:
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


def _install_stop_handlers(stop: threading.Event) -> dict:
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


def start_progress(total: int, verb: str, quiet: bool):
    """A progress bar on stderr when it is a terminal (``None`` otherwise): ``(progress, update)``."""
    if quiet or not sys.stderr.isatty():
        return None, lambda summary: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(f"[bold]{verb}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task(verb, total=total, rate="")
    progress.start()
    start = time.perf_counter()

    def update(summary) -> None:
        rate = f"{summary.done / max(1e-9, time.perf_counter() - start):.2f} img/s" if summary.done else ""
        progress.update(task, completed=summary.done + summary.failed + summary.skipped, rate=rate)

    return progress, update


def print_summary(summary, closed: bool = False) -> None:
    """The one-line summary that ends every run, on stderr."""
    state = " (interrupted)" if summary.interrupted and not closed else \
        " (stopped at first failure)" if summary.stopped_on_failure else ""
    print(f"gradcam: {summary.done} done, {summary.skipped} skipped, {summary.failed} failed "
          f"of {summary.total} in {summary.seconds:.1f}s ({summary.images_per_s:.2f} images/s){state}",
          file=sys.stderr, flush=True)


def exit_code(summary, closed: bool = False) -> int:
    """0 all done, 1 some image failed, 130 interrupted (a closed stdout pipe is not an interruption)."""
    failed = summary.failed or summary.manifest_error
    if closed:
        return EXIT_FAILED if failed else EXIT_OK
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


def run_with_console(explainer, items, output_dir: Path, job, *, as_json: bool, quiet: bool, table: bool) -> int:
    """Run the job with terminal reporting; returns the exit code."""
    from ..job.runner import run_job

    stop = threading.Event()
    out = _Stdout(stop)
    rows: list[dict] = []
    progress, on_progress = start_progress(len(items), "explaining", quiet)

    def on_record(record: dict) -> None:
        if as_json:
            out.write_line(json.dumps(record, ensure_ascii=False, allow_nan=False))
        elif table and "error" not in record:
            rows.append(record)
        if "error" in record and not quiet:
            message = f"gradcam: {record['error']}"
            (progress.console.print(message, markup=False, highlight=False) if progress
             else print(message, file=sys.stderr, flush=True))

    previous = _install_stop_handlers(stop)
    try:
        summary = run_job(explainer, items, output_dir, job, on_record, on_progress, stop)
    except KeyboardInterrupt:
        if progress:
            progress.stop()
        if not quiet:
            print("gradcam: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # usage errors found mid-run
        from ..errors import UsageError

        if progress:
            progress.stop()
        if isinstance(err, UsageError):
            print(f"gradcam: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        raise
    finally:
        restore_handlers(previous)
    if progress:
        progress.stop()
    if rows and not out.closed:
        _print_table(rows, output_dir)
    if not quiet:
        print_summary(summary, out.closed)
    if summary.manifest_error:
        print(f"gradcam: error: {summary.manifest_error}", file=sys.stderr, flush=True)
    return exit_code(summary, out.closed)


def _print_table(rows: list[dict], output_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("input", overflow="fold")
    for col in ("layer", "class", "prob", "bbox x0,y0,x1,y1"):
        table.add_column(col, overflow="fold")
    for d in rows:
        table.add_row(d["input"], d["layer"], f"{d['class_index']} {d['class_name'] or ''}".strip(),
                      "-" if d["probability"] is None else f"{d['probability']:.3f}", ",".join(map(str, d["bbox"])) if d["bbox"] else "-")
    console = Console(soft_wrap=False)
    try:
        console.print(table)
        console.print(f"outputs in {output_dir}", highlight=False)
    except BrokenPipeError:
        pass
