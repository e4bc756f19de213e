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
    print(summary_line(summary, closed), file=sys.stderr, flush=True)


def exit_code(summary, closed: bool = False) -> int:
    """0 all done, 1 some image failed, 130 interrupted (a closed stdout pipe is not an interruption)."""
    failed = summary.failed or summary.manifest_error
    if closed:
        return EXIT_FAILED if failed else EXIT_OK
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


def run_with_console(explainer, items, output_dir: Path, job, *, as_json: bool, quiet: bool, table: bool,
                     run=None) -> int:
    """Run the job with terminal reporting; returns the exit code.

    ``run``: the engine, called as ``run_job`` is (default: ``run_job``, in this process).
    """
    from ..job.runner import run_job

    run = run or run_job
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
        summary = run(explainer, items, output_dir, job, on_record, on_progress, stop)
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
        _print_table(rows, output_dir) if sys.stdout.isatty() else _print_lines(rows, out)
    if not quiet:
        print_summary(summary, out.closed)
    if summary.manifest_error:
        print(f"gradcam: error: {summary.manifest_error}", file=sys.stderr, flush=True)
    return exit_code(summary, out.closed)


def summary_line(summary, stdout_closed: bool = False) -> str:
    """The run's last line: counts, the explain phase's time and rate, and the wall time since the process began."""
    state = " (interrupted)" if summary.interrupted and not stdout_closed else \
        " (stopped at first failure)" if summary.stopped_on_failure else ""
    if getattr(summary, "retried", 0):
        state += f" ({summary.retried} retried after a worker died)"
    return (f"gradcam: {summary.done} done, {summary.skipped} skipped, {summary.failed} failed of {summary.total}"
            f"{state}; explain phase {summary.seconds:.2f} s ({summary.images_per_s:.2f} images/s); "
            f"wall time {seconds_since_start():.2f} s since the process started")


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


def _print_lines(rows: list[dict], out: _Stdout) -> None:
    """Off a terminal: one tab-separated line per record (input, method, layer, class, probability, box), no
    wrapping, so that grep, cut and awk see whole records."""
    for d in rows:
        prob = "-" if d["probability"] is None else f"{d['probability']:.3f}"
        box = ",".join(map(str, d["bbox"])) if d["bbox"] else "-"
        cls = f"{d['class_index']} {d['class_name'] or ''}".strip()
        out.write_line("\t".join((d["input"], d["method"], d["layer"], cls, prob, box)))


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
