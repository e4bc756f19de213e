"""``compare`` in one process: two models explain the same photos, and each pair of explanations is measured.

The task's worker holds both explainers. Each photo is decoded once (and prepared once more only where the
candidate's preprocessing differs) and each decoded batch goes through both models; the pairs of one image are
measured in a writer thread while the models work on the next batch. Nothing but the comparison's outputs is
written, so a comparison costs about two explain runs' model passes. The executors, the bookkeeper and the
console are those of ``explain``: ``--engine ray`` runs the pairs on a cluster's actors.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from ..errors import UsageError
from ..io.inputs import InputImage
from ..io.records import explanation_record
from ..options import EngineOptions, ExplainOptions, JobOptions, ModelOptions, check_request
from .bookkeeper import Bookkeeper, JobSummary
from .explain import Callbacks, explainer_for
from .run import check_engine, job_inputs, run_job
from .task import Decoded, MemoryImage, Outcome, decode_with, run_batch


@dataclass(frozen=True)
class CompareTask:
    """Explain each photo with two models and measure each pair. Picklable: Ray sends it to every actor."""

    baseline: object  # ModelOptions, or an Explainer made in this process
    candidate: object
    options: ExplainOptions  # with no pictures: only the maps are needed
    layer_map: dict  # the candidate's layer names -> the baseline's they pair with
    explicit_classes: bool  # pairs by class index (--class) rather than by rank (top-k)

    def __call__(self) -> CompareWorker:
        return CompareWorker(self)


@dataclass
class PairedInput(Decoded):
    """A decoded photo, with the candidate's own input where its preprocessing differs from the baseline's."""

    candidate_input: tuple | None = None  # (tensor, geometry)


class CompareWorker:
    """Both models, loaded once: photos in, each image's measured pairs out."""

    def __init__(self, task: CompareTask) -> None:
        self.task = task
        self.baseline = explainer_for(task.baseline, task.options)
        self.candidate = explainer_for(task.candidate, task.options)
        self.device = self.baseline.device
        self.shared_input = (
            self.baseline.preprocess == self.candidate.preprocess and self.baseline.view == self.candidate.view
        )

    def skip(self, item: InputImage) -> bool:
        return False

    def decode(self, item: InputImage, data: bytes | None = None) -> Decoded:
        decoded = decode_with(self.baseline, item, data)
        if decoded.error is not None or self.shared_input:
            return decoded
        paired = PairedInput(**vars(decoded))
        if isinstance(item, MemoryImage) and item.tensor is not None:
            paired.candidate_input = self.candidate.prepare_tensor(item.tensor)
        else:
            paired.candidate_input = self.candidate.prepare(decoded.photo)
        return paired

    def run(self, batch: Sequence[Decoded], writers: Executor | None) -> list:
        """Both models' passes over the decoded inputs; each image's pairs measured by ``writers`` (or inline)."""
        return run_batch(batch, writers, self._both, lambda d, both, seconds: self.finish(d, *both, seconds))

    def _both(self, good: Sequence[Decoded]) -> list[tuple[list, list]]:
        first = self.baseline.explain_prepared([d.tensor for d in good], [d.geometry for d in good])
        inputs = [getattr(d, "candidate_input", None) or (d.tensor, d.geometry) for d in good]
        second = self.candidate.explain_prepared([t for t, _ in inputs], [g for _, g in inputs])
        return list(zip(first, second))

    def finish(self, decoded: Decoded, first: list, second: list, seconds: float) -> Outcome:
        """One image's explanations paired and measured; the payload is its pairs (with their small maps) and
        the explanations only one model made."""
        from ..comparison.pairs import measure_pair, pair_sides

        sides = [self._side(role, e, decoded, seconds) for role, e in (("baseline", first), ("candidate", second))]
        paired, unpaired = pair_sides(*sides, self.task.layer_map)
        measured = [measure_pair(key, b, c, layer) for key, b, c, layer in paired]
        return Outcome(0, [], source=decoded.item.path, payload=(measured, unpaired))

    def _side(self, role: str, explanations: list, decoded: Decoded, seconds: float):
        import numpy as np

        from ..comparison.runs import Entry, Side, crop_in_map, slot_of

        explainer = self.baseline if role == "baseline" else self.candidate
        loaded, item = explainer.loaded, decoded.item
        width, height = decoded.geometry.original_size
        shown = decoded.photo if decoded.photo is not None else np.empty((height, width, 3), np.uint8)
        side = Side(role, loaded.name, None)
        own = getattr(decoded, "candidate_input", None) if role == "candidate" else None
        geometry = decoded.geometry if own is None else own[1]
        seen = None if explainer.view == "full" else crop_in_map(geometry.crop_box_in_original(), width, height)
        for e in explanations:
            record = explanation_record(
                loaded.name, loaded.weights, item.path, shown, e, {}, seconds, decoded.full_size
            )
            key = (item.path, e.method, e.layer, slot_of(record, self.task.explicit_classes))
            side.entries[key] = Entry(record, array=e.map, seen=seen)
        return side


