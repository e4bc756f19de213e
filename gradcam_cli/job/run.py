"""Running a task over inputs on the chosen executor (``--engine``), with one bookkeeper either way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import UsageError
from ..io.inputs import InputImage
from ..options import EngineOptions, JobOptions
from .bookkeeper import Bookkeeper, JobSummary
from .task import Task


def run_job(
    task: Task,
    items: Sequence[InputImage],
    book: Bookkeeper,
    *,
    engine: EngineOptions | None = None,
    batch_size: int = 1,
    workers: int = 2,
) -> JobSummary:
    """Every input through ``task``; each outcome goes to ``book`` in input order. Returns the closed summary.

    ``engine``: ``local`` (this process; the task's worker made here) or ``ray`` (the task sent to the
    actors of the cluster ``engine.ray_address`` names, or of a Ray instance started for the job).
    """
    engine = engine or EngineOptions()
    book.progress(book.summary)
    try:
        if engine.engine == "ray":
            _run_on_ray(task, items, book, engine, batch_size, workers)
        else:
            from .local import run_local

            run_local(task(), items, book, batch_size=batch_size, workers=workers)
    finally:
        summary = book.close()
    return summary


def _run_on_ray(
    task: Task, items: Sequence[InputImage], book: Bookkeeper, engine: EngineOptions, batch_size: int, workers: int
) -> None:
    from .ray.executor import run_on_ray
    from .ray.pool import plan_pool
    from .ray.session import ray_session, require_ray

    require_ray()
    with ray_session(engine):
        run_on_ray(task, items, book, plan_pool(engine), batch_size=batch_size, workers=workers)


def job_inputs(
    args: Sequence[str], job: JobOptions, output_dir: str | None, on_message: Callable[[str], None] | None = None
) -> list[InputImage]:
    """The images a job's arguments name (this shard's), checked before any model loads: no input at all is
    a usage error with its causes. What a user should hear about the listing goes to ``on_message``."""
    from ..io.inputs import collect_inputs, in_shard

    if list(args).count("-") > 1:
        raise UsageError("- (stdin) can be given only once")
    local_dir = Path(output_dir) if output_dir is not None and "://" not in str(output_dir) else None
    notices: list[str] = []
    items = collect_inputs(
        args, recursive=job.recursive, nul_separated=job.null_separated, output_dir=local_dir, notices=notices
    )
    if all(item.error is not None for item in items):  # nothing to explain: a bad request, with its causes
        causes = "; ".join([item.error for item in items] + notices)
        raise UsageError(f"no input images found{': ' + causes if causes else ''}")
    for notice in notices:
        (on_message or (lambda m: None))(notice)
    shard = job.shard_spec()
    return [it for it in items if in_shard(it, *shard)] if shard else items


def check_engine(device: str, engine: EngineOptions) -> bool:
    """Whether the job runs on Ray; there, Ray must be installed and ``device`` one the actors can be given."""
    if engine.engine != "ray":
        return False
    from .ray.pool import check_device
    from .ray.session import require_ray

    require_ray()
    check_device(device, engine.gpus_per_actor)
    return True
