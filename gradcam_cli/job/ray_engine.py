"""Running a job's batches on a Ray cluster (``--engine ray``): the same work as ``runner.run_job``,
spread over actors that each load the model once.

The inputs are listed on the driver, exactly as for the local engine, and streamed as a
Ray Dataset of paths (one block per batch, so an actor's task is one forward pass). Each
actor runs a *task*: a picklable factory it calls once (loading the model there) that
returns the per-batch function, rows in, :class:`Outcome` per row out. ``explain`` is one
such task (``ray_explain.ExplainTask``); any other job plugs in the same way.

The driver receives the outcomes in input order, writes the manifest and reports progress
as the local engine does. A small ledger actor knows which images have started and
finished: an image started twice was retried after its actor died (Ray restarts the actor
and retries its tasks once); after a stop request, batches not yet started are skipped
and the driver waits for those in flight, so only complete files are left.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import UsageError
from ..options import EngineOptions, JobOptions
from .inputs import InputImage
from .manifest import Manifest, Record
from .records import error_record
from .runner import JobSummary

# Left free for Ray Data's own tasks (reading a user's dataset, splitting blocks): a pool of
# actors that takes every CPU starves them and the job hangs.
RESERVED_CPUS = 0.5
_log = logging.getLogger(__name__)
_POLL_S = 0.2


@dataclass
class Outcome:
    """What one input row became: its records, or skipped (outputs already there)."""

    index: int
    records: list[Record]
    skipped: bool = False
    started: bool = True  # False: the job was stopping, so this row was not worked on
    source: str = ""  # the input, for a skipped row's record


@dataclass
class RaySummary(JobSummary):
    """The local engine's counts, plus where the actors ran."""

    actors: list[dict] = field(default_factory=list)  # one per actor start: node, pid, GPU ids, device
    startup_s: float = 0.0  # from the job's start to the first batch an actor began (actors starting, models loading)


@dataclass(frozen=True)
class PoolPlan:
    """How many actors, and what each one asks of the cluster."""

    actors: int
    cpus: float  # Ray CPUs per actor (scheduling)
    gpus: float  # GPUs per actor
    threads: int  # torch threads in each actor


# --------------------------------------------------------------------------- connecting


def require_ray() -> None:
    """A usage error, not a traceback, where the ``ray`` extra is not installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError as err:
        raise UsageError(f'--engine ray needs Ray Data ({err}): pip install "gradcam-cli[ray]"') from None


@contextmanager
def ray_session(engine: EngineOptions) -> Iterator[None]:
    """Ray connected for the block: the cluster at ``engine.ray_address``, or a new instance on this machine.

    A caller that already called ``ray.init`` keeps its session (nothing is shut down).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    _quiet_ray_logs()
    _cluster_messages_to_log()
    try:
        with _stderr_without("Set ray log level from environment variable"):
            if engine.ray_address:
                ray.init(address=engine.ray_address, logging_level=logging.ERROR, log_to_driver=False)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as err:
        where = f"--ray-address {engine.ray_address}" if engine.ray_address else "--engine ray"
        raise UsageError(f"{where}: cannot start or join Ray ({_one_line(err)})") from None
    try:
        yield
    finally:
        ray.shutdown()


