"""The task protocol: what an executor needs from a job, and what one input becomes.

An executor calls the task once where the work happens (loading the model there) and gets a
`Worker`; it then decodes inputs with `Worker.decode` (in loader threads) and
hands batches of decoded inputs to `Worker.run`, which returns one `Outcome`
per input, in order (or a future of it, when the worker writes files in writer threads).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import GradcamError, ImageError
from ..io.inputs import InputImage
from ..io.records import error_record

Record = dict


@dataclass
class Decoded:
    """One input, decoded and made the model's input (or the reason it could not be)."""

    item: InputImage
    photo: object = None  # (H, W, 3) uint8, at most --max-output-pixels
    tensor: object = None  # (3, h, w) the model's input, on the CPU
    geometry: object = None  # where the input came from in the photo
    error: str | None = None
    full_size: tuple[int, int] | None = None  # the original photo's (width, height)


@dataclass
class Outcome:
    """What one input became: its records (an error record when it failed), or skipped."""

    index: int
    records: list[Record]
    skipped: bool = False
    started: bool = True  # False: the job was stopping, so this input was not worked on
    source: str = ""  # the input, for a skipped one's message
    payload: object = None  # what the task hands its caller besides records (maps, measurements)

    @property
    def failed(self) -> bool:
        return any("error" in r for r in self.records)


class Worker(Protocol):
    """A task's work in one process: the model loaded once, then inputs and batches."""

    device: object

    def skip(self, item: InputImage) -> bool:
        """Whether the input needs no work (its outputs exist, with ``--skip-existing``)."""

    def decode(self, item: InputImage, data: bytes | None = None) -> Decoded:
        """The input decoded and prepared (``data``: its bytes, when they came with it)."""

    def run(self, batch: Sequence[Decoded], writers: Executor | None) -> list[Outcome | Future]:
        """One pass over the batch; one outcome (or its future) per input, in order."""


Task = Callable[[], Worker]  # picklable: Ray sends it to every actor


def failed(item: InputImage, message: str) -> Decoded:
    return Decoded(item, error=message)


def decode_with(explainer, item: InputImage, data: bytes | None = None) -> Decoded:
    """Decode ``item`` (a file, a URI, bytes, or an image already in memory) and prepare it for ``explainer``."""
    from ..io.images import load_photo

    if item.error is not None:  # known while collecting (a missing file, a folder that cannot be listed)
        return failed(item, item.error)
    try:
        if isinstance(item, MemoryImage):
            photo, tensor, full_size = item.photo, item.tensor, None
        else:
            photo, full_size = load_photo(item.path, explainer.options.max_output_pixels, data or _uri_bytes(item))
            tensor = None
        prepared, geometry = explainer.prepare(photo) if tensor is None else explainer.prepare_tensor(tensor)
        return Decoded(item, photo, prepared, geometry, full_size=full_size)
    except ImageError as err:
        return failed(item, str(err))
    except Exception as err:  # a decoder bug must not take the batch down
        return failed(item, f"{item.path}: cannot decode image ({type(err).__name__}: {err})")


def _uri_bytes(item: InputImage) -> bytes | None:
    """The bytes of an input named by URI (``s3://...``), through pyarrow's filesystems; None for a path."""
    if "://" not in item.path:
        return None
    from pyarrow.fs import FileSystem

    try:
        filesystem, path = FileSystem.from_uri(item.path)
        with filesystem.open_input_stream(path) as fh:
            return fh.read()
    except (OSError, ValueError) as err:  # missing, unreachable, or not a URI pyarrow knows
        raise ImageError(f"{item.path}: cannot read ({' '.join(str(err).split())[:200]})") from None


@dataclass(frozen=True)
class MemoryImage(InputImage):
    """An image the Python API was given in memory: an RGB array, or a tensor that is already the model's input."""

    photo: object = field(default=None, compare=False)
    tensor: object = field(default=None, compare=False)


def model_failed(batch: Sequence[Decoded], err: Exception) -> dict[int, Outcome]:
    """Each image of a batch whose model pass raised (out of memory, say): an error record naming the image and the
    cause, by the image's ``id``; the job goes on with the next batch."""
    first_line = (str(err).strip().splitlines() or [""])[0]
    return {
        id(d): Outcome(
            0, [error_record(d.item.path, f"{d.item.path}: model failed ({type(err).__name__}: {first_line})")]
        )
        for d in batch
    }


def run_batch(batch: Sequence[Decoded], writers: Executor | None, passes: Callable, finish: Callable) -> list:
    """A batch through the model: ``passes(good)`` once for its decoded inputs, then each input's
    ``finish(decoded, result, seconds)`` on ``writers`` (or inline), ``seconds`` its share of the passes' time.
    Inputs that failed to decode, or whose passes raised, get their error record."""
    good = [d for d in batch if d.error is None]
    results: dict[int, object] = {}
    if good:
        start = time.perf_counter()
        try:
            done = passes(good)
        except GradcamError:
            raise
        except Exception as err:  # e.g. out of memory: this batch fails, the job goes on
            results.update(model_failed(good, err))
        else:
            seconds = (time.perf_counter() - start) / len(good)
            for d, result in zip(good, done):
                d.tensor = None  # the photo stays until its outputs are made; the input can go
                results[id(d)] = writers.submit(finish, d, result, seconds) if writers else finish(d, result, seconds)
    return [results.get(id(d)) or Outcome(0, [error_record(d.item.path, d.error)]) for d in batch]
