"""``explain`` as a task: each image's maps, its pictures (all written, or none) and its records.

The same code runs in this process and in every Ray actor. With a destination the files go
there (a folder, or a URI through pyarrow); without one nothing is written and the records
(and, for the Python API, the explanations themselves) are all there is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from ..allocator import release_free_memory
from ..errors import GradcamError, ImageError
from ..io.inputs import InputImage
from ..io.records import error_record, explanation_record
from ..options import EngineOptions, ExplainOptions, JobOptions, ModelOptions, check_request
from ..output.files import output_path, output_stem, sheet_path
from ..output.store import LOCAL, open_folder
from .bookkeeper import Bookkeeper, JobSummary
from .output_folder import check_output_dir, open_output
from .run import check_engine, job_inputs, run_job
from .task import Decoded, Outcome, decode_with, run_batch

# Pictures from this many pixels up leave their rendering buffers (some 20 bytes a pixel) to the system
# when written, rather than kept for reuse in each thread's arena; smaller ones gain from the reuse.
LARGE_PICTURE = 4_000_000


@dataclass(frozen=True)
class ExplainTask:
    """Explain images into ``destination`` (a folder, a URI such as ``s3://bucket/out``, or None: write nothing).

    ``model``: options naming the model (each process loads it), or a loaded model (the Python
    API's own module; pickled to Ray's actors). ``keep_explanations``: each outcome carries the
    image's `Explanation` objects (the Python API's maps).
    """

    model: object  # ModelOptions, LoadedModel, or an Explainer already made in this process
    options: ExplainOptions
    destination: str | None = None
    filesystem: object = None  # a pyarrow filesystem that ``destination`` is a path on
    skip_existing: bool = False
    keep_explanations: bool = False

    def __call__(self) -> ExplainWorker:
        return ExplainWorker(self)


def explainer_for(model, options: ExplainOptions):
    """The `Explainer` of a task's model: loaded here from its options, made for
    the loaded model the task carries, or (in this process) the explainer itself, when its options agree."""
    from ..explainer import Explainer

    if isinstance(model, ModelOptions):
        return Explainer.from_options(model, options)
    if isinstance(model, Explainer):
        return model if model.options == options else Explainer(model.loaded, options)
    return Explainer(model, options)


class ExplainWorker:
    """The model, loaded once, and the output folder: inputs in, outcomes out."""

    def __init__(self, task: ExplainTask) -> None:
        options = task.options
        if task.destination is None and not task.keep_explanations:  # records only: no picture is computed
            options = replace(options, outputs=(), save_raw=False, sheet=False)
        self.explainer = explainer_for(task.model, options)
        self.device = self.explainer.device
        self.task = task
        if task.destination is None:
            self.files, self.root = LOCAL, PurePosixPath(".")  # nothing to write: no files planned
        else:
            self.files, self.root = open_folder(task.destination, task.filesystem)
        self._checked_dirs: set[PurePosixPath] = set()  # output folders known to hold no symbolic link

    def skip(self, item: InputImage) -> bool:
        return self.task.skip_existing and outputs_complete(self.explainer, item, self.root, self.files)

    def decode(self, item: InputImage, data: bytes | None = None) -> Decoded:
        return decode_with(self.explainer, item, data)

    def run(self, batch: Sequence[Decoded], writers: Executor | None) -> list:
        """One model pass for the decoded inputs; each image's files written by ``writers`` (or inline)."""
        prepared = self.explainer.explain_prepared
        return run_batch(
            batch, writers, lambda good: prepared([d.tensor for d in good], [d.geometry for d in good]), self.finish
        )

    def finish(self, decoded: Decoded, explanations, compute_s: float) -> Outcome:
        """One image's pictures written (all or none) and its records made."""
        start = time.perf_counter()
        import numpy as np

        from ..output.write import plan_image

        item, opts = decoded.item, self.explainer.options
        directory = self.root / item.out_subdir
        planned = plan_image(directory, item.stem, explanations, opts)
        try:
            if self.task.destination is not None:
                self._write(decoded, planned)
        except Exception as err:  # a full disk, a rendering fault: this image fails, the job goes on
            return Outcome(0, [error_record(item.path, _write_failure(item, err))], source=item.path)
        seconds = compute_s + time.perf_counter() - start
        loaded = self.explainer.loaded
        width, height = decoded.geometry.original_size
        shown = decoded.photo if decoded.photo is not None else np.empty((height, width, 3), np.uint8)  # a tensor
        records = [
            explanation_record(
                loaded.name, loaded.weights, item.path, shown, e, self._uris(paths), seconds, decoded.full_size
            )
            for e, paths in planned
        ]
        payload = explanations if self.task.keep_explanations else None
        return Outcome(0, records, source=item.path, payload=payload)

    def _uris(self, paths: dict) -> dict:
        """Where the record says its files are (none without a destination: nothing was written)."""
        return {k: self.files.uri(p) for k, p in paths.items()} if self.task.destination is not None else {}

    def _write(self, decoded: Decoded, planned) -> None:
        from ..output.write import encode_image

        item, opts = decoded.item, self.explainer.options
        self._refuse_links(item)
        if not opts.overwrite:
            clash = next((p for _, f in planned for p in f.values() if self.files.exists(p)), None)
            if clash is not None:
                raise ImageError(f"{item.path}: output exists ({clash}); pass --overwrite or --skip-existing")
        encoded = encode_image(decoded.photo, planned, opts, self.explainer.layer_order, Path(item.path).name)
        self.files.write_all(encoded)  # all of this image's files, or none of them
        del encoded
        if decoded.photo.shape[0] * decoded.photo.shape[1] >= LARGE_PICTURE:
            release_free_memory()  # its buffers, freed in this and the model's thread, go back (see allocator.py)

    def _refuse_links(self, item: InputImage) -> None:
        """Outputs go only into real folders below the output folder, never through a symbolic link in it."""
        if self.files is not LOCAL or item.out_subdir in self._checked_dirs:
            return
        folder = Path(self.root)
        for part in item.out_subdir.parts:
            folder = folder / part
            if os.path.islink(folder):
                raise ImageError(
                    f"{item.path}: cannot write output: {folder} is a symbolic link (outputs are "
                    "written only into real folders below the output folder)"
                )
        self._checked_dirs.add(item.out_subdir)