def _quiet_ray_logs() -> None:
    """The terminal shows the job's progress and errors, not Ray's plans and tips (they stay in Ray's log files).

    The driver's own Ray core logs notes at error level (e.g. that actor constructor
    arguments live in the object store): only fatal ones reach the terminal, unless
    ``RAY_BACKEND_LOG_LEVEL`` says otherwise.
    """
    import ray.data  # noqa: F401  (configures its loggers on import: quieten them after)

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    ray.data.DataContext.get_current().enable_progress_bars = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _cluster_messages_to_log() -> None:
    """Ray prints the cluster's notes (e.g. "a worker died") on the driver's stdout, where the
    JSON records go: send them to the log instead (the summary counts the retries).

    Ray offers no switch for this: its module-level printer is replaced, in this
    process only (the CLI's), never for a caller of the Python API.
    """
    import ray._private.worker as ray_worker

    def to_log(data, ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            _log.info("(%s) %s", data.get("pid"), line)

    ray_worker.print_to_stdstream = to_log


@contextmanager
def _stderr_without(noise: str) -> Iterator[None]:
    """Everything written to file descriptor 2 in the block (C++ included), less the lines naming ``noise``."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(keepends=True) if noise.encode() not in line]
            os.write(2, b"".join(kept)) if kept else None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300] or type(err).__name__


def plan_pool(engine: EngineOptions) -> PoolPlan:
    """Actors and their resources on the connected cluster.

    Default count: one actor per ``--gpus-per-actor`` GPUs of the cluster, else one. The
    CPUs (less a reserve for Ray Data's own tasks) are shared between the actors, no
    actor asking for more than one node has; each actor runs as many torch threads.
    """
    import ray

    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    gpa = float(engine.gpus_per_actor)
    if gpa and gpus < gpa:
        raise UsageError(f"--gpus-per-actor {engine.gpus_per_actor:g}: the Ray cluster has {gpus:g} GPUs")
    actors = engine.actors or (max(1, int(gpus // gpa)) if gpa else 1)
    node_cpus = max((float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=cpus)
    share = min(max(cpus - RESERVED_CPUS, 0.0) / actors, max(node_cpus - RESERVED_CPUS, 0.0))
    share = max(round(share, 2), 0.01)
    return PoolPlan(actors=actors, cpus=share, gpus=gpa, threads=max(1, math.floor(share + RESERVED_CPUS)))


# --------------------------------------------------------------------------- the actors


class Ledger:
    """Which images have started and finished (a Ray actor of its own, one per job)."""

    def __init__(self) -> None:
        self.starts: dict[int, int] = {}
        self.running: set[int] = set()
        self.finished = 0
        self.stopping = False
        self.actors: list[dict] = []
        self.first_begin: float | None = None  # wall clock (time.time) of the first batch begun

    def hello(self, placement: dict) -> None:
        self.actors.append(placement)

    def begin(self, indices: list[int]) -> bool:
        """Whether to work on these images (no, once the job is stopping)."""
        if self.stopping:
            self.running.difference_update(indices)  # a retry that will not run
            return False
        self.first_begin = self.first_begin or time.time()
        for i in indices:
            self.starts[i] = self.starts.get(i, 0) + 1
        self.running.update(indices)
        return True

    def finish(self, indices: list[int]) -> None:
        self.running.difference_update(indices)
        self.finished += len(indices)

    def stop(self) -> None:
        self.stopping = True

    def state(self) -> dict:
        return {"running": len(self.running), "finished": self.finished,
                "retried": sum(1 for n in self.starts.values() if n > 1), "actors": self.actors,
                "first_begin": self.first_begin}


def placement(device: str) -> dict:
    """Where this actor runs (for the summary and the GPU placement check)."""
    import ray

    ctx = ray.get_runtime_context()
    return {"node": ctx.get_node_id(), "pid": os.getpid(), "gpus": [str(g) for g in ray.get_gpu_ids()],
            "device": device, "restarted": bool(ctx.was_current_actor_reconstructed)}


class TaskActor:
    """The class Ray Data runs as actors: builds the task's batch function once, then runs it per batch."""

    def __init__(self, make_task: Callable, ledger=None, threads: int = 0, output: str = "outcomes") -> None:
        import ray
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.ledger = ledger
        self.output = output
        self.run = make_task()
        if ledger is not None:
            ray.get(ledger.hello.remote(placement(str(getattr(self.run, "device", "cpu")))))

    def __call__(self, batch: dict) -> dict:
        import ray

        rows = _rows(batch)
        indices = [int(r.get("index", i)) for i, r in enumerate(rows)]
        if self.ledger is not None and not ray.get(self.ledger.begin.remote(indices)):
            return _outcome_columns([Outcome(i, [], started=False) for i in indices])
        try:
            outcomes = self.run(rows)
        except Exception as err:  # a fault in the task fails this batch's images, not the job
            cause = f"worker failed ({type(err).__name__}: {_one_line(err)})"
            outcomes = [Outcome(i, [error_record(str(r.get("path")), f"{r.get('path')}: {cause}")])
                        for i, r in zip(indices, rows)]
        if self.ledger is not None:
            ray.get(self.ledger.finish.remote(indices))
        if self.output == "records":
            return _record_columns(outcomes)
        return _outcome_columns(outcomes)


def _rows(batch: dict) -> list[dict]:
    """Ray's column batch as one dict per row, numpy scalars made plain Python values."""
    columns = list(batch)
    count = len(batch[columns[0]]) if columns else 0
    return [{c: _plain(batch[c][i]) for c in columns} for i in range(count)]


def _plain(value):
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


def _outcome_columns(outcomes: Sequence[Outcome]) -> dict:
    return {"index": [o.index for o in outcomes],
            "records": [json.dumps(o.records, ensure_ascii=False, allow_nan=False) for o in outcomes],
            "skipped": [o.skipped for o in outcomes], "started": [o.started for o in outcomes]}


RECORD_COLUMNS = ("input", "model", "weights", "layer", "method", "class_specific", "rank", "class_index", "class_name",
                  "probability", "score", "bbox", "boxes", "image_size", "output_size", "grid", "layout",
                  "prefix_tokens", "map_empty", "files", "time_s", "warnings", "skipped", "error")


def _record_columns(outcomes: Sequence[Outcome]) -> dict:
    """One row per record, every row with the same columns (None where a record has no such field)."""
    rows = [dict(r, skipped=False) for o in outcomes for r in o.records]
    rows += [{"input": o.source, "skipped": True} for o in outcomes if o.skipped]
    return {c: [r.get(c) for r in rows] for c in RECORD_COLUMNS}


def map_with_actors(ds, make_task: Callable, plan: PoolPlan, batch_size: int, ledger=None, output: str = "outcomes"):
    """``ds`` mapped by a pool of :class:`TaskActor` (a dead actor is restarted, its batch retried once)."""
    from ray.data import ActorPoolStrategy

    with warnings.catch_warnings():
        # max_restarts / max_task_retries have no named parameter yet: they go as remote args.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ds.map_batches(TaskActor, fn_constructor_args=(make_task, ledger, plan.threads, output),
                              batch_size=batch_size, batch_format="numpy",
                              # One batch per actor at a time: batches queued behind one that kills its actor
                              # would die with it and spend their one retry on another's fault.
                              compute=ActorPoolStrategy(size=plan.actors, max_tasks_in_flight_per_actor=1),
                              num_cpus=plan.cpus, num_gpus=plan.gpus or None, max_restarts=-1, max_task_retries=1,
                              runtime_env=_threads_env(plan.threads))


def _threads_env(threads: int) -> dict:
    """The actor process starts with OpenMP sized as ``threads`` (Ray would set 1 for a fractional CPU
    share, and libraries that size their pools at start, oneDNN's among them, would keep 1)."""
    return {"env_vars": {"OMP_NUM_THREADS": str(threads)}}


# --------------------------------------------------------------------------- the driver


def item_row(index: int, item: InputImage) -> dict:
    """One input as a row of the paths dataset."""
    return {"index": index, "path": item.path, "rel": str(item.rel), "stem": item.unique_stem or ""}


def run_on_ray(make_task: Callable, items: Sequence[InputImage], output: tuple | None, job: JobOptions, plan: PoolPlan,
               batch_size: int, on_record: Callable[[Record], None] | None = None,
               on_progress: Callable[[JobSummary], None] | None = None,
               stop: threading.Event | None = None) -> RaySummary:
    """Run ``make_task``'s batch function over ``items`` on the connected Ray cluster.

    ``output``: ``(files, root)`` from ``output.store.open_folder``; the manifest goes
    there (``None``: no manifest, the caller keeps what ``on_record`` receives). Every image ends as records, an error record, or skipped, as with ``run_job``.
    """
    import ray

    stop = stop or threading.Event()
    summary = RaySummary(total=len(items))
    started, started_wall = time.perf_counter(), time.time()
    manifest = Manifest(output[1] / job.manifest_name, output[0]) if output is not None else None
    report = _Reporter(summary, manifest, job, on_record, on_progress, stop)
    report.progress(summary)
    ledger = ray.remote(num_cpus=0)(Ledger).remote()
    ds = ray.data.from_items([item_row(i, it) for i, it in enumerate(items)],
                             override_num_blocks=max(1, math.ceil(len(items) / batch_size)))
    ds = map_with_actors(ds, make_task, plan, batch_size, ledger)
    ds.context.execution_options.preserve_order = True  # records come back in input order
    ds.context.max_errored_blocks = -1  # a batch lost twice becomes error records, not a failed job
    received: set[int] = set()
    try:
        try:
            for batch in _drained(ds, ledger, stop):
                for row in _rows(batch):
                    if row["started"]:
                        received.add(row["index"])
                        report.outcome(row["skipped"], json.loads(row["records"]))
        except _ray_failures() as err:  # e.g. every actor died loading the model: a setting the workers cannot use
            raise UsageError(f"the Ray workers failed: {_one_line(err)}") from None
        if not stop.is_set():
            for i in sorted(set(range(len(items))) - received):  # lost: the retry died too
                path = items[i].path
                report.outcome(False, [error_record(path, f"{path}: lost: the worker explaining it died, twice")])
    finally:
        state = ray.get(ledger.state.remote())
        summary.retried, summary.actors = state["retried"], state["actors"]
        summary.startup_s = (state["first_begin"] or started_wall) - started_wall
        summary.interrupted = stop.is_set() and not summary.stopped_on_failure
        summary.seconds = time.perf_counter() - started
        report.write_manifest()
        ray.kill(ledger)
    return summary


def _ray_failures() -> tuple[type, ...]:
    from ray.data.exceptions import UserCodeException
    from ray.exceptions import RayError

    return RayError, UserCodeException


def _drained(ds, ledger, stop: threading.Event) -> Iterator[dict]:
    """The dataset's output batches; after ``stop``, until every started batch is in, then no more."""
    import ray

    batches: queue.Queue = queue.Queue(maxsize=4)
    done = threading.Event()
    end = object()

    def consume() -> None:
        iterator = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
        try:
            for batch in iterator:
                batches.put(batch)
                if done.is_set():
                    break
        except BaseException as err:  # handed to the driver's thread
            batches.put(err)
        finally:
            getattr(iterator, "close", lambda: None)()
            batches.put(end)

    thread = threading.Thread(target=consume, name="gradcam-ray-results", daemon=True)
    thread.start()
    received = 0
    stopping = False
    try:
        while True:
            try:
                item = batches.get(timeout=_POLL_S)
            except queue.Empty:
                item = None
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            if item is not None:
                received += sum(bool(s) for s in item["started"])
                yield item
            if stop.is_set():
                if not stopping:
                    ray.get(ledger.stop.remote())
                    stopping = True
                state = ray.get(ledger.state.remote())
                if state["running"] == 0 and state["finished"] == received:
                    return
    finally:
        done.set()
        aborted = sys.exc_info()[0] is not None  # a second Ctrl-C, or a failure: no waiting for Ray
        while thread.is_alive() and not aborted:  # unblock the consumer so it can close the dataset
            try:
                batches.get(timeout=_POLL_S)
            except queue.Empty:
                pass


class _Reporter:
    """The driver's side of every outcome: counts, manifest, records and progress callbacks."""

    def __init__(self, summary, manifest, job, on_record, on_progress, stop) -> None:
        self.summary, self.manifest, self.job, self.stop = summary, manifest, job, stop
        self.emit = on_record or (lambda r: None)
        self.progress = on_progress or (lambda s: None)
        self.last_checkpoint = time.perf_counter()

    def outcome(self, skipped: bool, records: list[Record]) -> None:
        summary = self.summary
        if skipped:
            summary.skipped += 1
        else:
            failed = any("error" in r for r in records)
            summary.failed += failed
            summary.done += not failed
            for r in records:
                if self.manifest is not None:
                    self.manifest.add(r)
                self.emit(r)
            if failed and self.job.fail_fast:
                summary.stopped_on_failure = True
                self.stop.set()
        self.progress(summary)
        if time.perf_counter() - self.last_checkpoint > self.job.checkpoint_s:
            self.write_manifest()
            self.last_checkpoint = time.perf_counter()

    def write_manifest(self) -> None:
        if self.manifest is None:
            return
        try:
            self.manifest.write()
        except OSError as err:
            self.summary.manifest_error = f"{self.manifest.path}: cannot write the manifest ({err.strerror or err})"