def candidate_options(model: ModelOptions, against_model: str | None, against_weights) -> ModelOptions:
    """The candidate's model options: ``--against-model`` and ``--against-weights`` in place of the baseline's (a
    new architecture takes no weights of the old one's)."""
    weights = against_weights if against_weights is not None else (None if against_model else model.weights)
    return replace(model, name=against_model or model.name, weights=weights)


def _side_of(explainer, role: str):
    """What the compatibility checks read of a model loaded here (as run.json says it of a run)."""
    from dataclasses import asdict

    from ..comparison.runs import Side

    loaded = explainer.loaded
    info = {
        "model": loaded.name,
        "weights": loaded.weights,
        "layers": list(explainer.layers),
        "view": explainer.view,
        "preprocess": asdict(explainer.preprocess),
        "options": {"explain": asdict(explainer.options), "model": {"num_classes": loaded.num_classes}},
    }
    return Side(role, f"{loaded.name} ({loaded.weights})", info, layers=list(explainer.layers))


def _check_labels(first, second) -> list[str]:
    a, b = first.loaded.labels, second.loaded.labels
    if a and b and len(a) == len(b) and a != b:
        index = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        return [
            f"the class sets differ: class {index} is {a[index]!r} in the baseline and {b[index]!r} in the candidate"
        ]
    return []


@dataclass
class ModelsCompared:
    """What the one-process comparison hands back: the measured pairs, the unpaired, and the two sides."""

    collector: object  # gradcam_cli.comparison.pairs.Collector
    sides: tuple[dict, dict]
    warnings: list[str]
    failed_inputs: dict
    summary: JobSummary


def compare_models(
    inputs: Sequence[str],
    model: ModelOptions,
    candidate: ModelOptions,
    options: ExplainOptions,
    *,
    bounds: tuple = (),
    pictures: int = 0,
    allow_mismatch: bool = False,
    job: JobOptions | None = None,
    engine: EngineOptions | None = None,
    callbacks: Callbacks | None = None,
    output_dir: str | None = None,
) -> ModelsCompared:
    """The photos ``inputs`` name explained by ``model`` and ``candidate`` and each pair measured (and judged by
    ``bounds``). Every bad request is a usage error before a model loads; runs that cannot be compared (another
    view, another class set) are refused once both models are loaded."""
    from ..comparison.checks import check_sides, layer_pairing

    job, engine, calls = job or JobOptions(), engine or EngineOptions(), callbacks or Callbacks()
    options = replace(options, outputs=(), save_raw=False, sheet=False)
    for checked in (model, candidate, options, engine):
        checked.validate()
    check_request(model, options)
    check_request(candidate, options)
    job.validate()
    items = job_inputs(inputs, job, output_dir, calls.message)
    on_ray = check_engine(model.device, engine)
    calls.checked()
    here = [explainer_for(replace(m, device="cpu") if on_ray else m, options) for m in (model, candidate)]
    sides = [_side_of(e, role) for e, role in zip(here, ("baseline", "candidate"))]
    compatibility = check_sides(*sides)
    compatibility.refusals += _check_labels(*here)
    warnings = compatibility.enforce(allow_mismatch)
    layer_map, notes = layer_pairing(*sides)
    for notice in here[0].notices + here[1].notices:
        calls.message(notice)
    task = CompareTask(
        model if on_ray else here[0], candidate if on_ray else here[1], options, layer_map, bool(options.classes)
    )
    return _run(task, items, (sides, warnings + notes), bounds, pictures, job, engine, calls)


def _run(task, items, described, bounds, pictures, job, engine, calls) -> ModelsCompared:
    from ..comparison.pairs import Collector

    sides, warnings = described
    collector = Collector(bounds, pictures)
    failed: dict[str, str] = {}

    def gather(outcome: Outcome) -> None:
        if outcome.failed:
            failed[outcome.source] = next(str(r["error"]) for r in outcome.records if "error" in r)
        if outcome.payload is None:
            return
        measured, unpaired = outcome.payload
        for pair, thumbs in measured:
            collector.add(pair, thumbs)
        collector.unpaired += unpaired

    book = Bookkeeper(
        len(items),
        None,
        fail_fast=job.fail_fast,
        on_progress=calls.on_progress,
        on_outcome=gather,
        on_record=lambda r: calls.message(str(r["error"])) if "error" in r else None,
        stop=calls.stop,
    )
    summary = run_job(task, items, book, engine=engine, batch_size=task.options.batch_size, workers=job.workers)
    if not collector.pairs and not failed and summary.done:
        raise UsageError("no explanation in common: the two models explained other methods, layers or classes")
    described_sides = tuple({"run": s.label, "model": s.info["model"], "weights": s.info["weights"]} for s in sides)
    return ModelsCompared(collector, described_sides, warnings, {"run": failed} if failed else {}, summary)
