"""The local executor: a job's batches in this process, decoding and writing overlapped with the model.

Inputs are decoded up to two batches ahead in loader threads and each image's files are
written in writer threads, so on a CPU the model is the bottleneck. Outcomes reach the
bookkeeper in input order. A stop request (SIGINT/SIGTERM in the CLI, or the first failure
with ``--fail-fast``) starts no new batch: what is already under way is finished.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ..io.inputs import InputImage
from ..io.records import error_record
from .bookkeeper import Bookkeeper
from .task import Decoded, Outcome, Worker


def run_local(
    worker: Worker, items: Sequence[InputImage], book: Bookkeeper, *, batch_size: int, workers: int = 2
) -> None:
    """Every input of ``items`` through ``worker``; each outcome handed to ``book`` in input order."""
    todo = []
    for index, item in enumerate(items):
        if item.error is None and worker.skip(item):
            book.outcome(Outcome(index, [], skipped=True, source=item.path))
        else:
            todo.append((index, item))
    loaders = ThreadPoolExecutor(workers, thread_name_prefix="gradcam-load") if workers > 0 else None
    writers = ThreadPoolExecutor(workers, thread_name_prefix="gradcam-write") if workers > 0 else None
    pending: deque[tuple[int, str, Outcome | Future]] = deque()
    try:
        for batch in prefetched(worker, todo, batch_size, loaders, book):
            if book.fail_fast and _failure_known(pending, batch):
                _drain(pending, book, keep=0)
                _report_failed_decodes(batch, book)
                break
            outcomes = worker.run([d for _, d in batch], writers)
            pending.extend((index, d.item.path, o) for (index, d), o in zip(batch, outcomes))
            _drain(pending, book, keep=2 * batch_size)  # bounded: memory stays flat however many images
            if book.stopping:
                break
        _drain(pending, book, keep=0)
    finally:
        for pool in (loaders, writers):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


def _drain(pending: deque, book: Bookkeeper, keep: int) -> None:
    """Hand finished outcomes to ``book`` in input order: every one already done, then more (waiting) until
    at most ``keep`` are pending."""
    while pending and (len(pending) > keep or _done(pending[0][2])):
        index, source, outcome = pending.popleft()
        outcome = outcome.result() if isinstance(outcome, Future) else outcome
        outcome.index, outcome.source = index, outcome.source or source
        book.outcome(outcome)


def _done(outcome) -> bool:
    return not isinstance(outcome, Future) or outcome.done()


def _failure_known(pending: deque, batch: list[tuple[int, Decoded]]) -> bool:
    """With ``--fail-fast``: whether a failure is known before the next model pass starts (a write that
    failed, a batch the model failed on, or an input of the next batch that could not be decoded)."""
    for _, _, outcome in pending:
        if isinstance(outcome, Future):
            if outcome.done() and outcome.exception() is None and outcome.result().failed:
                return True
        elif outcome.failed:
            return True
    return any(d.error is not None for _, d in batch)


def _report_failed_decodes(batch: list[tuple[int, Decoded]], book: Bookkeeper) -> None:
    """The inputs of a batch that never ran because one of them could not be decoded: the failure is
    reported; the others were not started."""
    for index, decoded in batch:
        if decoded.error is not None and not book.summary.stopped_on_failure:
            book.outcome(Outcome(index, [error_record(decoded.item.path, decoded.error)], source=decoded.item.path))


def prefetched(
    worker: Worker,
    todo: Sequence[tuple[int, InputImage]],
    batch_size: int,
    pool: ThreadPoolExecutor | None,
    book: Bookkeeper,
) -> Iterator[list[tuple[int, Decoded]]]:
    """Batches of decoded inputs, decoding up to two batches ahead in the pool."""
    if pool is None:
        for i in range(0, len(todo), batch_size):
            if book.stopping:
                return
            yield [(index, worker.decode(item)) for index, item in todo[i : i + batch_size]]
        return
    ahead: deque[tuple[int, Future]] = deque()
    queue = iter(todo)

    def fill() -> None:
        while len(ahead) < 2 * batch_size and not book.stopping:
            nxt = next(queue, None)
            if nxt is None:
                return
            ahead.append((nxt[0], pool.submit(worker.decode, nxt[1])))

    fill()
    while ahead:
        batch = [
            (index, future.result()) for index, future in (ahead.popleft() for _ in range(min(batch_size, len(ahead))))
        ]
        fill()
        yield batch
        if book.stopping:
            return
