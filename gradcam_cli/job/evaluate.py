"""``evaluate`` as a task: each annotated image's maps measured against its boxes and the model.

Workers (in this process, or Ray's actors) measure their batches and hand back each image's
measurements as the outcome's payload; the caller gathers them in input order into one
`Measurements`. The sanity check then runs here, on the
first ``sanity_images`` images, against randomised copies of the model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import GradcamError, UsageError
from ..io.inputs import InputImage
from ..io.records import error_record
from ..metrics.annotations import Annotations, ImageTruth
from ..model.tasks import model_kind
from ..options import EngineOptions, EvaluateOptions, ExplainOptions, JobOptions, ModelOptions, check_request
from ..targets import check_evaluable
from .bookkeeper import Bookkeeper, JobSummary
from .explain import explainer_for
from .run import check_engine, job_inputs, run_job
from .task import Decoded, Outcome, decode_with

# Most annotated boxes reaching outside their photos suggests annotations made at another scale.
WRONG_SCALE_SHARE = 0.5


@dataclass(frozen=True)
class EvaluateTask:
    """Measure the maps of annotated images. Picklable: Ray sends it to every actor."""

    model: object  # ModelOptions, LoadedModel, or an Explainer already made in this process
    options: ExplainOptions
    measure: EvaluateOptions
    truths: dict[str, ImageTruth]  # by input path, classes resolved to the model's indices

    def __call__(self) -> EvaluateWorker:
        return EvaluateWorker(self)


class EvaluateWorker:
    """The model, loaded once: annotated inputs in, each image's measurements out."""

    def __init__(self, task: EvaluateTask) -> None:
        self.task = task
        self.explainer = explainer_for(task.model, task.options)
        self.device = self.explainer.device

    def skip(self, item: InputImage) -> bool:
        return False

    def decode(self, item: InputImage, data: bytes | None = None) -> Decoded:
        return decode_with(self.explainer, item, data)

    def run(self, batch: Sequence[Decoded], writers: Executor | None = None) -> list[Outcome]:
        """Every decoded image measured, one pass of the model per input size."""
        from ..explainer import same_size_groups

        outcomes = {
            id(d): Outcome(0, [error_record(d.item.path, d.error)], source=d.item.path)
            for d in batch
            if d.error is not None
        }
        good = [d for d in batch if d.error is None]
        for group in same_size_groups([d.tensor for d in good]):
            outcomes.update(self._measured([good[i] for i in group]))
        return [outcomes[id(d)] for d in batch]

    def _measured(self, chunk: list[Decoded]) -> dict[int, Outcome]:
        """One pass for same-sized photos; a failure (out of memory, say) fails these photos only."""
        from ..metrics.measure import measure_batch

        try:
            measured = measure_batch(
                self.explainer, chunk, [self.task.truths[d.item.path] for d in chunk], self.task.measure
            )
        except GradcamError:
            raise
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return {
                id(d): Outcome(
                    0,
                    [error_record(d.item.path, f"{d.item.path}: model failed ({type(err).__name__}: {first})")],
                    source=d.item.path,
                )
                for d in chunk
            }
        return {id(d): Outcome(0, [], source=d.item.path, payload=measured.of_image(d.item.path)) for d in chunk}


def annotated(
    items: Sequence[InputImage], annotations: Annotations, message: Callable[[str], None]
) -> dict[InputImage, ImageTruth]:
    """The items that have annotations, with them; the others reported as skipped."""
    truths: dict[InputImage, ImageTruth] = {}
    for item in items:
        truth = annotations.for_image(item.path) if item.error is None else None
        if truth is None and item.error is None:
            message(f"{item.path}: no annotations; skipped")
        elif truth is not None:
            truths[item] = truth
    return truths


def evaluate_job(
    explainer,
    items: Sequence[InputImage],
    annotations: Annotations,
    measure: EvaluateOptions,
    job: JobOptions | None = None,
    engine: EngineOptions | None = None,
    *,
    model: object = None,
    stop: threading.Event | None = None,
    on_progress: Callable | None = None,
    on_message: Callable[[str], None] | None = None,
) -> tuple[object, JobSummary]:
    """Measure every map of every annotated image, then (with ``measure.sanity``) the sanity check.

    ``explainer``: made here (it checks the request and runs the sanity check); ``model``: what the
    workers load instead (the model's options, for Ray's actors), by default ``explainer`` itself.
    """
    from ..metrics.measurements import Measurements

    job, message = job or JobOptions(), on_message or (lambda m: None)
    truths = annotated(items, annotations, message)
    state = Measurements.of(explainer)
    book = Bookkeeper(
        len(truths),
        None,
        fail_fast=job.fail_fast,
        on_progress=on_progress,
        stop=stop,
        on_outcome=lambda o: _gathered(o, state, message),
        on_record=lambda r: message(r["error"]) if "error" in r else None,
    )
    task = EvaluateTask(
        model or explainer,
        replace(explainer.options, outputs=()),
        replace(measure, sanity=False),
        {item.path: truth for item, truth in truths.items()},
    )
    summary = run_job(
        task, list(truths), book, engine=engine, batch_size=explainer.options.batch_size, workers=job.workers
    )
    missing = [i for i in items if i not in truths]
    summary.total, summary.skipped = len(items), summary.skipped + sum(1 for i in missing if i.error is None)
    summary.failed += sum(1 for i in missing if i.error is not None)
    for item in missing:
        if item.error is not None:
            message(item.error)
    _warn_wrong_scale(state, message)
    if measure.sanity and state.samples and not book.stopping:
        state.sanity = _sanity(
            explainer, [i for i in truths if i.path in state.images()][: measure.sanity_images], truths
        )
    return state, summary


