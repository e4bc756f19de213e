"""Running an explanation job over many images: prefetching, batching, writing, the manifest.

Decoding and PNG encoding run in worker threads and overlap with the model, so on a
CPU the model is the bottleneck. Records come out in input order. A stop request
(SIGINT/SIGTERM in the CLI) lets the batch in flight finish, then the manifest is
written and the job ends.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..allocator import release_free_memory
from ..errors import GradcamError, ImageError
from ..explainer import Explainer
from ..options import JobOptions
from ..output.files import output_path, output_stem, sheet_path
from ..output.store import LOCAL
from ..output.write import encode_image, plan_image
from .images import load_photo
from .inputs import InputImage
from .manifest import Manifest, Record
from .records import error_record, explanation_record


# Pictures from this many pixels up leave their rendering buffers (some 20 bytes a pixel) to the system
# when written, rather than kept for reuse in each thread's arena; smaller ones gain from the reuse.
LARGE_PICTURE = 4_000_000


@dataclass
class JobSummary:
    """Counts for the one-line summary and the exit code."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    retried: int = 0  # images explained again after the worker explaining them died (distributed engine)
    stopped_on_failure: bool = False
    manifest_error: str | None = None  # the manifest could not be written

    @property
    def images_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Loaded:
    item: InputImage
    photo: object = None  # at most --max-output-pixels
    tensor: object = None
    geometry: object = None
    error: str | None = None
    full_size: tuple[int, int] | None = None  # the original photo's (width, height)


def outputs_complete(explainer: Explainer, item: InputImage, output_dir: Path, files=LOCAL) -> bool:
    """Whether every requested output of ``item`` already exists (for ``--skip-existing``).

    With explicit classes the exact files are known; with top-k, at least k files of
    each requested kind, method and layer must exist. ``files``: where they are
    (``output.store``: this machine, or a pyarrow filesystem).
    """
    opts = explainer.options
    directory = output_dir / item.out_subdir
    kinds = [(k, ".png") for k in opts.outputs]
    if opts.save_raw:
        kinds += [("map", ".npy")] + ([("guided", ".npy")] if "guided" in opts.outputs else [])
    if opts.sheet and not _sheets_complete(explainer, item.stem, directory, files):
        return False
    for method, layer in explainer.map_keys():
        for kind, suffix in kinds:
            if explainer.classes:
                if not all(files.exists(output_path(directory, item.stem, method, layer, c, kind, suffix))
                           for c in explainer.classes):
                    return False
            else:
                prefix = output_stem(item.stem, method, layer, 0)[: -len("c0")]
                matches = [n for n in files.glob(directory, f"{glob_escape(prefix)}c*_{kind}{suffix}")
                           if n[len(prefix) + 1:].split("_")[0].isdigit()]
                if len(matches) < opts.top_k:
                    return False
    return True


def _sheets_complete(explainer: Explainer, stem: str, directory: Path, files=LOCAL) -> bool:
    if explainer.classes:
        return all(files.exists(sheet_path(directory, stem, c)) for c in explainer.classes)
    prefix = sheet_path(directory, stem, 0).name[: -len("0.png")]
    found = [n for n in files.glob(directory, f"{glob_escape(prefix)}*.png") if n[len(prefix):-4].isdigit()]
    return len(found) >= explainer.options.top_k


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _load(explainer: Explainer, item: InputImage, data: bytes | None = None) -> _Loaded:
    if item.error is not None:  # known while collecting (a folder that cannot be listed)
        return _Loaded(item, error=item.error)
    try:
        photo, full_size = load_photo(item.path, explainer.options.max_output_pixels, data)
        tensor, geometry = explainer.prepare(photo)
        return _Loaded(item, photo, tensor, geometry, full_size=full_size)
    except ImageError as err:
        return _Loaded(item, error=str(err))
    except Exception as err:  # a decoder bug must not take the batch down
        return _Loaded(item, error=f"{item.path}: cannot decode image ({type(err).__name__}: {err})")


def _write_image(explainer: Explainer, loaded: _Loaded, exps, output_dir: Path, overwrite: bool,
                 compute_s: float, files=LOCAL) -> list[Record]:
    """Render and write one image's outputs; a failure leaves none of them and becomes an error record."""
    start = time.perf_counter()
    opts = explainer.options
    directory = output_dir / loaded.item.out_subdir
    planned = plan_image(directory, loaded.item.stem, exps, opts)
    try:
        if not overwrite:
            clash = next((p for _, f in planned for p in f.values() if files.exists(p)), None)
            if clash is not None:
                raise ImageError(f"{loaded.item.path}: output exists ({clash}); pass --overwrite or --skip-existing")
        encoded = encode_image(loaded.photo, planned, opts, explainer.layer_order, Path(loaded.item.path).name)
        files.write_all(encoded)  # all of this image's files, or none of them
        del encoded
        if loaded.photo.shape[0] * loaded.photo.shape[1] >= LARGE_PICTURE:
            release_free_memory()  # its buffers, freed in this and the model's thread, go back (see allocator.py)
    except (GradcamError, OSError) as err:
        cause = str(err) if isinstance(err, GradcamError) else \
            f"{loaded.item.path}: cannot write output ({err.strerror or err})"
        return [error_record(loaded.item.path, cause)]
    seconds = compute_s + time.perf_counter() - start
    name, weights = explainer.loaded.name, explainer.loaded.weights
    return [explanation_record(name, weights, loaded.item.path, loaded.photo, e,
                               {k: files.uri(p) for k, p in paths.items()}, seconds, loaded.full_size)
            for e, paths in planned]


