"""``explain`` as a Ray task: what each actor does with a batch of rows (see ``ray_engine``).

The same code as the local engine, batch by batch: ``runner._load`` decodes,
``Explainer.explain_prepared`` explains, ``runner.explain_loaded`` writes every
image's files (all or none) through ``output.store``, so the files and records are
the local engine's.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from ..options import ExplainOptions, ModelOptions
from ..output.store import LOCAL, open_folder
from .inputs import InputImage, _safe_rel
from .ray_engine import Outcome
from .runner import _Loaded, _load, explain_loaded, outputs_complete


@dataclass(frozen=True)
class ExplainTask:
    """Explain images into ``destination`` (a folder, or a URI such as ``s3://bucket/out``).

    Picklable: Ray sends it to every actor, which calls it once to load the model and
    get the batch function. ``destination=None`` writes no file (records only).
    """

    model: ModelOptions
    options: ExplainOptions
    destination: str | None
    filesystem: object = None  # a pyarrow filesystem that ``destination`` is a path on
    workers: int = 2  # decoding and encoding threads in each actor
    skip_existing: bool = False

    def __call__(self) -> "ExplainBatches":
        return ExplainBatches(self)


class ExplainBatches:
    """The model, loaded once in the actor, and the output folder: rows in, outcomes out."""

    def __init__(self, task: ExplainTask) -> None:
        from ..explainer import Explainer

        options = task.options if task.destination is not None else replace(task.options, outputs=(), save_raw=False)
        self.explainer = Explainer.from_options(actor_model_options(task.model), options)
        self.device = self.explainer.device
        if task.destination is None:
            self.files, self.root = LOCAL, PurePosixPath(".")  # nothing to write: no files planned
        else:
            self.files, self.root = open_folder(task.destination, task.filesystem)
        self.skip_existing = task.skip_existing
        self.pool = ThreadPoolExecutor(task.workers, thread_name_prefix="gradcam-io") if task.workers else None

    def __call__(self, rows: list[dict]) -> list[Outcome]:
        items = [item_of(r) for r in rows]
        skip = [self.skip_existing and outputs_complete(self.explainer, it, self.root, self.files) for it in items]
        todo = [(r, it) for r, it, s in zip(rows, items, skip) if not s]
        decode = lambda pair: decode_row(self.explainer, *pair)  # noqa: E731
        loaded = list(self.pool.map(decode, todo) if self.pool else map(decode, todo))
        results = iter(explain_loaded(self.explainer, loaded, self.root, self.pool, self.files))
        outcomes = []
        for row, item, skipped in zip(rows, items, skip):
            index = int(row.get("index", 0))
            if skipped:
                outcomes.append(Outcome(index, [], skipped=True, source=item.path))
                continue
            _, result = next(results)
            outcomes.append(Outcome(index, result.result() if isinstance(result, Future) else result, source=item.path))
        return outcomes


def decode_row(explainer, row: dict, item: InputImage) -> _Loaded:
    """One row's photo, decoded and preprocessed: from the row's bytes, a URI, or a local path."""
    data = row.get("bytes")
    if data is None and "://" in item.path:
        try:
            data = read_uri(item.path)
        except (OSError, ValueError) as err:  # missing, unreachable, or not a URI pyarrow knows
            return _Loaded(item, error=f"{item.path}: cannot read ({' '.join(str(err).split())[:200]})")
    return _load(explainer, item, data)


def actor_model_options(model: ModelOptions) -> ModelOptions:
    """``--device auto`` in an actor means the GPU Ray gave it, if any: Ray does not hide the
    node's GPUs from an actor without a GPU share, and several such actors would crowd onto one."""
    import ray

    if model.device == "auto" and not ray.get_gpu_ids():
        return replace(model, device="cpu")
    return model


def check_device(device: str, gpus_per_actor: float) -> None:
    """A CUDA device asked for with no GPU share: Ray would give the actors none."""
    from ..errors import UsageError

    if device.startswith("cuda") and not gpus_per_actor:
        raise UsageError(f"--device {device} with --engine ray needs --gpus-per-actor (Ray gives actors their GPUs)")


def item_of(row: dict) -> InputImage:
    """The input of one row: the driver's listing (``rel``, ``stem``), or a ``path`` mirrored below the output."""
    path = str(row["path"])
    rel = row.get("rel")
    if not rel:
        rel = _safe_rel(PurePosixPath(path.split("://", 1)[-1]).parts)  # s3://bucket/a/b.jpg -> bucket/a/b.jpg
    return InputImage(path, PurePosixPath(rel), row.get("stem") or None)


def read_uri(uri: str) -> bytes:
    """The bytes of a file named by URI, through pyarrow's filesystems."""
    from pyarrow.fs import FileSystem

    filesystem, path = FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as fh:
        return fh.read()