def _gathered(outcome: Outcome, state, message: Callable[[str], None]) -> None:
    if outcome.payload is None:
        return
    state.add(outcome.payload)
    for check in outcome.payload.box_checks:
        if check.note():
            message(check.note())


def _warn_wrong_scale(state, message: Callable[[str], None]) -> None:
    reaching = state.boxes_outside + state.boxes_clipped
    if state.boxes and reaching / state.boxes > WRONG_SCALE_SHARE:
        message(
            f"warning: {reaching} of {state.boxes} annotated boxes reach outside their photos: are the "
            "annotations in the pixels of other (resized) copies of the photos?"
        )


def _sanity(explainer, items: Sequence[InputImage], truths: dict[InputImage, ImageTruth]) -> dict:
    """The sanity check on ``items``, decoded again here: the trained model's maps, then the cascade."""
    from ..explainer import same_size_groups
    from ..metrics.measure import check_boxes, inside_photo, sanity_curves, sanity_images

    decoded = [decode_with(explainer, item) for item in items]
    good = [(d, inside_photo(truths[d.item], check_boxes(d, truths[d.item]))) for d in decoded if d.error is None]
    good = [(d, t) for d, t in good if t.objects]
    parts = [
        sanity_images(explainer, [good[i][0] for i in group], [good[i][1] for i in group])
        for group in same_size_groups([d.tensor for d, _ in good])
    ]
    return sanity_curves(explainer, parts, explainer.map_keys()) if parts else {}


def evaluate_folder(
    inputs: Sequence[str],
    output_dir: str,
    model: ModelOptions,
    options: ExplainOptions,
    measure: EvaluateOptions,
    job: JobOptions | None = None,
    engine: EngineOptions | None = None,
    callbacks=None,
) -> tuple[object, JobSummary, list[dict]]:
    """``gradcam evaluate``: the annotated images ``inputs`` name, measured by the chosen engine, and the
    evaluation's files written into ``output_dir``; returns the measurements, the job's counts and the
    per-(method, layer) summaries. Every bad request is a usage error before the model loads."""
    from ..metrics.annotations import read_annotations
    from ..metrics.report import refuse_existing, write_evaluation
    from .explain import Callbacks
    from .output_folder import check_output_dir

    job, engine, calls = job or JobOptions(), engine or EngineOptions(), callbacks or Callbacks()
    options = replace(options, outputs=())
    for checked in (model, options, measure, engine):
        checked.validate()
    check_request(model, options)
    check_evaluable(model_kind(model.name, model.num_classes), measure)
    job.validate()
    check_output_dir(output_dir)
    items = job_inputs(inputs, job, output_dir, calls.message)
    refuse_existing(Path(output_dir), measure.overwrite)
    truth = read_annotations(measure.annotations)
    if not any(truth.for_image(item.path) for item in items):
        raise UsageError(
            f"--annotations {measure.annotations}: none of the {len(items)} input images is annotated "
            "there (matched by path, or by file name where only one annotated file has it)"
        )
    explainer = _checked_explainer(model, options, engine, calls)
    truth.resolve(explainer.loaded.labels, explainer.loaded.num_classes)
    for notice in explainer.notices:
        calls.message(notice)
    measured, summary = evaluate_job(
        explainer,
        items,
        truth,
        measure,
        job,
        engine,
        model=model if engine.engine == "ray" else None,
        stop=calls.stop,
        on_progress=calls.on_progress,
        on_message=calls.message,
    )
    summaries = write_evaluation(explainer, measured, Path(output_dir), summary)
    return measured, summary, summaries


def _checked_explainer(model: ModelOptions, options: ExplainOptions, engine: EngineOptions, calls):
    """The explainer here: it checks the request (on Ray, on this machine's CPU) and runs the sanity check."""
    on_ray = check_engine(model.device, engine)
    calls.checked()
    return explainer_for(replace(model, device="cpu") if on_ray else model, options)
