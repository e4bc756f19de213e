"""Ray connected for a job: a running cluster, or a new instance on this machine; Ray kept quiet."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ...errors import UsageError
from ...options import EngineOptions

_log = logging.getLogger(__name__)


def require_ray() -> None:
    """A usage error, not a traceback, where the ``ray`` extra is not installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError as err:
        raise UsageError(f'--engine ray needs Ray Data ({err}): pip install "gradcam-cli[ray]"') from None


@contextmanager
def ray_session(engine: EngineOptions) -> Iterator[None]:
    """Ray connected for the block: the cluster at ``engine.ray_address``, or a new instance on this machine.

    A caller that already called ``ray.init`` keeps its session (nothing is shut down).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    _quiet_ray_logs()
    _cluster_messages_to_log()
    try:
        with _stderr_without("Set ray log level from environment variable"):
            if engine.ray_address:
                ray.init(address=engine.ray_address, logging_level=logging.ERROR, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=os.cpu_count() or 1,
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as err:
        where = f"--ray-address {engine.ray_address}" if engine.ray_address else "--engine ray"
        raise UsageError(f"{where}: cannot start or join Ray ({one_line(err)})") from None
    try:
        yield
    finally:
        ray.shutdown()


def _quiet_ray_logs() -> None:
    """The terminal shows the job's progress and errors, not Ray's plans and tips (they stay in Ray's log files).

    The driver's own Ray core logs notes at error level (e.g. that actor constructor
    arguments live in the object store): only fatal ones reach the terminal, unless
    ``RAY_BACKEND_LOG_LEVEL`` says otherwise.
    """
    import ray.data  # noqa: F401  (configures its loggers on import: quieten them after)

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    ray.data.DataContext.get_current().enable_progress_bars = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _cluster_messages_to_log() -> None:
    """Ray prints the cluster's notes (e.g. "a worker died") on the driver's stdout, where the
    JSON records go: send them to the log instead (the summary counts the retries).

    Ray offers no switch for this: its module-level printer is replaced, in this
    process only (the CLI's), never for a caller of the Python API.
    """
    import ray._private.worker as ray_worker

    def to_log(data, ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            _log.info("(%s) %s", data.get("pid"), line)

    ray_worker.print_to_stdstream = to_log


@contextmanager
def _stderr_without(noise: str) -> Iterator[None]:
    """Everything written to file descriptor 2 in the block (C++ included), less the lines naming ``noise``."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(keepends=True) if noise.encode() not in line]
            os.write(2, b"".join(kept)) if kept else None


def one_line(err: BaseException) -> str:
    """An exception as one short line (Ray's messages span many)."""
    return " ".join(str(err).split())[:300] or type(err).__name__
