"""The driver of a job on Ray: the inputs as a dataset of rows, the outcomes back in input order.

The inputs are listed on the driver, exactly as for the local executor, and streamed as a
Ray Dataset of rows (one block per batch, so an actor's task is one pass of the model). The
outcomes come back in input order and go to the job's bookkeeper, as the local executor's
do. The ledger actor knows which images started and finished: an image started twice was
retried after its actor died (Ray restarts the actor and retries its batch once); after a
stop request, batches not yet started are skipped and the driver waits for those in
flight, so only complete files are left.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

from ...errors import UsageError
from ...io.inputs import InputImage
from ...io.records import error_record
from ..bookkeeper import Bookkeeper
from ..task import Outcome
from .actor import Ledger, TaskActor, item_row, outcome_of, rows_of
from .pool import PoolPlan, threads_env
from .session import one_line

_POLL_S = 0.2


def map_with_actors(
    ds, make_task: Callable, plan: PoolPlan, batch_size: int, ledger=None, output: str = "outcomes", workers: int = 2
):
    """``ds`` mapped by a pool of `TaskActor` (a dead actor is restarted, its batch retried once)."""
    from ray.data import ActorPoolStrategy

    with warnings.catch_warnings():
        # max_restarts / max_task_retries have no named parameter yet: they go as remote args.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ds.map_batches(
            TaskActor,
            fn_constructor_args=(make_task, ledger, plan.threads, workers, output),
            batch_size=batch_size,
            batch_format="numpy",
            # One batch per actor at a time: batches queued behind one that kills its actor
            # would die with it and spend their one retry on another's fault.
            compute=ActorPoolStrategy(size=plan.actors, max_tasks_in_flight_per_actor=1),
            num_cpus=plan.cpus,
            num_gpus=plan.gpus or None,
            max_restarts=-1,
            max_task_retries=1,
            runtime_env=threads_env(plan.threads),
        )


def run_on_ray(
    make_task: Callable,
    items: Sequence[InputImage],
    book: Bookkeeper,
    plan: PoolPlan,
    *,
    batch_size: int,
    workers: int = 2,
) -> None:
    """Every input of ``items`` through ``make_task``'s workers on the connected Ray cluster; each outcome
    handed to ``book`` in input order (one the actors lost twice as an error record)."""
    import ray

    started_wall = time.time()
    ledger = ray.remote(num_cpus=0)(Ledger).remote()
    ds = ray.data.from_items(
        [item_row(i, it) for i, it in enumerate(items)], override_num_blocks=max(1, math.ceil(len(items) / batch_size))
    )
    ds = map_with_actors(ds, make_task, plan, batch_size, ledger, workers=workers)
    ds.context.execution_options.preserve_order = True  # outcomes come back in input order
    ds.context.max_errored_blocks = -1  # a batch lost twice becomes error records, not a failed job
    received: set[int] = set()
    try:
        try:
            for batch in _drained(ds, ledger, book.stop):
                for row in rows_of(batch):
                    if row["started"]:
                        received.add(int(row["index"]))
                        book.outcome(outcome_of(row))
        except _ray_failures() as err:  # e.g. every actor died loading the model: a setting the workers cannot use
            raise UsageError(f"the Ray workers failed: {one_line(err)}") from None
        if not book.stopping:
            for i in sorted(set(range(len(items))) - received):  # lost: the retry died too
                path = items[i].path
                book.outcome(
                    Outcome(i, [error_record(path, f"{path}: lost: the worker on it died, twice")], source=path)
                )
    finally:
        state = ray.get(ledger.state.remote())
        book.summary.retried, book.summary.actors = state["retried"], state["actors"]
        book.summary.startup_s = (state["first_begin"] or started_wall) - started_wall
        ray.kill(ledger)


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
    thread = threading.Thread(target=_consume, args=(ds, batches, done, end), name="gradcam-ray-results", daemon=True)
    thread.start()
    received, stopping = 0, False
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


def _consume(ds, batches: queue.Queue, done: threading.Event, end: object) -> None:
    """The dataset's batches into ``batches`` (in a thread of its own, so the driver can poll for Ctrl-C)."""
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
