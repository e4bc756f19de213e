"""What runs on the cluster: the task's worker inside a Ray actor, and the job's ledger.

Each actor calls the task once (loading the model there) and then, per batch of rows, does what
the local executor does per batch: skips, decodes in threads, runs the batch, waits for the
writes. Outcomes travel back as columns (records as JSON, the task's payload pickled: it comes
from this job's own actors and is trusted as Ray's own pickles are).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import PurePosixPath

from ...io.inputs import InputImage, safe_rel
from ...io.records import error_record
from ...options import ModelOptions
from ..task import Outcome
from .pool import actor_model_options
from .session import one_line


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
        return {
            "running": len(self.running),
            "finished": self.finished,
            "retried": sum(1 for n in self.starts.values() if n > 1),
            "actors": self.actors,
            "first_begin": self.first_begin,
        }


def placement(device: str) -> dict:
    """Where this actor runs (for the summary and the GPU placement check)."""
    import ray

    ctx = ray.get_runtime_context()
    return {
        "node": ctx.get_node_id(),
        "pid": os.getpid(),
        "gpus": [str(g) for g in ray.get_gpu_ids()],
        "device": device,
        "restarted": bool(ctx.was_current_actor_reconstructed),
    }


def for_this_actor(task: Callable) -> Callable:
    """The task with ``--device auto`` meaning this actor's own GPU, if Ray gave it one."""
    model = getattr(task, "model", None)
    if dataclasses.is_dataclass(task) and isinstance(model, ModelOptions):
        return dataclasses.replace(task, model=actor_model_options(model))
    return task


class TaskActor:
    """The class Ray Data runs as actors: the task's worker, made once, then rows in, outcome columns out."""

    def __init__(
        self, make_task: Callable, ledger=None, threads: int = 0, workers: int = 2, output: str = "outcomes"
    ) -> None:
        import ray
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.ledger, self.output = ledger, output
        self.worker = for_this_actor(make_task)()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="gradcam-io") if workers else None
        if ledger is not None:
            ray.get(ledger.hello.remote(placement(str(getattr(self.worker, "device", "cpu")))))

    def __call__(self, batch: dict) -> dict:
        import ray

        rows = rows_of(batch)
        indices = [int(r.get("index", i)) for i, r in enumerate(rows)]
        if self.ledger is not None and not ray.get(self.ledger.begin.remote(indices)):
            return outcome_columns([Outcome(i, [], started=False) for i in indices])
        try:
            outcomes = self.run(rows, indices)
        except Exception as err:  # a fault in the task fails this batch's images, not the job
            cause = f"worker failed ({type(err).__name__}: {one_line(err)})"
            outcomes = [
                Outcome(i, [error_record(str(r.get("path")), f"{r.get('path')}: {cause}")])
                for i, r in zip(indices, rows)
            ]
        if self.ledger is not None:
            ray.get(self.ledger.finish.remote(indices))
        return record_columns(outcomes) if self.output == "records" else outcome_columns(outcomes)

    def run(self, rows: list[dict], indices: list[int]) -> list[Outcome]:
        """One batch, as the local executor runs it: skipped inputs, decoding in threads, the batch, the writes."""
        items = [item_of(r) for r in rows]
        outcomes: dict[int, Outcome] = {}
        todo = []
        for index, row, item in zip(indices, rows, items):
            if item.error is None and self.worker.skip(item):
                outcomes[index] = Outcome(index, [], skipped=True, source=item.path)
            else:
                todo.append((index, row, item))
        decode = lambda t: self.worker.decode(t[2], t[1].get("bytes"))  # noqa: E731
        decoded = list(self.pool.map(decode, todo) if self.pool else map(decode, todo))
        for (index, _, item), result in zip(todo, self.worker.run(decoded, self.pool)):
            result = result.result() if isinstance(result, Future) else result
            outcomes[index] = dataclasses.replace(result, index=index, source=result.source or item.path)
        return [outcomes[i] for i in indices]


def item_of(row: dict) -> InputImage:
    """The input of one row: the driver's listing (``rel``, ``name``), or a ``path`` mirrored below the output."""
    path = str(row["path"])
    rel = row.get("rel")
    if not rel:
        rel = str(safe_rel(PurePosixPath(path.split("://", 1)[-1]).parts))  # s3://bucket/a/b.jpg -> bucket/a/b.jpg
    blob = row.get("blob")
    if blob is not None:  # an image the Python API held in memory
        return pickle.loads(blob)
    return InputImage(path, PurePosixPath(rel), row.get("name") or None, row.get("error") or None)


def item_row(index: int, item: InputImage) -> dict:
    """One input as a row of the job's dataset: paths travel, not pixels (but for images held in memory)."""
    row = {"index": index, "path": item.path, "rel": str(item.rel), "name": item.name or "", "error": item.error or ""}
    if type(item) is not InputImage:
        row["blob"] = pickle.dumps(item, protocol=5)
    return row


def rows_of(batch: dict) -> list[dict]:
    """Ray's column batch as one dict per row, numpy scalars made plain Python values."""
    columns = list(batch)
    count = len(batch[columns[0]]) if columns else 0
    return [{c: _plain(batch[c][i]) for c in columns} for i in range(count)]


def _plain(value):
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


def outcome_columns(outcomes: Sequence[Outcome]) -> dict:
    return {
        "index": [o.index for o in outcomes],
        "records": [json.dumps(o.records, ensure_ascii=False, allow_nan=False) for o in outcomes],
        "skipped": [o.skipped for o in outcomes],
        "started": [o.started for o in outcomes],
        "source": [o.source for o in outcomes],
        "payload": [pickle.dumps(o.payload, protocol=5) if o.payload is not None else b"" for o in outcomes],
    }


def outcome_of(row: dict) -> Outcome:
    """An outcome back from its columns."""
    payload = row.get("payload")
    return Outcome(
        int(row["index"]),
        json.loads(row["records"]),
        bool(row["skipped"]),
        bool(row["started"]),
        str(row.get("source") or ""),
        pickle.loads(payload) if payload else None,
    )


RECORD_COLUMNS = (
    "input",
    "model",
    "weights",
    "layer",
    "method",
    "class_specific",
    "rank",
    "class_index",
    "class_name",
    "probability",
    "score",
    "target",
    "target_value",
    "head",
    "versus_index",
    "versus_name",
    "reference",
    "detection",
    "mask_area",
    "bbox",
    "boxes",
    "box_covers_photo",
    "view",
    "image_size",
    "output_size",
    "grid",
    "layout",
    "prefix_tokens",
    "map_empty",
    "files",
    "time_s",
    "warnings",
    "skipped",
    "error",
)


def record_columns(outcomes: Sequence[Outcome]) -> dict:
    """One row per record, every row with the same columns (None where a record has no such field)."""
    rows = [dict(r, skipped=False) for o in outcomes for r in o.records]
    rows += [{"input": o.source, "skipped": True} for o in outcomes if o.skipped]
    return {c: [r.get(c) for r in rows] for c in RECORD_COLUMNS}