def _write_failure(item: InputImage, err: Exception) -> str:
    if isinstance(err, GradcamError):
        return str(err)
    if isinstance(err, OSError):
        return f"{item.path}: cannot write output ({err.strerror or err})"
    return f"{item.path}: cannot draw output ({type(err).__name__}: {_first(err)})"


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def outputs_complete(explainer, item: InputImage, output_dir, files=LOCAL) -> bool:
    """Whether every requested output of ``item`` already exists (for ``--skip-existing``).

    With explicit classes the exact files are known; with top-k, at least k files of each
    requested kind, method and layer must exist. ``files``: where they are (``output.store``).
    """
    opts = explainer.options
    directory = output_dir / item.out_subdir
    kinds = [(k, ".png") for k in opts.outputs]
    if opts.save_raw:
        kinds += [("map", ".npy")] + ([("guided", ".npy")] if "guided" in opts.outputs else [])
    if opts.sheet and not _sheets_complete(explainer, item.stem, directory, files):
        return False
    return all(
        _kind_complete(explainer, item, directory, files, method, layer, kind, suffix)
        for method, layer in explainer.map_keys()
        for kind, suffix in kinds
    )


def _kind_complete(explainer, item, directory, files, method, layer, kind, suffix) -> bool:
    if explainer.classes:
        return all(
            files.exists(output_path(directory, item.stem, method, layer, c, kind, suffix)) for c in explainer.classes
        )
    prefix = output_stem(item.stem, method, layer, 0)[: -len("c0")]
    matches = [
        n
        for n in files.glob(directory, f"{glob_escape(prefix)}c*_{kind}{suffix}")
        if n[len(prefix) + 1 :].split("_")[0].isdigit()
    ]
    return len(matches) >= explainer.options.top_k


