"""How many threads the model's arithmetic gets, so that a shared machine does not collapse a run.

PyTorch's CPU kernels run on OpenMP threads, by default one per core, and OpenMP's threads
spin at every barrier waiting for each other. When other work keeps the cores busy, a
spinning thread waits for one the system has descheduled: on a 2-core machine with a
competing job a forward pass took 1.7 s with 2 threads against 50 ms with 1
(``benchmarks/threads.py``). Two things keep the ``gradcam`` command clear of that:

- OpenMP's passive wait policy (``OMP_WAIT_POLICY=PASSIVE``: a waiting thread sleeps instead
  of spinning), set when the command starts, before torch loads, unless the environment
  already says otherwise;
- as many threads as there are cores not busy with other work, measured from the system's
  CPU counters over the command's own start-up (the imports take a second or more), unless
  ``--threads N``, ``GRADCAM_THREADS`` or ``OMP_NUM_THREADS`` says how many.

The Python API changes nothing of the process: a program sets its own threads.
"""

from __future__ import annotations

import os
import time

THREADS_ENV = "GRADCAM_THREADS"
_SAMPLE: tuple[float, float, float] | None = None  # (busy CPU seconds of the usable cores, own CPU seconds, wall)


def usable_cores() -> list[int]:
    """The cores this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _busy_seconds(cores: list[int]) -> float | None:
    """CPU seconds the given cores have spent busy since boot (Linux ``/proc/stat``), or None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    wanted, ticks = {f"cpu{c}" for c in cores}, 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            values = [int(v) for v in fields[1:8]]  # user nice system idle iowait irq softirq
            ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def prepare_process() -> None:
    """At the command's start, before torch loads: OpenMP's passive wait policy, and the first CPU sample."""
    global _SAMPLE
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    busy = _busy_seconds(usable_cores())
    _SAMPLE = None if busy is None else (busy, _own_seconds(), time.monotonic())


def free_cores() -> float | None:
    """Cores not busy with other processes since `prepare_process` (None when it cannot be measured)."""
    cores = usable_cores()
    busy = _busy_seconds(cores)
    if _SAMPLE is None or busy is None:
        return None
    wall = time.monotonic() - _SAMPLE[2]
    if wall < 0.2:  # too short a window to say anything: a short sample of its own
        time.sleep(0.2 - wall)
        return free_cores()
    others = max(0.0, (busy - _SAMPLE[0]) - (_own_seconds() - _SAMPLE[1]))
    return max(0.0, len(cores) - others / wall)


def choose_threads(requested: int | None) -> tuple[int | None, str]:
    """``(threads, why)``: ``requested`` (``--threads``), else ``GRADCAM_THREADS``, else none to set when
    ``OMP_NUM_THREADS`` says, else the free cores (at least 1)."""
    if requested is not None:
        return requested, "--threads"
    if os.environ.get(THREADS_ENV, "").strip():
        from .errors import UsageError

        try:
            value = int(os.environ[THREADS_ENV])
        except ValueError:
            raise UsageError(f"{THREADS_ENV}={os.environ[THREADS_ENV]}: not a whole number") from None
        if value < 1:
            raise UsageError(f"{THREADS_ENV}={value}: must be at least 1")
        return value, THREADS_ENV
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None, "OMP_NUM_THREADS"
    free = free_cores()
    if free is None:
        return None, "torch's default"
    return max(1, min(len(usable_cores()), int(free + 0.5))), f"{free:.1f} free cores"


def apply_threads(requested: int | None) -> int:
    """Set torch's intra-op threads as `choose_threads` says; returns the count in use."""
    import torch

    threads, _ = choose_threads(requested)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()