def run_job(
    explainer: Explainer,
    items: Sequence[InputImage],
    output_dir: Path,
    job: JobOptions | None = None,
    on_record: Callable[[Record], None] | None = None,
    on_progress: Callable[[JobSummary], None] | None = None,
    stop: threading.Event | None = None,
) -> JobSummary:
    """Explain ``items`` into ``output_dir``; every image ends as records, an error record, or skipped."""
    job = job or JobOptions()
    stop = stop or threading.Event()
    emit = on_record or (lambda r: None)
    progress = on_progress or (lambda s: None)
    opts = explainer.options
    summary = JobSummary(total=len(items))
    started = time.perf_counter()
    manifest = Manifest(output_dir / job.manifest_name)
    todo: list[InputImage] = []
    for item in items:
        if job.skip_existing and item.error is None and outputs_complete(explainer, item, output_dir):
            summary.skipped += 1
        else:
            todo.append(item)
    progress(summary)
    loaders = ThreadPoolExecutor(job.workers, thread_name_prefix="gradcam-load") if job.workers > 0 else None
    writers = ThreadPoolExecutor(job.workers, thread_name_prefix="gradcam-write") if job.workers > 0 else None
    pending_writes: deque[tuple[_Loaded, Future | list[Record]]] = deque()
    last_checkpoint = time.perf_counter()

    def finish(loaded: _Loaded, records: list[Record]) -> None:
        nonlocal last_checkpoint
        failed = any("error" in r for r in records)
        summary.failed += failed
        summary.done += not failed
        for r in records:
            manifest.add(r)
            emit(r)
        progress(summary)
        if failed and job.fail_fast:
            summary.stopped_on_failure = True
            stop.set()
        if time.perf_counter() - last_checkpoint > job.checkpoint_s:
            write_manifest()
            last_checkpoint = time.perf_counter()

    def write_manifest() -> None:
        try:
            manifest.write()
        except OSError as err:
            summary.manifest_error = f"{manifest.path}: cannot write the manifest ({err.strerror or err})"

    def drain(keep: int) -> None:
        while len(pending_writes) > keep:
            loaded, fut = pending_writes.popleft()
            finish(loaded, fut.result() if isinstance(fut, Future) else fut)

    try:
        for batch in _prefetched_batches(explainer, todo, opts.batch_size, loaders, stop):
            pending_writes.extend(explain_loaded(explainer, batch, output_dir, writers))
            drain(keep=2 * opts.batch_size)  # bounded: memory stays flat however many images
            if stop.is_set():
                break
        drain(keep=0)
    finally:
        for pool in (loaders, writers):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        summary.interrupted = stop.is_set() and not summary.stopped_on_failure
        summary.seconds = time.perf_counter() - started
        write_manifest()
    return summary


def explain_loaded(explainer: Explainer, batch: list[_Loaded], output_dir: Path, writers: ThreadPoolExecutor | None,
                   files=LOCAL) -> list[tuple[_Loaded, Future | list[Record]]]:
    """Explain one batch of decoded images in one pass; each image's outputs are written by ``writers``.

    Returns, in input order, each image with its records (or the future of them): an
    image that failed to decode, or a batch the model failed on, gets an error record.
    """
    good = [b for b in batch if b.error is None]
    results: dict[int, Future | list[Record]] = {}
    if good:
        t0 = time.perf_counter()
        try:
            explanations = explainer.explain_prepared([b.tensor for b in good], [b.geometry for b in good])
        except GradcamError:
            raise
        except Exception as err:  # e.g. out of memory: this batch fails, the job goes on
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            for b in good:
                results[id(b)] = [error_record(b.item.path, f"{b.item.path}: model failed "
                                                            f"({type(err).__name__}: {first})")]
        else:
            per_image = (time.perf_counter() - t0) / len(good)
            for b, exps in zip(good, explanations):
                b.tensor = None  # the photo stays until its PNGs are written; the input can go
                args = (explainer, b, exps, output_dir, explainer.options.overwrite, per_image, files)
                results[id(b)] = writers.submit(_write_image, *args) if writers else _write_image(*args)
    return [(b, results.get(id(b)) or [error_record(b.item.path, b.error)]) for b in batch]


def _prefetched_batches(explainer: Explainer, items: Sequence[InputImage], batch_size: int,
                        pool: ThreadPoolExecutor | None, stop: threading.Event) -> Iterator[list[_Loaded]]:
    """Batches of decoded images, decoding up to two batches ahead in the pool."""
    if pool is None:
        for i in range(0, len(items), batch_size):
            if stop.is_set():
                return
            yield [_load(explainer, it) for it in items[i:i + batch_size]]
        return
    ahead: deque[Future] = deque()
    queue = iter(items)
    window = 2 * batch_size

    def fill() -> None:
        while len(ahead) < window and not stop.is_set():
            nxt = next(queue, None)
            if nxt is None:
                return
            ahead.append(pool.submit(_load, explainer, nxt))

    fill()
    while ahead:
        batch = [ahead.popleft().result() for _ in range(min(batch_size, len(ahead)))]
        fill()
        yield batch
        if stop.is_set():
            return
