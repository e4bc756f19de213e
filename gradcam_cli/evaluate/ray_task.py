"""``evaluate`` as a Ray task (``gradcam evaluate --engine ray``, see ``job.ray_engine``).

Each actor loads the model once and measures its batches with the local engine's code
(``runner.measure_batch``); what one image measured travels back to the driver as one
record, which gathers them in input order into the same :class:`Measurements` the local
engine builds. The sanity check runs on the driver, on its own few images.
"""

from __future__ import annotations

import base64
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..job.inputs import InputImage
from ..job.ray_engine import Outcome
from ..job.ray_explain import actor_model_options, decode_row, item_of
from ..job.records import error_record
from ..options import EvaluateOptions, ExplainOptions, ModelOptions
from .annotations import ImageTruth
from .runner import BatchMeasurements, measure_batch

MEASURED = "measured"  # the record field that holds one image's measurements


@dataclass(frozen=True)
class EvaluateTask:
    """Measure the maps of annotated images. Picklable: Ray sends it to every actor."""

    model: ModelOptions
    options: ExplainOptions
    measure: EvaluateOptions
    truths: dict[str, ImageTruth]  # by input path, classes resolved to the model's indices
    workers: int = 2  # decoding threads in each actor

    def __call__(self) -> "EvaluateBatches":
        return EvaluateBatches(self)


class EvaluateBatches:
    """The model, loaded once in the actor: rows in, one outcome per row out."""

    def __init__(self, task: EvaluateTask) -> None:
        from ..explainer import Explainer

        self.task = task
        self.explainer = Explainer.from_options(actor_model_options(task.model), task.options)
        self.device = self.explainer.device
        self.pool = ThreadPoolExecutor(task.workers, thread_name_prefix="gradcam-load") if task.workers else None

    def __call__(self, rows: list[dict]) -> list[Outcome]:
        from ..explainer import same_size_groups

        items = [item_of(r) for r in rows]
        decode = lambda pair: decode_row(self.explainer, *pair)  # noqa: E731
        loaded = list(self.pool.map(decode, zip(rows, items)) if self.pool else map(decode, zip(rows, items)))
        records: dict[int, list[dict]] = {}
        good = []
        for i, one in enumerate(loaded):
            if one.error is not None:
                records[i] = [error_record(one.item.path, one.error)]
            else:
                good.append(i)
        for group in same_size_groups([loaded[i].tensor for i in good]):
            chunk = [good[g] for g in group]
            records.update(self._measured([loaded[i] for i in chunk], chunk))
        return [Outcome(int(r.get("index", i)), records[i], source=items[i].path) for i, r in enumerate(rows)]

    def _measured(self, chunk, positions: list[int]) -> dict[int, list[dict]]:
        """One engine call for same-sized photos; a failure (out of memory, say) fails these photos only."""
        try:
            measured, _ = measure_batch(self.explainer, chunk, [self.task.truths[c.item.path] for c in chunk],
                                        self.task.measure)
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return {i: [error_record(c.item.path, f"{c.item.path}: model failed ({type(err).__name__}: {first})")]
                    for i, c in zip(positions, chunk)}
        return {i: [measured_record(c.item, measured)] for i, c in zip(positions, chunk)}


def measured_record(item: InputImage, measured: BatchMeasurements) -> dict:
    """What the batch measured of one image, as a record (the measurements pickled: floats kept exactly)."""
    picks = [i for i, s in enumerate(measured.samples) if s.image == item.path]
    mine = BatchMeasurements([measured.samples[i] for i in picks],
                             {k: [v[i] for i in picks] for k, v in measured.localisation.items()},
                             {k: [v[i] for i in picks] for k, v in measured.faithfulness.items() if v})
    return {"input": item.path, MEASURED: base64.b64encode(pickle.dumps(mine, protocol=5)).decode("ascii")}


def measurements_of(record: dict) -> BatchMeasurements:
    """The measurements an actor sent (a record from this job's own actors: trusted like Ray's own pickles)."""
    return pickle.loads(base64.b64decode(record[MEASURED]))