def _sheets_complete(explainer, stem: str, directory, files=LOCAL) -> bool:
    if explainer.classes:
        return all(files.exists(sheet_path(directory, stem, c)) for c in explainer.classes)
    prefix = sheet_path(directory, stem, 0).name[: -len("0.png")]
    found = [n for n in files.glob(directory, f"{glob_escape(prefix)}*.png") if n[len(prefix) : -4].isdigit()]
    return len(found) >= explainer.options.top_k


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


@dataclass
class Callbacks:
    """What a job tells its caller as it goes (the command's console, or nothing)."""

    on_record: object = None  # Callable[[Record], None]
    on_progress: object = None  # Callable[[JobSummary], None]
    on_message: object = None  # Callable[[str], None]: what a user should hear (listing, skipped methods)
    stop: object = None  # threading.Event: set to stop taking new work
    before_model: object = None  # Callable[[], None]: every check passed, the model about to load (torch's threads)

    def message(self, text: str) -> None:
        if self.on_message is not None:
            self.on_message(text)

    def checked(self) -> None:
        if self.before_model is not None:
            self.before_model()


def explain_folder(
    inputs: Sequence[str],
    output_dir: str,
    model: ModelOptions,
    options: ExplainOptions,
    job: JobOptions | None = None,
    engine: EngineOptions | None = None,
    callbacks: Callbacks | None = None,
) -> JobSummary:
    """``gradcam explain``: the images ``inputs`` name, explained into ``output_dir`` (its pictures, ``results.jsonl``
    and ``run.json``) by the chosen engine. Every bad request is a usage error before the model loads."""
    job, engine, calls = job or JobOptions(), engine or EngineOptions(), callbacks or Callbacks()
    for checked in (model, options, engine):
        checked.validate()
    check_request(model, options)
    job.validate(overwrite=options.overwrite)
    check_output_dir(output_dir)
    items = job_inputs(inputs, job, output_dir, calls.message)
    on_ray = check_engine(model.device, engine)
    calls.checked()
    # On Ray the model here (on the CPU) checks the request: a bad layer or class costs no actor.
    explainer = explainer_for(replace(model, device="cpu") if on_ray else model, options)
    for notice in explainer.notices:
        calls.message(notice)
    return run_explain(
        explainer,
        items,
        output_dir,
        job,
        engine,
        model=model if on_ray else None,
        on_record=calls.on_record,
        on_progress=calls.on_progress,
        stop=calls.stop,
        run_options={"model": model, "explain": options, "job": job},
    )


def run_explain(
    explainer,
    items: Sequence[InputImage],
    output_dir: str | os.PathLike,
    job: JobOptions | None = None,
    engine: EngineOptions | None = None,
    *,
    model: object = None,
    on_record=None,
    on_progress=None,
    stop=None,
    run_options: dict | None = None,
) -> JobSummary:
    """Explain ``items`` with ``explainer`` into ``output_dir``: its manifest opened (and locked), ``run.json``
    written, then the job run by ``engine``; every image ends as records, an error record, or skipped.

    ``model``: what Ray's actors load (the model's options), by default the explainer itself.
    """
    job = job or JobOptions()
    output_dir = str(output_dir)
    options = run_options or {"explain": explainer.options, "job": job}
    manifest = open_output(output_dir, job.manifest_name, explainer, options)
    task = ExplainTask(model or explainer, explainer.options, output_dir, skip_existing=job.skip_existing)
    book = Bookkeeper(
        len(items),
        manifest,
        fail_fast=job.fail_fast,
        checkpoint_s=job.checkpoint_s,
        on_record=on_record,
        on_progress=on_progress,
        stop=stop,
    )
    return run_job(task, items, book, engine=engine, batch_size=explainer.options.batch_size, workers=job.workers)
